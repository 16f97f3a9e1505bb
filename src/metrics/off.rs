//! Recording without the `metrics` feature: the same functions as
//! `record.rs`, doing nothing, so that call sites carry no `cfg` and
//! compile to nothing (no clock read, no pool state read).

use std::time::{Duration, Instant};

use super::{Error, Validation};

/// No counters.
pub(crate) struct Validations;

impl Validations {
    #[inline(always)]
    pub(crate) fn register() -> Self {
        Self
    }

    #[inline(always)]
    pub(crate) fn ended(&self, _outcome: Validation) {}

    #[inline(always)]
    pub(crate) fn extended(&self) {}
}

/// No counters.
pub(crate) struct Lookups;

impl Lookups {
    #[inline(always)]
    pub(crate) fn register() -> Self {
        Self
    }

    #[inline(always)]
    pub(crate) fn publish(&self, _totals: [u64; 3]) {}
}

#[inline(always)]
pub(crate) fn created() {}

#[inline(always)]
pub(crate) fn rotated() {}

#[inline(always)]
pub(crate) fn deleted(_reason: &'static str, _rows: u64) {}

#[inline(always)]
pub(crate) fn failed(_operation: &'static str, _error: &Error) {}

#[inline(always)]
pub(crate) fn invalidated_own() {}

#[inline(always)]
pub(crate) fn invalidations_polled(_n: usize, _at_most: Duration) {}

/// No statement start is kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started;

#[inline(always)]
pub(crate) fn started() -> Started {
    Started
}

#[inline(always)]
pub(crate) fn statement_done(_at: Started) {}

/// No pool metrics.
#[derive(Debug, Clone)]
pub(crate) struct PoolMetrics;

impl PoolMetrics {
    #[inline(always)]
    pub(crate) fn register(_pool: &'static str) -> Self {
        Self
    }

    #[inline(always)]
    pub(crate) fn checked_out(&self, _since: Instant, _read: impl FnOnce() -> (u32, u32)) {}
}
