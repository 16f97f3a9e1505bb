//! [`SessionManagerBuilder`]: every setting of a [`SessionManager`], with
//! secure defaults, checked when built.

use std::fmt;
use std::sync::Arc;

use chrono::Duration;

use super::{MAX_LIFETIME_DAYS, SessionManager};
use crate::adapter::Adapter;
use crate::clock::Clock;
use crate::cookie::CookieConfig;
use crate::error::ConfigError;
use crate::token::TokenStorage;

/// Builds a [`SessionManager`]; every setting has a secure default.
#[must_use]
pub struct SessionManagerBuilder<A> {
    pub(super) manager: SessionManager<A>,
}

impl<A> fmt::Debug for SessionManagerBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SessionManagerBuilder")
            .field(&self.manager)
            .finish()
    }
}

impl<A: Adapter> SessionManagerBuilder<A> {
    /// How long a session lives without use (default 30 days). A session
    /// used in the second half of its lifetime is extended by a full one.
    pub fn with_session_lifetime(mut self, lifetime: Duration) -> Self {
        self.manager.policy.lifetime = lifetime;
        self
    }

    /// An inactivity timeout (off by default, as in Lucia): a session not
    /// seen for `timeout` is invalid, and deleted when it is presented. Its
    /// last use is recorded to the activity resolution, so a session may
    /// end up to that much earlier than `timeout` after its last use.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.manager.policy.idle_timeout = Some(timeout);
        self
    }

    /// An absolute lifetime (off by default): a session older than
    /// `lifetime` since it was created is invalid however recently it was
    /// used, and an extension never moves its expiry past that point.
    pub fn with_absolute_lifetime(mut self, lifetime: Duration) -> Self {
        self.manager.policy.absolute_lifetime = Some(lifetime);
        self
    }

    /// How precisely a session's last use (`last_seen_at`) is recorded
    /// (default 5 minutes): a validation writes it at most once per
    /// `resolution`, in the same statement as an extension when both are
    /// due; a validation with nothing due stays one read. Shorter than the
    /// idle timeout, when there is one.
    pub fn with_activity_resolution(mut self, resolution: Duration) -> Self {
        self.manager.policy.activity_resolution = resolution;
        self
    }

    /// The session cookie's name and attributes (default: `auth_session`,
    /// `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/`).
    pub fn with_cookie(mut self, cookie: CookieConfig) -> Self {
        self.manager.cookie = cookie;
        self
    }

    /// How tokens are stored (default: [`TokenStorage::Hashed`]).
    pub fn with_token_storage(mut self, storage: TokenStorage) -> Self {
        self.manager.storage = storage;
        self
    }

    /// The clock (default: the system clock).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.manager.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and builds the manager.
    ///
    /// # Errors
    /// [`ConfigError::SessionLifetime`] for a lifetime shorter than 2
    /// seconds or longer than ten years; [`ConfigError::IdleTimeout`],
    /// [`ConfigError::AbsoluteLifetime`] or [`ConfigError::ActivityResolution`]
    /// for one that is not positive or longer than ten years (the resolution
    /// must also be shorter than the idle timeout); an invalid cookie
    /// configuration (see [`CookieConfig::validate`]).
    pub fn build(self) -> Result<SessionManager<A>, ConfigError> {
        let m = self.manager;
        let p = &m.policy;
        let in_range = |d: Duration| d > Duration::zero() && d <= Duration::days(MAX_LIFETIME_DAYS);
        if p.lifetime < Duration::seconds(2) || !in_range(p.lifetime) {
            return Err(ConfigError::SessionLifetime);
        }
        if p.idle_timeout.is_some_and(|d| !in_range(d)) {
            return Err(ConfigError::IdleTimeout);
        }
        if p.absolute_lifetime.is_some_and(|d| !in_range(d)) {
            return Err(ConfigError::AbsoluteLifetime);
        }
        if !in_range(p.activity_resolution)
            || p.idle_timeout
                .is_some_and(|idle| p.activity_resolution >= idle)
        {
            return Err(ConfigError::ActivityResolution);
        }
        m.cookie.validate()?;
        Ok(m)
    }
}
