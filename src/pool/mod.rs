//! A bb8 pool of [`AsyncPgConnection`]s with defaults fit for a session store.
//!
//! [`PoolOptions::build`] gives a [`PgPool`]. Compared with a bare bb8 pool:
//!
//! - **No extra round trip per checkout.** bb8 tests every connection on
//!   checkout, and diesel-async's default test is a `SELECT 1` round trip,
//!   which would double the cost of validating a session. `PgPool` tests
//!   only whether the connection's socket is already known to be closed
//!   (no round trip). The trade-off: a connection that died silently while
//!   idle (a network partition without a TCP reset) is found out by the next
//!   operation on it, which fails with [`Error::Unavailable`]; the pool then
//!   drops it. [`PoolOptions::with_verified_checkout`] restores the
//!   `SELECT 1` when that matters more than latency.
//! - **Bounded waits that say why.** Checkout waits 5 s by default (bb8:
//!   30 s), and a [`Error::PoolTimeout`] carries the last error seen while
//!   connecting during that wait instead of hiding it. Connect errors are
//!   logged through `tracing` (they never contain a token).
//! - **Every call bounded, even when the server freezes.** Each operation
//!   gets a client-side deadline of the statement timeout plus a margin
//!   (see [`PoolOptions::with_statement_timeout`]): a server that stops
//!   answering without closing the socket (a frozen process, a network
//!   partition) costs the caller an [`Error::Timeout`], a cancel request
//!   and the connection, never a hang.
//! - **First come, first served.** bb8 can hand a returned connection to a
//!   task that asks again at once, ahead of those waiting, so with more
//!   callers than connections some starve until their checkout times out.
//!   `PgPool` queues callers fairly in front of bb8, so a saturated pool
//!   makes callers wait their turn, not fail.
//! - **The warmest connection first.** bb8 lends its idle connections
//!   last in, first out (its default is first in, first out): at low load
//!   the same connection, and its warmed-up server process, serves call
//!   after call. Connections the load does not need sit idle and close
//!   after the idle timeout.
//! - **Nothing raced against each query.** The pool drives each
//!   connection's tokio-postgres connection itself and builds the
//!   [`AsyncPgConnection`] from the client alone, so diesel-async does not
//!   race every query against a broadcast of connection errors. A query on
//!   a lost connection still fails with [`Error::Unavailable`]. The
//!   trade-off: LISTEN/NOTIFY notifications are not delivered on pooled
//!   connections; listen on a connection of your own.
//! - **Fails fast at startup.** [`PoolOptions::build`] opens one connection,
//!   so a wrong URL or a database that is down is an error at startup.
//!
//! # Under faults
//! What a [`SessionManager`](crate::SessionManager) over a `PgPool` does,
//! as tested in `tests/faults/` against a real server. In every case a call
//! returns within the checkout timeout plus the statement timeout and its
//! margin, an error is typed and never taken for a valid session, and the
//! pool recovers by itself once the cause is gone.
//!
//! | fault | what callers see |
//! |---|---|
//! | database down when the pool is built | [`Error::PoolTimeout`] naming the connect error, after the checkout timeout |
//! | database down at call time | [`Error::PoolTimeout`] or [`Error::Unavailable`]; the same pool recovers when it is back |
//! | restart (`pg_ctl restart -m fast`) | at most one [`Error::Unavailable`] per connection in use; often none |
//! | crash (`stop -m immediate`) and recovery | transient errors while down; every committed session is still there |
//! | backend terminated (`pg_terminate_backend`), idle or busy | at most one [`Error::Unavailable`] per connection; a connection reported lost is never lent again |
//! | every connection busy | callers wait in turn; [`Error::PoolTimeout`] only after the checkout timeout |
//! | `statement_timeout`, `lock_timeout`, `pg_cancel_backend` | [`Error::Timeout`]; the connection stays in use |
//! | read-only database | writes fail with [`Error::ReadOnly`]; valid sessions validate (unextended), expired ones are invalid |
//! | disk full (or any other failed write) | a typed error ([`Error::Database`]); nothing partly written |
//! | schema drift | [`Error::Database`] at run time; [`PostgresAdapter::verify_schema`](crate::PostgresAdapter::verify_schema) names it at startup |
//! | the server stops answering (a frozen backend, a partition) | [`Error::Timeout`] at the statement timeout plus its margin; a cancel request is sent and the connection retired |
//! | a future dropped mid-query | nothing: the connection serves later calls correctly |

mod queue;

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, PoolableConnection, RecyclingMethod,
};
use futures_util::FutureExt as _;
use tokio::sync::SemaphorePermit;

use crate::connect::TlsConfig;
use crate::error::{ConfigError, Error, ErrorSource, Result, parse_database_url};
use crate::source::ConnectionSource;

pub(crate) use self::queue::{LastError, Queue};

type Bb8Pool = diesel_async::pooled_connection::bb8::Pool<AsyncPgConnection>;

/// Settings for a [`PgPool`], with defaults for a session store.
#[derive(Debug, Clone)]
#[must_use]
pub struct PoolOptions {
    pub(crate) max_size: u32,
    pub(crate) min_idle: Option<u32>,
    pub(crate) checkout_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) statement_timeout: Option<Duration>,
    pub(crate) verified_checkout: bool,
    pub(crate) max_replica_lag: Duration,
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) name: &'static str,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 10,
            min_idle: None,
            checkout_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            statement_timeout: Some(Duration::from_secs(10)),
            verified_checkout: false,
            max_replica_lag: Duration::from_secs(1),
            tls: None,
            name: DEFAULT_NAME,
        }
    }
}

impl PoolOptions {
    /// The defaults: 10 connections, 5 s checkout timeout, 10 s
    /// `statement_timeout`, connections recycled after 10 min idle or 30 min.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pool's name in its metrics (feature `metrics`: the `pool`
    /// label of its checkout waits and connection gauges; default
    /// `"default"`). Name each pool of a process differently, e.g. the
    /// cache's poll pool `"cache_poll"`; a
    /// [`ReplicatedPool`](crate::ReplicatedPool)'s are `"primary"` (unless
    /// named) and `"replica"`.
    pub fn with_name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// The most connections the pool opens (default 10).
    pub fn with_max_size(mut self, max_size: u32) -> Self {
        self.max_size = max_size;
        self
    }

    /// Connections kept open while idle (default: none kept on purpose).
    pub fn with_min_idle(mut self, min_idle: Option<u32>) -> Self {
        self.min_idle = min_idle;
        self
    }

    /// How long a call waits for a connection, including opening a new one,
    /// before [`Error::PoolTimeout`] (default 5 s).
    pub fn with_checkout_timeout(mut self, timeout: Duration) -> Self {
        self.checkout_timeout = timeout;
        self
    }

    /// Close connections idle this long (default 10 min; `None`: never).
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Close connections this old (default 30 min; `None`: never).
    pub fn with_max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// PostgreSQL's `statement_timeout` for the pool's connections
    /// (default 10 s; `None` keeps the server's setting). A statement that
    /// runs longer fails with [`Error::Timeout`].
    ///
    /// The client keeps a deadline of its own for each operation, all its
    /// statements together: the statement timeout plus a margin of a tenth
    /// of it, at least 250 ms and at most 2 s. It ends a call whose server
    /// stopped answering (which its `statement_timeout` cannot), with
    /// [`Error::Timeout`], a cancel request for the statement and the
    /// connection closed. With `None` there is no such deadline.
    pub fn with_statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Run `SELECT 1` on every checkout (one more round trip per operation)
    /// so that connections that died silently are never handed out. Off by
    /// default; see the [module docs](self).
    pub fn with_verified_checkout(mut self, verified: bool) -> Self {
        self.verified_checkout = verified;
        self
    }

    /// Connect over verified TLS (feature `rustls`); see [`crate::tls`].
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn with_tls(mut self, tls: crate::tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Builds the pool and opens its first connection.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero pool size or timeout;
    /// [`Error::Unavailable`] or [`Error::PoolTimeout`] when the database
    /// cannot be reached within the checkout timeout.
    pub async fn build(self, database_url: &str) -> Result<PgPool> {
        let pool = self.build_lazy(database_url)?;
        drop(pool.connection().await?);
        Ok(pool)
    }

    /// Builds the pool without connecting; the first operation connects.
    /// Must be called within a tokio runtime (the pool starts a task that
    /// closes idle connections).
    ///
    /// # Errors
    /// [`Error::Config`] for a zero pool size or timeout, or a database URL
    /// that cannot be parsed.
    pub fn build_lazy(self, database_url: &str) -> Result<PgPool> {
        self.check()?;
        // Checked now, so that a wrong URL is a configuration error at
        // startup, not a connect error at the first call.
        parse_database_url(database_url)?;
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        let set = self
            .statement_timeout
            .map(|t| format!("SET statement_timeout = {}", t.as_millis().max(1)));
        let tls = self.tls.clone();
        config.custom_setup = Box::new(move |url| {
            let set = set.clone();
            let tls = tls.clone();
            let url = url.to_owned();
            async move {
                use diesel_async::SimpleAsyncConnection as _;
                let mut conn = crate::connect::diesel(&url, tls.as_ref()).await?;
                if let Some(set) = set {
                    conn.batch_execute(&set)
                        .await
                        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                }
                Ok(conn)
            }
            .boxed()
        });
        config.recycling_method = if self.verified_checkout {
            RecyclingMethod::Verified
        } else {
            RecyclingMethod::CustomFunction(Box::new(|conn: &mut AsyncPgConnection| {
                let broken = conn.is_broken();
                async move {
                    if broken {
                        Err(diesel::result::Error::BrokenTransactionManager)
                    } else {
                        Ok(())
                    }
                }
                .boxed()
            }))
        };
        let manager = AsyncDieselConnectionManager::new_with_config(database_url, config);
        let queue = Queue::new(&self);
        let pool = self
            .bb8_builder()
            .error_sink(Box::new(LastErrorSink(queue.last_error.clone())))
            .build_unchecked(manager);
        Ok(PgPool {
            pool,
            queue,
            operation_timeout: self.operation_timeout(),
        })
    }

    /// Rejects settings no pool can work with.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.max_size == 0 {
            return Err(ConfigError::PoolSize);
        }
        if self.checkout_timeout.is_zero() {
            return Err(ConfigError::CheckoutTimeout);
        }
        if self.statement_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::StatementTimeout);
        }
        Ok(())
    }

    /// The client-side deadline of one operation: the statement timeout
    /// plus its margin (see [`with_statement_timeout`](Self::with_statement_timeout)).
    pub(crate) fn operation_timeout(&self) -> Option<Duration> {
        self.statement_timeout
            .map(|t| t + (t / 10).clamp(Duration::from_millis(250), Duration::from_secs(2)))
    }

    /// A bb8 builder with these sizes and timeouts.
    pub(crate) fn bb8_builder<M: bb8::ManageConnection>(&self) -> bb8::Builder<M> {
        bb8::Pool::builder()
            .max_size(self.max_size)
            .min_idle(self.min_idle)
            .connection_timeout(self.checkout_timeout)
            .idle_timeout(self.idle_timeout)
            .max_lifetime(self.max_lifetime)
            .test_on_check_out(true)
            .queue_strategy(bb8::QueueStrategy::Lifo)
    }
}

/// The name of a pool not given one ([`PoolOptions::with_name`]).
pub(crate) const DEFAULT_NAME: &str = "default";

/// Opens one of the pool's connections.
///
/// A bb8 pool built by [`PoolOptions`]; a [`ConnectionSource`].
///
/// Cloning is cheap and shares the pool. [`PgPool::bb8`] gives the bb8 pool
/// itself for the application's own queries.
#[derive(Debug, Clone)]
pub struct PgPool {
    pool: Bb8Pool,
    queue: Queue,
    operation_timeout: Option<Duration>,
}

impl PgPool {
    /// The underlying bb8 pool.
    #[must_use]
    pub fn bb8(&self) -> &Bb8Pool {
        &self.pool
    }

    /// Open and idle connection counts.
    #[must_use]
    pub fn state(&self) -> bb8::State {
        self.pool.state()
    }
}

/// A connection lent by a [`PgPool`]; it goes back to the pool, and the
/// next caller in line gets its turn, when dropped.
pub struct PooledPgConnection<'a> {
    // Dropped in this order: the connection first, then the turn.
    conn: diesel_async::pooled_connection::bb8::PooledConnection<'a, AsyncPgConnection>,
    _turn: SemaphorePermit<'a>,
}

impl std::fmt::Debug for PooledPgConnection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledPgConnection").finish_non_exhaustive()
    }
}

impl Deref for PooledPgConnection<'_> {
    type Target = AsyncPgConnection;
    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl DerefMut for PooledPgConnection<'_> {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}

impl ConnectionSource for PgPool {
    type Connection<'a> = PooledPgConnection<'a>;

    async fn connection(&self) -> Result<Self::Connection<'_>> {
        let (conn, turn) = self.queue.checkout(&self.pool, from_bb8_error).await?;
        Ok(PooledPgConnection { conn, _turn: turn })
    }

    fn operation_timeout(&self) -> Option<Duration> {
        self.operation_timeout
    }
}

pub(crate) fn from_bb8_error(
    err: bb8::RunError<PoolError>,
    last_error: Option<ErrorSource>,
) -> Error {
    match err {
        bb8::RunError::TimedOut => Error::PoolTimeout { last_error },
        bb8::RunError::User(PoolError::ConnectionError(e)) => Error::from(e),
        bb8::RunError::User(PoolError::QueryError(e)) => Error::from(e),
    }
}

/// Keeps the last connection error for [`Error::PoolTimeout`] and logs it.
#[derive(Debug, Clone)]
struct LastErrorSink(LastError);

impl bb8::ErrorSink<PoolError> for LastErrorSink {
    fn sink(&self, error: PoolError) {
        if let PoolError::QueryError(diesel::result::Error::BrokenTransactionManager) = error {
            // The checkout test found a connection known to be dead: the
            // pool drops it and opens another. Not a connection failure.
            tracing::debug!(target: "lucia_diesel::pool", "dropped a broken pooled connection");
            return;
        }
        self.0.record(match error {
            PoolError::ConnectionError(e) => Error::from(e),
            PoolError::QueryError(e) => Error::from(e),
        });
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<PoolError>> {
        Box::new(self.clone())
    }
}

/// A bb8 pool of diesel-async connections that the application already
/// has: lent as it is, without [`PgPool`]'s deadline or queue.
impl ConnectionSource for diesel_async::pooled_connection::bb8::Pool<AsyncPgConnection> {
    type Connection<'a> =
        diesel_async::pooled_connection::bb8::PooledConnection<'a, AsyncPgConnection>;

    async fn connection(&self) -> Result<Self::Connection<'_>> {
        self.get().await.map_err(|e| from_bb8_error(e, None))
    }
}
