//! A tokio-postgres connection that runs the adapter's statements unnamed:
//! Parse, Bind, Describe, Execute and Sync in one round trip, which a
//! transaction-mode pooler keeps on one server connection. Used by
//! [`PoolerPool`](crate::pooler::PoolerPool); its statement timeout is kept
//! here, with a cancel request a pooler honours.

use std::future::Future;
use std::time::Duration;

use diesel::deserialize;
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use futures_util::TryStreamExt as _;
use tokio_postgres::NoTls;

use super::query::Row;
use super::raw::{binds, error};
use crate::error::{Error, Result};

/// One tokio-postgres connection of a [`PoolerPool`](crate::pooler::PoolerPool).
/// Opaque: the adapter runs its statements on it.
pub struct PoolerConnection {
    client: tokio_postgres::Client,
    cancel_to: Option<CancelTarget>,
    /// Set when the connection can no longer be trusted; the pool drops it.
    broken: bool,
    statement_timeout: Option<Duration>,
}

impl std::fmt::Debug for PoolerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolerConnection")
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

#[cfg_attr(not(feature = "bb8"), allow(dead_code))]
impl PoolerConnection {
    pub(crate) fn new(
        client: tokio_postgres::Client,
        config: &tokio_postgres::Config,
        statement_timeout: Option<Duration>,
    ) -> Self {
        Self {
            client,
            cancel_to: CancelTarget::of(config),
            broken: false,
            statement_timeout,
        }
    }

    pub(crate) fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// Whether the pool should drop this connection.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken || self.client.is_closed()
    }

    /// Runs `stmt` (whose SQL is `sql`) as an unnamed statement and hands
    /// each row to `f`; returns the number of rows affected. The binds are
    /// serialized before the returned future first runs, so it does not
    /// borrow `stmt`.
    pub(crate) fn run<'c, F>(
        &'c mut self,
        sql: &'c str,
        stmt: &impl QueryFragment<Pg>,
        mut f: F,
    ) -> impl Future<Output = Result<u64>> + Send + 'c
    where
        F: FnMut(Row<'_>) -> deserialize::Result<()> + Send + 'c,
    {
        let binds = binds(stmt);
        async move {
            let binds = binds?;
            let timeout = self.statement_timeout;
            let client = &self.client;
            let query = async {
                let params = binds.iter().map(|(bind, ty)| {
                    (
                        bind as &(dyn tokio_postgres::types::ToSql + Sync),
                        ty.clone(),
                    )
                });
                let rows = client
                    .query_typed_raw(sql, params)
                    .await
                    .map_err(Failure::Db)?;
                let mut rows = std::pin::pin!(rows);
                while let Some(row) = rows.try_next().await.map_err(Failure::Db)? {
                    f(Row::Pooler(&row)).map_err(Failure::Decode)?;
                }
                Ok(rows.rows_affected().unwrap_or(0))
            };
            let result = match timeout {
                Some(limit) => match tokio::time::timeout(limit, query).await {
                    Ok(result) => result,
                    Err(_) => {
                        self.cancel().await;
                        Err(Failure::TimedOut(limit))
                    }
                },
                None => query.await,
            };
            result.map_err(|failure| self.fail(failure))
        }
    }

    /// Asks the server to stop the statement running on this connection,
    /// waiting at most a second for the request to be handled. Sent while
    /// the connection is still open: a pooler matches a cancel request to
    /// its client, and a backend waiting on a lock would not notice its
    /// client going away. The cancel connection stays open until the other
    /// side closes it, as libpq does: PgBouncer 1.18 drops a cancel request
    /// whose sender hangs up first (tokio-postgres' own `cancel_query` does).
    /// Best effort, and sent without TLS.
    async fn cancel(&self) {
        let Some(target) = &self.cancel_to else {
            return;
        };
        let token = self.client.cancel_token();
        let _ = tokio::time::timeout(Duration::from_secs(1), target.send(&token)).await;
    }

    /// Turns a failure into the crate's error and retires the connection
    /// when it can no longer be trusted.
    fn fail(&mut self, failure: Failure) -> Error {
        match failure {
            Failure::Db(e) => {
                let error = error(&e);
                if matches!(error, Error::Unavailable { .. }) {
                    self.broken = true;
                }
                error
            }
            Failure::Decode(e) => Error::Decode(e.to_string()),
            Failure::TimedOut(limit) => {
                // Cancelled (see `cancel`), but its answer is still on the
                // way: never lend this connection again.
                self.broken = true;
                Error::Timeout {
                    message: format!(
                        "the statement did not finish within the pool's statement timeout ({} ms)",
                        limit.as_millis()
                    ),
                }
            }
        }
    }
}

/// Where cancel requests go: the first host of the connection's config.
#[derive(Debug, Clone)]
enum CancelTarget {
    Tcp(String, u16),
    Unix(std::path::PathBuf, u16),
}

impl CancelTarget {
    fn of(config: &tokio_postgres::Config) -> Option<Self> {
        let port = config.get_ports().first().copied().unwrap_or(5432);
        match config.get_hosts().first()? {
            tokio_postgres::config::Host::Tcp(host) => Some(Self::Tcp(host.clone(), port)),
            tokio_postgres::config::Host::Unix(dir) => Some(Self::Unix(dir.clone(), port)),
        }
    }

    async fn send(&self, token: &tokio_postgres::CancelToken) -> std::io::Result<()> {
        match self {
            Self::Tcp(host, port) => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                send_cancel(stream, token).await
            }
            Self::Unix(dir, port) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                send_cancel(tokio::net::UnixStream::connect(path).await?, token).await
            }
        }
    }
}

/// Sends the cancel request and waits for the other side to close.
async fn send_cancel<S>(mut stream: S, token: &tokio_postgres::CancelToken) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt as _;
    token
        .cancel_query_raw(KeepOpen(&mut stream), NoTls)
        .await
        .map_err(std::io::Error::other)?;
    let mut buf = [0u8; 64];
    while stream.read(&mut buf).await? > 0 {}
    Ok(())
}

/// A stream whose `shutdown` does nothing, so the request is sent without
/// closing our side.
struct KeepOpen<'a, S>(&'a mut S);

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for KeepOpen<'_, S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for KeepOpen<'_, S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// How a statement on a pooler connection failed.
enum Failure {
    Db(tokio_postgres::Error),
    Decode(Box<dyn std::error::Error + Send + Sync>),
    TimedOut(Duration),
}
