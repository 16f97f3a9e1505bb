//! How an adapter operation runs: a connection lent by the source under
//! its operation deadline, the statement, and for the reads that name the
//! attribute columns, the columns first (and the one retry when they
//! changed) and a replica when the source lends one.

use std::sync::Arc;

use super::columns::{Known, Read};
use super::{ConnectionSource, PostgresAdapter, SourceConnection as _, UserId};
use crate::error::{Error, Result};
use crate::exec::{Conn, Param, Row, Sql, Statement};

impl<S, U, SA, UA> PostgresAdapter<S, U, SA, UA>
where
    S: ConnectionSource,
    U: UserId,
{
    /// Runs one statement for its row count, on a connection of its own.
    pub(super) async fn execute(&self, sql: &Sql, params: &[Param<'_>]) -> Result<u64> {
        let mut lent = self.source.connection().await?;
        let mut conn = lent.conn().within(self.source.operation_timeout());
        Ok(conn.execute(Statement::new(sql, params)).await?)
    }

    /// Runs one query on a connection of its own, for its rows.
    pub(super) async fn query(&self, sql: &Sql, params: &[Param<'_>]) -> Result<Vec<Row>> {
        let mut lent = self.source.connection().await?;
        let mut conn = lent.conn().within(self.source.operation_timeout());
        Ok(conn.query(Statement::new(sql, params)).await?)
    }

    /// A read that decides validity, and the columns its rows have: on a
    /// replica first, if the source lends one, and asked again on the
    /// primary when the replica finds nothing (writes not replayed yet?)
    /// or fails but by a timeout (then the time is spent).
    pub(super) async fn read(
        &self,
        read: Read,
        params: &[Param<'_>],
    ) -> Result<(Vec<Row>, Arc<Known>)> {
        if let Some(mut lent) = self.source.read_connection().await {
            let mut conn = lent.conn().within(self.source.operation_timeout());
            match self.read_on(&mut conn, read, params).await {
                Ok((rows, _)) if rows.is_empty() => {}
                Err(error) if !matches!(error, Error::Timeout { .. }) => {}
                found => return found,
            }
        }
        let mut lent = self.source.connection().await?;
        let mut conn = lent.conn().within(self.source.operation_timeout());
        self.read_on(&mut conn, read, params).await
    }

    /// Runs `read` on a lent connection: the columns first (looked up on
    /// first use), and once more if they changed.
    async fn read_on(
        &self,
        conn: &mut Conn<'_>,
        read: Read,
        params: &[Param<'_>],
    ) -> Result<(Vec<Row>, Arc<Known>)> {
        let (statements, names) = (&self.statements, &self.names);
        let known = self.columns.get(conn, statements, names).await?;
        let failure = match conn.query(Statement::new(known.read(read), params)).await {
            Ok(rows) => return Ok((rows, known)),
            Err(failure) => failure,
        };
        // Boxed: a rare path whose state would otherwise enlarge every read's future.
        Box::pin(async move {
            let known = self.columns.again(conn, statements, names, &known, failure);
            let known = known.await?;
            let rows = conn.query(Statement::new(known.read(read), params)).await?;
            Ok((rows, known))
        })
        .await
    }
}
