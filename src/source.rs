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
use crate::exec::Conn;

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
}

/// A connection lent by a [`ConnectionSource`]: anything that dereferences
/// to an [`AsyncPgConnection`] (a pool's guard, a mutex guard, a `Box`), or
/// a `PoolerPool`'s connection. Sealed: the adapter knows how to run its
/// statements on these two kinds only.
pub trait SourceConnection: Send + sealed::Sealed {
    #[doc(hidden)]
    fn conn(&mut self) -> Conn<'_>;
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
