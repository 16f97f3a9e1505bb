//! Rotation and re-authentication: a new token for the same session (on
//! a change of privilege), the time its user last proved who they are, and
//! the check that time answers for sensitive actions.

use chrono::{DateTime, Duration, Utc};

use super::policy::NEVER;
use super::{CREATE_ATTEMPTS, CreatedSession, OUTCOME_TARGET, Session, SessionManager, SessionOf};
use crate::adapter::{Adapter, SessionRotation};
use crate::error::{Error, Result};
use crate::metrics;
use crate::token::{SessionId, SessionToken};
use crate::trace::traced;

impl<A: Adapter> SessionManager<A> {
    /// Gives a session a new token and returns it; the old token stops
    /// working. Call it when the session's privileges change (an upgrade
    /// to admin, a role granted, leaving an impersonation), as OWASP's
    /// session-management guidance asks, and send the new token the way the
    /// old one went (the integrations' `CurrentSession::rotate` puts the
    /// new cookie on the response). A sign-in needs no rotation: it makes a
    /// new session with [`create_session`](Self::create_session).
    ///
    /// The session keeps its user, attributes, expiry, `created_at` (so an
    /// absolute lifetime is not restarted by rotating) and activity (the
    /// returned session carries `session`'s attributes, not a new read). With
    /// [`PostgresAdapter`](crate::PostgresAdapter) this is one `UPDATE` of
    /// the row's id: a crash at any point leaves exactly one of the two
    /// tokens valid. `None`, and no new token, when the session is gone,
    /// expired (by any of the manager's limits) or not `session.user_id`'s.
    /// With the cache, this instance forgets the old token at once and the
    /// others within the invalidation bound.
    ///
    /// # Errors
    /// [`Error::Rng`] if the OS random source fails, and storage errors (the
    /// old token then still works).
    pub async fn rotate_session(
        &self,
        session: &SessionOf<A>,
    ) -> Result<Option<CreatedSession<A::UserId, A::SessionAttributes>>> {
        let span = tracing::debug_span!(target: OUTCOME_TARGET, "rotate_session", user_id = ?session.user_id);
        traced(&span, self.rotate(session, NEVER)).await
    }

    /// Records that the session's user just proved who they are again (the
    /// application checked their password, a passkey, a second factor),
    /// and rotates the token as [`rotate_session`](Self::rotate_session)
    /// does: the session's `authenticated_at` becomes now, and
    /// [`is_recent_sign_in`](Self::is_recent_sign_in) answers `true` for
    /// it. One statement with [`PostgresAdapter`](crate::PostgresAdapter).
    /// `None` when the session is gone or expired.
    ///
    /// # Errors
    /// As [`rotate_session`](Self::rotate_session).
    pub async fn reauthenticate(
        &self,
        session: &SessionOf<A>,
    ) -> Result<Option<CreatedSession<A::UserId, A::SessionAttributes>>> {
        let span = tracing::debug_span!(target: OUTCOME_TARGET, "reauthenticate", user_id = ?session.user_id);
        traced(&span, self.rotate(session, self.now())).await
    }

    /// [`reauthenticate`](Self::reauthenticate) keeping the token, for a
    /// client that cannot take a new one (a bearer token stored
    /// elsewhere). Prefer rotating. Returns the session as it now stands.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn reauthenticate_keeping_token(
        &self,
        session: &SessionOf<A>,
    ) -> Result<Option<SessionOf<A>>> {
        let span = tracing::debug_span!(target: OUTCOME_TARGET, "reauthenticate", user_id = ?session.user_id);
        traced(&span, self.move_session(session, &session.id, self.now())).await
    }

    /// Whether the session's user proved who they are within `within` of
    /// now (on the manager's clock): `now - authenticated_at <= within`, so
    /// a sign-in exactly `within` ago still counts. Ask it before a
    /// sensitive action (changing the e-mail address or password, deleting
    /// the account); when it is `false`, ask for the password again and
    /// call [`reauthenticate`](Self::reauthenticate). The integrations
    /// offer it as a guard or extractor (`RecentSession`).
    #[must_use]
    pub fn is_recent_sign_in(&self, session: &SessionOf<A>, within: Duration) -> bool {
        self.now() - session.authenticated_at <= within
    }

    /// Moves the session to a new token, setting `authenticated_at` to
    /// `authenticated_at` unless it is earlier than the stored one.
    async fn rotate(
        &self,
        session: &SessionOf<A>,
        authenticated_at: DateTime<Utc>,
    ) -> Result<Option<CreatedSession<A::UserId, A::SessionAttributes>>> {
        for _ in 0..CREATE_ATTEMPTS {
            let token = SessionToken::generate()?;
            let to = self.session_id(token.as_str());
            match self.move_session(session, &to, authenticated_at).await {
                Ok(moved) => {
                    return Ok(moved.map(|session| CreatedSession { token, session }));
                }
                Err(Error::DuplicateSessionId) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::DuplicateSessionId)
    }

    /// The adapter's rotation from `session.id` to `to` (the same id: only
    /// `authenticated_at` changes), and the session after it.
    async fn move_session(
        &self,
        session: &SessionOf<A>,
        to: &SessionId,
        authenticated_at: DateTime<Utc>,
    ) -> Result<Option<SessionOf<A>>> {
        let rotation = SessionRotation {
            from: &session.id,
            to,
            user_id: &session.user_id,
            live: self.policy.liveness(self.now()),
            authenticated_at,
        };
        let rotated = self.adapter.rotate_session(rotation).await;
        // Whatever happened, this instance's cache asks the database next.
        self.cache().forget_session(&session.id);
        let rotated = rotated.inspect_err(|error| metrics::failed("rotate_session", error))?;
        if rotated.is_some() && *to != session.id {
            metrics::rotated();
        }
        Ok(rotated.map(|r| Session {
            id: to.clone(),
            user_id: session.user_id.clone(),
            expires_at: r.expires_at,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            authenticated_at: r.authenticated_at,
            fresh: *to != session.id,
            attributes: session.attributes.clone(),
        }))
    }
}
