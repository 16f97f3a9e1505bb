//! A pool for connection poolers in transaction mode: PgBouncer before
//! 1.21 (or without `max_prepared_statements`), Supavisor and other
//! "pooled" endpoints of managed PostgreSQL.
//!
//! A pooler in transaction mode hands each transaction to whichever server
//! connection is free. Named prepared statements live on one server
//! connection, so a statement prepared in one transaction may be missing in
//! the next ("prepared statement "s3" does not exist"), and diesel-async
//! always prepares named statements. A [`PoolerPool`] runs every operation
//! of the adapter as one *unnamed* statement instead: Parse, Bind, Describe,
//! Execute and Sync go out together and are answered together, inside one
//! implicit transaction, so the pooler keeps them on one server connection.
//! That is one round trip per operation, like a cached prepared statement,
//! at the cost of the server parsing and planning the statement each time,
//! which makes each operation several times as expensive for the server as
//! with [`PgPool`](crate::PgPool) (see `BENCHMARKS.md`).
//!
//! # When to use it
//! - Behind PgBouncer in `pool_mode = transaction` without protocol-level
//!   prepared statement support, and behind poolers like it: use a
//!   `PoolerPool`.
//! - Direct connections, PgBouncer in session mode, PgBouncer 1.21+ with
//!   `max_prepared_statements` set: use [`PgPool`](crate::PgPool), which
//!   keeps prepared statements and saves the server the parsing.
//!
//! The adapter's statements and its startup check
//! ([`verify_schema`](crate::PostgresAdapter::verify_schema)) run on a
//! `PoolerPool`. Run migrations over a direct connection (or the pooler's
//! session-mode port): they take an advisory lock that needs a session.
//!
//! # Statement timeout
//! Session settings do not survive a transaction-mode pooler (a `SET` lands
//! on whichever server connection runs it), so the pool's statement
//! timeout ([`PoolOptions::with_statement_timeout`]) is kept by the client
//! alone, as one deadline per operation (the statement timeout plus its
//! margin): an operation that takes longer fails with [`Error::Timeout`], a
//! cancel request is sent for its statement, and its connection is closed
//! rather than reused. Set `statement_timeout` on the database role as well
//! if the server should stop such statements by itself.
//!
//! # Examples
//! ```no_run
//! use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager};
//!
//! # async fn run() -> lucia_diesel::Result<()> {
//! // PgBouncer's transaction-mode port; table names qualified with their
//! // schema, since a pooler may not pass `options=-csearch_path=..` on.
//! let pool = PoolOptions::new().build_pooler("postgres://app@127.0.0.1:6432/app").await?;
//! let adapter = PostgresAdapter::new(pool);
//! adapter.verify_schema().await?;
//! let sessions = SessionManager::new(adapter);
//! # Ok(()) }
//! ```

use std::time::Duration;

use tokio::sync::SemaphorePermit;

use crate::error::{Error, ErrorSource, Result, classify_postgres, parse_database_url};
use crate::exec::Conn;
use crate::pool::{LastError, PoolOptions, Queue};
use crate::source::{ConnectionSource, SourceConnection};

pub use crate::exec::pooler::PoolerConnection;

#[cfg_attr(docsrs, doc(cfg(feature = "pooler")))]
impl PoolOptions {
    /// Builds a [`PoolerPool`] (for a pooler in transaction mode) and opens
    /// its first connection. The same sizes and timeouts apply as for
    /// [`build`](Self::build); the statement timeout is kept by the client
    /// (see the [`pooler`](crate::pooler) module). Feature `pooler`.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that cannot be parsed or a zero pool size
    /// or timeout; [`Error::Unavailable`] or [`Error::PoolTimeout`] when the
    /// pooler cannot be reached within the checkout timeout.
    pub async fn build_pooler(self, database_url: &str) -> Result<PoolerPool> {
        let pool = self.build_pooler_lazy(database_url)?;
        drop(pool.connection().await?);
        Ok(pool)
    }

    /// [`build_pooler`](Self::build_pooler) without connecting; the first
    /// operation connects. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that cannot be parsed or a zero pool size
    /// or timeout.
    pub fn build_pooler_lazy(self, database_url: &str) -> Result<PoolerPool> {
        self.check()?;
        let config = parse_database_url(database_url)?;
        let queue = Queue::new(&self);
        let manager = Manager {
            config,
            verified_checkout: self.verified_checkout,
            tls: self.tls.clone(),
        };
        let pool = self
            .bb8_builder()
            .error_sink(Box::new(Sink(queue.last_error.clone())))
            .build_unchecked(manager);
        Ok(PoolerPool {
            pool,
            queue,
            operation_timeout: self.operation_timeout(),
        })
    }
}

/// A pool of tokio-postgres connections for a pooler in transaction mode;
/// a [`ConnectionSource`] whose statements are unnamed (see the
/// [module docs](self)). Built by [`PoolOptions::build_pooler`]. Cloning is
/// cheap and shares the pool.
#[derive(Debug, Clone)]
pub struct PoolerPool {
    pool: bb8::Pool<Manager>,
    queue: Queue,
    operation_timeout: Option<Duration>,
}

impl PoolerPool {
    /// Open and idle connection counts.
    #[must_use]
    pub fn state(&self) -> bb8::State {
        self.pool.state()
    }
}

impl ConnectionSource for PoolerPool {
    type Connection<'a> = PooledClient<'a>;

    async fn connection(&self) -> Result<Self::Connection<'_>> {
        let (conn, turn) = self.queue.checkout(&self.pool, from_bb8_error).await?;
        Ok(PooledClient { conn, _turn: turn })
    }

    fn operation_timeout(&self) -> Option<Duration> {
        self.operation_timeout
    }
}

fn from_bb8_error(
    err: bb8::RunError<tokio_postgres::Error>,
    last_error: Option<ErrorSource>,
) -> Error {
    match err {
        bb8::RunError::TimedOut => Error::PoolTimeout { last_error },
        bb8::RunError::User(e) => classify_postgres(e).into_error(),
    }
}

/// A connection lent by a [`PoolerPool`]; it goes back to the pool, and the
/// next caller in line gets its turn, when dropped.
pub struct PooledClient<'a> {
    // Dropped in this order: the connection first, then the turn.
    conn: bb8::PooledConnection<'a, Manager>,
    _turn: SemaphorePermit<'a>,
}

impl std::fmt::Debug for PooledClient<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledClient").finish_non_exhaustive()
    }
}

impl crate::source::sealed::Sealed for PooledClient<'_> {}

impl SourceConnection for PooledClient<'_> {
    fn conn(&mut self) -> Conn<'_> {
        Conn::pooler(&mut self.conn)
    }
}

/// Opens and checks the pool's connections.
#[derive(Debug)]
struct Manager {
    config: tokio_postgres::Config,
    verified_checkout: bool,
    tls: Option<crate::connect::TlsConfig>,
}

impl Manager {
    async fn client(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        crate::connect::client(&self.config, self.tls.as_ref()).await
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = PoolerConnection;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<PoolerConnection, tokio_postgres::Error> {
        Ok(PoolerConnection::new(self.client().await?, &self.config))
    }

    async fn is_valid(&self, conn: &mut PoolerConnection) -> Result<(), tokio_postgres::Error> {
        // On a closed client the empty query fails at once, without a round
        // trip; on an open one it is a round trip, run only when asked for.
        if self.verified_checkout || conn.client().is_closed() {
            conn.client().simple_query("").await?;
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut PoolerConnection) -> bool {
        conn.is_broken()
    }
}

/// Keeps the last connection error for [`Error::PoolTimeout`] and logs it.
#[derive(Debug, Clone)]
struct Sink(LastError);

impl bb8::ErrorSink<tokio_postgres::Error> for Sink {
    fn sink(&self, error: tokio_postgres::Error) {
        self.0.record(classify_postgres(error).into_error());
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<tokio_postgres::Error>> {
        Box::new(self.clone())
    }
}
