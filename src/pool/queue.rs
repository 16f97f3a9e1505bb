//! Callers' turns at a pool's connections: first come, first served, each
//! wait bounded by the checkout timeout. Shared by [`PgPool`](super::PgPool)
//! and, with feature `pooler`, `PoolerPool`.
//!
//! bb8 puts a returned connection back in its idle queue and wakes one
//! waiter, so a task that asks again at once can take it first; with more
//! callers than connections some waiters starve until their checkout times
//! out although the pool is healthy and busy. A FIFO semaphore with one
//! permit per connection in front of bb8 makes callers wait their turn
//! instead (a correctness property: no caller starves while others are
//! served).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use super::PoolOptions;
use crate::error::{Error, ErrorSource, Result};
use crate::metrics;

/// The last error seen while opening a connection, and when, for
/// [`Error::PoolTimeout`].
#[derive(Debug, Clone, Default)]
pub(crate) struct LastError(Arc<Mutex<Option<(Instant, ErrorSource)>>>);

impl LastError {
    /// Keeps a connection error and logs it (it never holds a token).
    pub(crate) fn record(&self, error: Error) {
        tracing::warn!(target: "lucia_diesel::pool", error = %error, "database connection failed");
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some((Instant::now(), Arc::new(error)));
        }
    }

    /// The last error seen since `since`.
    fn since(&self, since: Instant) -> Option<ErrorSource> {
        let slot = self.0.lock().ok()?;
        slot.as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, e)| Arc::clone(e))
    }
}

/// The turns at one pool's connections.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    /// One permit per connection, handed out in the order asked for.
    turns: Arc<Semaphore>,
    checkout_timeout: Duration,
    pub(crate) last_error: LastError,
    /// The pool's checkout-wait histogram and connection gauges.
    metrics: metrics::PoolMetrics,
}

impl Queue {
    pub(crate) fn new(options: &PoolOptions) -> Self {
        Self {
            turns: Arc::new(Semaphore::new(options.max_size as usize)),
            checkout_timeout: options.checkout_timeout,
            last_error: LastError::default(),
            metrics: metrics::PoolMetrics::register(options.name),
        }
    }

    /// Waits for this caller's turn, then checks a connection out of `pool`,
    /// both within the checkout timeout; `error` turns bb8's error (with the
    /// last connection error) into the crate's.
    pub(crate) async fn checkout<'a, M: bb8::ManageConnection>(
        &'a self,
        pool: &'a bb8::Pool<M>,
        error: fn(bb8::RunError<M::Error>, Option<ErrorSource>) -> Error,
    ) -> Result<(bb8::PooledConnection<'a, M>, SemaphorePermit<'a>)> {
        let start = Instant::now();
        let timed_out = || Error::PoolTimeout {
            last_error: self.last_error.since(start),
        };
        // bb8's checkout future is large (its connection test is inline):
        // boxed, callers up the chain move a pointer instead of copying it.
        let conn = match self.turns.try_acquire() {
            // A turn free right now means nobody is waiting (released turns
            // go to waiters first); bb8's own wait is bounded by its
            // connection timeout, the checkout timeout.
            Ok(turn) => Box::pin(pool.get()).await.map(|conn| (conn, turn)),
            // Waiting: the turn, then the connection, within one deadline.
            Err(_) => {
                let deadline = tokio::time::Instant::now() + self.checkout_timeout;
                let turn = tokio::time::timeout_at(deadline, self.turns.acquire())
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|_| Error::unavailable("the pool is closed"))?;
                let conn = tokio::time::timeout_at(deadline, Box::pin(pool.get()))
                    .await
                    .map_err(|_| timed_out())?;
                conn.map(|conn| (conn, turn))
            }
        };
        let conn = conn.map_err(|e| error(e, self.last_error.since(start)))?;
        self.metrics.checked_out(start, || {
            let state = pool.state();
            (state.connections, state.idle_connections)
        });
        Ok(conn)
    }
}
