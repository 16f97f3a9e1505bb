//! Where [`PostgresAdapter`](crate::PostgresAdapter) gets its connections:
//! the [`ConnectionSource`] trait, and nothing else. Each source implements
//! it in its own module: the bb8 pools in `pool`, `PoolerPool` in `pooler`,
//! [`ReplicatedPool`](crate::ReplicatedPool) in `replica`, deadpool pools in
//! `deadpool`, [`SingleConnection`](crate::SingleConnection) in `single`.

use std::future::Future;
use std::ops::DerefMut;
use std::time::Duration;

use diesel_async::AsyncPgConnection;

#[allow(unused_imports)] // `Error` is named by the docs only.
use crate::error::{Error, Result};
use crate::exec::{Conn, QueryFn, run_bounded};

/// Something that lends out a connection for one operation: an
/// [`AsyncPgConnection`] (bb8 and deadpool pools, [`PgPool`](crate::PgPool),
/// [`SingleConnection`](crate::SingleConnection)) or a pooler connection (`PoolerPool`, feature
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

    /// Runs the application's own queries on a connection of this source,
    /// bounded like the crate's operations: the checkout waits at most the
    /// source's checkout timeout, and the closure's queries together at
    /// most [`operation_timeout`](Self::operation_timeout); past that the
    /// closure is dropped, a cancel request is sent for its statement, the
    /// connection is retired, and the call fails with [`Error::Timeout`]. A
    /// frozen server or a network partition costs the caller a typed error
    /// within a bound, never a hang.
    ///
    /// Errors of the checkout and the deadline come as `E::from(Error)`;
    /// the closure's own errors come back as they are. With
    /// `E = lucia_diesel::Error`, `?` on a diesel result classifies it
    /// ([`Error::is_transient`] for a 503).
    ///
    /// # Examples
    /// ```no_run
    /// use diesel::prelude::*;
    /// use diesel_async::RunQueryDsl;
    /// use lucia_diesel::{ConnectionSource as _, PgPool};
    ///
    /// diesel::table! { auth_user (id) { id -> Text, } }
    ///
    /// # async fn run(pool: PgPool) -> lucia_diesel::Result<()> {
    /// let known = pool
    ///     .run(async |conn| -> lucia_diesel::Result<Option<String>> {
    ///         Ok(auth_user::table
    ///             .select(auth_user::id)
    ///             .filter(auth_user::id.eq("ann"))
    ///             .first(conn)
    ///             .await
    ///             .optional()?)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::PoolTimeout`] or [`Error::Unavailable`] from the checkout,
    /// [`Error::Timeout`] past the deadline, [`ConfigError::PoolerQueries`](crate::ConfigError::PoolerQueries)
    /// on a `PoolerPool` (it lends no diesel connection), as `E`; and the
    /// closure's errors.
    fn run<T, E, F>(&self, query: F) -> impl Future<Output = std::result::Result<T, E>> + Send
    where
        for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> std::result::Result<T, E>
            + QueryFn<&'r mut AsyncPgConnection, std::result::Result<T, E>, Fut: Send>
            + Send,
        T: Send,
        E: From<Error> + Send,
        Self: Sized,
    {
        async move {
            let limit = self.operation_timeout();
            let mut lent = self.connection().await.map_err(E::from)?;
            let Some(conn) = lent.diesel() else {
                return Err(E::from(crate::error::ConfigError::PoolerQueries.into()));
            };
            run_bounded(conn, limit, query).await
        }
    }
}

/// A connection lent by a [`ConnectionSource`]: anything that dereferences
/// to an [`AsyncPgConnection`] (a pool's guard, a mutex guard, a `Box`), or
/// a `PoolerPool`'s connection. Sealed: the adapter knows how to run its
/// statements on these two kinds only.
pub trait SourceConnection: Send + sealed::Sealed {
    #[doc(hidden)]
    fn conn(&mut self) -> Conn<'_>;

    /// The diesel connection, for the application's own queries; `None`
    /// for a pooler's connection.
    #[doc(hidden)]
    fn diesel(&mut self) -> Option<&mut AsyncPgConnection> {
        None
    }
}

/// Implemented by this crate's connection types only.
pub(crate) mod sealed {
    pub trait Sealed {}
}

impl<T: DerefMut<Target = AsyncPgConnection> + Send> sealed::Sealed for T {}

impl<T: DerefMut<Target = AsyncPgConnection> + Send> SourceConnection for T {
    fn conn(&mut self) -> Conn<'_> {
        Conn::diesel(self)
    }

    fn diesel(&mut self) -> Option<&mut AsyncPgConnection> {
        Some(self)
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
