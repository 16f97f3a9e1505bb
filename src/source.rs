//! Where [`PostgresAdapter`](crate::PostgresAdapter) gets its connections.
//!
//! The Rust counterparts of the drivers Lucia's PostgreSQL adapter takes:
//! a bb8 pool (like node-postgres' `Pool`), a deadpool pool, or one
//! connection (like node-postgres' `Client`); and a primary with read
//! replicas ([`ReplicatedPool`](crate::ReplicatedPool)), which lends reads
//! a replica's connection through [`ConnectionSource::read_connection`].

use std::future::Future;
use std::ops::DerefMut;
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use tokio::sync::{Mutex, MutexGuard};

use crate::postgres::run::Conn;

#[allow(unused_imports)] // `Error` is used by docs and pool-feature code only.
use crate::error::{Error, Result};

/// Something that lends out a connection for one operation: an
/// [`AsyncPgConnection`] (bb8 and deadpool pools, [`PgPool`](crate::PgPool),
/// [`SingleConnection`]) or a pooler connection (`PoolerPool`, feature
/// `pooler`).
pub trait ConnectionSource: Send + Sync + 'static {
    /// The borrowed connection; returned to the source when dropped.
    type Connection<'a>: SourceConnection
    where
        Self: 'a;

    /// Borrows a connection.
    ///
    /// # Errors
    /// [`Error::PoolTimeout`] when none became free in time,
    /// [`Error::Unavailable`] when a new one could not be opened.
    fn connection(&self) -> impl Future<Output = Result<Self::Connection<'_>>> + Send;

    /// How long one operation may take on a lent connection, all its
    /// statements together, before the client gives up on it: the call
    /// fails with [`Error::Timeout`], a cancel request is sent for the
    /// statement, and the connection is retired. This bounds every call
    /// even when the server stops answering without closing the socket (a
    /// frozen server, a network partition), where the server's own
    /// `statement_timeout` cannot act.
    ///
    /// [`PgPool`](crate::PgPool) and `PoolerPool` give their statement
    /// timeout plus a margin; the default, for sources that keep no
    /// statement timeout, is `None` (no client-side deadline).
    fn operation_timeout(&self) -> Option<Duration> {
        None
    }

    /// A connection to a read replica for one of the reads that decide
    /// validity (`get_session_and_user`, `get_user_sessions`), or `None`
    /// to read on [`connection`](Self::connection) like every other
    /// operation. The default is `None`: one server for everything.
    ///
    /// A replica may not have replayed the latest writes, so the adapter
    /// takes its answer only when it found something: a read that finds
    /// nothing there (a session created a moment ago on the primary), or
    /// fails there with anything but [`Error::Timeout`], is asked again on
    /// [`connection`](Self::connection). Never an error: a source that
    /// cannot lend a replica's connection returns `None`.
    fn read_connection(&self) -> impl Future<Output = Option<Self::Connection<'_>>> + Send {
        std::future::ready(None)
    }

    /// How far behind the primary's writes a read through
    /// [`read_connection`](Self::read_connection) may be: zero (the
    /// default) for a source that reads where it writes. The validation
    /// cache (feature `cache`) keeps no row read within this long after an
    /// invalidation, which such a read may not reflect yet.
    fn max_read_lag(&self) -> Duration {
        Duration::ZERO
    }
}

/// A connection lent by a [`ConnectionSource`]: anything that dereferences
/// to an [`AsyncPgConnection`] (a pool's guard, a mutex guard, a `Box`), or
/// a `PoolerPool`'s connection. Sealed: the adapter knows how to run its
/// statements on these two kinds only.
pub trait SourceConnection: Send + sealed::Sealed {
    #[doc(hidden)]
    fn conn(&mut self) -> Conn<'_>;
}

mod sealed {
    pub trait Sealed {}
}

impl<T: DerefMut<Target = AsyncPgConnection> + Send> sealed::Sealed for T {}

impl<T: DerefMut<Target = AsyncPgConnection> + Send> SourceConnection for T {
    fn conn(&mut self) -> Conn<'_> {
        Conn::diesel(self)
    }
}

#[cfg(feature = "pooler")]
impl sealed::Sealed for crate::pooler::PooledClient<'_> {}

#[cfg(feature = "pooler")]
impl SourceConnection for crate::pooler::PooledClient<'_> {
    fn conn(&mut self) -> Conn<'_> {
        Conn::pooler(self.connection())
    }
}

/// One connection used for every operation, one operation at a time (like
/// node-postgres' `Client`). It does not reconnect: once the connection
/// breaks every call fails with [`Error::Unavailable`]. Prefer a pool in
/// servers; this suits scripts, tests and single-task tools.
pub struct SingleConnection {
    conn: Mutex<AsyncPgConnection>,
}

impl std::fmt::Debug for SingleConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleConnection").finish_non_exhaustive()
    }
}

impl SingleConnection {
    /// Wraps an established connection.
    #[must_use]
    pub fn new(conn: AsyncPgConnection) -> Self {
        Self {
            conn: Mutex::new(conn),
        }
    }

    /// Opens a connection to `database_url`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the connection cannot be opened.
    pub async fn establish(database_url: &str) -> Result<Self> {
        use diesel_async::AsyncConnection as _;
        Ok(Self::new(AsyncPgConnection::establish(database_url).await?))
    }

    /// Gives the connection back.
    #[must_use]
    pub fn into_inner(self) -> AsyncPgConnection {
        self.conn.into_inner()
    }
}

impl From<AsyncPgConnection> for SingleConnection {
    fn from(conn: AsyncPgConnection) -> Self {
        Self::new(conn)
    }
}

impl ConnectionSource for SingleConnection {
    type Connection<'a> = MutexGuard<'a, AsyncPgConnection>;

    async fn connection(&self) -> Result<Self::Connection<'_>> {
        #[allow(unused_mut)]
        let mut guard = self.conn.lock().await;
        // diesel-async exposes the socket's state only with a pool feature;
        // without one a closed connection shows up as the query's error.
        #[cfg(any(feature = "bb8", feature = "deadpool"))]
        if diesel_async::pooled_connection::PoolableConnection::is_broken(&mut *guard) {
            return Err(Error::unavailable("the connection is closed or broken"));
        }
        Ok(guard)
    }
}

#[cfg(feature = "bb8")]
impl ConnectionSource for diesel_async::pooled_connection::bb8::Pool<AsyncPgConnection> {
    type Connection<'a> =
        diesel_async::pooled_connection::bb8::PooledConnection<'a, AsyncPgConnection>;

    async fn connection(&self) -> Result<Self::Connection<'_>> {
        self.get()
            .await
            .map_err(|e| crate::pool::from_bb8_error(e, None))
    }
}

#[cfg(feature = "deadpool")]
impl ConnectionSource for diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection> {
    type Connection<'a> = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;

    async fn connection(&self) -> Result<Self::Connection<'_>> {
        use deadpool::managed::PoolError as P;
        use diesel_async::pooled_connection::PoolError as E;
        self.get().await.map_err(|e| match e {
            P::Timeout(_) => Error::PoolTimeout { last_error: None },
            P::Backend(E::ConnectionError(e)) => Error::from(e),
            P::Backend(E::QueryError(e)) => Error::from(e),
            P::Closed => Error::unavailable("the pool is closed"),
            other => Error::unavailable(other),
        })
    }
}

impl<S: ConnectionSource> ConnectionSource for std::sync::Arc<S> {
    type Connection<'a> = S::Connection<'a>;

    fn connection(&self) -> impl Future<Output = Result<Self::Connection<'_>>> + Send {
        (**self).connection()
    }

    fn operation_timeout(&self) -> Option<Duration> {
        (**self).operation_timeout()
    }

    fn read_connection(&self) -> impl Future<Output = Option<Self::Connection<'_>>> + Send {
        (**self).read_connection()
    }

    fn max_read_lag(&self) -> Duration {
        (**self).max_read_lag()
    }
}
