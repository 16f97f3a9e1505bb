//! Background cleanup: a task that deletes expired sessions now and then,
//! in small batches, without ever holding long locks.
//!
//! Expired sessions are harmless (validation treats them as unknown and
//! deletes them), but nothing else removes sessions that are never presented
//! again. [`CleanupOptions::spawn`] starts a tokio task that, every
//! [`interval`](CleanupOptions::with_interval), deletes sessions whose
//! `expires_at` has passed on the [`SessionManager`]'s clock (the one clock
//! of creation and validation), at most
//! [`batch_size`](CleanupOptions::with_batch_size) per statement, pausing
//! between statements. Each batch is one short `DELETE` that skips rows a
//! request has locked instead of waiting for them, so the task never blocks
//! requests for longer than one batch takes.
//!
//! A failed batch (database down, statement timeout) is logged through
//! `tracing` as a `WARN` event under target `lucia_diesel::cleanup` and
//! counted in [`CleanupStats::failures`]; the task carries on at the next
//! interval. It stops when [`CleanupHandle::shutdown`] is awaited or the
//! handle is dropped.
//!
//! # Examples
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager, cleanup::CleanupOptions};
//!
//! # async fn run() -> lucia_diesel::Result<()> {
//! let pool = PoolOptions::new().build("postgres://localhost/app").await?;
//! let sessions = Arc::new(SessionManager::new(PostgresAdapter::new(pool)));
//! let cleanup = CleanupOptions::new()
//!     .with_interval(Duration::from_secs(15 * 60))
//!     .spawn(Arc::clone(&sessions))?;
//! // ... serve requests ...
//! cleanup.shutdown().await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::{Either, select};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::error::ConfigError;
use crate::metrics;
use crate::postgres::PostgresAdapter;
use crate::session::SessionManager;
use crate::source::ConnectionSource;
use crate::user_id::UserId;

pub use crate::postgres::CLEANUP_BATCH_SIZE;

/// The `target` of the cleanup task's spans and events.
const TARGET: &str = "lucia_diesel::cleanup";

/// Settings for the background cleanup; see the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct CleanupOptions {
    interval: Duration,
    batch_size: u32,
    pause: Duration,
}

impl Default for CleanupOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(600),
            batch_size: CLEANUP_BATCH_SIZE,
            pause: Duration::from_millis(100),
        }
    }
}

impl CleanupOptions {
    /// The defaults: a pass every 10 minutes (the first right away), up to
    /// 1,000 sessions per `DELETE`, 100 ms between batches.
    pub fn new() -> Self {
        Self::default()
    }

    /// Time from the end of one pass to the start of the next (default 10 min).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The most sessions one `DELETE` removes (default
    /// [`CLEANUP_BATCH_SIZE`], 1,000,
    /// the same batch as [`SessionManager::delete_expired_sessions`]);
    /// at least 1. Smaller batches hold fewer row locks for less time.
    pub fn with_batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// The pause between two batches of one pass (default 100 ms), leaving
    /// the database to other work while a large backlog is cleared.
    pub fn with_pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// Starts the cleanup task on the current tokio runtime.
    ///
    /// # Errors
    /// [`ConfigError::CleanupInterval`] or [`ConfigError::CleanupBatchSize`]
    /// for a zero interval or batch size; [`ConfigError::NoRuntime`] outside
    /// a tokio runtime.
    pub fn spawn<S, U, SA, UA>(
        self,
        manager: Arc<SessionManager<PostgresAdapter<S, U, SA, UA>>>,
    ) -> Result<CleanupHandle, ConfigError>
    where
        S: ConnectionSource,
        U: UserId,
        SA: Send + Sync + 'static,
        UA: Send + Sync + 'static,
    {
        if self.interval.is_zero() {
            return Err(ConfigError::CleanupInterval);
        }
        if self.batch_size == 0 {
            return Err(ConfigError::CleanupBatchSize);
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::NoRuntime("the cleanup task"))?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stats = Arc::new(Counters::default());
        let task = runtime.spawn(run(manager, self, Arc::clone(&stats), Stop(stop_rx)));
        Ok(CleanupHandle {
            stop: stop_tx,
            task: Some(task),
            stats,
        })
    }
}

/// Controls a running cleanup task. Dropping it stops the task (at its
/// next pause, or at once if a batch is in flight); [`shutdown`](Self::shutdown)
/// also waits for it to end.
#[derive(Debug)]
pub struct CleanupHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    stats: Arc<Counters>,
}

impl CleanupHandle {
    /// Stops the task and waits until it has ended. A batch in flight is
    /// abandoned (its `DELETE` either commits whole or not at all).
    ///
    /// # Panics
    /// If the cleanup task itself panicked, the panic is resumed here.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// Whether the task has ended.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// What the task has done so far.
    #[must_use]
    pub fn stats(&self) -> CleanupStats {
        self.stats.snapshot()
    }
}

impl Drop for CleanupHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Counts of what a cleanup task did, from [`CleanupHandle::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CleanupStats {
    /// Passes finished, successful or not.
    pub passes: u64,
    /// `DELETE` statements that succeeded.
    pub batches: u64,
    /// Sessions deleted.
    pub deleted: u64,
    /// Batches that failed (each ends its pass early).
    pub failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    passes: AtomicU64,
    batches: AtomicU64,
    deleted: AtomicU64,
    failures: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> CleanupStats {
        CleanupStats {
            passes: self.passes.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            deleted: self.deleted.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// The stop signal: set by the handle, or implied when the handle is gone.
struct Stop(watch::Receiver<bool>);

impl Stop {
    async fn requested(&mut self) {
        // `wait_for` ends with an error once the sender is dropped.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Runs `op` unless a stop is requested first; `None` when stopped.
    async fn unless_stopped<T>(&mut self, op: impl Future<Output = T>) -> Option<T> {
        let op = pin!(op);
        let stop = pin!(self.requested());
        match select(op, stop).await {
            Either::Left((value, _)) => Some(value),
            Either::Right(_) => None,
        }
    }
}

async fn run<S, U, SA, UA>(
    manager: Arc<SessionManager<PostgresAdapter<S, U, SA, UA>>>,
    options: CleanupOptions,
    stats: Arc<Counters>,
    mut stop: Stop,
) where
    S: ConnectionSource,
    U: UserId,
{
    loop {
        let span = tracing::debug_span!(target: TARGET, "cleanup_pass", deleted = Empty);
        let pass = async {
            // One `now` per pass, from the manager's clock.
            let now = manager.now();
            let mut deleted = 0;
            loop {
                let batch = manager
                    .adapter()
                    .delete_expired_batch(now, options.batch_size);
                match stop.unless_stopped(batch).await {
                    None => return Err(()),
                    Some(Ok(n)) => {
                        deleted += n;
                        metrics::deleted("cleanup", n);
                        stats.batches.fetch_add(1, Ordering::Relaxed);
                        stats.deleted.fetch_add(n, Ordering::Relaxed);
                        span.record("deleted", deleted);
                        if n < u64::from(options.batch_size) {
                            return Ok(());
                        }
                    }
                    Some(Err(error)) => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                        metrics::failed("cleanup", &error);
                        tracing::warn!(
                            target: TARGET,
                            error = %error,
                            "deleting expired sessions failed; retrying at the next interval"
                        );
                        return Ok(());
                    }
                }
                if stop
                    .unless_stopped(tokio::time::sleep(options.pause))
                    .await
                    .is_none()
                {
                    return Err(());
                }
            }
        };
        if pass.instrument(span.clone()).await.is_err() {
            return;
        }
        stats.passes.fetch_add(1, Ordering::Relaxed);
        if stop
            .unless_stopped(tokio::time::sleep(options.interval))
            .await
            .is_none()
        {
            return;
        }
    }
}
