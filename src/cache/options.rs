//! [`CacheOptions`]: where the cache listens, and its bounds.

use std::fmt;
use std::time::Duration;

/// How the cache is set up; see the [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct CacheOptions {
    pub(crate) listen_url: String,
    pub(crate) max_entries: u64,
    pub(crate) max_age: Duration,
    pub(crate) ping_interval: Duration,
    #[cfg(feature = "rustls")]
    pub(crate) tls: Option<crate::tls::TlsConfig>,
}

impl fmt::Debug for CacheOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        f.debug_struct("CacheOptions")
            .field("max_entries", &self.max_entries)
            .field("max_age", &self.max_age)
            .field("ping_interval", &self.ping_interval)
            .finish_non_exhaustive()
    }
}

impl CacheOptions {
    /// A cache that listens for invalidations on a connection to
    /// `listen_url`: a direct or session-mode connection (LISTEN does not
    /// survive a transaction-mode pooler), to the primary, with the
    /// defaults below.
    pub fn new(listen_url: impl Into<String>) -> Self {
        Self {
            listen_url: listen_url.into(),
            max_entries: 100_000,
            max_age: Duration::from_secs(60),
            ping_interval: Duration::from_secs(5),
            #[cfg(feature = "rustls")]
            tls: None,
        }
    }

    /// The most sessions kept (default 100,000, a few hundred bytes each
    /// plus their attributes); the least recently used go first.
    pub fn with_max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// How long an entry may be served before it is read again (default
    /// 60 s, at most a day: [`ConfigError::CacheMaxAge`](crate::ConfigError::CacheMaxAge)). A backstop, not the invalidation: it bounds what a
    /// notification missed without the cache noticing could cost (a
    /// connection that died silently before its ping failed), while a
    /// session in use is read from the database about once a minute instead
    /// of on every request.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How often the listening connection is pinged (default 5 s; positive
    /// and at most an hour: [`ConfigError::CachePingInterval`](crate::ConfigError::CachePingInterval));
    /// a ping that fails or takes longer than a second counts as a lost
    /// connection.
    pub fn with_ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Listen over verified TLS (feature `rustls`).
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn with_tls(mut self, tls: crate::tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The settings [`SessionManager::with_cache`](crate::SessionManager::with_cache)
    /// refuses before connecting.
    pub(crate) fn check(&self) -> Result<(), crate::ConfigError> {
        if self.max_age > MAX_AGE_LIMIT {
            return Err(crate::ConfigError::CacheMaxAge);
        }
        if self.ping_interval.is_zero() || self.ping_interval > PING_INTERVAL_LIMIT {
            return Err(crate::ConfigError::CachePingInterval);
        }
        Ok(())
    }
}

/// The longest entry age: a backstop longer than a day is none.
const MAX_AGE_LIMIT: Duration = Duration::from_secs(86_400);

/// The longest ping interval: a connection that died silently goes
/// unnoticed (the cache serving without invalidations) for this long.
const PING_INTERVAL_LIMIT: Duration = Duration::from_secs(3_600);
