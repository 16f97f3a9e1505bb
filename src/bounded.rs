//! [`Bounded`]: deadlines for a connection source that keeps none, such as
//! a bb8 or deadpool pool the application built itself.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::source::ConnectionSource;

/// A [`ConnectionSource`] with the crate's deadlines added: each checkout
/// waits at most the checkout timeout ([`Error::PoolTimeout`] after), and
/// each operation, the crate's or the application's through
/// [`run`](ConnectionSource::run), at most the operation timeout
/// ([`Error::Timeout`], a cancel request, the connection retired).
///
/// For a pool the application already has: a bb8 or deadpool pool of
/// diesel-async connections is lent as it is, and its own timeouts do not
/// bound a query on a server that stopped answering (a frozen backend, a
/// network partition), so without this a call can hang for as long as the
/// operating system keeps the socket. A second source type, here for that
/// correctness property: a typed timeout within a bound instead of a hang.
/// [`PgPool`](crate::PgPool) has both deadlines already.
///
/// # Examples
/// ```no_run
/// # #[cfg(feature = "bb8")]
/// # async fn run() -> lucia_diesel::Result<()> {
/// use std::time::Duration;
/// use diesel_async::AsyncPgConnection;
/// use diesel_async::pooled_connection::AsyncDieselConnectionManager;
/// use diesel_async::pooled_connection::bb8::Pool;
/// use lucia_diesel::{Bounded, PostgresAdapter, SessionManager};
///
/// // The pool the application already has.
/// let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new("postgres://localhost/app");
/// let pool = Pool::builder().max_size(16).build(manager).await.expect("a pool");
///
/// let source = Bounded::new(pool.clone())
///     .with_checkout_timeout(Duration::from_secs(1))
///     .with_operation_timeout(Duration::from_secs(5));
/// let sessions = SessionManager::new(PostgresAdapter::new(source));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Bounded<S> {
    source: S,
    checkout_timeout: Duration,
    operation_timeout: Duration,
}

impl<S: ConnectionSource> Bounded<S> {
    /// `source` with a checkout timeout of 5 s and an operation timeout of
    /// 10.5 s ([`PgPool`](crate::PgPool)'s: its 10 s statement timeout and
    /// the margin).
    #[must_use]
    pub fn new(source: S) -> Self {
        Self {
            source,
            checkout_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_millis(10_500),
        }
    }

    /// How long a checkout may wait for a connection.
    #[must_use]
    pub fn with_checkout_timeout(mut self, timeout: Duration) -> Self {
        self.checkout_timeout = timeout;
        self
    }

    /// How long one operation may take on a lent connection, all its
    /// statements together.
    #[must_use]
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The source inside.
    #[must_use]
    pub fn inner(&self) -> &S {
        &self.source
    }
}

impl<S: ConnectionSource> ConnectionSource for Bounded<S> {
    type Connection<'a> = S::Connection<'a>;

    async fn connection(&self) -> Result<Self::Connection<'_>> {
        match tokio::time::timeout(self.checkout_timeout, self.source.connection()).await {
            Ok(lent) => lent,
            Err(_) => Err(Error::PoolTimeout { last_error: None }),
        }
    }

    fn operation_timeout(&self) -> Option<Duration> {
        Some(self.operation_timeout)
    }

    fn read_connection(&self) -> impl Future<Output = Option<Self::Connection<'_>>> + Send {
        self.source.read_connection()
    }

    fn max_read_lag(&self) -> Duration {
        self.source.max_read_lag()
    }
}
