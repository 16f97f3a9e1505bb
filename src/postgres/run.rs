//! Running a statement on a lent connection and decoding its rows: the one
//! place the adapter's statements are executed.
//!
//! A [`Statement`] is a [`QueryFragment`] whose SQL is fixed per adapter
//! and safe to cache, so diesel-async keeps it in its prepared-statement
//! cache (keyed by the text) and each operation costs one round trip after
//! the first. A pooler connection (feature `pooler`) runs the same
//! statement unnamed instead.
//!
//! Every operation gets one client-side deadline from its source
//! ([`ConnectionSource::operation_timeout`](crate::ConnectionSource::operation_timeout)),
//! shared by all its statements: when it passes, the call fails with
//! [`Error::Timeout`], a cancel request is sent, and the connection is
//! retired (never lent again). The server's own `statement_timeout` cannot
//! act while the server is frozen or unreachable; this deadline can.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use diesel::QueryResult;
use diesel::deserialize::{self, FromSql};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel_async::{
    AnsiTransactionManager, AsyncConnectionCore, AsyncPgConnection, TransactionManager,
};
use futures_util::TryStreamExt as _;

use super::statements::Sql;
use super::user_id::UserId;
use crate::error::{Error, ErrorClass, classify_diesel};
#[cfg(feature = "pooler")]
use crate::pooler::PoolerConnection;

/// A statement's outcome: its value, or what its failure means.
pub(crate) type RunResult<T> = Result<T, ErrorClass>;

/// A statement ready to run: its SQL and its binds.
pub(crate) struct Statement<'a, B> {
    sql: &'a Sql,
    binds: B,
}

impl<'a, B: Binds> Statement<'a, B> {
    pub(crate) fn new(sql: &'a Sql, binds: B) -> Self {
        Self { sql, binds }
    }

    /// The whole statement, with `$1`.. markers.
    #[cfg_attr(not(feature = "pooler"), allow(dead_code))]
    pub(crate) fn text(&self) -> &str {
        self.sql.text()
    }
}

impl<B: Binds> QueryFragment<Pg> for Statement<'_, B> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Deliberately no `out.unsafe_to_cache_prepared()`: the text is fixed
        // per adapter, so the statement cache stays bounded.
        let mut parts = self.sql.parts().iter();
        self.binds.walk(&mut parts, &mut out)?;
        for part in parts {
            out.push_sql(part);
        }
        Ok(())
    }
}

/// Keyed in the statement cache by the SQL text, which differs per adapter.
impl<B> QueryId for Statement<'_, B> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<B> Query for Statement<'_, B> {
    type SqlType = Untyped;
}

/// Bind parameters, each written after its part of the SQL.
pub(crate) trait Binds: Send + Sync {
    fn walk<'b>(
        &'b self,
        parts: &mut std::slice::Iter<'b, Box<str>>,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()>;
}

/// One bind value with its SQL type.
pub(crate) struct Bind<'a, ST, V: ?Sized>(&'a V, PhantomData<ST>);

impl<ST, V: ?Sized> Clone for Bind<'_, ST, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<ST, V: ?Sized> Copy for Bind<'_, ST, V> {}

impl<'a, ST, V: ?Sized> Bind<'a, ST, V> {
    pub(crate) fn new(value: &'a V) -> Self {
        Self(value, PhantomData)
    }
}

/// Writes the next part of the SQL, if any.
pub(crate) fn next_part<'b>(
    parts: &mut std::slice::Iter<'b, Box<str>>,
    out: &mut AstPass<'_, 'b, Pg>,
) {
    if let Some(part) = parts.next() {
        out.push_sql(part);
    }
}

impl<ST, V> Binds for Bind<'_, ST, V>
where
    Pg: HasSqlType<ST>,
    ST: Send + Sync,
    V: ToSql<ST, Pg> + Send + Sync + ?Sized,
{
    fn walk<'b>(
        &'b self,
        parts: &mut std::slice::Iter<'b, Box<str>>,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        next_part(parts, out);
        out.push_bind_param::<ST, V>(self.0)
    }
}

/// A user id, bound with its own SQL type.
pub(crate) struct UserIdBind<'a, U>(pub(crate) &'a U);

impl<U> Clone for UserIdBind<'_, U> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<U> Copy for UserIdBind<'_, U> {}

impl<U: UserId> Binds for UserIdBind<'_, U> {
    fn walk<'b>(
        &'b self,
        parts: &mut std::slice::Iter<'b, Box<str>>,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        next_part(parts, out);
        self.0.push_bind(out)
    }
}

macro_rules! tuple_binds {
    ($($T:ident $i:tt),+) => {
        impl<$($T: Binds),+> Binds for ($($T,)+) {
            fn walk<'b>(
                &'b self,
                parts: &mut std::slice::Iter<'b, Box<str>>,
                out: &mut AstPass<'_, 'b, Pg>,
            ) -> QueryResult<()> {
                $(self.$i.walk(parts, out)?;)+
                Ok(())
            }
        }
    };
}

tuple_binds!(A 0);
tuple_binds!(A 0, B 1);
tuple_binds!(A 0, B 1, C 2);
tuple_binds!(A 0, B 1, C 2, D 3);

/// A connection lent for one operation, with the operation's deadline.
#[doc(hidden)]
#[allow(unreachable_pub, missing_debug_implementations)] // Named by a sealed trait only.
pub struct Conn<'c> {
    kind: Kind<'c>,
    deadline: Option<(Instant, Duration)>,
}

enum Kind<'c> {
    Diesel(&'c mut AsyncPgConnection),
    #[cfg(feature = "pooler")]
    Pooler(&'c mut PoolerConnection),
}

impl<'c> Conn<'c> {
    pub(crate) fn diesel(conn: &'c mut AsyncPgConnection) -> Self {
        Self {
            kind: Kind::Diesel(conn),
            deadline: None,
        }
    }

    #[cfg(feature = "pooler")]
    pub(crate) fn pooler(conn: &'c mut PoolerConnection) -> Self {
        Self {
            kind: Kind::Pooler(conn),
            deadline: None,
        }
    }

    /// Every statement run from now on must finish within `limit` of now.
    pub(crate) fn within(mut self, limit: Option<Duration>) -> Self {
        self.deadline = limit.map(|limit| (Instant::now() + limit, limit));
        self
    }

    /// Runs a query and decodes each row with `decode`.
    pub(crate) async fn load<B: Binds, T: Send>(
        &mut self,
        stmt: Statement<'_, B>,
        mut decode: impl FnMut(&Row<'_>) -> deserialize::Result<T> + Send,
    ) -> RunResult<Vec<T>> {
        let deadline = self.deadline;
        let result = match &mut self.kind {
            Kind::Diesel(conn) => {
                let rows = async {
                    let mut rows = AsyncConnectionCore::load(&mut **conn, stmt).await?;
                    let mut out = Vec::new();
                    while let Some(row) = rows.try_next().await? {
                        let value = decode(&Row::Diesel(&row))
                            .map_err(diesel::result::Error::DeserializationError)?;
                        out.push(value);
                    }
                    Ok(out)
                };
                bounded(deadline, async { rows.await.map_err(classify_diesel) }).await
            }
            // Boxed here and below: inline, the pooler's state would
            // enlarge every operation's future, on diesel connections too.
            #[cfg(feature = "pooler")]
            Kind::Pooler(conn) => {
                let mut out = Vec::new();
                let rows = Box::pin(conn.run(&stmt, |row| {
                    out.push(decode(&Row::Pooler(row))?);
                    Ok(())
                }));
                let done = bounded(deadline, rows).await.map(|r| r.map(drop));
                done.map(|r| r.map(|()| out))
            }
        };
        self.settle(result)
    }

    /// Runs a statement for its row count.
    pub(crate) async fn execute<B: Binds>(&mut self, stmt: Statement<'_, B>) -> RunResult<u64> {
        let deadline = self.deadline;
        let result = match &mut self.kind {
            Kind::Diesel(conn) => {
                let count = AsyncConnectionCore::execute_returning_count(&mut **conn, stmt);
                let count = async { count.await.map_err(classify_diesel) };
                bounded(deadline, count).await.map(|r| r.map(|n| n as u64))
            }
            #[cfg(feature = "pooler")]
            Kind::Pooler(conn) => bounded(deadline, Box::pin(conn.run(&stmt, |_| Ok(())))).await,
        };
        self.settle(result)
    }

    /// Retires the connection where the outcome says it cannot be trusted;
    /// on a passed deadline also sends a cancel request for the statement.
    fn settle<T>(&mut self, result: Result<RunResult<T>, Duration>) -> RunResult<T> {
        let (result, cancel) = match result {
            Ok(result) => (result, false),
            Err(limit) => {
                let message = format!(
                    "no answer from the database within the pool's deadline ({} ms); the statement was cancelled and the connection closed",
                    limit.as_millis()
                );
                let error = Error::Timeout {
                    message,
                    source: None,
                };
                let class = ErrorClass {
                    error,
                    retire: true,
                    stale_columns: false,
                };
                (Err(class), true)
            }
        };
        if let Err(class) = &result
            && class.retire
        {
            match &mut self.kind {
                Kind::Diesel(conn) => {
                    if cancel {
                        let token = conn.cancel_token();
                        tokio::spawn(async move {
                            let cancel = token.cancel_query(tokio_postgres::NoTls);
                            let _ = tokio::time::timeout(CANCEL_WAIT, cancel).await;
                        });
                    }
                    // A connection whose transaction state is broken is
                    // dropped by its pool instead of being lent again.
                    AnsiTransactionManager::transaction_manager_status_mut(&mut **conn)
                        .set_in_error();
                }
                #[cfg(feature = "pooler")]
                Kind::Pooler(conn) => conn.retire(cancel),
            }
        }
        result
    }
}

/// How long a cancel request may take before it is abandoned. It is sent
/// from a task of its own, so the call that timed out does not wait for it.
pub(crate) const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// `fut`'s output, or `Err(limit)` once the deadline has passed.
async fn bounded<T>(
    deadline: Option<(Instant, Duration)>,
    fut: impl Future<Output = T>,
) -> Result<T, Duration> {
    match deadline {
        None => Ok(fut.await),
        Some((at, limit)) => tokio::time::timeout_at(at.into(), fut)
            .await
            .map_err(|_| limit),
    }
}

/// A row from either kind of connection, read by column index with
/// diesel's `FromSql`, so both decode alike.
pub(crate) enum Row<'r> {
    Diesel(&'r PgRow),
    #[cfg(feature = "pooler")]
    Pooler(&'r tokio_postgres::Row),
}

/// A row as diesel-async returns it.
type PgRow = <AsyncPgConnection as AsyncConnectionCore>::Row<'static, 'static>;

impl Row<'_> {
    /// Column `idx` as `T`, read as SQL type `ST`.
    pub(crate) fn get<ST, T: FromSql<ST, Pg>>(&self, idx: usize) -> deserialize::Result<T> {
        match self {
            Row::Diesel(row) => diesel::row::Row::get_value::<ST, T, usize>(*row, idx),
            #[cfg(feature = "pooler")]
            Row::Pooler(row) => crate::pooler::get(row, idx),
        }
    }

    /// Column `idx` as its type's OID and binary value (`None` for NULL),
    /// handed to `f` without copying.
    pub(crate) fn with_value<R>(
        &self,
        idx: usize,
        f: impl FnOnce(Option<(u32, &[u8])>) -> deserialize::Result<R>,
    ) -> deserialize::Result<R> {
        match self {
            Row::Diesel(row) => {
                let field = diesel::row::Row::get(*row, idx).ok_or("no such column")?;
                let value = diesel::row::Field::value(&field);
                f(value.as_ref().map(|v| (v.get_oid().get(), v.as_bytes())))
            }
            #[cfg(feature = "pooler")]
            Row::Pooler(row) => f(crate::pooler::value(row, idx)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::statements::SqlBuilder;
    use diesel::sql_types::{Integer, Text};

    #[test]
    fn renders_binds_in_order_and_stays_cacheable() {
        let sql = SqlBuilder::new()
            .template("SELECT x FROM t WHERE id = $1 AND n = $2")
            .build();
        let n = 7;
        let stmt = Statement::new(
            &sql,
            (Bind::<Text, str>::new("v"), Bind::<Integer, i32>::new(&n)),
        );
        assert_eq!(
            diesel::debug_query::<Pg, _>(&stmt).to_string(),
            r#"SELECT x FROM t WHERE id = $1 AND n = $2 -- binds: ["v", 7]"#
        );
        assert!(stmt.is_safe_to_cache_prepared(&Pg).unwrap());
        assert_eq!(<Statement<'_, ()> as QueryId>::query_id(), None);
    }
}
