//! Database-backed auth sessions for Diesel on PostgreSQL: Lucia v3's
//! PostgreSQL adapter and session manager, on `diesel-async`.
//!
//! - [`Adapter`] is Lucia's storage interface; [`PostgresAdapter`]
//!   implements it with one prepared, cached statement per operation
//!   (`get_session_and_user` is a single `JOIN`).
//! - [`TableNames`] validates and quotes table names once, at startup.
//! - [`migrations`] ships the schema as embedded Diesel migrations that
//!   also work with `diesel migration run`.
//! - [`PoolOptions`] builds a bb8 pool with bounded waits and no extra
//!   round trip per checkout.
//!
//! # Quick start
//! ```no_run
//! use lucia_diesel::{Adapter, PoolOptions, PostgresAdapter, migrations};
//!
//! # async fn run() -> lucia_diesel::Result<()> {
//! let url = "postgres://localhost/app";
//! migrations::run_pending_migrations_at(url).await?;
//! let adapter = PostgresAdapter::new(PoolOptions::new().build(url).await?);
//! if let Some((session, user)) = adapter.get_session_and_user("some-session-id").await? {
//!     println!("session of {:?} expires at {}", user.id, session.expires_at);
//! }
//! # Ok(()) }
//! ```
//!
//! # Crate features
//! - `bb8` (default): [`PoolOptions`] / [`PgPool`], and bb8 pools of
//!   `AsyncPgConnection` as a [`ConnectionSource`].
//! - `uuid` (default): `uuid::Uuid` user ids.
//! - `deadpool`: deadpool pools of `AsyncPgConnection` as a [`ConnectionSource`].
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod adapter;
mod clock;
pub mod cookie;
mod error;
pub mod http;
pub mod migrations;
#[cfg(feature = "bb8")]
#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
pub mod pool;
pub mod postgres;
/// The default tables as Diesel `table!`s (`diesel print-schema` output),
/// for joining them in an application's own queries.
#[allow(missing_docs)]
pub mod schema;
pub mod session;
pub mod token;

#[doc(inline)]
pub use crate::adapter::{
    Adapter, Attributes, DatabaseSession, DatabaseUser, Extension, SessionAndUser,
};
#[doc(inline)]
pub use crate::clock::{Clock, SystemClock};
#[doc(inline)]
pub use crate::cookie::CookieConfig;
#[doc(inline)]
pub use crate::error::{ConfigError, DatabaseError, DatabaseErrorKind, Error, Result};
#[doc(inline)]
pub use crate::http::{is_same_origin_fetch, read_bearer_token, verify_request_origin};
#[cfg(feature = "bb8")]
#[doc(inline)]
pub use crate::pool::{PgPool, PoolOptions};
#[doc(inline)]
pub use crate::postgres::{
    ConnectionSource, PostgresAdapter, SingleConnection, TableName, TableNames, UserId,
};
#[doc(inline)]
pub use crate::session::{CreatedSession, Session, SessionManager, SessionManagerBuilder};
#[doc(inline)]
pub use crate::token::{SessionToken, TokenStorage};
