//! The one clock behind creation, validation, extension and cleanup.

use std::fmt;

use chrono::{DateTime, Utc};

/// Where the session manager reads the time. One clock drives creation,
/// validation, extension and cleanup, so they always agree; tests inject a
/// fixed one instead of sleeping.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock ([`Utc::now`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// PostgreSQL stores microseconds: times are cut to that precision before
/// they are stored, so what the manager returns is what the table holds.
pub(crate) fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.timestamp_subsec_nanos();
    t - chrono::Duration::nanoseconds(i64::from(nanos % 1_000))
}
