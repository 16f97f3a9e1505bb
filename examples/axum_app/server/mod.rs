//! The example API's modules, below `main.rs` (which reads the settings
//! and starts the server). The tests include this module once, next to
//! `examples/common` (accounts, password hashing, throttling, the
//! database), which both examples share.

pub mod account;
pub mod api;
/// `GET /metrics`, with the crate's feature `metrics`.
#[cfg(feature = "metrics")]
pub mod metrics;
/// Without the feature: no route.
#[cfg(not(feature = "metrics"))]
#[path = "no_metrics.rs"]
pub mod metrics;
pub mod sign_in;

use super::common;
