//! A tokio-postgres connection that runs the adapter's statements unnamed:
//! Parse, Bind, Describe, Execute and Sync in one round trip, which a
//! transaction-mode pooler keeps on one server connection; and the cancel
//! request a pooler honours, sent when an operation's deadline passes.

use std::sync::Arc;

use futures_util::TryStreamExt as _;
use tokio_postgres::NoTls;

use self::raw::binds;
pub(crate) use self::raw::{get, value};
use crate::error::{ErrorClass, classify_postgres};
use crate::exec::{CANCEL_WAIT, RunResult, Statement};

mod raw;

/// A row as a pooler connection returns it.
pub(crate) type PoolerRow = tokio_postgres::Row;

/// One tokio-postgres connection of a [`PoolerPool`](crate::PoolerPool).
/// Opaque: the adapter runs its statements on it.
pub struct PoolerConnection {
    /// Shared with a cancel request in flight, which keeps the connection
    /// open until it is handled.
    client: Arc<tokio_postgres::Client>,
    cancel_to: Option<CancelTarget>,
    /// Set when the connection can no longer be trusted; the pool drops it.
    broken: bool,
}

impl std::fmt::Debug for PoolerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolerConnection")
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl PoolerConnection {
    pub(crate) fn new(client: tokio_postgres::Client, config: &tokio_postgres::Config) -> Self {
        Self {
            client: Arc::new(client),
            cancel_to: CancelTarget::of(config),
            broken: false,
        }
    }

    pub(crate) fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// Whether the pool should drop this connection.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken || self.client.is_closed()
    }

    /// Runs `stmt` as an unnamed statement: its rows, and the number of
    /// rows it affected.
    pub(crate) async fn run(&mut self, stmt: &Statement<'_>) -> RunResult<(Vec<PoolerRow>, u64)> {
        let binds = binds(stmt).map_err(ErrorClass::from_error)?;
        let params = binds.iter().map(|(bind, ty)| {
            (
                bind as &(dyn tokio_postgres::types::ToSql + Sync),
                ty.clone(),
            )
        });
        let rows = self
            .client
            .query_typed_raw(stmt.text(), params)
            .await
            .map_err(classify_postgres)?;
        let mut rows = std::pin::pin!(rows);
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(classify_postgres)? {
            out.push(row);
        }
        Ok((out, rows.rows_affected().unwrap_or(0)))
    }

    /// Never lends this connection again; with `cancel`, also asks the
    /// server to stop the statement running on it.
    ///
    /// The cancel request goes out from a task of its own while the
    /// connection is kept open: a pooler matches a cancel request to its
    /// client, and a backend waiting on a lock would not notice its client
    /// going away. The cancel connection stays open until the other side
    /// closes it, as libpq does: PgBouncer 1.18 drops a cancel request whose
    /// sender hangs up first (tokio-postgres' own `cancel_query` does).
    /// Best effort, sent without TLS, abandoned after a few seconds.
    pub(crate) fn retire(&mut self, cancel: bool) {
        self.broken = true;
        let Some(target) = self.cancel_to.clone().filter(|_| cancel) else {
            return;
        };
        let token = self.client.cancel_token();
        let client = Arc::clone(&self.client);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CANCEL_WAIT, target.send(&token)).await;
            drop(client);
        });
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
