//! `tracing` output of one test, as lines of text.
//!
//! Why not `tracing::subscriber::set_default` per test: a callsite's
//! interest is cached process-wide, from the dispatchers alive when it is
//! first hit or when interest is rebuilt. A thread-local subscriber
//! registered while other tests hit the same callsites on other threads
//! can find them cached as "never" and miss their events (it failed that
//! way in full runs). Instead one global subscriber, interested in
//! everything, is installed once, before the first test touches the
//! crate ([`install`], from `server_url`), and never changes, so no
//! callsite's interest can be "never". It records only what happens on the
//! threads of tests that asked for it ([`Capture::start`]); each
//! `#[tokio::test]` runs its tasks on its own thread.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, ThreadId};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// What one capturing test's thread recorded, from [`Capture::start`] on.
pub struct Capture {
    thread: ThreadId,
    recorder: Arc<Recorder>,
}

impl Capture {
    /// Records the spans, recorded fields and events of the current thread
    /// until dropped.
    pub fn start() -> Self {
        let recorder = install();
        let thread = thread::current().id();
        recorder.lines.lock().unwrap().insert(thread, Vec::new());
        // Interest cached before the global subscriber existed (a test on
        // another thread hit a callsite first) is computed again with it.
        tracing::callsite::rebuild_interest_cache();
        Self { thread, recorder }
    }

    /// The lines recorded so far.
    pub fn lines(&self) -> Vec<String> {
        let lines = self.recorder.lines.lock().unwrap();
        lines.get(&self.thread).cloned().unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(mut lines) = self.recorder.lines.lock() {
            lines.remove(&self.thread);
        }
    }
}

/// Installs the global recorder (once) and returns it.
pub fn install() -> Arc<Recorder> {
    static RECORDER: OnceLock<Arc<Recorder>> = OnceLock::new();
    Arc::clone(RECORDER.get_or_init(|| {
        let recorder = Arc::new(Recorder::default());
        tracing::subscriber::set_global_default(Handle(Arc::clone(&recorder)))
            .expect("no other global subscriber in the test binary");
        recorder
    }))
}

/// Lines by capturing thread, and the names of the spans those threads made.
#[derive(Default)]
pub struct Recorder {
    next_id: AtomicU64,
    lines: Mutex<HashMap<ThreadId, Vec<String>>>,
    names: Mutex<HashMap<u64, &'static str>>,
    /// Spans made on capturing threads (others are not named or recorded).
    captured: Mutex<HashSet<u64>>,
}

impl Recorder {
    /// Appends a line for the current thread, if it captures.
    fn push(&self, line: impl FnOnce() -> String) -> bool {
        let mut lines = self.lines.lock().unwrap();
        match lines.get_mut(&thread::current().id()) {
            Some(mine) => {
                mine.push(line());
                true
            }
            None => false,
        }
    }

    fn name(&self, id: &Id) -> &'static str {
        let names = self.names.lock().unwrap();
        names.get(&id.into_u64()).copied().unwrap_or("?")
    }
}

/// The installed subscriber.
struct Handle(Arc<Recorder>);

/// Writes fields as ` name=value` (strings without quotes).
struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Handle {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let meta = span.metadata();
        let captured = self.0.push(|| {
            let mut line = format!("span {} {}", meta.target(), meta.name());
            span.record(&mut Fields(&mut line));
            line
        });
        if captured {
            self.0.names.lock().unwrap().insert(id, meta.name());
            self.0.captured.lock().unwrap().insert(id);
        }
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        if !self.0.captured.lock().unwrap().contains(&span.into_u64()) {
            return;
        }
        let name = self.0.name(span);
        self.0.push(|| {
            let mut line = format!("record {name}");
            values.record(&mut Fields(&mut line));
            line
        });
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let parent = event.parent().map_or("-", |p| self.0.name(p));
        self.0.push(|| {
            let mut line = format!("event {} {} in={parent}", meta.target(), meta.level());
            event.record(&mut Fields(&mut line));
            line
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}
