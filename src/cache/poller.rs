//! The poller: one task per cache that polls the outbox every interval,
//! hands what became visible to the cache, and trims the outbox a batch at
//! a time; and [`SessionManager::with_cache`], which starts it.

use std::sync::{Arc, Weak};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::{Instant, MissedTickBehavior};

use super::outbox::{self, OutboxSql, Polled, TRIM_BATCH};
use super::{Cache, CacheOptions, CacheStats, TARGET};
use crate::error::Result;
use crate::metrics;
use crate::postgres::PostgresAdapter;
use crate::session::{CacheHook, SessionManager};
use crate::source::ConnectionSource;
use crate::user_id::UserId;

#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
impl<S, U, SA, UA> SessionManager<PostgresAdapter<S, U, SA, UA>>
where
    S: ConnectionSource + Clone,
    U: UserId,
    SA: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    UA: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Validates sessions from memory (feature `cache`; see the
    /// [`cache`](crate::cache) module): checks that the outbox and its
    /// triggers exist, takes the snapshot the first poll starts from, and
    /// from then on answers validations with nothing to write from the
    /// cache, polling the outbox on connections of the adapter's source.
    /// Must be called within a tokio runtime.
    ///
    /// # Examples
    /// ```no_run
    /// use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager, cache::CacheOptions};
    ///
    /// # async fn run() -> lucia_diesel::Result<()> {
    /// let pool = PoolOptions::new().build("postgres://localhost/app").await?;
    /// let sessions = SessionManager::new(PostgresAdapter::new(pool))
    ///     .with_cache(CacheOptions::new())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::CacheTriggers`](crate::ConfigError::CacheTriggers)
    /// naming what is missing (run
    /// [`migrations::CACHE_MIGRATIONS`](crate::migrations::CACHE_MIGRATIONS)
    /// or [`migrations::cache_triggers_sql`](crate::migrations::cache_triggers_sql));
    /// [`ConfigError::CacheMaxAge`](crate::ConfigError::CacheMaxAge),
    /// [`ConfigError::CachePollInterval`](crate::ConfigError::CachePollInterval)
    /// and [`ConfigError::CacheRetention`](crate::ConfigError::CacheRetention)
    /// for settings out of range; any database error, typed, when the
    /// database cannot be reached.
    pub async fn with_cache(self, options: CacheOptions) -> Result<Self> {
        let polls = self.adapter().source().clone();
        self.with_cache_polling(options, polls).await
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
impl<S, U, SA, UA> SessionManager<PostgresAdapter<S, U, SA, UA>>
where
    S: ConnectionSource,
    U: UserId,
    SA: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    UA: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// [`with_cache`](Self::with_cache), polling the outbox on `polls`
    /// instead of the adapter's source: a direct connection to the primary
    /// when the adapter goes through a pooler, or a small pool of its own so
    /// that polls never queue behind the application's checkouts (a poll
    /// that waits longer than the maximum poll age bypasses the cache). A
    /// second source is a second concept, here for that correctness
    /// property: polls that cannot be starved by the load the cache serves.
    ///
    /// `polls` must reach the primary server and the database the adapter
    /// writes to: checked at start (the cluster's system identifier and the
    /// database's name), as polls elsewhere would never see an
    /// invalidation.
    ///
    /// # Examples
    /// ```no_run
    /// use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager, cache::CacheOptions};
    ///
    /// # async fn run() -> lucia_diesel::Result<()> {
    /// // The application's sixteen connections, and one of the cache's own.
    /// let pool = PoolOptions::new().with_max_size(16).build("postgres://db/app").await?;
    /// let polls = PoolOptions::new().with_max_size(1).build("postgres://db/app").await?;
    /// let sessions = SessionManager::new(PostgresAdapter::new(pool))
    ///     .with_cache_polling(CacheOptions::new(), polls)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`with_cache`](Self::with_cache), and
    /// [`ConfigError::CachePollSource`](crate::ConfigError::CachePollSource)
    /// when `polls` reaches another server or database, or a standby.
    pub async fn with_cache_polling<P: ConnectionSource>(
        mut self,
        options: CacheOptions,
        polls: P,
    ) -> Result<Self> {
        options.check()?;
        let source = self.adapter().source();
        let sql = OutboxSql::new(self.adapter().table_names());
        let cache = Arc::new(Cache::<U, SA, UA>::new(
            &options,
            U::text,
            source.max_read_lag(),
        ));
        let began = cache.now_us();
        let snapshot = outbox::start(&polls, source, &sql).await?;
        let first = Polled {
            snapshot,
            trimmed_past: false,
            changes: Vec::new(),
        };
        cache.polled(&first, began);
        let task = tokio::spawn(run(
            StopOnExit(Arc::downgrade(&cache)),
            polls,
            sql,
            options,
            (first.snapshot, began),
        ));
        if let Ok(mut slot) = cache.poller.lock() {
            *slot = Some(task);
        }
        self.cache = CacheHook::new::<U, SA, UA>(cache);
        Ok(self)
    }

    /// What the cache has done so far; `None` without a cache.
    #[must_use]
    pub fn cache_stats(&self) -> Option<CacheStats> {
        let cache = self.cache().get()?.as_any();
        Some(cache.downcast_ref::<Cache<U, SA, UA>>()?.stats())
    }
}

/// Stops the cache from serving however the poller task ends (a panic, or
/// dropped with its runtime, polled or not): a correctness property, as a
/// cache nobody invalidates must not serve. An argument of [`run`], so it
/// is dropped with the task even before its first poll.
struct StopOnExit<U, SA, UA>(Weak<Cache<U, SA, UA>>)
where
    U: Clone + Send + Sync + 'static,
    SA: Clone + Send + Sync + 'static,
    UA: Clone + Send + Sync + 'static;

impl<U, SA, UA> Drop for StopOnExit<U, SA, UA>
where
    U: Clone + Send + Sync + 'static,
    SA: Clone + Send + Sync + 'static,
    UA: Clone + Send + Sync + 'static,
{
    fn drop(&mut self) {
        if let Some(cache) = self.0.upgrade() {
            cache.stop_serving();
        }
    }
}

/// The poller task: a poll every interval (a failed one bypasses the cache
/// until one succeeds), and, every quarter retention and until the outbox
/// has nothing more to trim, one trim batch after a poll. Ends when the
/// cache is dropped. `snapshot` is where the next poll starts from, with
/// when the poll that took it began (cache microseconds): an invalidation
/// a poll applies committed after that.
async fn run<S, U, SA, UA>(
    stop: StopOnExit<U, SA, UA>,
    source: S,
    sql: OutboxSql,
    options: CacheOptions,
    (mut snapshot, mut snapshot_began): (String, u64),
) where
    S: ConnectionSource,
    U: Clone + Send + Sync + 'static,
    SA: Clone + Send + Sync + 'static,
    UA: Clone + Send + Sync + 'static,
{
    let cache = &stop.0;
    let mut ticks = tokio::time::interval(options.poll_interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let trim_every = options.retention / 4;
    let mut next_trim = Instant::now() + trim_every;
    let mut trimming = false;
    let mut failing = false;
    loop {
        ticks.tick().await;
        let Some(began) = cache.upgrade().map(|c| c.now_us()) else {
            return;
        };
        let polled = outbox::poll(&source, &sql, &snapshot).await;
        let Some(current) = cache.upgrade() else {
            return;
        };
        match polled {
            Ok(polled) => {
                current.polled(&polled, began);
                let waited = current.now_us().saturating_sub(snapshot_began);
                metrics::invalidations_polled(
                    polled.changes.len(),
                    std::time::Duration::from_micros(waited),
                );
                (snapshot, snapshot_began) = (polled.snapshot, began);
                failing = false;
            }
            Err(error) => {
                current.poll_failed();
                metrics::failed("cache_poll", &error);
                if !failing {
                    tracing::warn!(target: TARGET, error = %error, "outbox poll failed; the cache is bypassed until one succeeds");
                }
                failing = true;
            }
        }
        current.publish_lookups();
        drop(current);
        if !trimming && Instant::now() >= next_trim {
            next_trim = Instant::now() + trim_every;
            trimming = true;
        }
        if trimming {
            match outbox::trim(&source, &sql, options.retention, TRIM_BATCH).await {
                Ok(deleted) => trimming = deleted >= u64::from(TRIM_BATCH),
                Err(error) => {
                    trimming = false;
                    tracing::debug!(target: TARGET, error = %error, "outbox trim failed; tried again later");
                }
            }
        }
    }
}
