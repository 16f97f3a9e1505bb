//! Integration tests against a real PostgreSQL (`DATABASE_URL`, or a
//! private throwaway cluster; see `tests/support`).

mod support;

mod adapter_suite;
mod bad_input;
mod cleanup;
mod cookies;
mod errors;
mod faults;
mod load;
mod migrations;
mod observability;
#[cfg(feature = "pooler")]
mod pooler;
mod replicas;
#[cfg(feature = "rocket")]
mod rocket_app;
mod round_trips;
mod session;
#[cfg(feature = "rustls")]
mod tls;
mod verify_schema;
