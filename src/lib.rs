//! Database-backed auth sessions for Diesel on PostgreSQL, on
//! `diesel-async`: hashed tokens, sliding expiry, revocation, and Rocket
//! and axum integrations. The session manager and the adapter follow Lucia
//! v3's, so a Rust service can share session tables with a Lucia app.
//!
//! - [`SessionManager`] is Lucia's session life cycle: create, validate
//!   (sliding expiry, `fresh`), invalidate, list and clean up sessions, plus
//!   session cookies ([`CookieConfig`]), bearer tokens and origin checks
//!   ([`http`]). See [`session`] for the life cycle.
//! - [`Adapter`] is Lucia's storage interface; [`PostgresAdapter`]
//!   implements it with one prepared, cached statement per operation
//!   (`get_session_and_user` is a single `JOIN`).
//! - [`TableNames`] validates and quotes table names once, at startup.
//! - [`migrations`] ships the schema as embedded Diesel migrations that
//!   also work with `diesel migration run`.
//! - [`PoolOptions`] builds a bb8 pool with bounded waits and no extra
//!   round trip per checkout, or a [`ReplicatedPool`]: a primary and its
//!   read replicas, with validations on the replicas (see [`replica`]).
//!
//! # Quick start
//! ```no_run
//! use lucia_diesel::{Attributes, PoolOptions, PostgresAdapter, SessionManager, migrations};
//!
//! # async fn run() -> lucia_diesel::Result<()> {
//! let url = "postgres://localhost/app";
//! migrations::run_pending_migrations_at(url).await?;
//! let sessions = SessionManager::new(PostgresAdapter::new(PoolOptions::new().build(url).await?));
//!
//! let created = sessions.create_session("user-1".to_owned(), Attributes::new()).await?;
//! let cookie = sessions.create_session_cookie(created.token.as_str());
//! if let Some((session, user)) = sessions.validate_session(created.token.as_str()).await? {
//!     println!("{} is signed in until {}", user.id, session.expires_at);
//! }
//! # Ok(()) }
//! ```
//!
//! # Security
//! - Tokens are 25 bytes from the OS CSPRNG (200 bits), 40 lowercase base32
//!   characters. By default only their SHA-256 is stored
//!   ([`TokenStorage::Hashed`]); [`TokenStorage::LuciaCompatible`] stores the
//!   token itself to share tables with a Lucia app.
//! - Malformed tokens are rejected before any query; values are always bind
//!   parameters; table names are validated and quoted.
//! - Neither [`SessionToken`], [`Session`], [`DatabaseSession`] nor
//!   [`Error`] shows a token in `Debug` or `Display`. The `Cookie` values
//!   returned by [`SessionManager::create_session_cookie`] do: never log them.
//! - Cookies set `HttpOnly`, `Secure`, `SameSite=Lax` and `Path=/`
//!   explicitly; `__Host-` names are checked.
//!
//! # Layers
//! Each layer uses only those below it (no two modules import each other):
//! - `error`, `token`, `user_id`, `names`, `clock`: errors (one SQLSTATE
//!   table), tokens and session ids, user id types, table names; `trace`
//!   and `metrics`, what every layer above reports.
//! - `exec`: the statement runner, a leaf: SQL built from quoted
//!   identifiers and bind markers, statements run on a lent connection
//!   under one client-side deadline, rows decoded (the pooler's unnamed
//!   statements in a gated part of it).
//! - [`ConnectionSource`] alone, then each source in its own module:
//!   [`pool`], `pooler`, [`replica`], deadpool, [`SingleConnection`].
//! - [`postgres`]: [`PostgresAdapter`]'s operations, each getting its
//!   connection and columns, running its statement and decoding its rows.
//! - [`session`]: [`SessionManager`] (its validation decides in
//!   `session/validate.rs` with the `Policy` of `session/policy.rs`) and
//!   the hook a validation cache plugs into; then `cache`, [`cleanup`],
//!   [`migrations`].
//! - [`http`], the framework-free request core, and the thin `rocket` and
//!   `axum` adapters over it.
//!
//! # Crate features
//! - `bb8` (default): [`PoolOptions`] / [`PgPool`] / [`ReplicatedPool`],
//!   and bb8 pools of `AsyncPgConnection` as a [`ConnectionSource`].
//! - `pooler`: `PoolerPool` (`PoolOptions::build_pooler`), for PgBouncer in
//!   transaction mode and other poolers (see `pooler`).
//! - `uuid` (default): `uuid::Uuid` user ids.
//! - `deadpool`: deadpool pools of `AsyncPgConnection` as a [`ConnectionSource`].
//! - `rustls`: TLS connections for managed PostgreSQL ([`tls`], `PoolOptions::with_tls`).
//! - `rocket`: request guards and a CSRF / cache fairing for Rocket 0.5
//!   (`lucia_diesel::rocket`).
//! - `axum`: extractors and a CSRF / cookie layer for axum 0.8
//!   (`lucia_diesel::axum`).
//! - `cache`: validation from memory, invalidated by PostgreSQL
//!   (`SessionManager::with_cache`, `lucia_diesel::cache`).
//! - `metrics`: counters, histograms and gauges on the `metrics` facade
//!   (`lucia_diesel::metrics`).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

#[cfg(all(
    doctest,
    feature = "rocket",
    feature = "axum",
    feature = "rustls",
    feature = "pooler",
    feature = "cache",
    feature = "metrics"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "actix")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub mod actix;
mod adapter;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod bounded;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cache;
pub mod cleanup;
mod clock;
#[cfg(feature = "bb8")]
mod connect;
pub mod cookie;
#[cfg(feature = "deadpool")]
mod deadpool;
mod error;
mod exec;
pub mod http;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
#[allow(unreachable_pub, dead_code)]
mod metrics;
pub mod migrations;
mod names;
#[cfg(feature = "bb8")]
#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
pub mod pool;
#[cfg(feature = "pooler")]
#[cfg_attr(docsrs, doc(cfg(feature = "pooler")))]
pub mod pooler;
pub mod postgres;
#[cfg(feature = "bb8")]
#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
pub mod replica;
#[cfg(feature = "rocket")]
#[cfg_attr(docsrs, doc(cfg(feature = "rocket")))]
pub mod rocket;
/// The default tables as Diesel `table!`s (`diesel print-schema` output),
/// for joining them in an application's own queries.
#[allow(missing_docs)]
pub mod schema;
pub mod session;
mod single;
mod source;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;
pub mod token;
mod trace;
mod user_id;

#[doc(inline)]
pub use crate::adapter::{
    Adapter, Attributes, DatabaseSession, DatabaseUser, Liveness, Refreshed, Rotated,
    SessionAndUser, SessionRefresh, SessionRotation,
};
#[doc(inline)]
pub use crate::bounded::Bounded;
#[doc(inline)]
pub use crate::cleanup::{CleanupHandle, CleanupOptions};
#[doc(inline)]
pub use crate::clock::{Clock, SystemClock};
#[doc(inline)]
pub use crate::cookie::CookieConfig;
#[doc(inline)]
pub use crate::error::{
    ConfigError, DatabaseError, DatabaseErrorKind, Error, ErrorSource, Result, RngError,
};
#[doc(inline)]
pub use crate::error::{SchemaError, SchemaProblem};
#[doc(inline)]
pub use crate::http::{is_same_origin_fetch, read_bearer_token, verify_request_origin};
#[doc(inline)]
pub use crate::names::{TableName, TableNames};
#[cfg(feature = "bb8")]
#[doc(inline)]
pub use crate::pool::{PgPool, PoolOptions};
#[cfg(feature = "pooler")]
#[doc(inline)]
pub use crate::pooler::PoolerPool;
#[doc(inline)]
pub use crate::postgres::{PostgresAdapter, UserId};
#[cfg(feature = "bb8")]
#[doc(inline)]
pub use crate::replica::{ReplicaStatus, ReplicatedPool};
#[doc(inline)]
pub use crate::session::{CreatedSession, Session, SessionManager, SessionManagerBuilder};
#[doc(inline)]
pub use crate::single::SingleConnection;
#[doc(inline)]
pub use crate::source::ConnectionSource;
#[doc(inline)]
pub use crate::token::{SessionId, SessionToken, TokenStorage};
