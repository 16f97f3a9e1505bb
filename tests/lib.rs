//! Integration tests against a real PostgreSQL (`DATABASE_URL`, or a
//! private throwaway cluster; see `tests/support`).

mod support;

#[cfg(feature = "actix")]
mod actix_app;
mod adapter_suite;
#[cfg(feature = "axum")]
mod axum_app;
mod bad_input;
#[cfg(feature = "cache")]
mod cache;
mod cleanup;
mod cookies;
mod errors;
mod faults;
mod load;
#[cfg(feature = "metrics")]
mod metrics;
mod migrations;
mod observability;
#[cfg(feature = "pooler")]
mod pooler;
mod replicas;
#[cfg(feature = "rocket")]
mod rocket_app;
mod rotation;
mod round_trips;
mod server;
mod session;
mod session_activity;
#[cfg(feature = "rustls")]
mod tls;
mod verify_schema;
