//! [`SessionManager::validate_session`]: Lucia's validation, with sliding
//! expiry, and the outcome event every validation ends with.

use chrono::{DateTime, Duration, Utc};
use tracing::field::Empty;
use tracing::{Instrument as _, Span};

use super::{OUTCOME_TARGET, Session, SessionManager, SessionOf, UserOf};
use crate::adapter::{Adapter, SessionExtension};
use crate::error::{Error, Result};
use crate::token::{is_well_formed, session_id_for};

impl<A: Adapter> SessionManager<A> {
    /// Checks a token. `None` for a malformed, unknown or expired token
    /// (an expired session is deleted). A session in the second half of its
    /// lifetime is extended and returned with `fresh = true`.
    ///
    /// A valid session costs one query; extending or deleting one more.
    /// The extension is atomic: a session deleted meanwhile (logout on
    /// another device) stays deleted and gives `None`.
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
            }
            Err(error) => {
                tracing::warn!(target: OUTCOME_TARGET, parent: &span, outcome = "error", error = %error, "session validation failed");
            }
        }
        result.map(|(_, session)| session)
    }

    async fn validate(
        &self,
        token: &str,
        span: &Span,
    ) -> Result<(Outcome, Option<(SessionOf<A>, UserOf<A>)>)> {
        if !is_well_formed(token, self.storage) {
            return Ok((Outcome::Malformed, None));
        }
        let id = session_id_for(token, self.storage);
        let Some((stored, user)) = self.adapter.get_session_and_user(&id).await? else {
            return Ok((Outcome::Unknown, None));
        };
        span.record("user_id", tracing::field::debug(&user.id));
        let now = self.now();
        let mut session = Session {
            id: stored.id,
            user_id: stored.user_id,
            expires_at: stored.expires_at,
            fresh: false,
            attributes: stored.attributes,
        };
        let outcome = match check_expiry(now, session.expires_at, self.lifetime) {
            Expiry::Expired => {
                // Invalid whether or not the row goes now: a failed delete
                // (read-only database, outage) leaves it to the cleanup.
                if let Err(error) = self.adapter.delete_session(&session.id).await {
                    tracing::warn!(
                        target: OUTCOME_TARGET,
                        error = %error,
                        "could not delete an expired session; it stays invalid"
                    );
                }
                return Ok((Outcome::Expired, None));
            }
            Expiry::Valid => Outcome::Valid,
            Expiry::Extend => {
                let half = self.lifetime / 2;
                match self
                    .adapter
                    .extend_session_expiration(&session.id, now + self.lifetime, now + half)
                    .await
                {
                    // The row just read says valid; on a read-only database
                    // (a standby, maintenance) it stays valid, unextended.
                    Err(error @ Error::ReadOnly { .. }) => {
                        tracing::warn!(
                            target: OUTCOME_TARGET,
                            error = %error,
                            "the database is read-only: session not extended"
                        );
                        Outcome::Valid
                    }
                    Err(error) => return Err(error),
                    Ok(SessionExtension::Extended(at)) => {
                        session.expires_at = at;
                        session.fresh = true;
                        Outcome::Extended
                    }
                    Ok(SessionExtension::Unchanged(at)) => {
                        session.expires_at = at;
                        Outcome::Valid
                    }
                    // Deleted meanwhile (logout elsewhere): as if never found.
                    Ok(SessionExtension::Gone) => return Ok((Outcome::Unknown, None)),
                }
            }
        };
        Ok((outcome, Some((session, user))))
    }
}

/// How a validation ended: the `outcome` field of its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Valid, expiry unchanged.
    Valid,
    /// Valid, and this call extended it (`fresh`).
    Extended,
    /// Found but expired (and deleted).
    Expired,
    /// No such session (or deleted while being extended).
    Unknown,
    /// Not a token this manager could have issued; no query was made.
    Malformed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Extended => "extended",
            Self::Expired => "expired",
            Self::Unknown => "unknown",
            Self::Malformed => "malformed",
        }
    }
}

/// What a session's expiry means at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// `expires_at <= now`.
    Expired,
    /// Less than half the lifetime left.
    Extend,
    /// Nothing to do.
    Valid,
}

/// Lucia v3's rule: expired when `now >= expires_at`; extended when
/// `now >= expires_at - lifetime / 2`.
fn check_expiry(now: DateTime<Utc>, expires_at: DateTime<Utc>, lifetime: Duration) -> Expiry {
    if now >= expires_at {
        Expiry::Expired
    } else if now >= expires_at - lifetime / 2 {
        Expiry::Extend
    } else {
        Expiry::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::to_micros;
    use chrono::TimeZone;

    #[test]
    fn expiry_around_the_half_life() {
        let lifetime = Duration::days(30);
        let expires_at = Utc.with_ymd_and_hms(2030, 1, 31, 0, 0, 0).unwrap();
        let half = expires_at - Duration::days(15);
        let us = Duration::microseconds(1);
        assert_eq!(check_expiry(half - us, expires_at, lifetime), Expiry::Valid);
        assert_eq!(check_expiry(half, expires_at, lifetime), Expiry::Extend);
        assert_eq!(
            check_expiry(half + us, expires_at, lifetime),
            Expiry::Extend
        );
        assert_eq!(
            check_expiry(expires_at - us, expires_at, lifetime),
            Expiry::Extend
        );
        assert_eq!(
            check_expiry(expires_at, expires_at, lifetime),
            Expiry::Expired
        );
        assert_eq!(
            check_expiry(expires_at + us, expires_at, lifetime),
            Expiry::Expired
        );
        assert_eq!(
            check_expiry(expires_at - Duration::days(30), expires_at, lifetime),
            Expiry::Valid
        );
    }

    #[test]
    fn odd_lifetimes_halve_without_overflow() {
        let lifetime = Duration::seconds(3);
        let expires_at = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 3).unwrap();
        let start = expires_at - lifetime;
        assert_eq!(
            check_expiry(start + Duration::milliseconds(1499), expires_at, lifetime),
            Expiry::Valid
        );
        assert_eq!(
            check_expiry(start + Duration::milliseconds(1500), expires_at, lifetime),
            Expiry::Extend
        );
    }

    #[test]
    fn to_micros_truncates() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(to_micros(t).timestamp_subsec_nanos(), 123_456_000);
    }
}
