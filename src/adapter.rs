//! The storage interface: Lucia's `Adapter`, in Rust.

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::token::SessionId;

/// The attributes of a session or user when the application does not give
/// its own type: every extra column, by name, as JSON.
pub type Attributes = serde_json::Map<String, serde_json::Value>;

/// A session as stored: its id (the `id` column), owner, expiry, when it
/// was created, last seen and last authenticated, and the extra columns of
/// the session table.
///
/// The `id` is what the session table holds: in the default storage mode the
/// SHA-256 of the session token, never the token itself.
#[derive(Clone, PartialEq)]
pub struct DatabaseSession<U, A = Attributes> {
    /// The `id` column.
    pub id: SessionId,
    /// The `user_id` column.
    pub user_id: U,
    /// The `expires_at` column.
    pub expires_at: DateTime<Utc>,
    /// The `created_at` column: when the session was created (sign-in).
    pub created_at: DateTime<Utc>,
    /// The `last_seen_at` column: when the session was last used, to the
    /// session manager's activity resolution.
    pub last_seen_at: DateTime<Utc>,
    /// The `authenticated_at` column: when the user last proved who they
    /// are in this session (the sign-in, or a later re-authentication).
    pub authenticated_at: DateTime<Utc>,
    /// Every other column of the session table.
    pub attributes: A,
}

impl<U: fmt::Debug, A: fmt::Debug> fmt::Debug for DatabaseSession<U, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSession")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("authenticated_at", &self.authenticated_at)
            .field("attributes", &self.attributes)
            .finish()
    }
}

/// A user as stored: its id and the extra columns of the user table.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseUser<U, A = Attributes> {
    /// The `id` column.
    pub id: U,
    /// Every other column of the user table.
    pub attributes: A,
}

/// Lucia's adapter interface: where sessions and users are stored.
///
/// [`PostgresAdapter`](crate::PostgresAdapter) implements it on diesel-async.
/// An implementation must treat every `session_id` as untrusted input (bind
/// it, never format it into SQL) and must never log it.
///
/// Methods return `impl Future + Send`, so the trait works on multi-threaded
/// runtimes without boxing.
pub trait Adapter: Send + Sync {
    /// The type of `user_id` / the user table's `id`.
    type UserId: Clone + PartialEq + fmt::Debug + Send + Sync + 'static;
    /// The session attributes (extra columns of the session table).
    type SessionAttributes: Clone + Send + Sync + 'static;
    /// The user attributes (extra columns of the user table).
    type UserAttributes: Clone + Send + Sync + 'static;

    /// The session with this id and its user, in one query; `None` when
    /// there is no such session. Expired sessions are returned too (the
    /// session manager decides what expiry means).
    fn get_session_and_user(
        &self,
        session_id: &SessionId,
    ) -> impl Future<Output = Result<Option<SessionAndUser<Self>>>> + Send;

    /// Every session of this user, expired ones included.
    fn get_user_sessions(
        &self,
        user_id: &Self::UserId,
    ) -> impl Future<Output = Result<Vec<DatabaseSession<Self::UserId, Self::SessionAttributes>>>> + Send;

    /// Inserts a new session. It never overwrites an existing one: an id
    /// already in use gives [`Error::DuplicateSessionId`](crate::Error::DuplicateSessionId),
    /// an unknown user [`Error::UnknownUser`](crate::Error::UnknownUser).
    fn set_session(
        &self,
        session: &DatabaseSession<Self::UserId, Self::SessionAttributes>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Sets a session's `expires_at`; `false` when there is no such session
    /// (it is never created).
    fn update_session_expiration(
        &self,
        session_id: &SessionId,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Deletes one session; `false` when there was none.
    fn delete_session(&self, session_id: &SessionId) -> impl Future<Output = Result<bool>> + Send;

    /// Deletes every session of a user and returns how many there were.
    fn delete_user_sessions(
        &self,
        user_id: &Self::UserId,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes every session of a user except `keep` and returns how many
    /// went. A `keep` that is not one of the user's keeps nothing of the
    /// user's and touches nothing else. The default deletes them one by one
    /// after listing them (not atomic: a session created meanwhile
    /// survives); [`PostgresAdapter`](crate::PostgresAdapter) does it in one
    /// statement.
    fn delete_other_user_sessions(
        &self,
        user_id: &Self::UserId,
        keep: &SessionId,
    ) -> impl Future<Output = Result<u64>> + Send
    where
        Self: Sync,
    {
        async move {
            let mut n = 0;
            for session in self.get_user_sessions(user_id).await? {
                if session.id != *keep && self.delete_session(&session.id).await? {
                    n += 1;
                }
            }
            Ok(n)
        }
    }

    /// Moves a live session to a new id (a new token), keeping its user,
    /// expiry, `created_at`, `last_seen_at` and attributes; sets
    /// `authenticated_at` to `rotation.authenticated_at` unless the stored
    /// one is later. `None`, with nothing changed, when no session has
    /// `rotation.from` for `rotation.user_id` or it is not live by
    /// `rotation.live`. An id already taken gives
    /// [`Error::DuplicateSessionId`](crate::Error::DuplicateSessionId).
    /// `to` may equal `from`: then only `authenticated_at` changes.
    ///
    /// The provided implementation inserts a copy under the new id and
    /// then deletes the old one (for the same id, deletes and inserts it
    /// again): not atomic, a crash between the two leaves both ids valid
    /// (neither, for the same id). [`PostgresAdapter`](crate::PostgresAdapter)
    /// updates the row's id in one statement, so after a crash exactly one
    /// of the two ids is valid.
    fn rotate_session(
        &self,
        rotation: SessionRotation<'_, Self::UserId>,
    ) -> impl Future<Output = Result<Option<Rotated>>> + Send
    where
        Self: Sync,
    {
        async move {
            let Some((mut stored, _)) = self.get_session_and_user(rotation.from).await? else {
                return Ok(None);
            };
            if stored.user_id != *rotation.user_id || !rotation.live.admits(&stored) {
                return Ok(None);
            }
            stored.authenticated_at = stored.authenticated_at.max(rotation.authenticated_at);
            if rotation.to == rotation.from {
                // Only authenticated_at changes: the row is written again.
                if !self.delete_session(rotation.from).await? {
                    return Ok(None);
                }
                self.set_session(&stored).await?;
                return Ok(Some(Rotated::of(&stored)));
            }
            stored.id = rotation.to.clone();
            self.set_session(&stored).await?;
            if !self.delete_session(rotation.from).await? {
                // Deleted meanwhile (a logout): the copy must not outlive it.
                self.delete_session(rotation.to).await?;
                return Ok(None);
            }
            Ok(Some(Rotated::of(&stored)))
        }
    }

    /// Deletes every session with `expires_at <= now` and returns how many.
    ///
    /// `now` comes from the caller so one clock drives creation, validation
    /// and cleanup; pass `chrono::Utc::now()` when there is no other clock.
    fn delete_expired_sessions(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Writes back what a validation found due, in one atomic step: the
    /// expiry moves to `refresh.expires_at` while the stored expiry is at or
    /// before `refresh.extend_if_expiring_by`, and `last_seen_at` moves to
    /// `refresh.seen_at` while the stored one is at or before
    /// `refresh.seen_if_last_seen_by`. `None` when the session is gone: it
    /// must never bring back a session deleted concurrently.
    ///
    /// The session manager calls this to slide a session's expiry and record
    /// its activity. The provided implementation has no `last_seen_at` to
    /// write: it extends with [`Adapter::update_session_expiration`] (every
    /// time, not atomically) and reports the stored times unchanged
    /// otherwise. [`PostgresAdapter`](crate::PostgresAdapter) overrides it
    /// with one statement that writes each column at most once however many
    /// requests race.
    fn refresh_session(
        &self,
        session_id: &SessionId,
        stored: &DatabaseSession<Self::UserId, Self::SessionAttributes>,
        refresh: SessionRefresh,
    ) -> impl Future<Output = Result<Option<Refreshed>>> + Send {
        async move {
            let mut refreshed = Refreshed {
                expires_at: stored.expires_at,
                last_seen_at: stored.last_seen_at,
                extended: false,
            };
            if stored.expires_at <= refresh.extend_if_expiring_by {
                if !self
                    .update_session_expiration(session_id, refresh.expires_at)
                    .await?
                {
                    return Ok(None);
                }
                refreshed.expires_at = refresh.expires_at;
                refreshed.extended = true;
            }
            Ok(Some(refreshed))
        }
    }
}

/// What [`Adapter::refresh_session`] writes, each column on its own
/// condition (evaluated against the stored row, atomically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRefresh {
    /// The new expiry.
    pub expires_at: DateTime<Utc>,
    /// Extend only while the stored expiry is at or before this (a time
    /// before any session's, such as the Unix epoch, never extends).
    pub extend_if_expiring_by: DateTime<Utc>,
    /// The new `last_seen_at`.
    pub seen_at: DateTime<Utc>,
    /// Record the activity only while the stored `last_seen_at` is at or
    /// before this.
    pub seen_if_last_seen_by: DateTime<Utc>,
}

/// The outcome of [`Adapter::refresh_session`]: the session's times after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// The expiry now stored.
    pub expires_at: DateTime<Utc>,
    /// The `last_seen_at` now stored.
    pub last_seen_at: DateTime<Utc>,
    /// Whether this call moved the expiry (another request may have
    /// extended it first).
    pub extended: bool,
}

/// What [`Adapter::rotate_session`] does.
#[derive(Debug, Clone, Copy)]
pub struct SessionRotation<'a, U> {
    /// The session's id now.
    pub from: &'a SessionId,
    /// Its new id.
    pub to: &'a SessionId,
    /// The session's user: a session of another user is not rotated.
    pub user_id: &'a U,
    /// The session must be live by these limits.
    pub live: Liveness,
    /// The new `authenticated_at`, unless the stored one is later (a time
    /// before any session's, such as the Unix epoch, keeps it).
    pub authenticated_at: DateTime<Utc>,
}

/// What a session must be to count as live: each stored time strictly
/// after its bound (a bound before any session's, such as the Unix epoch,
/// sets no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// `expires_at` must be after this (now).
    pub expires_after: DateTime<Utc>,
    /// `last_seen_at` must be after this (now minus the idle timeout).
    pub seen_after: DateTime<Utc>,
    /// `created_at` must be after this (now minus the absolute lifetime).
    pub created_after: DateTime<Utc>,
}

impl Liveness {
    /// Whether `session` is live by these bounds.
    #[must_use]
    pub fn admits<U, A>(&self, session: &DatabaseSession<U, A>) -> bool {
        session.expires_at > self.expires_after
            && session.last_seen_at > self.seen_after
            && session.created_at > self.created_after
    }
}

/// A rotated session's times, as [`Adapter::rotate_session`] left them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// The `expires_at` column (unchanged).
    pub expires_at: DateTime<Utc>,
    /// The `created_at` column (unchanged).
    pub created_at: DateTime<Utc>,
    /// The `last_seen_at` column (unchanged).
    pub last_seen_at: DateTime<Utc>,
    /// The `authenticated_at` column now.
    pub authenticated_at: DateTime<Utc>,
}

impl Rotated {
    fn of<U, A>(session: &DatabaseSession<U, A>) -> Self {
        Self {
            expires_at: session.expires_at,
            created_at: session.created_at,
            last_seen_at: session.last_seen_at,
            authenticated_at: session.authenticated_at,
        }
    }
}

/// A session with its user, as [`Adapter::get_session_and_user`] returns them.
pub type SessionAndUser<A> = (
    DatabaseSession<<A as Adapter>::UserId, <A as Adapter>::SessionAttributes>,
    DatabaseUser<<A as Adapter>::UserId, <A as Adapter>::UserAttributes>,
);
