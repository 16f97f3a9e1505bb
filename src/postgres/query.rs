//! Statements with table names fixed per adapter, as diesel query fragments.
//!
//! Diesel never caches `sql_query(..)` statements, and diesel-async prepares
//! every uncached statement with a round trip of its own. A [`Stmt`] is a
//! [`QueryFragment`] whose SQL is fixed per adapter and that stays safe to
//! cache, so diesel-async keys its prepared-statement cache on the SQL text
//! and each operation costs one round trip after the first.
//!
//! SQL text is assembled only by [`SqlBuilder`]: identifiers go through
//! [`Ident::write_quoted`], values are always bind parameters.

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::deserialize;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use diesel_async::{
    AnsiTransactionManager, AsyncConnectionCore, AsyncPgConnection, TransactionManager,
};
use futures_util::TryStreamExt as _;

use super::names::{Ident, TableName};
use crate::error::{Error, Result};

/// SQL split at its bind parameters: `n` binds sit between `n + 1` parts.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    parts: Box<[Box<str>]>,
}

/// Builds a [`Sql`]: text, quoted identifiers and bind markers.
#[derive(Debug, Default)]
pub(crate) struct SqlBuilder {
    parts: Vec<Box<str>>,
    current: String,
}

impl SqlBuilder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends SQL text written in this crate (never user input).
    pub(crate) fn sql(mut self, text: &str) -> Self {
        self.current.push_str(text);
        self
    }

    pub(crate) fn table(mut self, name: &TableName) -> Self {
        name.write_sql(&mut self.current);
        self
    }

    pub(crate) fn ident(mut self, ident: &Ident) -> Self {
        ident.write_quoted(&mut self.current);
        self
    }

    /// Marks a bind parameter (`$n`).
    pub(crate) fn bind(mut self) -> Self {
        self.parts.push(std::mem::take(&mut self.current).into());
        self
    }

    pub(crate) fn build(mut self) -> Sql {
        self.parts.push(self.current.into());
        Sql {
            parts: self.parts.into(),
        }
    }
}

/// One bind value with its SQL type.
pub(crate) struct Bind<'a, ST, V: ?Sized>(pub(crate) &'a V, PhantomData<ST>);

impl<'a, ST, V: ?Sized> Bind<'a, ST, V> {
    pub(crate) fn new(value: &'a V) -> Self {
        Self(value, PhantomData)
    }
}

/// A list of binds (a tuple of [`Bind`]s) walked between the SQL parts.
pub(crate) trait Binds {
    const COUNT: usize;
    fn walk<'b>(&'b self, parts: &'b [Box<str>], out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

pub(crate) trait PushBind {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

impl<ST, V> PushBind for Bind<'_, ST, V>
where
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg> + ?Sized,
{
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, V>(self.0)
    }
}

/// A user id bound with its own SQL type.
pub(crate) struct UserIdBind<'a, U>(pub(crate) &'a U);

impl<U: super::UserId> PushBind for UserIdBind<'_, U> {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.push_bind(out)
    }
}

macro_rules! impl_binds {
    ($count:expr; $($T:ident $i:tt),*) => {
        impl<$($T: PushBind),*> Binds for ($($T,)*) {
            const COUNT: usize = $count;
            fn walk<'b>(&'b self, parts: &'b [Box<str>], out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                $(
                    out.push_sql(&parts[$i]);
                    self.$i.push(out)?;
                )*
                out.push_sql(&parts[$count]);
                Ok(())
            }
        }
    };
}

impl_binds!(1; A 0);
impl_binds!(2; A 0, B 1);
impl_binds!(3; A 0, B 1, C 2);
impl_binds!(4; A 0, B 1, C 2, D 3);

/// A statement ready to run: fixed SQL plus its binds; `ST` is the SQL type
/// of the rows it returns (`()` for statements run with `execute`).
pub(crate) struct Stmt<'a, B, ST = ()> {
    sql: &'a Sql,
    binds: B,
    _rows: PhantomData<fn() -> ST>,
}

impl<'a, B: Binds> Stmt<'a, B, ()> {
    /// A statement run for its row count.
    pub(crate) fn exec(sql: &'a Sql, binds: B) -> Self {
        Self::new(sql, binds)
    }
}

impl<'a, B: Binds, ST> Stmt<'a, B, ST> {
    pub(crate) fn new(sql: &'a Sql, binds: B) -> Self {
        debug_assert_eq!(
            sql.parts.len(),
            B::COUNT + 1,
            "bind count does not match the SQL"
        );
        Self {
            sql,
            binds,
            _rows: PhantomData,
        }
    }
}

impl<B: Binds, ST> QueryFragment<Pg> for Stmt<'_, B, ST> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Deliberately no `out.unsafe_to_cache_prepared()`: the text is fixed
        // per adapter, so the statement cache stays bounded.
        self.binds.walk(&self.sql.parts, &mut out)
    }
}

impl<B, ST> QueryId for Stmt<'_, B, ST> {
    type QueryId = ();
    // The SQL differs per adapter, so the cache must key on the SQL text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<B: Binds, ST> Query for Stmt<'_, B, ST> {
    type SqlType = ST;
}

/// Turns a query's result into the crate's. When the error says the
/// connection is gone, the connection is also marked broken, so that its
/// pool drops it instead of lending it out again: the server's goodbye
/// (`terminating connection ...`) can arrive before the socket reports the
/// close, and until then the pool's own check would pass it as healthy.
pub(crate) fn checked<T>(conn: &mut AsyncPgConnection, result: QueryResult<T>) -> Result<T> {
    result.map_err(|e| error_on(conn, e))
}

/// [`checked`] for an error alone.
pub(crate) fn error_on(conn: &mut AsyncPgConnection, error: diesel::result::Error) -> Error {
    let error = Error::from(error);
    if matches!(error, Error::Unavailable { .. }) {
        AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
    }
    error
}

/// A row as diesel-async returns it.
pub(crate) type PgRow = <AsyncPgConnection as AsyncConnectionCore>::Row<'static, 'static>;

/// Runs a query and decodes each row with `decode`, reading columns by
/// index with their own `FromSql` (so generic column types need no more
/// than `FromSql`).
pub(crate) async fn load_rows<'q, B, ST, T>(
    conn: &mut AsyncPgConnection,
    stmt: Stmt<'q, B, ST>,
    limit: usize,
    decode: impl Fn(&PgRow) -> deserialize::Result<T>,
) -> QueryResult<Vec<T>>
where
    B: Binds + Send + 'q,
    ST: 'q,
{
    let mut rows = AsyncConnectionCore::load(conn, stmt).await?;
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await? {
        if out.len() < limit {
            out.push(decode(&row).map_err(diesel::result::Error::DeserializationError)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::{Integer, Text};

    #[test]
    fn renders_binds_in_order() {
        let table = TableName::parse(r#"a"b.c d"#).unwrap();
        let sql = SqlBuilder::new()
            .sql("SELECT x FROM ")
            .table(&table)
            .sql(" WHERE id = ")
            .bind()
            .sql(" AND n = ")
            .bind()
            .build();
        let id = "v".to_owned();
        let n = 7;
        let stmt: Stmt<'_, _, Text> = Stmt::new(
            &sql,
            (
                Bind::<Text, _>::new(id.as_str()),
                Bind::<Integer, i32>::new(&n),
            ),
        );
        let rendered = diesel::debug_query::<Pg, _>(&stmt).to_string();
        assert_eq!(
            rendered,
            r#"SELECT x FROM "a""b"."c d" WHERE id = $1 AND n = $2 -- binds: ["v", 7]"#
        );
        assert!(stmt.is_safe_to_cache_prepared(&Pg).unwrap());
    }
}
