//! The statement runner, a leaf of the crate: SQL assembled by
//! [`SqlBuilder`], a [`Statement`] (its [`Sql`] and [`Param`]s) run on a
//! lent connection ([`Conn`]), and its [`Row`]s decoded. The one place
//! statements are executed. A statement's SQL is fixed per adapter and
//! safe to cache, so diesel-async keeps it prepared (keyed by its text); a
//! pooler connection (feature `pooler`, in `pooler/`) runs it unnamed.
//!
//! Every operation gets one client-side deadline from its source
//! ([`ConnectionSource::operation_timeout`](crate::ConnectionSource::operation_timeout)),
//! shared by all its statements: past it the call fails with
//! [`Error::Timeout`], a cancel request is sent, and the connection is
//! retired. The server's `statement_timeout` cannot act while the server
//! is frozen or unreachable; this deadline can.

use std::pin::{Pin, pin};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{self, Untyped};
use diesel_async::{
    AnsiTransactionManager, AsyncConnectionCore, AsyncPgConnection, TransactionManager,
};
use futures_util::TryStreamExt as _;
use serde_json::Value;

pub(crate) use self::pooler::PoolerConnection;
pub(crate) use self::row::Row;
pub(crate) use self::sql::{Sql, SqlBuilder};
use crate::error::{Error, ErrorClass, classify_diesel};
use crate::metrics;

/// Statements run unnamed on a tokio-postgres client, for poolers in
/// transaction mode.
#[cfg(feature = "pooler")]
pub(crate) mod pooler;
/// Without the `pooler` feature: a pooler connection that cannot exist, so
/// the runner's code is the same with and without it.
#[cfg(not(feature = "pooler"))]
#[path = "no_pooler.rs"]
pub(crate) mod pooler;
mod row;
mod sql;

/// A statement's outcome: its value, or what its failure means.
pub(crate) type RunResult<T> = Result<T, ErrorClass>;

/// A statement ready to run: its SQL and its parameters.
pub(crate) struct Statement<'a> {
    sql: &'a Sql,
    params: &'a [Param<'a>],
}

impl<'a> Statement<'a> {
    pub(crate) fn new(sql: &'a Sql, params: &'a [Param<'a>]) -> Self {
        debug_assert_eq!(
            sql.parts().len(),
            params.len() + 1,
            "parameters for {}",
            sql.text()
        );
        Self { sql, params }
    }

    /// The whole statement, with `$1`.. markers.
    #[cfg_attr(not(feature = "pooler"), allow(dead_code))]
    pub(crate) fn text(&self) -> &str {
        self.sql.text()
    }
}

impl QueryFragment<Pg> for Statement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Deliberately no `out.unsafe_to_cache_prepared()`: the text is fixed
        // per adapter, so the statement cache stays bounded.
        let parts = self.sql.parts();
        for (part, param) in parts.iter().zip(self.params) {
            out.push_sql(part);
            param.push(&mut out)?;
        }
        out.push_sql(&parts[self.params.len()]);
        Ok(())
    }
}

/// Keyed in the statement cache by the SQL text, which differs per adapter.
impl QueryId for Statement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Statement<'_> {
    type SqlType = Untyped;
}

/// One parameter of a statement, with its SQL type.
#[doc(hidden)]
#[derive(Clone)]
#[allow(unreachable_pub, missing_debug_implementations)] // Named by the sealed `UserId` only.
pub enum Param<'a> {
    Text(&'a str),
    Integer(i32),
    BigInt(i64),
    #[cfg(feature = "uuid")]
    Uuid(uuid::Uuid),
    Timestamptz(DateTime<Utc>),
    Jsonb(Value),
}

impl Param<'_> {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        match self {
            Self::Text(v) => out.push_bind_param::<sql_types::Text, str>(v),
            Self::Integer(v) => out.push_bind_param::<sql_types::Integer, i32>(v),
            Self::BigInt(v) => out.push_bind_param::<sql_types::BigInt, i64>(v),
            #[cfg(feature = "uuid")]
            Self::Uuid(v) => out.push_bind_param::<sql_types::Uuid, uuid::Uuid>(v),
            Self::Timestamptz(v) => out.push_bind_param::<sql_types::Timestamptz, _>(v),
            Self::Jsonb(v) => out.push_bind_param::<sql_types::Jsonb, Value>(v),
        }
    }
}

/// A connection lent for one operation, with the operation's deadline.
#[doc(hidden)]
#[allow(unreachable_pub, missing_debug_implementations)] // Named by a sealed trait only.
pub struct Conn<'c> {
    kind: Kind<'c>,
    deadline: Option<(Instant, Duration)>,
}

enum Kind<'c> {
    Diesel(&'c mut AsyncPgConnection),
    #[cfg_attr(not(feature = "pooler"), allow(dead_code))]
    Pooler(&'c mut PoolerConnection),
}

impl<'c> Conn<'c> {
    pub(crate) fn diesel(conn: &'c mut AsyncPgConnection) -> Self {
        Self {
            kind: Kind::Diesel(conn),
            deadline: None,
        }
    }

    #[cfg_attr(not(feature = "pooler"), allow(dead_code))]
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

    /// Runs a query for its rows.
    pub(crate) async fn query(&mut self, stmt: Statement<'_>) -> RunResult<Vec<Row>> {
        let deadline = self.deadline;
        let started = metrics::started();
        let result = match &mut self.kind {
            Kind::Diesel(conn) => {
                let rows = async {
                    let rows = AsyncConnectionCore::load(&mut **conn, stmt).await?;
                    rows.map_ok(Row::Diesel).try_collect().await
                };
                let rows = pin!(async { rows.await.map_err(classify_diesel) });
                within(deadline, rows).await
            }
            // Boxed here and below: inline, the pooler's state would
            // enlarge every operation's future, on diesel connections too.
            Kind::Pooler(conn) => {
                let mut rows = Box::pin(conn.run(&stmt));
                let rows = within(deadline, rows.as_mut()).await;
                rows.map(|r| r.map(|(rows, _)| rows.into_iter().map(Row::Pooler).collect()))
            }
        };
        metrics::statement_done(started);
        self.settle(result)
    }

    /// Runs a statement for its row count.
    pub(crate) async fn execute(&mut self, stmt: Statement<'_>) -> RunResult<u64> {
        let deadline = self.deadline;
        let started = metrics::started();
        let result = match &mut self.kind {
            Kind::Diesel(conn) => {
                let count = AsyncConnectionCore::execute_returning_count(&mut **conn, stmt);
                let count = pin!(async { count.await.map_err(classify_diesel) });
                within(deadline, count).await.map(|r| r.map(|n| n as u64))
            }
            Kind::Pooler(conn) => {
                let mut run = Box::pin(conn.run(&stmt));
                within(deadline, run.as_mut())
                    .await
                    .map(|r| r.map(|(_, n)| n))
            }
        };
        metrics::statement_done(started);
        self.settle(result)
    }

    /// Retires the connection where the outcome says it cannot be trusted;
    /// on a passed deadline also sends a cancel request for the statement.
    fn settle<T>(&mut self, result: Result<RunResult<T>, Duration>) -> RunResult<T> {
        let cancel = result.is_err();
        let result = result.unwrap_or_else(|limit| {
            let error = deadline_passed(limit);
            Err(ErrorClass {
                error,
                retire: true,
                stale_columns: false,
            })
        });
        if let Err(class) = &result
            && class.retire
        {
            match &mut self.kind {
                Kind::Diesel(conn) => retire(conn, cancel),
                Kind::Pooler(conn) => conn.retire(cancel),
            }
        }
        result
    }
}

/// Marks a diesel connection never to be lent again (a connection whose
/// transaction state is broken is dropped by its pool), and with `cancel`
/// sends a cancel request for its statement from a task of its own.
fn retire(conn: &mut AsyncPgConnection, cancel: bool) {
    if cancel {
        let token = conn.cancel_token();
        tokio::spawn(async move {
            let cancel = token.cancel_query(tokio_postgres::NoTls);
            let _ = tokio::time::timeout(CANCEL_WAIT, cancel).await;
        });
    }
    AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
}

/// The error of an operation that passed its deadline of `limit`.
fn deadline_passed(limit: Duration) -> Error {
    let message = format!(
        "no answer from the database within the pool's deadline ({} ms); the statement was cancelled and the connection closed",
        limit.as_millis()
    );
    Error::Timeout {
        message,
        source: None,
    }
}

/// Names the future of an application's query closure, so that
/// [`ConnectionSource::run`](crate::ConnectionSource::run) can require it
/// to be `Send` (diesel-async's `transaction` does the same). Implemented
/// for every `async` closure; not meant to be implemented or named.
#[doc(hidden)]
pub trait QueryFn<C, R>: AsyncFnOnce(C) -> R + FnOnce(C) -> <Self as QueryFn<C, R>>::Fut {
    /// The closure's future.
    type Fut: Future<Output = R>;
}

impl<F, C, Fut, R> QueryFn<C, R> for F
where
    F: AsyncFnOnce(C) -> R + FnOnce(C) -> Fut,
    Fut: Future<Output = R>,
{
    type Fut = Fut;
}

/// Runs an application's queries on `conn` within `limit`: past it the
/// closure's future is dropped, a cancel request is sent and the connection
/// retired, as for the crate's own statements.
pub(crate) async fn run_bounded<T, E, F>(
    conn: &mut AsyncPgConnection,
    limit: Option<Duration>,
    query: F,
) -> Result<T, E>
where
    for<'r> F: QueryFn<&'r mut AsyncPgConnection, Result<T, E>>,
    E: From<Error>,
{
    let deadline = limit.map(|limit| (Instant::now() + limit, limit));
    let outcome = {
        let fut = pin!(query(&mut *conn));
        within(deadline, fut).await
    };
    outcome.map_err(|limit| {
        retire(conn, true);
        E::from(deadline_passed(limit))
    })?
}

/// How long a cancel request may take before it is abandoned. It is sent
/// from a task of its own, so the call that timed out does not wait for it.
pub(crate) const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// `fut`'s output, or `Err(limit)` once the deadline has passed.
async fn within<T>(
    deadline: Option<(Instant, Duration)>,
    fut: Pin<&mut impl Future<Output = T>>,
) -> Result<T, Duration> {
    let Some((at, limit)) = deadline else {
        return Ok(fut.await);
    };
    // The timeout wraps the pinned reference, not the operation's future,
    // which stays where the caller pinned it.
    tokio::time::timeout_at(at.into(), fut)
        .await
        .map_err(|_| limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_params_in_order_and_stays_cacheable() {
        let sql = SqlBuilder::new()
            .template("SELECT x FROM t WHERE id = $1 AND n = $2")
            .build();
        let params = [Param::Text("v"), Param::Integer(7)];
        let stmt = Statement::new(&sql, &params);
        assert_eq!(
            diesel::debug_query::<Pg, _>(&stmt).to_string(),
            r#"SELECT x FROM t WHERE id = $1 AND n = $2 -- binds: ["v", 7]"#
        );
        assert!(stmt.is_safe_to_cache_prepared(&Pg).unwrap());
        assert_eq!(<Statement<'_> as QueryId>::query_id(), None);
    }
}
