//! What a [`ReplicatedPool`](super::ReplicatedPool) knows of its servers:
//! the primary's recent WAL positions and, per replica, whether it is a
//! standby that answers and when it was last seen caught up. The sampler
//! writes it; reads consult it with two atomic loads per replica.
//!
//! # The lag measure
//! The sampler notes the primary's `pg_current_wal_lsn()` and the moment
//! it asked. A replica whose `pg_last_wal_replay_lsn()` has reached a noted
//! position has applied every write the primary had made by that moment:
//! the replica is *caught up as of* it, and its lag is the time since.
//! Reads skip it once that lag passes `max_replica_lag`, checked at each
//! read (not only at each sample), so a replica that stops replaying
//! (paused, cut off, slow) leaves the rotation at most `max_replica_lag`
//! after the first write it has not applied.
//!
//! Unlike `now() - pg_last_xact_replay_timestamp()`, this does not grow
//! while the primary is idle (a replica that has everything is current),
//! and it compares no clocks of two machines. A noted position is kept for
//! several samples, so a replica a few milliseconds behind a busy primary
//! is caught up as of an earlier note rather than never.
//!
//! While the primary does not answer the sampler (it is down, or failing
//! over), nothing new can be written there, and a replica that has
//! replayed everything it received counts as caught up as of its own
//! sample; reads keep being served.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::ReplicaStatus;
use crate::error::Error;

/// The tracing target of replica state changes.
const TARGET: &str = "lucia_diesel::replica";

/// How many of the primary's WAL positions are kept: with a sample every
/// quarter of `max_replica_lag`, two lag bounds' worth.
const KEPT_POSITIONS: usize = 8;

/// A replica's last known kind ([`Health::kind`]).
const DOWN: u8 = 0;
const STANDBY: u8 = 1;
const NOT_IN_RECOVERY: u8 = 2;

/// A replica's answer to the sampler.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReplicaProbe {
    /// `pg_is_in_recovery()`.
    pub(super) in_recovery: bool,
    /// `pg_last_wal_replay_lsn()`, as a byte position.
    pub(super) replayed: Option<i64>,
    /// `pg_last_wal_receive_lsn()`, as a byte position.
    pub(super) received: Option<i64>,
}

/// The shared state of one replicated pool and its sampler.
#[derive(Debug)]
pub(super) struct State {
    /// The origin of the times below.
    epoch: Instant,
    pub(super) max_lag: Duration,
    primary: Mutex<Primary>,
    replicas: Box<[Health]>,
    /// Where the next read starts looking for a usable replica.
    next: AtomicUsize,
}

#[derive(Debug, Default)]
struct Primary {
    /// `(when asked, WAL position)`, oldest first.
    positions: VecDeque<(u64, i64)>,
    /// Whether the primary's last probe failed.
    unreachable: bool,
}

/// One replica.
#[derive(Debug)]
struct Health {
    /// `host:port`, for logs and `Debug` (never a password).
    name: String,
    /// [`DOWN`], [`STANDBY`] or [`NOT_IN_RECOVERY`].
    kind: AtomicU8,
    /// When it was last seen caught up (nanoseconds after `epoch`, at least
    /// 1); 0 when never.
    caught_up: AtomicU64,
}

impl State {
    /// No replica usable until the sampler has seen it caught up.
    pub(super) fn new(max_lag: Duration, names: Vec<String>) -> Self {
        let replicas = names.into_iter().map(|name| Health {
            name,
            kind: AtomicU8::new(DOWN),
            caught_up: AtomicU64::new(0),
        });
        Self {
            epoch: Instant::now(),
            max_lag,
            primary: Mutex::new(Primary::default()),
            replicas: replicas.collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// `at` on this state's clock (never 0).
    fn nanos(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX).max(1)
    }

    /// The next usable replica, in turn; `None` when there is none.
    pub(super) fn pick(&self) -> Option<usize> {
        let n = self.replicas.len();
        if n == 0 {
            return None;
        }
        let now = self.nanos(Instant::now());
        let start = self.next.fetch_add(1, Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| matches!(self.status_at(i, now), ReplicaStatus::Usable { .. }))
    }

    /// What is known of replica `i` now.
    pub(super) fn status(&self, i: usize) -> ReplicaStatus {
        self.status_at(i, self.nanos(Instant::now()))
    }

    fn status_at(&self, i: usize, now: u64) -> ReplicaStatus {
        let replica = &self.replicas[i];
        match replica.kind.load(Relaxed) {
            STANDBY => {}
            NOT_IN_RECOVERY => return ReplicaStatus::NotInRecovery,
            _ => return ReplicaStatus::Down,
        }
        let caught_up = replica.caught_up.load(Relaxed);
        let lag = (caught_up != 0).then(|| Duration::from_nanos(now.saturating_sub(caught_up)));
        match lag {
            Some(lag) if lag <= self.max_lag => ReplicaStatus::Usable { lag },
            lag => ReplicaStatus::Lagging { lag },
        }
    }

    /// The names of the replicas, in order.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.replicas.iter().map(|r| r.name.as_str())
    }

    /// The primary's WAL position as of `asked`, or `None` when its probe
    /// failed (then the positions noted so far are dropped: whichever
    /// server answers next may be another one, after a failover).
    pub(super) fn record_primary(&self, asked: Instant, position: Option<i64>) {
        let Ok(mut primary) = self.primary.lock() else {
            return;
        };
        primary.unreachable = position.is_none();
        match position {
            Some(position) => {
                if primary.positions.len() == KEPT_POSITIONS {
                    primary.positions.pop_front();
                }
                let asked = self.nanos(asked);
                primary.positions.push_back((asked, position));
            }
            None => primary.positions.clear(),
        }
    }

    /// Replica `i`'s answer to a probe sent at `asked`; `None` when it did
    /// not answer in time.
    pub(super) fn record_replica(&self, i: usize, asked: Instant, probe: Option<ReplicaProbe>) {
        let replica = &self.replicas[i];
        let kind = match probe {
            None => DOWN,
            Some(probe) if !probe.in_recovery => NOT_IN_RECOVERY,
            Some(probe) => {
                if let Some(at) = self.caught_up_as_of(asked, probe) {
                    replica.caught_up.fetch_max(at, Relaxed);
                }
                STANDBY
            }
        };
        let was = replica.kind.swap(kind, Relaxed);
        match (was, kind) {
            (STANDBY, DOWN) => {
                tracing::warn!(target: TARGET, replica = %replica.name, "replica unreachable; reads go elsewhere");
            }
            (_, NOT_IN_RECOVERY) if was != NOT_IN_RECOVERY => {
                tracing::warn!(target: TARGET, replica = %replica.name, "replica is not in recovery (promoted?); reads go elsewhere");
            }
            (DOWN | NOT_IN_RECOVERY, STANDBY) => {
                tracing::info!(target: TARGET, replica = %replica.name, "replica answers as a standby");
            }
            _ => {}
        }
    }

    /// The latest moment a replica that answered `probe` is known to have
    /// replayed everything the primary had written by then.
    fn caught_up_as_of(&self, asked: Instant, probe: ReplicaProbe) -> Option<u64> {
        let replayed = probe.replayed?;
        let primary = self.primary.lock().ok()?;
        if primary.unreachable {
            // Nothing new is committed on a primary that is down: having
            // applied all it received, the replica is as current as any.
            return (replayed >= probe.received?).then(|| self.nanos(asked));
        }
        let mut newest_first = primary.positions.iter().rev();
        newest_first
            .find(|&&(_, position)| replayed >= position)
            .map(|&(at, _)| at)
    }

    /// A checkout from replica `i`'s pool failed: reads skip it until the
    /// sampler hears from it again.
    pub(super) fn mark_down(&self, i: usize, error: &Error) {
        let replica = &self.replicas[i];
        if replica.kind.swap(DOWN, Relaxed) == STANDBY {
            tracing::warn!(target: TARGET, replica = %replica.name, error = %error, "no connection to the replica; reads go elsewhere");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn probe(replayed: i64, received: i64) -> Option<ReplicaProbe> {
        Some(ReplicaProbe {
            in_recovery: true,
            replayed: Some(replayed),
            received: Some(received),
        })
    }

    fn usable(state: &State, i: usize) -> bool {
        matches!(state.status(i), ReplicaStatus::Usable { .. })
    }

    #[test]
    fn caught_up_as_of_the_latest_position_it_has_replayed() {
        let state = State::new(100 * MS, vec!["a".into()]);
        let t0 = Instant::now();
        assert_eq!(state.status(0), ReplicaStatus::Down);
        state.record_primary(t0, Some(100));
        state.record_primary(t0 + 10 * MS, Some(200));
        // Between the two: caught up as of the first.
        state.record_replica(0, t0 + 20 * MS, probe(150, 250));
        assert_eq!(state.replicas[0].caught_up.load(Relaxed), state.nanos(t0));
        assert!(usable(&state, 0));
        assert_eq!(state.pick(), Some(0));
        // Not caught up with anything noted: the earlier moment stays.
        state.record_replica(0, t0 + 30 * MS, probe(50, 250));
        assert_eq!(state.replicas[0].caught_up.load(Relaxed), state.nanos(t0));
    }

    #[test]
    fn lag_grows_between_samples_until_reads_skip_it() {
        let state = State::new(30 * MS, vec!["a".into()]);
        let t0 = Instant::now();
        state.record_primary(t0, Some(100));
        state.record_replica(0, t0, probe(100, 100));
        let at = |later: Duration| state.status_at(0, state.nanos(t0 + later));
        assert_eq!(at(30 * MS), ReplicaStatus::Usable { lag: 30 * MS });
        let lagging = ReplicaStatus::Lagging { lag: Some(31 * MS) };
        assert_eq!(at(31 * MS), lagging);
        // An idle primary (no new position) keeps a replica that has all
        // of it current.
        state.record_primary(t0 + 40 * MS, Some(100));
        state.record_replica(0, t0 + 40 * MS, probe(100, 100));
        assert_eq!(at(41 * MS), ReplicaStatus::Usable { lag: MS });
    }

    #[test]
    fn never_caught_up_is_lagging() {
        let state = State::new(30 * MS, vec!["a".into()]);
        state.record_primary(Instant::now(), Some(100));
        state.record_replica(0, Instant::now(), probe(90, 100));
        assert_eq!(state.status(0), ReplicaStatus::Lagging { lag: None });
    }

    #[test]
    fn down_promoted_and_marked_down_replicas_are_skipped() {
        let state = State::new(100 * MS, vec!["a".into(), "b".into()]);
        let now = Instant::now();
        state.record_primary(now, Some(100));
        state.record_replica(0, now, probe(100, 100));
        state.record_replica(1, now, probe(100, 100));
        let picks: Vec<_> = (0..4).filter_map(|_| state.pick()).collect();
        assert_eq!(picks, [0, 1, 0, 1], "in turn");
        state.record_replica(0, now, None);
        assert_eq!(state.status(0), ReplicaStatus::Down);
        let promoted = ReplicaProbe {
            in_recovery: false,
            replayed: None,
            received: None,
        };
        state.record_replica(1, now, Some(promoted));
        assert_eq!(state.status(1), ReplicaStatus::NotInRecovery);
        assert_eq!(state.pick(), None);
        state.record_replica(1, now, probe(100, 100));
        assert_eq!(state.pick(), Some(1));
        state.mark_down(1, &Error::unavailable("test"));
        assert_eq!(state.pick(), None);
    }

    #[test]
    fn with_the_primary_unreachable_a_replica_with_all_it_received_is_current() {
        let state = State::new(100 * MS, vec!["a".into()]);
        state.record_primary(Instant::now(), None);
        state.record_replica(0, Instant::now(), probe(90, 100));
        assert_eq!(state.status(0), ReplicaStatus::Lagging { lag: None });
        state.record_replica(0, Instant::now(), probe(100, 100));
        assert!(usable(&state, 0));
        // Back, perhaps as another server: only new positions count.
        state.record_primary(Instant::now(), Some(50));
        assert_eq!(state.primary.lock().unwrap().positions.len(), 1);
    }
}
