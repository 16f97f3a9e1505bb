//! Observes the cleanup's batches through the crate's `tracing` spans: each
//! `DELETE` of `delete_expired_sessions` runs inside one
//! `delete_expired_batch` span, from checkout to result.
//!
//! A minimal subscriber that is interested in that span only, so every
//! other callsite stays disabled and costs what it costs without one.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const SPAN: &str = "delete_expired_batch";

#[derive(Default)]
pub struct Batches {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Open spans: id, start, references.
    open: Vec<(u64, Instant, usize)>,
    /// How long each closed span lasted.
    done: Vec<Duration>,
}

impl Batches {
    /// The process's subscriber, installed on first use.
    pub fn install() -> Arc<Batches> {
        static BATCHES: OnceLock<Arc<Batches>> = OnceLock::new();
        BATCHES
            .get_or_init(|| {
                let batches = Arc::new(Batches::default());
                if tracing::subscriber::set_global_default(batches.clone()).is_err() {
                    eprintln!("a tracing subscriber is already set: batches not observed");
                }
                batches
            })
            .clone()
    }

    /// The durations of the batches that finished since the last call.
    pub fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut self.lock().done)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }
}

impl Subscriber for Batches {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_span() && metadata.name() == SPAN
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.open.push((id, Instant::now(), 1));
        Id::from_u64(id)
    }

    fn clone_span(&self, id: &Id) -> Id {
        if let Some(span) = self.lock().open.iter_mut().find(|s| s.0 == id.into_u64()) {
            span.2 += 1;
        }
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        let mut state = self.lock();
        let Some(at) = state.open.iter().position(|s| s.0 == id.into_u64()) else {
            return false;
        };
        state.open[at].2 -= 1;
        if state.open[at].2 > 0 {
            return false;
        }
        let (_, start, _) = state.open.swap_remove(at);
        state.done.push(start.elapsed());
        true
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}
