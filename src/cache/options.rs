//! [`CacheOptions`]: how often the cache polls the outbox, how long the
//! outbox keeps its rows, and the cache's bounds.

use std::time::Duration;

/// How the cache is set up; see the [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct CacheOptions {
    pub(crate) max_entries: u64,
    pub(crate) max_age: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) retention: Duration,
    pub(crate) max_poll_age: Option<Duration>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_age: Duration::from_secs(60),
            poll_interval: Duration::from_millis(20),
            retention: Duration::from_secs(60),
            max_poll_age: None,
        }
    }
}

impl CacheOptions {
    /// The defaults: polls every 20 ms, outbox rows kept a minute, at most
    /// 100,000 sessions, each served for at most 60 s before it is read
    /// again.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most sessions kept (default 100,000, a few hundred bytes each
    /// plus their attributes); the least recently used go first.
    pub fn with_max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// How long an entry may be served before it is read again (default
    /// 60 s, at most a day: [`ConfigError::CacheMaxAge`](crate::ConfigError::CacheMaxAge)).
    /// A backstop, not the invalidation: a session in use is read from the
    /// database about once a minute instead of on every request.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How often the outbox is polled (default 20 ms; at least 1 ms and at
    /// most a minute: [`ConfigError::CachePollInterval`](crate::ConfigError::CachePollInterval)).
    /// A revocation reaches this instance within about one interval plus
    /// the poll's own time; each poll is one statement. Without a
    /// successful poll for five intervals (see [`Self::with_max_poll_age`])
    /// the cache is bypassed.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long the outbox keeps a row before trimming it (default 60 s;
    /// at least ten poll intervals and at most a day:
    /// [`ConfigError::CacheRetention`](crate::ConfigError::CacheRetention)).
    /// An instance whose polls stopped for longer (paused, cut off) finds
    /// the outbox trimmed past its last poll and empties its cache.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long after its last successful poll began the cache still
    /// serves (default five poll intervals; at least one interval and at
    /// most the retention: [`ConfigError::CacheMaxPollAge`](crate::ConfigError::CacheMaxPollAge)).
    /// Past it (a poller that stopped, a poll that hangs on a frozen
    /// server) every validation reads the database. A longer age rides out
    /// a busy machine's late polls; a revocation is then still seen as soon
    /// as a poll comes through, but a poller stuck that long goes unnoticed
    /// for that long.
    pub fn with_max_poll_age(mut self, age: Duration) -> Self {
        self.max_poll_age = Some(age);
        self
    }

    /// How long the cache serves after its last successful poll began.
    pub(crate) fn stale_after(&self) -> Duration {
        self.max_poll_age.unwrap_or(self.poll_interval * 5)
    }

    /// The settings [`SessionManager::with_cache`](crate::SessionManager::with_cache)
    /// refuses before connecting.
    pub(crate) fn check(&self) -> Result<(), crate::ConfigError> {
        if self.max_age > MAX_AGE_LIMIT {
            return Err(crate::ConfigError::CacheMaxAge);
        }
        if self.poll_interval < Duration::from_millis(1) || self.poll_interval > POLL_INTERVAL_LIMIT
        {
            return Err(crate::ConfigError::CachePollInterval);
        }
        if self.retention < self.poll_interval * 10 || self.retention > MAX_AGE_LIMIT {
            return Err(crate::ConfigError::CacheRetention);
        }
        if self.stale_after() < self.poll_interval || self.stale_after() > self.retention {
            return Err(crate::ConfigError::CacheMaxPollAge);
        }
        Ok(())
    }
}

/// The longest entry age and outbox retention: a day.
const MAX_AGE_LIMIT: Duration = Duration::from_secs(86_400);

/// The longest poll interval: a revocation would take this long to arrive.
const POLL_INTERVAL_LIMIT: Duration = Duration::from_secs(60);
