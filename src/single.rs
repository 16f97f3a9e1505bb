//! [`SingleConnection`]: one connection as a [`ConnectionSource`].

use diesel_async::AsyncPgConnection;
use tokio::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::source::ConnectionSource;

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
        let mut guard = self.conn.lock().await;
        if is_broken(&mut guard) {
            return Err(Error::unavailable("the connection is closed or broken"));
        }
        Ok(guard)
    }
}

/// Whether the connection is known to be closed. diesel-async exposes the
/// socket's state only with a pool feature; without one a closed connection
/// shows up as the query's error.
#[cfg(any(feature = "bb8", feature = "deadpool"))]
fn is_broken(conn: &mut AsyncPgConnection) -> bool {
    diesel_async::pooled_connection::PoolableConnection::is_broken(conn)
}

#[cfg(not(any(feature = "bb8", feature = "deadpool")))]
fn is_broken(_: &mut AsyncPgConnection) -> bool {
    false
}
