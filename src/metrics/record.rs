//! Recording, with the `metrics` feature: each function records into the
//! recorder current where it is called (the thread's local one, else the
//! global one, else nothing).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};

use super::*;

/// Gives every metric of the crate its unit and help text in the recorder
/// installed now. Call it once, after installing the recorder (before or
/// after building the managers); recording works without it, but
/// exporters then show no help text.
pub fn describe() {
    describe_counter!(VALIDATIONS, Unit::Count, "Session validations by outcome.");
    describe_counter!(SESSIONS_CREATED, Unit::Count, "Sessions created.");
    describe_counter!(
        SESSIONS_EXTENDED,
        Unit::Count,
        "Sessions extended by a validation (sliding expiry)."
    );
    describe_counter!(SESSIONS_ROTATED, Unit::Count, "Sessions given a new token.");
    describe_counter!(
        SESSIONS_DELETED,
        Unit::Count,
        "Session rows deleted, by reason."
    );
    describe_counter!(
        ERRORS,
        Unit::Count,
        "Failed operations, by operation and error kind."
    );
    describe_counter!(
        CACHE_LOOKUPS,
        Unit::Count,
        "Validation cache lookups: hit, miss, or bypass (the cache not serving)."
    );
    describe_counter!(
        CACHE_INVALIDATIONS,
        Unit::Count,
        "Invalidations the validation cache applied, from the outbox or the manager's own."
    );
    describe_histogram!(
        CACHE_INVALIDATION_DELAY,
        Unit::Seconds,
        "Per invalidation applied from the outbox: time from the start of the previous successful poll, whose snapshot did not see it, to this poll applying it (an upper bound of its delay)."
    );
    describe_histogram!(
        STATEMENT_DURATION,
        Unit::Seconds,
        "Time of each statement, from sending it to its last row or its failure."
    );
    describe_histogram!(
        POOL_CHECKOUT_WAIT,
        Unit::Seconds,
        "Time waited for a pooled connection (successful checkouts)."
    );
    describe_gauge!(
        POOL_CONNECTIONS,
        Unit::Count,
        "Connections of each pool (label pool), in use and idle, read at checkout."
    );
}

/// A manager's validation counters, registered when the manager is
/// built, in the recorder current then.
///
/// Handles, not a `counter!` per call: a `counter!` looks its key up in
/// the recorder's registry on every call, which made a validation served
/// from the cache more than 5% slower with a Prometheus recorder
/// (BENCHMARKS.md, "Metrics"); a handle's increment is one atomic add.
pub(crate) struct Validations {
    outcomes: [Counter; 7],
    extended: Counter,
}

impl Validations {
    pub(crate) fn register() -> Self {
        Self {
            outcomes: Validation::ALL.map(|o| counter!(VALIDATIONS, "outcome" => o.label())),
            extended: counter!(SESSIONS_EXTENDED),
        }
    }

    /// A validation ended with `outcome`.
    #[inline]
    pub(crate) fn ended(&self, outcome: Validation) {
        self.outcomes[outcome as usize].increment(1);
    }

    /// A validation extended its session.
    #[inline]
    pub(crate) fn extended(&self) {
        self.extended.increment(1);
    }
}

/// A validation cache's lookup counters, registered when the cache is
/// built, and the validations it answered (`valid`).
///
/// Not counted per lookup: the cache already counts its hits, misses and
/// bypasses, and its poller adds what they grew by since its previous
/// poll ([`Lookups::publish`]). A hit then costs nothing more; counting
/// each one on the recorder's counters (two more atomic writes on lines
/// every core shares) made a cached validation at 32 clients more than 5%
/// slower (BENCHMARKS.md, "Metrics").
pub(crate) struct Lookups {
    /// hit, miss, bypass, and validations `valid` (one per hit).
    counters: [Counter; 4],
    /// The hits, misses and bypasses counted so far.
    published: [AtomicU64; 3],
}

#[cfg_attr(not(feature = "cache"), allow(dead_code))]
impl Lookups {
    pub(crate) fn register() -> Self {
        let result = |r: &'static str| counter!(CACHE_LOOKUPS, "result" => r);
        Self {
            counters: [
                result("hit"),
                result("miss"),
                result("bypass"),
                counter!(VALIDATIONS, "outcome" => Validation::Valid.label()),
            ],
            published: Default::default(),
        }
    }

    /// Counts the lookups made since the previous call, given the cache's
    /// totals of hits, misses and bypasses; each hit is a `valid`
    /// validation too.
    pub(crate) fn publish(&self, totals: [u64; 3]) {
        let mut grown = [0; 3];
        for (i, total) in totals.into_iter().enumerate() {
            grown[i] = total.saturating_sub(self.published[i].swap(total, Ordering::Relaxed));
            self.counters[i].increment(grown[i]);
        }
        self.counters[3].increment(grown[0]);
    }
}

/// A session was created.
#[inline]
pub(crate) fn created() {
    counter!(SESSIONS_CREATED).increment(1);
}

/// A session was given a new token.
#[inline]
pub(crate) fn rotated() {
    counter!(SESSIONS_ROTATED).increment(1);
}

/// `rows` sessions were deleted for `reason`.
#[inline]
pub(crate) fn deleted(reason: &'static str, rows: u64) {
    if rows > 0 {
        counter!(SESSIONS_DELETED, "reason" => reason).increment(rows);
    }
}

/// `operation` failed with `error`.
#[inline]
pub(crate) fn failed(operation: &'static str, error: &Error) {
    counter!(ERRORS, "operation" => operation, "kind" => error_kind(error)).increment(1);
}

/// The manager's own revocation was applied to its cache.
#[inline]
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) fn invalidated_own() {
    counter!(CACHE_INVALIDATIONS, "source" => "own").increment(1);
}

/// A poll applied `n` invalidations, each of which can have waited at
/// most `at_most`.
#[inline]
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) fn invalidations_polled(n: usize, at_most: Duration) {
    if n > 0 {
        counter!(CACHE_INVALIDATIONS, "source" => "outbox").increment(n as u64);
        histogram!(CACHE_INVALIDATION_DELAY).record_many(at_most.as_secs_f64(), n);
    }
}

/// When a statement started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started(Instant);

/// Now, as a statement's start.
#[inline]
pub(crate) fn started() -> Started {
    Started(Instant::now())
}

/// The statement that began at `at` has ended.
#[inline]
pub(crate) fn statement_done(at: Started) {
    histogram!(STATEMENT_DURATION).record(at.0.elapsed().as_secs_f64());
}

/// One pool's checkout-wait histogram and connection gauges, labelled
/// `pool` with its name and registered when the pool is built (handles:
/// several pools in a process, a replica's or the cache's poll pool, each
/// keep their own gauges instead of overwriting each other's).
#[derive(Clone)]
#[cfg_attr(not(feature = "bb8"), allow(dead_code))]
pub(crate) struct PoolMetrics {
    wait: Histogram,
    in_use: Gauge,
    idle: Gauge,
}

impl std::fmt::Debug for PoolMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolMetrics")
    }
}

#[cfg_attr(not(feature = "bb8"), allow(dead_code))]
impl PoolMetrics {
    pub(crate) fn register(pool: &'static str) -> Self {
        Self {
            wait: histogram!(POOL_CHECKOUT_WAIT, "pool" => pool),
            in_use: gauge!(POOL_CONNECTIONS, "pool" => pool, "state" => "in_use"),
            idle: gauge!(POOL_CONNECTIONS, "pool" => pool, "state" => "idle"),
        }
    }

    /// A checkout that began at `since` got its connection; `read` gives
    /// the pool's (open, idle) connections.
    #[inline]
    pub(crate) fn checked_out(&self, since: Instant, read: impl FnOnce() -> (u32, u32)) {
        self.wait.record(since.elapsed().as_secs_f64());
        let (open, idle) = read();
        self.in_use.set(f64::from(open.saturating_sub(idle)));
        self.idle.set(f64::from(idle));
    }
}
