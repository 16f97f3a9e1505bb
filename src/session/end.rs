//! Ending and listing a user's sessions: logout, "sign out everywhere",
//! "sign out my other devices", the sessions list and the cleanup of
//! expired ones.

use tracing::field::Empty;

use super::{OUTCOME_TARGET, Session, SessionManager, SessionOf};
use crate::adapter::Adapter;
use crate::error::Result;
use crate::metrics;
use crate::token::SessionId;
use crate::trace::traced;

impl<A: Adapter> SessionManager<A> {
    /// Deletes one session (logout). Idempotent. Takes the stored id
    /// ([`Session::id`], or [`session_id`](Self::session_id) of a token),
    /// never a token.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn invalidate_session(&self, session_id: &SessionId) -> Result<()> {
        let span = tracing::debug_span!(target: OUTCOME_TARGET, "invalidate_session");
        traced(&span, async {
            let found = self.adapter.delete_session(session_id).await?;
            metrics::deleted("logout", u64::from(found));
            self.cache().forget_session(session_id);
            Ok(())
        })
        .await
        .inspect_err(|error| metrics::failed("invalidate_session", error))
    }

    /// Deletes every session of a user (after a password change, or "sign
    /// out everywhere") and returns how many there were.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn invalidate_user_sessions(&self, user_id: &A::UserId) -> Result<u64> {
        let span = tracing::debug_span!(target: OUTCOME_TARGET, "invalidate_user_sessions", user_id = ?user_id, sessions = Empty);
        traced(&span, async {
            let n = self.adapter.delete_user_sessions(user_id).await?;
            metrics::deleted("user", n);
            self.cache().forget_user(user_id);
            span.record("sessions", n);
            Ok(n)
        })
        .await
        .inspect_err(|error| metrics::failed("invalidate_user_sessions", error))
    }

    /// Signs a user out everywhere but `keep` (the session of the request
    /// that asks: "sign out my other devices"), in one statement with
    /// [`PostgresAdapter`](crate::PostgresAdapter), and returns how many
    /// sessions went. A `keep` that is not one of the user's keeps nothing
    /// of the user's and deletes nothing of anyone else's. With the cache,
    /// this instance forgets the user's entries at once and the others
    /// within the invalidation bound.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn invalidate_other_sessions(
        &self,
        user_id: &A::UserId,
        keep: &SessionId,
    ) -> Result<u64> {
        let span = tracing::debug_span!(target: OUTCOME_TARGET, "invalidate_other_sessions", user_id = ?user_id, sessions = Empty);
        traced(&span, async {
            let n = self
                .adapter
                .delete_other_user_sessions(user_id, keep)
                .await?;
            metrics::deleted("others", n);
            self.cache().forget_user(user_id);
            span.record("sessions", n);
            Ok(n)
        })
        .await
        .inspect_err(|error| metrics::failed("invalidate_other_sessions", error))
    }

    /// A user's live sessions (expired ones left out), soonest to expire last.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn get_user_sessions(&self, user_id: &A::UserId) -> Result<Vec<SessionOf<A>>> {
        let span = tracing::debug_span!(target: OUTCOME_TARGET, "get_user_sessions", user_id = ?user_id, sessions = Empty);
        traced(&span, async {
            let sessions = self.live_sessions(user_id).await?;
            span.record("sessions", sessions.len());
            Ok(sessions)
        })
        .await
        .inspect_err(|error| metrics::failed("get_user_sessions", error))
    }

    async fn live_sessions(&self, user_id: &A::UserId) -> Result<Vec<SessionOf<A>>> {
        let now = self.now();
        let mut sessions: Vec<SessionOf<A>> = self
            .adapter
            .get_user_sessions(user_id)
            .await?
            .into_iter()
            .filter(|s| !self.policy.expired(now, s))
            .map(|s| Session::from_stored(s, false))
            .collect();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.expires_at));
        Ok(sessions)
    }

    /// Deletes every expired session and returns how many.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn delete_expired_sessions(&self) -> Result<u64> {
        let span = tracing::debug_span!(target: OUTCOME_TARGET, "delete_expired_sessions", sessions = Empty);
        traced(&span, async {
            let n = self.adapter.delete_expired_sessions(self.now()).await?;
            metrics::deleted("cleanup", n);
            span.record("sessions", n);
            Ok(n)
        })
        .await
        .inspect_err(|error| metrics::failed("delete_expired_sessions", error))
    }
}
