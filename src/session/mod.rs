//! The session manager: Lucia v3's `Lucia` class, over any [`Adapter`].
//!
//! # Life cycle
//! 1. [`SessionManager::create_session`] makes a token (200 bits from the OS
//!    CSPRNG) and stores a session that expires after the configured
//!    lifetime (30 days by default). Send the token to the client, usually
//!    with [`SessionManager::create_session_cookie`].
//! 2. [`SessionManager::validate_session`] checks a token on each request:
//!    unknown or malformed tokens give `None` without a write; an expired
//!    session is deleted and gives `None`; a session with less than half
//!    its lifetime left is extended and comes back with `fresh = true`, the
//!    signal to send the cookie again.
//!    Each validation also records when the session was last used
//!    (`last_seen_at`), at most once per activity resolution. Optional
//!    limits, off by default as in Lucia: an idle timeout
//!    ([`SessionManagerBuilder::with_idle_timeout`]) and an absolute
//!    lifetime ([`SessionManagerBuilder::with_absolute_lifetime`]).
//! 3. [`SessionManager::rotate_session`] on a change of privilege,
//!    [`SessionManager::reauthenticate`] after the password was checked
//!    again, [`SessionManager::is_recent_sign_in`] before a sensitive action.
//! 4. [`SessionManager::invalidate_session`] on logout,
//!    [`SessionManager::invalidate_user_sessions`] on a password change.
//!
//! By default the table stores the SHA-256 of the token, never the token:
//! see [`TokenStorage`].
//!
//! # Observability
//! Every operation runs in a `tracing` span at `DEBUG` level named after it:
//! the manager's under target `lucia_diesel::session` (`create_session`,
//! `validate_session`, `rotate_session`, `reauthenticate`, the three
//! `invalidate_*`, `get_user_sessions`, `delete_expired_sessions`), the adapter's under
//! `lucia_diesel::postgres` (one per [`Adapter`] method, plus
//! `delete_expired_batch`). Spans carry user ids, row counts and outcomes,
//! never a token or a session id (in Lucia-compatible storage the id is the
//! token). A failed operation adds a `DEBUG` event with the error's text,
//! which never holds a token either.
//!
//! Each [`SessionManager::validate_session`] ends with one event under
//! target `lucia_diesel::session` whose `outcome` field is one of `valid`,
//! `extended`, `expired`, `unknown` (including a session deleted while it
//! was being extended), `malformed` (rejected before any query) or `error`:
//! `DEBUG` level, `WARN` for `error`. Count failed validations by that
//! field, e.g. with the filter `lucia_diesel::session=debug`. With no
//! subscriber interested, spans and events are disabled and allocate nothing.
//! Feature `metrics` counts them too: see `lucia_diesel::metrics`.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use cookie::Cookie;

use crate::adapter::{Adapter, DatabaseSession, DatabaseUser};
use crate::clock::{Clock, SystemClock, to_micros};
use crate::cookie::CookieConfig;
use crate::error::{Error, Result};
use crate::metrics;
use crate::token::{SessionId, SessionToken, TokenStorage, session_id_for};
use crate::trace::traced;

mod builder;
mod end;
pub(crate) mod hook;
mod policy;
mod rotate;
mod validate;

pub use self::builder::SessionManagerBuilder;
pub(crate) use self::hook::{CacheHook, Cached, Ticket};
use self::policy::Policy;

/// The longest session lifetime accepted (10 years).
const MAX_LIFETIME_DAYS: i64 = 3650;

/// How often `create_session` draws a new token when the id is taken
/// (with 200-bit tokens, a collision means a broken random source).
const CREATE_ATTEMPTS: usize = 3;

/// A validated or new session.
#[derive(Clone, PartialEq)]
pub struct Session<U, A> {
    /// The id stored in the session table: the SHA-256 of the token by
    /// default (safe to show, e.g. to revoke a session from a list), the
    /// token itself in [`TokenStorage::LuciaCompatible`] mode.
    pub id: SessionId,
    /// The session's user.
    pub user_id: U,
    /// When the session expires unless it is used (and so extended) before.
    pub expires_at: DateTime<Utc>,
    /// When the session was created (the sign-in).
    pub created_at: DateTime<Utc>,
    /// When the session was last used, to the manager's activity resolution
    /// (see [`SessionManagerBuilder::with_activity_resolution`]).
    pub last_seen_at: DateTime<Utc>,
    /// When the user last proved who they are in this session: the
    /// sign-in, or the latest [`SessionManager::reauthenticate`]. See
    /// [`SessionManager::is_recent_sign_in`].
    pub authenticated_at: DateTime<Utc>,
    /// `true` when the session was just created, extended or rotated: send the
    /// session cookie again so its `Max-Age` follows.
    pub fresh: bool,
    /// The session attributes.
    pub attributes: A,
}

impl<U: fmt::Debug, A: fmt::Debug> fmt::Debug for Session<U, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("authenticated_at", &self.authenticated_at)
            .field("fresh", &self.fresh)
            .field("attributes", &self.attributes)
            .finish()
    }
}

impl<U, A> Session<U, A> {
    fn from_stored(stored: DatabaseSession<U, A>, fresh: bool) -> Self {
        Self {
            id: stored.id,
            user_id: stored.user_id,
            expires_at: stored.expires_at,
            created_at: stored.created_at,
            last_seen_at: stored.last_seen_at,
            authenticated_at: stored.authenticated_at,
            fresh,
            attributes: stored.attributes,
        }
    }
}

/// The session type of a manager over adapter `A`.
pub type SessionOf<A> = Session<<A as Adapter>::UserId, <A as Adapter>::SessionAttributes>;
/// The user type of a manager over adapter `A`.
pub type UserOf<A> = DatabaseUser<<A as Adapter>::UserId, <A as Adapter>::UserAttributes>;

/// A session just created, with the token to hand to the client.
#[derive(Debug)]
pub struct CreatedSession<U, A> {
    /// The token: put it in a cookie or return it as a bearer token. It is
    /// not stored anywhere (by default) and cannot be recovered later.
    pub token: SessionToken,
    /// The stored session (`fresh` is `true`).
    pub session: Session<U, A>,
}

/// Lucia's session manager: creates, validates, extends and invalidates
/// sessions through an [`Adapter`].
///
/// # Examples
/// ```no_run
/// use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager};
///
/// # async fn run() -> lucia_diesel::Result<()> {
/// let pool = PoolOptions::new().build("postgres://localhost/app").await?;
/// let sessions = SessionManager::builder(PostgresAdapter::new(pool))
///     .with_session_lifetime(chrono::Duration::days(14))
///     .build()?;
///
/// let created = sessions.create_session("user-1".to_owned(), Default::default()).await?;
/// let cookie = sessions.create_session_cookie(created.token.as_str());
///
/// if let Some((session, user)) = sessions.validate_session(created.token.as_str()).await? {
///     assert_eq!(user.id, "user-1");
///     assert!(!session.fresh);
/// }
/// # Ok(()) }
/// ```
pub struct SessionManager<A> {
    adapter: A,
    policy: Policy,
    /// The validation cache, if one was installed (feature `cache`).
    pub(crate) cache: CacheHook,
    cookie: CookieConfig,
    storage: TokenStorage,
    clock: Arc<dyn Clock>,
    /// Validation counters (feature `metrics`), registered in `new`.
    metrics: metrics::Validations,
}

impl<A> fmt::Debug for SessionManager<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("policy", &self.policy)
            .field("cookie", &self.cookie)
            .field("storage", &self.storage)
            .field("clock", &self.clock)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl<A> SessionManager<A> {
    /// The adapter.
    #[must_use]
    pub fn adapter(&self) -> &A {
        &self.adapter
    }

    /// The time on the manager's clock, cut to microseconds (what PostgreSQL
    /// stores). Creation, validation, extension and cleanup all read this one
    /// clock; use it for anything else that must agree with them, such as
    /// [`delete_expired_batch`](crate::PostgresAdapter::delete_expired_batch).
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        to_micros(self.clock.now())
    }
}

impl<A: Adapter> SessionManager<A> {
    /// The validation cache, typed; does nothing without one.
    pub(crate) fn cache(&self) -> Cached<'_, A::UserId, A::SessionAttributes, A::UserAttributes> {
        self.cache.typed()
    }

    /// A manager with every default (30-day sessions, secure cookie, hashed
    /// token storage, system clock).
    #[must_use]
    pub fn new(adapter: A) -> Self {
        Self {
            adapter,
            policy: Policy::default(),
            cache: CacheHook::default(),
            cookie: CookieConfig::new(),
            storage: TokenStorage::default(),
            clock: Arc::new(SystemClock),
            metrics: metrics::Validations::register(),
        }
    }

    /// A builder starting from [`SessionManager::new`]'s defaults.
    pub fn builder(adapter: A) -> SessionManagerBuilder<A> {
        SessionManagerBuilder {
            manager: Self::new(adapter),
        }
    }

    /// The session lifetime.
    #[must_use]
    pub fn session_lifetime(&self) -> Duration {
        self.policy.lifetime
    }

    /// The idle timeout, if any (see [`SessionManagerBuilder::with_idle_timeout`]).
    #[must_use]
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.policy.idle_timeout
    }

    /// The absolute lifetime, if any (see
    /// [`SessionManagerBuilder::with_absolute_lifetime`]).
    #[must_use]
    pub fn absolute_lifetime(&self) -> Option<Duration> {
        self.policy.absolute_lifetime
    }

    /// The cookie configuration.
    #[must_use]
    pub fn cookie_config(&self) -> &CookieConfig {
        &self.cookie
    }

    /// The token storage mode.
    #[must_use]
    pub fn token_storage(&self) -> TokenStorage {
        self.storage
    }

    /// The id a token is stored under (its SHA-256 by default).
    #[must_use]
    pub fn session_id(&self, token: &str) -> SessionId {
        session_id_for(token, self.storage)
    }

    /// Creates a session for `user_id` with `attributes` and returns it with
    /// its token. Every login must create a new session (never reuse one from
    /// before the login).
    ///
    /// # Errors
    /// [`Error::UnknownUser`] when the user does not exist,
    /// [`Error::InvalidAttributes`] for attributes the table rejects,
    /// [`Error::Rng`] if the OS random source fails, and storage errors.
    pub async fn create_session(
        &self,
        user_id: A::UserId,
        attributes: A::SessionAttributes,
    ) -> Result<CreatedSession<A::UserId, A::SessionAttributes>> {
        let span = tracing::debug_span!("create_session", user_id = ?user_id);
        traced(&span, self.create(user_id, attributes))
            .await
            .inspect(|_| metrics::created())
            .inspect_err(|error| metrics::failed("create_session", error))
    }

    async fn create(
        &self,
        user_id: A::UserId,
        attributes: A::SessionAttributes,
    ) -> Result<CreatedSession<A::UserId, A::SessionAttributes>> {
        let now = self.now();
        let mut stored = DatabaseSession {
            id: SessionId::new(String::new()),
            user_id,
            expires_at: self.policy.first_expiry(now),
            created_at: now,
            last_seen_at: now,
            authenticated_at: now,
            attributes,
        };
        for _ in 0..CREATE_ATTEMPTS {
            let token = SessionToken::generate()?;
            stored.id = self.session_id(token.as_str());
            match self.adapter.set_session(&stored).await {
                Ok(()) => {
                    return Ok(CreatedSession {
                        token,
                        session: Session::from_stored(stored, true),
                    });
                }
                Err(Error::DuplicateSessionId) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::DuplicateSessionId)
    }

    /// The session cookie for `token` (a [`SessionToken::as_str`], or a
    /// token read from a request), every attribute set explicitly.
    #[must_use]
    pub fn create_session_cookie(&self, token: &str) -> Cookie<'static> {
        self.cookie
            .session_cookie(token, self.policy.lifetime.num_seconds())
    }

    /// A cookie that removes the session cookie (empty, `Max-Age=0`).
    #[must_use]
    pub fn create_blank_session_cookie(&self) -> Cookie<'static> {
        self.cookie.blank_cookie()
    }

    /// The session token from a raw `Cookie` request header, if present and
    /// unambiguous.
    #[must_use]
    pub fn read_session_cookie(&self, cookie_header: &str) -> Option<String> {
        self.cookie.read_session_cookie(cookie_header)
    }
}

/// The `target` of the event that ends every validation.
const OUTCOME_TARGET: &str = "lucia_diesel::session";
