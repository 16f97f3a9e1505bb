//! deadpool pools of diesel-async connections as a [`ConnectionSource`]
//! (feature `deadpool`), lent as they are.

use diesel_async::AsyncPgConnection;

use crate::error::{Error, Result};
use crate::source::ConnectionSource;

impl ConnectionSource for diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection> {
    type Connection<'a> = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;

    async fn connection(&self) -> Result<Self::Connection<'_>> {
        use ::deadpool::managed::PoolError as P;
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
