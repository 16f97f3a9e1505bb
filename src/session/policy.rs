//! [`Policy`]: what a manager decides about a stored session at a given
//! time: invalid (expired, idle, too old), due for a write (an extension,
//! a recorded use), or neither. Pure: no clock, no database.

use chrono::{DateTime, Duration, Utc};

use crate::adapter::{DatabaseSession, Liveness, SessionRefresh};

/// A condition time no session meets (PostgreSQL stores no time before
/// 4713 BC, so not `DateTime::MIN_UTC`).
pub(crate) const NEVER: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

/// The limit that ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `expires_at` passed (Lucia's rule).
    Expiry,
    /// Not seen for the idle timeout.
    Idle,
    /// Older than the absolute lifetime.
    Absolute,
}

/// The timeouts a manager enforces (set by its builder).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Lucia's sliding lifetime: extended by a full one in its second half.
    pub(crate) lifetime: Duration,
    /// Invalid once not seen for this long.
    pub(crate) idle_timeout: Option<Duration>,
    /// Invalid once this old, and never extended past it.
    pub(crate) absolute_lifetime: Option<Duration>,
    /// `last_seen_at` is written at most once per this.
    pub(crate) activity_resolution: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            lifetime: Duration::days(30),
            idle_timeout: None,
            absolute_lifetime: None,
            activity_resolution: Duration::minutes(5),
        }
    }
}

impl Policy {
    /// The expiry of a session created at `now`.
    pub(crate) fn first_expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.capped(now, now + self.lifetime)
    }

    /// `expires_at`, no later than the absolute lifetime allows.
    fn capped(&self, created_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> DateTime<Utc> {
        self.absolute_lifetime
            .map_or(expires_at, |max| expires_at.min(created_at + max))
    }

    /// Whether a stored session is invalid at `now`: expired
    /// (`expires_at <= now`, Lucia's rule), idle too long, or too old.
    pub(crate) fn expired<U, A>(&self, now: DateTime<Utc>, s: &DatabaseSession<U, A>) -> bool {
        now >= s.expires_at
            || self
                .idle_timeout
                .is_some_and(|idle| now >= s.last_seen_at + idle)
            || self
                .absolute_lifetime
                .is_some_and(|max| now >= s.created_at + max)
    }

    /// What a session must be to be live at `now`, for a statement to
    /// check against the stored row: the same limits as [`Self::expired`].
    pub(crate) fn liveness(&self, now: DateTime<Utc>) -> Liveness {
        Liveness {
            expires_after: now,
            seen_after: self.idle_timeout.map_or(NEVER, |idle| now - idle),
            created_after: self.absolute_lifetime.map_or(NEVER, |max| now - max),
        }
    }

    /// Which limit ended a stored session that is invalid at `now`: the
    /// one reached first (on a tie the absolute lifetime, then the idle
    /// timeout, as an expiry capped by the absolute lifetime meets it);
    /// `None` while it is valid. Only asked once [`Self::expired`] said so.
    pub(crate) fn ended<U, A>(
        &self,
        now: DateTime<Utc>,
        s: &DatabaseSession<U, A>,
    ) -> Option<Limit> {
        let limits = [
            (
                Limit::Absolute,
                self.absolute_lifetime.map(|max| s.created_at + max),
            ),
            (
                Limit::Idle,
                self.idle_timeout.map(|idle| s.last_seen_at + idle),
            ),
            (Limit::Expiry, Some(s.expires_at)),
        ];
        let passed = limits
            .into_iter()
            .filter_map(|(limit, at)| at.filter(|at| now >= *at).map(|at| (at, limit)));
        passed.min_by_key(|(at, _)| *at).map(|(_, limit)| limit)
    }

    /// What a validation at `now` must write, if anything: a new expiry
    /// when less than half the lifetime is left (Lucia's rule) and the cap
    /// allows a later one, and the time of this use when the stored one is
    /// a resolution old. Each is conditional on the row as stored, so racing
    /// validations write it once.
    pub(crate) fn refresh<U, A>(
        &self,
        now: DateTime<Utc>,
        s: &DatabaseSession<U, A>,
    ) -> Option<SessionRefresh> {
        let half = self.lifetime / 2;
        let expires_at = self.capped(s.created_at, now + self.lifetime);
        let extend = now >= s.expires_at - half && expires_at > s.expires_at;
        let seen = now >= s.last_seen_at + self.activity_resolution;
        (extend || seen).then(|| SessionRefresh {
            expires_at,
            extend_if_expiring_by: if extend { now + half } else { NEVER },
            seen_at: now,
            seen_if_last_seen_by: if seen {
                now - self.activity_resolution
            } else {
                NEVER
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::to_micros;
    use crate::token::SessionId;
    use chrono::TimeZone;

    /// What `policy` decides at `now` for a session with these times:
    /// expired, extended (with the new expiry), seen, or nothing.
    fn decide(
        policy: &Policy,
        now: DateTime<Utc>,
        (created_at, last_seen_at, expires_at): (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>),
    ) -> &'static str {
        let s = DatabaseSession {
            id: SessionId::new("x"),
            user_id: (),
            expires_at,
            created_at,
            last_seen_at,
            authenticated_at: created_at,
            attributes: (),
        };
        if policy.expired(now, &s) {
            return "expired";
        }
        match policy.refresh(now, &s) {
            None => "valid",
            Some(r) if r.extend_if_expiring_by > NEVER => "extend",
            Some(_) => "seen",
        }
    }

    #[test]
    fn lucias_half_life_rule() {
        let policy = Policy::default();
        let expires_at = Utc.with_ymd_and_hms(2030, 1, 31, 0, 0, 0).unwrap();
        let half = expires_at - Duration::days(15);
        let us = Duration::microseconds(1);
        // Seen just now: only the expiry decides.
        let times = |now: DateTime<Utc>| (expires_at - Duration::days(30), now, expires_at);
        for (now, expected) in [
            (half - us, "valid"),
            (half, "extend"),
            (expires_at - us, "extend"),
            (expires_at, "expired"),
            (expires_at + us, "expired"),
        ] {
            assert_eq!(decide(&policy, now, times(now)), expected, "{now}");
        }
        let short = Policy {
            lifetime: Duration::seconds(3),
            ..Policy::default()
        };
        let start = expires_at - Duration::seconds(3);
        let at = |ms| start + Duration::milliseconds(ms);
        assert_eq!(
            decide(&short, at(1499), (start, at(1499), expires_at)),
            "valid"
        );
        assert_eq!(
            decide(&short, at(1500), (start, at(1500), expires_at)),
            "extend"
        );
    }

    #[test]
    fn idle_and_absolute_limits() {
        let t0 = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let us = Duration::microseconds(1);
        let policy = Policy {
            idle_timeout: Some(Duration::hours(1)),
            absolute_lifetime: Some(Duration::days(1)),
            ..Policy::default()
        };
        let far = t0 + Duration::days(30);
        let idle_at = t0 + Duration::hours(1);
        assert_eq!(decide(&policy, idle_at - us, (t0, t0, far)), "seen");
        assert_eq!(decide(&policy, idle_at, (t0, t0, far)), "expired");
        let old_at = t0 + Duration::days(1);
        assert_eq!(decide(&policy, old_at, (t0, old_at - us, far)), "expired");
        // Which limit ended it: the first reached; the capped expiry is the absolute one.
        let ended = |now, (created_at, last_seen_at, expires_at)| {
            let s = DatabaseSession {
                id: SessionId::new("x"),
                user_id: (),
                expires_at,
                created_at,
                last_seen_at,
                authenticated_at: created_at,
                attributes: (),
            };
            policy.ended(now, &s)
        };
        assert_eq!(ended(idle_at - us, (t0, t0, far)), None);
        assert_eq!(ended(idle_at, (t0, t0, far)), Some(Limit::Idle));
        assert_eq!(ended(far, (t0, t0, far)), Some(Limit::Idle));
        let seen = old_at - Duration::minutes(1);
        assert_eq!(ended(old_at, (t0, seen, far)), Some(Limit::Absolute));
        assert_eq!(
            ended(old_at, (t0, old_at - us, old_at)),
            Some(Limit::Absolute)
        );
        let soon = t0 + Duration::minutes(30);
        assert_eq!(ended(soon, (t0, t0, soon)), Some(Limit::Expiry));
        // The first expiry and every extension stop at the absolute limit.
        assert_eq!(policy.first_expiry(t0), old_at);
        assert_eq!(policy.capped(t0, far), old_at);
        let capped = (t0, old_at - Duration::minutes(1), old_at);
        assert_eq!(
            decide(&policy, old_at - Duration::minutes(1), capped),
            "valid"
        );
    }

    #[test]
    fn to_micros_truncates() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(to_micros(t).timestamp_subsec_nanos(), 123_456_000);
    }
}
