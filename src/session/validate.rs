//! [`SessionManager::validate_session`]: Lucia's validation, with sliding
//! expiry, and the outcome event every validation ends with.

use tracing::field::Empty;
use tracing::{Instrument as _, Span};

use super::policy::Limit;
use super::{OUTCOME_TARGET, Session, SessionManager, SessionOf, Ticket, UserOf};
use crate::adapter::{Adapter, DatabaseSession};
use crate::error::{Error, Result};
use crate::metrics::{self, Validation};
use crate::token::{SessionId, is_well_formed, session_id_for};

impl<A: Adapter> SessionManager<A> {
    /// Checks a token. `None` for a malformed, unknown or expired token
    /// (an expired session is deleted); with the builder's timeouts, also
    /// for a session idle or older than allowed. A session in the second
    /// half of its lifetime is extended and returned with `fresh = true`.
    ///
    /// A valid session costs one query; extending it, recording its use
    /// (at most once per activity resolution) or deleting it one more. The
    /// write is atomic: a session deleted meanwhile (logout on another
    /// device) stays deleted and gives `None`.
    ///
    /// When the database refuses writes, reads still decide: an expired
    /// session is `None` even if deleting it fails (the failure is logged and
    /// the row left to [`delete_expired_sessions`](Self::delete_expired_sessions)),
    /// and on a read-only database ([`Error::ReadOnly`]) a valid session due
    /// for extension is returned unextended (`fresh = false`).
    ///
    /// # Errors
    /// Storage errors of the lookup or of the extension (other than
    /// [`Error::ReadOnly`]). An error is never a valid session: treat it as
    /// "not signed in" or answer 503.
    pub async fn validate_session(&self, token: &str) -> Result<Option<(SessionOf<A>, UserOf<A>)>> {
        let span =
            tracing::debug_span!(target: OUTCOME_TARGET, "validate_session", user_id = Empty);
        let result = self.validate(token, &span).instrument(span.clone()).await;
        match &result {
            Ok((outcome, _)) => {
                tracing::debug!(target: OUTCOME_TARGET, parent: &span, outcome = outcome.as_str(), "session validated");
                if let Some(counted) = outcome.metric() {
                    self.metrics.ended(counted);
                }
            }
            Err(error) => {
                tracing::warn!(target: OUTCOME_TARGET, parent: &span, outcome = "error", error = %error, "session validation failed");
                self.metrics.ended(Validation::Error);
                metrics::failed("validate_session", error);
            }
        }
        result.map(|(_, session)| session)
    }

    /// The look-up: a malformed token is refused before any query, a
    /// servable cached session is answered from memory, anything else is
    /// read from the database and handed to [`Self::settle`].
    async fn validate(&self, token: &str, span: &Span) -> Result<(Outcome, Option<Validated<A>>)> {
        if !is_well_formed(token, self.storage) {
            return Ok((Outcome::Malformed, None));
        }
        let id = session_id_for(token, self.storage);
        if let Some(hit) = self.cached(&id, span) {
            return Ok((Outcome::Cached, Some(hit)));
        }
        // Taken before the read: a revocation handled after it drops the fill.
        let ticket = self.cache().ticket();
        let Some((stored, user)) = self.adapter.get_session_and_user(&id).await? else {
            return Ok((Outcome::Unknown, None));
        };
        span.record("user_id", tracing::field::debug(&user.id));
        self.settle(stored, user, ticket).await
    }

    /// A cached session that is live and has nothing to write now, if the
    /// manager has a cache and holds one. Not async: nothing here is kept
    /// in the validation's future.
    fn cached(&self, id: &SessionId, span: &Span) -> Option<Validated<A>> {
        let now = self.now();
        let servable = |s: &DatabaseSession<_, _>| {
            !self.policy.expired(now, s) && self.policy.refresh(now, s).is_none()
        };
        let (stored, user) = self.cache().lookup(id, &servable)?;
        span.record("user_id", tracing::field::debug(&user.id));
        Some((Session::from_stored(stored, false), user))
    }

    /// The decision on a session read from the database: delete it when
    /// expired, write what is due (an extension, a recorded use), and keep
    /// it in the cache as it then stands.
    async fn settle(
        &self,
        mut stored: DatabaseSession<A::UserId, A::SessionAttributes>,
        user: UserOf<A>,
        ticket: Option<Ticket>,
    ) -> Result<(Outcome, Option<Validated<A>>)> {
        let now = self.now();
        if let Some(limit) = self.policy.ended(now, &stored) {
            // Invalid whether or not the row goes now: a failed delete
            // (read-only database, outage) leaves it to the cleanup.
            match self.adapter.delete_session(&stored.id).await {
                Ok(deleted) => metrics::deleted("ended", u64::from(deleted)),
                Err(error) => {
                    tracing::warn!(target: OUTCOME_TARGET, error = %error, "could not delete an expired session; it stays invalid");
                }
            }
            return Ok((Outcome::Expired(limit), None));
        }
        let (fresh, outcome) = match self.policy.refresh(now, &stored) {
            None => (false, Outcome::Valid),
            Some(refresh) => match self
                .adapter
                .refresh_session(&stored.id, &stored, refresh)
                .await
            {
                // The row just read says valid; on a read-only database (a
                // standby, maintenance) it stays valid, unextended.
                Err(error @ Error::ReadOnly { .. }) => {
                    tracing::warn!(target: OUTCOME_TARGET, error = %error, "the database is read-only: session not extended");
                    return Ok((
                        Outcome::Valid,
                        Some((Session::from_stored(stored, false), user)),
                    ));
                }
                Err(error) => return Err(error),
                // Deleted meanwhile (logout elsewhere): as if never found.
                Ok(None) => return Ok((Outcome::Unknown, None)),
                Ok(Some(refreshed)) => {
                    stored.expires_at = refreshed.expires_at;
                    stored.last_seen_at = refreshed.last_seen_at;
                    let outcome = if refreshed.extended {
                        self.metrics.extended();
                        Outcome::Extended
                    } else {
                        Outcome::Valid
                    };
                    (refreshed.extended, outcome)
                }
            },
        };
        // Extensions and recorded uses invalidate nothing: cached as it now stands.
        self.cache().fill(ticket, &stored, &user);
        Ok((outcome, Some((Session::from_stored(stored, fresh), user))))
    }
}

/// A valid session and its user.
type Validated<A> = (SessionOf<A>, UserOf<A>);

/// How a validation ended: the `outcome` field of its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Valid, expiry unchanged.
    Valid,
    /// Valid, answered by the cache.
    Cached,
    /// Valid, and this call extended it (`fresh`).
    Extended,
    /// Found but ended by this limit (and deleted).
    Expired(Limit),
    /// No such session (or deleted while being extended).
    Unknown,
    /// Not a token this manager could have issued; no query was made.
    Malformed,
}

impl Outcome {
    /// The event's `outcome` field: any ended session is `expired`.
    fn as_str(self) -> &'static str {
        match self {
            Self::Valid | Self::Cached => "valid",
            Self::Extended => "extended",
            Self::Expired(_) => "expired",
            Self::Unknown => "unknown",
            Self::Malformed => "malformed",
        }
    }

    /// As counted: an extended session is `valid` (extensions have a
    /// counter of their own), an ended one names its limit; the cache
    /// counts its own answers (`None` here).
    fn metric(self) -> Option<Validation> {
        Some(match self {
            Self::Cached => return None,
            Self::Valid | Self::Extended => Validation::Valid,
            Self::Expired(Limit::Expiry) => Validation::Expired,
            Self::Expired(Limit::Idle) => Validation::Idle,
            Self::Expired(Limit::Absolute) => Validation::Absolute,
            Self::Unknown => Validation::Unknown,
            Self::Malformed => Validation::Malformed,
        })
    }
}
