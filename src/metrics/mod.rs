//! Metrics on the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): counters, histograms and gauges that any `metrics` recorder
//! (Prometheus, StatsD, OpenTelemetry exporters) collects.
//!
//! # Setup
//! Install a recorder, then call [`describe`] once so that the recorder
//! knows each metric's unit and help text:
//!
//! ```no_run
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // With the `metrics-exporter-prometheus` crate:
//! // let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
//! lucia_diesel::metrics::describe();
//! // ... build the pool and the `SessionManager`, serve `handle.render()` on `/metrics`.
//! # Ok(()) }
//! ```
//!
//! Without a recorder installed, recording costs a check and does nothing;
//! without the feature, the crate's recording calls compile to nothing.
//!
//! **Install the recorder before building the [`SessionManager`](crate::SessionManager)**
//! (and its cache): the validation counters and the cache's lookup counters
//! are registered once, when they are built, in the recorder current then
//! (a `counter!` per call, looking its key up each time, made a validation
//! served from the cache more than 5% slower with a Prometheus recorder;
//! see BENCHMARKS.md, "Metrics"). A manager built before any recorder was
//! installed records its validations nowhere. Validations the cache
//! answers, and its lookups, are added up by the cache's poller after each
//! poll (every 20 ms by default), from counts the cache keeps anyway: a
//! hit records nothing itself.
//!
//! # What is recorded
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | [`VALIDATIONS`] | counter | `outcome` | validations by outcome: `valid` (including those that extended the session), `unknown`, `expired`, `idle`, `absolute`, `malformed`, `error` |
//! | [`SESSIONS_CREATED`] | counter | | sessions created |
//! | [`SESSIONS_EXTENDED`] | counter | | sessions extended by a validation (`fresh`) |
//! | [`SESSIONS_ROTATED`] | counter | | sessions given a new token |
//! | [`SESSIONS_DELETED`] | counter | `reason` | session rows deleted: `logout` ([`invalidate_session`](crate::SessionManager::invalidate_session)), `user` ([`invalidate_user_sessions`](crate::SessionManager::invalidate_user_sessions)), `others` ([`invalidate_other_sessions`](crate::SessionManager::invalidate_other_sessions)), `ended` (found expired, idle or too old by a validation), `cleanup` ([`delete_expired_sessions`](crate::SessionManager::delete_expired_sessions) and the [`cleanup`](crate::cleanup) task) |
//! | [`ERRORS`] | counter | `operation`, `kind` | failed manager operations, by operation and [`Error`] variant |
//! | [`CACHE_LOOKUPS`] | counter | `result` | validation cache lookups: `hit`, `miss` (nothing servable cached), `bypass` (the cache was not serving); added at each poll |
//! | [`CACHE_INVALIDATIONS`] | counter | `source` | invalidations the cache applied: `outbox` (from a poll), `own` (the manager's own revocations) |
//! | [`CACHE_INVALIDATION_DELAY`] | histogram | | per invalidation applied from the outbox, the most it can have waited, in seconds (see the constant) |
//! | [`STATEMENT_DURATION`] | histogram | | time of each statement the crate runs, from sending it to its last row or its failure, in seconds |
//! | [`POOL_CHECKOUT_WAIT`] | histogram | `pool` | time a call waited for a connection of a [`PgPool`](crate::PgPool) (or `PoolerPool`), in seconds; successful checkouts only |
//! | [`POOL_CONNECTIONS`] | gauge | `pool`, `state` | the pool's connections, `in_use` and `idle` (read at each checkout) |
//!
//! Operations (`operation` label): `create_session`, `validate_session`,
//! `invalidate_session`, `invalidate_user_sessions`,
//! `invalidate_other_sessions`, `get_user_sessions`,
//! `delete_expired_sessions`, `cleanup`, `cache_poll`. Error kinds
//! (`kind` label): `config`, `rng`, `unavailable`, `pool_timeout`,
//! `timeout`, `unknown_user`, `duplicate_session_id`, `invalid_session_id`,
//! `invalid_attributes`, `read_only`, `decode`, `migration`, `database`,
//! `schema`.
//!
//! # Labels never carry a secret
//! Every label value is a `&'static str` from the fixed sets above, chosen
//! in the crate's source (or, for `pool`, in the application's, by
//! [`PoolOptions::with_name`](crate::PoolOptions::with_name)): no token,
//! session id, user id or any other value read at run time can become a
//! label.
//!
//! # Several pools
//! The counters and the statement histogram add up every pool and manager
//! of the process. The checkout waits and connection gauges are per pool,
//! labelled `pool` with its name ([`PoolOptions::with_name`](crate::PoolOptions::with_name),
//! `"default"` unless named; a [`ReplicatedPool`](crate::ReplicatedPool)'s
//! are `"primary"` and `"replica"`): name the cache's poll pool, say
//! `"cache_poll"`, so its gauges stand apart. Pools of the same name share
//! theirs (the last checkout sets them).

use crate::error::Error;

#[cfg(feature = "metrics")]
mod record;
#[cfg(not(feature = "metrics"))]
#[path = "off.rs"]
mod record;

#[cfg(feature = "metrics")]
pub use self::record::describe;
// The recording functions, called across the crate (those of the
// features built: the others are unused).
#[allow(unused_imports)]
pub(crate) use self::record::*;

/// Counter of validations, label `outcome`.
pub const VALIDATIONS: &str = "lucia_diesel_validations_total";
/// Counter of sessions created.
pub const SESSIONS_CREATED: &str = "lucia_diesel_sessions_created_total";
/// Counter of sessions extended by a validation.
pub const SESSIONS_EXTENDED: &str = "lucia_diesel_sessions_extended_total";
/// Counter of sessions given a new token.
pub const SESSIONS_ROTATED: &str = "lucia_diesel_sessions_rotated_total";
/// Counter of session rows deleted, label `reason`.
pub const SESSIONS_DELETED: &str = "lucia_diesel_sessions_deleted_total";
/// Counter of failed operations, labels `operation` and `kind`.
pub const ERRORS: &str = "lucia_diesel_errors_total";
/// Counter of validation cache lookups, label `result`.
pub const CACHE_LOOKUPS: &str = "lucia_diesel_cache_lookups_total";
/// Counter of invalidations the validation cache applied, label `source`.
pub const CACHE_INVALIDATIONS: &str = "lucia_diesel_cache_invalidations_total";
/// Histogram, one sample per invalidation applied from the outbox: the
/// time from the start of the previous successful poll (whose snapshot
/// did not see the invalidation) to this poll applying it. The outbox
/// rows carry no time, so this is the most the invalidation can have
/// waited, an upper bound of its delay, in seconds.
pub const CACHE_INVALIDATION_DELAY: &str = "lucia_diesel_cache_invalidation_delay_seconds";
/// Histogram of statement times, in seconds.
pub const STATEMENT_DURATION: &str = "lucia_diesel_statement_duration_seconds";
/// Histogram of waits for a pooled connection, in seconds.
pub const POOL_CHECKOUT_WAIT: &str = "lucia_diesel_pool_checkout_wait_seconds";
/// Gauge of a pool's connections, label `state` (`in_use`, `idle`).
pub const POOL_CONNECTIONS: &str = "lucia_diesel_pool_connections";

/// How a validation ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validation {
    Valid,
    Unknown,
    Expired,
    Idle,
    Absolute,
    Malformed,
    Error,
}

impl Validation {
    /// Every outcome, in the order of the enum.
    const ALL: [Self; 7] = [
        Self::Valid,
        Self::Unknown,
        Self::Expired,
        Self::Idle,
        Self::Absolute,
        Self::Malformed,
        Self::Error,
    ];

    /// The `outcome` label.
    fn label(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Unknown => "unknown",
            Self::Expired => "expired",
            Self::Idle => "idle",
            Self::Absolute => "absolute",
            Self::Malformed => "malformed",
            Self::Error => "error",
        }
    }
}

/// The `kind` label of an error: its variant.
fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::Config(_) => "config",
        Error::Rng(_) => "rng",
        Error::Unavailable { .. } => "unavailable",
        Error::PoolTimeout { .. } => "pool_timeout",
        Error::Timeout { .. } => "timeout",
        Error::UnknownUser => "unknown_user",
        Error::DuplicateSessionId => "duplicate_session_id",
        Error::InvalidSessionId => "invalid_session_id",
        Error::InvalidAttributes { .. } => "invalid_attributes",
        Error::ReadOnly { .. } => "read_only",
        Error::Decode { .. } => "decode",
        Error::Migration { .. } => "migration",
        Error::Database(_) => "database",
        Error::Schema(_) => "schema",
    }
}
