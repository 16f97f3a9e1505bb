//! The pooler path's side of the query layer: the same [`Stmt`](super::query::Stmt)s
//! run as unnamed statements on a tokio-postgres client.
//!
//! Binds are serialized by diesel (its `ToSql` impls, through the statement's
//! own `QueryFragment`), sent as raw bytes with their type OIDs, and rows are
//! read back through diesel's `FromSql`, so both paths encode and decode
//! every value alike.

use std::error::Error as StdError;
use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use bytes::BytesMut;
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgMetadataLookup, PgTypeMetadata, PgValue};
use diesel::query_builder::QueryFragment;
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use futures_util::TryStreamExt as _;
use tokio_postgres::NoTls;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::query::Row;
use crate::error::{DatabaseError, DatabaseErrorKind, Error, Result};

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

/// One bind value, already serialized by diesel.
#[derive(Debug)]
pub(crate) struct RawBind(Option<Vec<u8>>);

impl ToSql for RawBind {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        Ok(match &self.0 {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                IsNull::No
            }
            None => IsNull::Yes,
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The statement's binds with the types PostgreSQL should parse them as.
pub(crate) fn binds(stmt: &impl QueryFragment<Pg>) -> Result<Vec<(RawBind, Type)>> {
    let mut collector = RawBytesBindCollector::<Pg>::new();
    stmt.collect_binds(&mut collector, &mut BuiltinTypesOnly, &Pg)
        .map_err(Error::from)?;
    collector
        .metadata
        .iter()
        .zip(collector.binds)
        .map(|(meta, bytes)| {
            let oid = meta
                .oid()
                .map_err(|e| Error::InvalidAttributes(e.to_string()))?;
            let ty = Type::from_oid(oid).ok_or_else(|| {
                Error::InvalidAttributes(format!("bind parameter of unsupported type {oid}"))
            })?;
            Ok((RawBind(bytes), ty))
        })
        .collect()
}

/// The adapter binds built-in types only (text, timestamptz, jsonb, integers,
/// uuid), whose OIDs diesel knows without asking the server.
struct BuiltinTypesOnly;

impl PgMetadataLookup for BuiltinTypesOnly {
    fn lookup_type(&mut self, type_name: &str, schema: Option<&str>) -> PgTypeMetadata {
        let key = diesel::pg::PgMetadataCacheKey::new(
            schema.map(|s| s.to_owned().into()),
            type_name.to_owned().into(),
        );
        PgTypeMetadata::from_result(Err(diesel::pg::FailedToLookupTypeError::new(key)))
    }
}

/// A column's bytes and type, borrowed from a row without decoding.
struct RawValue<'a>(&'a [u8], u32);

impl<'a> tokio_postgres::types::FromSql<'a> for RawValue<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Self(raw, ty.oid()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Column `idx` of `row` decoded by diesel's `FromSql` for `ST`.
pub(crate) fn get<ST, T: FromSql<ST, Pg>>(
    row: &tokio_postgres::Row,
    idx: usize,
) -> deserialize::Result<T> {
    let value: Option<RawValue<'_>> = row.try_get(idx)?;
    match value {
        Some(RawValue(bytes, oid)) => {
            let oid = NonZeroU32::new(oid).ok_or("a column without a type")?;
            T::from_nullable_sql(Some(PgValue::new(bytes, &oid)))
        }
        None => T::from_nullable_sql(None),
    }
}

/// SQLSTATE classes and codes the crate treats specially.
mod sqlstate {
    pub(super) const CONNECTION_EXCEPTION_CLASS: &str = "08";
    pub(super) const ADMIN_SHUTDOWN: &str = "57P01";
    pub(super) const CRASH_SHUTDOWN: &str = "57P02";
    pub(super) const CANNOT_CONNECT_NOW: &str = "57P03";
    pub(super) const QUERY_CANCELED: &str = "57014";
    pub(super) const LOCK_NOT_AVAILABLE: &str = "55P03";
    pub(super) const READ_ONLY_SQL_TRANSACTION: &str = "25006";
    pub(super) const UNIQUE_VIOLATION: &str = "23505";
    pub(super) const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub(super) const NOT_NULL_VIOLATION: &str = "23502";
    pub(super) const CHECK_VIOLATION: &str = "23514";
    pub(super) const SERIALIZATION_FAILURE: &str = "40001";
}

/// A tokio-postgres error as the crate's, classified by SQLSTATE (not by
/// message, so a server with localised messages classifies alike). Like
/// [`DatabaseError`] everywhere, PostgreSQL's `DETAIL` (which can hold key
/// values) is never kept.
pub(crate) fn error(err: &tokio_postgres::Error) -> Error {
    let Some(db) = err.as_db_error() else {
        // Closed sockets, I/O errors, protocol errors: the connection is
        // not to be trusted any more. tokio-postgres keeps the cause (such
        // as "Connection refused") out of its own message.
        return Error::unavailable(match StdError::source(err) {
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        });
    };
    from_db(
        db.code().code(),
        db.message().to_owned(),
        db.table().map(str::to_owned),
        db.column().map(str::to_owned),
        db.constraint().map(str::to_owned),
    )
}

/// What PostgreSQL (or the pooler) reported, by SQLSTATE.
fn from_db(
    code: &str,
    message: String,
    table: Option<String>,
    column: Option<String>,
    constraint: Option<String>,
) -> Error {
    let kind = match code {
        c if c.starts_with(sqlstate::CONNECTION_EXCEPTION_CLASS)
            || matches!(
                c,
                sqlstate::ADMIN_SHUTDOWN | sqlstate::CRASH_SHUTDOWN | sqlstate::CANNOT_CONNECT_NOW
            ) =>
        {
            return Error::Unavailable { message };
        }
        sqlstate::QUERY_CANCELED | sqlstate::LOCK_NOT_AVAILABLE => {
            return Error::Timeout { message };
        }
        sqlstate::READ_ONLY_SQL_TRANSACTION => return Error::ReadOnly { message },
        sqlstate::UNIQUE_VIOLATION => DatabaseErrorKind::UniqueViolation,
        sqlstate::FOREIGN_KEY_VIOLATION => DatabaseErrorKind::ForeignKeyViolation,
        sqlstate::NOT_NULL_VIOLATION => DatabaseErrorKind::NotNullViolation,
        sqlstate::CHECK_VIOLATION => DatabaseErrorKind::CheckViolation,
        sqlstate::SERIALIZATION_FAILURE => DatabaseErrorKind::SerializationFailure,
        _ => DatabaseErrorKind::Other,
    };
    Error::Database(DatabaseError::new(kind, message, table, column, constraint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(code: &str) -> Error {
        from_db(code, "m".into(), Some("t".into()), None, Some("c".into()))
    }

    #[test]
    fn sqlstates_map_to_what_callers_act_on() {
        // PgBouncer reports its own failures as 08P01.
        for code in ["08P01", "08006", "08003", "57P01", "57P02", "57P03"] {
            assert!(
                matches!(classify(code), Error::Unavailable { .. }),
                "{code}"
            );
        }
        for code in ["57014", "55P03"] {
            assert!(matches!(classify(code), Error::Timeout { .. }), "{code}");
        }
        assert!(matches!(classify("25006"), Error::ReadOnly { .. }));
        let kinds = [
            ("23505", DatabaseErrorKind::UniqueViolation),
            ("23503", DatabaseErrorKind::ForeignKeyViolation),
            ("23502", DatabaseErrorKind::NotNullViolation),
            ("23514", DatabaseErrorKind::CheckViolation),
            ("40001", DatabaseErrorKind::SerializationFailure),
            ("42P01", DatabaseErrorKind::Other),
        ];
        for (code, kind) in kinds {
            match classify(code) {
                Error::Database(db) => {
                    assert_eq!(db.kind(), kind, "{code}");
                    assert_eq!((db.table(), db.constraint()), (Some("t"), Some("c")));
                }
                other => panic!("{code}: {other:?}"),
            }
        }
    }
}
