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
//!
//! When the SQL is a compile-time constant (the adapter uses the default
//! table names) the statement is keyed in that cache by a type instead: one
//! marker type per statement kind ([`Kind`]) plus the SQL types of its binds.
//! Diesel then skips building the SQL a second time and hashing it. Custom
//! table names keep the SQL-text key, so two adapters on one connection
//! never share an entry unless their SQL is the same.

use std::marker::PhantomData;
use std::sync::Mutex;

use diesel::QueryResult;
use diesel::deserialize;
use diesel::deserialize::FromSql;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use diesel_async::{
    AnsiTransactionManager, AsyncConnectionCore, AsyncPgConnection, TransactionManager,
};
use futures_util::TryStreamExt as _;

use super::names::{Ident, TableName};
use super::unnamed::PoolerConnection;
use crate::error::{Error, Result};

/// A statement kind: a marker type naming one statement of the adapter.
pub(crate) trait Kind: 'static {}

/// Marker for SQL that is not a compile-time constant: keyed by its text.
pub(crate) struct Dynamic;
impl Kind for Dynamic {}

macro_rules! kinds {
    ($($name:ident),* $(,)?) => {
        $(
            #[doc = concat!("Marker for the `", stringify!($name), "` statement on the default tables.")]
            pub(crate) struct $name;
            impl Kind for $name {}
        )*
    };
}

kinds!(
    GetSessionAndUser,
    GetUserSessions,
    InsertSession,
    UpdateExpiration,
    ExtendExpiration,
    DeleteSession,
    DeleteUserSessions,
    DeleteExpiredBatch,
    UserExists,
);

/// SQL split at its bind parameters: `n` binds sit between `n + 1` parts.
/// `K` names the statement; `fixed` says whether its text is the same in
/// every adapter of the process (default table names), which allows
/// keying the statement cache on `K` instead of the text.
pub(crate) struct Sql<K = Dynamic> {
    parts: Box<[Box<str>]>,
    /// The whole statement with `$1`.. markers, for the pooler path.
    text: Box<str>,
    fixed: bool,
    /// The process-wide [`Slot`] this text is keyed by, if it got one.
    slot: Option<u8>,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Sql<K> {
    fn clone(&self) -> Self {
        Self {
            parts: self.parts.clone(),
            text: self.text.clone(),
            fixed: self.fixed,
            slot: self.slot,
            _kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Sql<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sql")
            .field("parts", &self.parts)
            .field("fixed", &self.fixed)
            .field("slot", &self.slot)
            .finish()
    }
}

#[cfg(test)]
impl<K> Sql<K> {
    /// The whole statement, with `$1`.. markers.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

impl<K: Kind> Sql<K> {
    /// Marks this SQL as the same text in every adapter (built from the
    /// default table names), so it may be cached under `K`.
    pub(crate) fn fixed(mut self, fixed: bool) -> Self {
        self.fixed = fixed;
        self
    }
}

/// Marker for the statement text in process-wide slot `N` (see
/// [`Sql::slotted`]).
pub(crate) struct Slot<const N: usize>;
impl<const N: usize> Kind for Slot<N> {}

/// How many statement texts that are not [`Sql::fixed`] get a cache key of
/// their own type (the statements of the adapters' known attribute
/// columns; an application has one or two adapters). Each slot is one more
/// instance of the code that runs a statement.
const SLOTS: usize = 8;

/// The text each slot stands for; a slot, once given, keeps its text.
static SLOT_TEXTS: Mutex<Vec<Box<str>>> = Mutex::new(Vec::new());

/// The slot for `text` among `texts`, given a new one while fewer than
/// `capacity` are taken.
fn slot_in(texts: &mut Vec<Box<str>>, text: &str, capacity: usize) -> Option<u8> {
    let at = match texts.iter().position(|t| **t == *text) {
        Some(at) => at,
        None if texts.len() < capacity => {
            texts.push(text.into());
            texts.len() - 1
        }
        None => return None,
    };
    u8::try_from(at).ok()
}

impl<K> Sql<K> {
    /// Keys this statement by a process-wide slot instead of its text, if
    /// one is free: the cache then finds it by type, without hashing the
    /// text or copying it into a key on every call. A slot stands for one
    /// text in the whole process, so two texts never share a prepared
    /// statement.
    pub(crate) fn slotted(mut self) -> Self {
        if let Ok(mut texts) = SLOT_TEXTS.lock() {
            self.slot = slot_in(&mut texts, &self.text, SLOTS);
        }
        self
    }
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

    /// Appends a constant statement written in this crate, with its bind
    /// markers `$1`, `$2`, .. in order, each used once.
    pub(crate) fn template(mut self, text: &str) -> Self {
        let mut rest = text;
        let mut n = 1;
        loop {
            let marker = format!("${n}");
            let Some(at) = rest.find(&marker) else { break };
            self = self.sql(&rest[..at]).bind();
            rest = &rest[at + marker.len()..];
            n += 1;
        }
        self.sql(rest)
    }

    pub(crate) fn build<K>(mut self) -> Sql<K> {
        self.parts.push(self.current.into());
        let mut text = String::new();
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                text.push('$');
                text.push_str(&i.to_string());
            }
            text.push_str(part);
        }
        Sql {
            parts: self.parts.into(),
            text: text.into(),
            fixed: false,
            slot: None,
            _kind: PhantomData,
        }
    }
}

/// Runs `$run` with `$s` bound to `$stmt` under its statement cache key:
/// its [`Kind`] when the SQL is [`Sql::fixed`], else its [`Slot`], else its
/// text. Each arm is the same call with another key type, one per slot.
macro_rules! with_key {
    ($stmt:expr, |$s:ident| $run:expr) => {
        with_key!(@slots $stmt, $s, $run; 0 1 2 3 4 5 6 7)
    };
    (@slots $stmt:expr, $s:ident, $run:expr; $($n:literal)*) => {{
        const _: () = assert!([$($n),*].len() == SLOTS, "one arm per slot");
        let stmt = $stmt;
        if stmt.fixed {
            let $s = stmt;
            $run
        } else {
            match stmt.slot {
                $(Some($n) => {
                    let $s = stmt.keyed::<Slot<$n>>();
                    $run
                })*
                _ => {
                    let $s = stmt.keyed::<Dynamic>();
                    $run
                }
            }
        }
    }};
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
    /// The SQL types of the binds, part of a statement's static cache key.
    type SqlTypes: 'static;
    fn walk<'b>(&'b self, parts: &'b [Box<str>], out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

pub(crate) trait PushBind {
    type SqlType: 'static;
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

impl<ST, V> PushBind for Bind<'_, ST, V>
where
    Pg: HasSqlType<ST>,
    ST: 'static,
    V: ToSql<ST, Pg> + ?Sized,
{
    type SqlType = ST;
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, V>(self.0)
    }
}

/// A user id bound with its own SQL type.
pub(crate) struct UserIdBind<'a, U>(pub(crate) &'a U);

impl<U: super::UserId> PushBind for UserIdBind<'_, U> {
    type SqlType = U::SqlType;
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.push_bind(out)
    }
}

macro_rules! impl_binds {
    ($count:expr; $($T:ident $i:tt),*) => {
        impl<$($T: PushBind),*> Binds for ($($T,)*) {
            const COUNT: usize = $count;
            type SqlTypes = ($($T::SqlType,)*);
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
/// of the rows it returns (`()` for statements run with `execute`). `K` is
/// its cache key: a statement [`Kind`] (keyed by type when the SQL is
/// fixed) or [`Dynamic`] (keyed by SQL text).
pub(crate) struct Stmt<'a, B, ST = (), K = Dynamic> {
    parts: &'a [Box<str>],
    text: &'a str,
    fixed: bool,
    slot: Option<u8>,
    binds: B,
    _rows: PhantomData<fn() -> (ST, K)>,
}

impl<'a, B: Binds, K: Kind> Stmt<'a, B, (), K> {
    /// A statement run for its row count.
    pub(crate) fn exec(sql: &'a Sql<K>, binds: B) -> Self {
        Self::new(sql, binds)
    }
}

impl<'a, B: Binds, ST, K: Kind> Stmt<'a, B, ST, K> {
    pub(crate) fn new(sql: &'a Sql<K>, binds: B) -> Self {
        debug_assert_eq!(
            sql.parts.len(),
            B::COUNT + 1,
            "bind count does not match the SQL"
        );
        Self {
            parts: &sql.parts,
            text: &sql.text,
            fixed: sql.fixed,
            slot: sql.slot,
            binds,
            _rows: PhantomData,
        }
    }

    /// The same statement under another cache key.
    fn keyed<K2>(self) -> Stmt<'a, B, ST, K2> {
        Stmt {
            parts: self.parts,
            text: self.text,
            fixed: false,
            slot: self.slot,
            binds: self.binds,
            _rows: PhantomData,
        }
    }

    /// Runs the statement for its row count.
    pub(crate) async fn execute(self, conn: Conn<'_>) -> Result<u64>
    where
        B: Send + 'a,
        ST: 'a,
        Self: QueryId,
    {
        match conn {
            Conn::Diesel(conn) => {
                // Every arm is the same boxed future.
                let n = with_key!(self, |stmt| {
                    AsyncConnectionCore::execute_returning_count(conn, stmt).await
                });
                checked(conn, n).map(|n| n as u64)
            }
            // Boxed: inline, the pooler's state would enlarge every
            // operation's future, on diesel connections too.
            Conn::Pooler(conn) => Box::pin(conn.run(self.text, &self, |_| Ok(()))).await,
        }
    }
}

impl<B: Binds, ST, K> QueryFragment<Pg> for Stmt<'_, B, ST, K> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Deliberately no `out.unsafe_to_cache_prepared()`: the text is fixed
        // per adapter, so the statement cache stays bounded.
        self.binds.walk(self.parts, &mut out)
    }
}

/// Keyed by the SQL text: the text differs per adapter.
impl<B, ST> QueryId for Stmt<'_, B, ST, Dynamic> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

macro_rules! static_ids {
    ($($name:ident),* $(,)?) => {
        $(
            /// Keyed by the statement kind and the SQL types of its binds
            /// (the user id type changes the prepared statement's
            /// parameter types, not its text). Only built when the SQL is
            /// the same for every adapter ([`Sql::fixed`]).
            impl<B: Binds, ST> QueryId for Stmt<'_, B, ST, $name> {
                type QueryId = ($name, B::SqlTypes);
                const HAS_STATIC_QUERY_ID: bool = true;
            }
        )*
    };
}

static_ids!(
    GetSessionAndUser,
    GetUserSessions,
    InsertSession,
    UpdateExpiration,
    ExtendExpiration,
    DeleteSession,
    DeleteUserSessions,
    DeleteExpiredBatch,
    UserExists,
);

/// Keyed by the slot, which stands for one text in the process, and the
/// SQL types of its binds.
impl<B: Binds, ST, const N: usize> QueryId for Stmt<'_, B, ST, Slot<N>> {
    type QueryId = (Slot<N>, B::SqlTypes);
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<B: Binds, ST, K> Query for Stmt<'_, B, ST, K> {
    type SqlType = ST;
}

/// Where a statement runs: a diesel-async connection (named statements,
/// kept in its prepared-statement cache), or a pooler connection (unnamed
/// statements, parsed, bound and run in one round trip).
#[doc(hidden)]
#[allow(unreachable_pub, missing_debug_implementations)] // Named by a sealed trait only.
pub enum Conn<'c> {
    /// A diesel-async connection.
    Diesel(&'c mut AsyncPgConnection),
    /// A connection of a pooler pool.
    Pooler(&'c mut PoolerConnection),
}

impl Conn<'_> {
    /// The same connection, borrowed again for one more statement.
    pub(crate) fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Diesel(conn) => Conn::Diesel(conn),
            Conn::Pooler(conn) => Conn::Pooler(conn),
        }
    }
}

/// A row from either kind of connection, read by column index with
/// diesel's `FromSql`, so both decode alike.
pub(crate) enum Row<'r> {
    Diesel(&'r PgRow),
    Pooler(&'r tokio_postgres::Row),
}

impl Row<'_> {
    /// Column `idx` as `T`, read as SQL type `ST`.
    pub(crate) fn get<ST, T: FromSql<ST, Pg>>(&self, idx: usize) -> deserialize::Result<T> {
        match self {
            Row::Diesel(row) => diesel::row::Row::get_value::<ST, T, usize>(*row, idx),
            Row::Pooler(row) => super::raw::get::<ST, T>(row, idx),
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
            Row::Pooler(row) => f(super::raw::value(row, idx)?),
        }
    }
}

/// Turns a query's result into the crate's. When the error says the
/// connection is gone, the connection is also marked broken, so that its
/// pool drops it instead of lending it out again: the server's goodbye
/// (`terminating connection ...`) can arrive before the socket reports the
/// close, and until then the pool's own check would pass it as healthy.
/// The same goes for a connection whose prepared statements were dropped
/// under it (`DEALLOCATE ALL`, a pooler in transaction mode): its statement
/// cache would name missing statements on every later call.
pub(crate) fn checked<T>(conn: &mut AsyncPgConnection, result: QueryResult<T>) -> Result<T> {
    result.map_err(|e| error_on(conn, e))
}

/// [`checked`] for an error alone.
pub(crate) fn error_on(conn: &mut AsyncPgConnection, error: diesel::result::Error) -> Error {
    let lost_statement = matches!(
        &error,
        diesel::result::Error::DatabaseError(_, info) if is_missing_statement(info.message())
    );
    let error = if lost_statement {
        Error::unavailable(format!(
            "{}; the connection's prepared statements were dropped (a pooler in transaction mode? use PoolerPool)",
            error
        ))
    } else {
        Error::from(error)
    };
    if matches!(error, Error::Unavailable { .. }) {
        AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
    }
    error
}

/// PostgreSQL's message for a named statement that does not exist (SQLSTATE 26000).
fn is_missing_statement(message: &str) -> bool {
    message.starts_with("prepared statement \"") && message.ends_with("\" does not exist")
}

/// A row as diesel-async returns it.
pub(crate) type PgRow = <AsyncPgConnection as AsyncConnectionCore>::Row<'static, 'static>;

/// Runs a query and decodes each row with `decode`, reading columns by
/// index with their own `FromSql` (so generic column types need no more
/// than `FromSql`).
pub(crate) async fn load_rows<'q, B, ST, K, T>(
    conn: Conn<'_>,
    stmt: Stmt<'q, B, ST, K>,
    decode: impl Fn(Row<'_>) -> deserialize::Result<T> + Send + Sync,
) -> Result<Vec<T>>
where
    B: Binds + Send + 'q,
    ST: 'q,
    K: Kind,
    T: Send,
    Stmt<'q, B, ST, K>: QueryId,
{
    let mut out = Vec::new();
    for_each_row(conn, stmt, |row| {
        out.push(decode(row)?);
        Ok(())
    })
    .await?;
    Ok(out)
}

/// [`load_rows`] for statements that return at most one row: the first
/// row decoded, without a `Vec` (later rows are read and ignored).
pub(crate) async fn load_first<'q, B, ST, K, T>(
    conn: Conn<'_>,
    stmt: Stmt<'q, B, ST, K>,
    decode: impl Fn(Row<'_>) -> deserialize::Result<T> + Send + Sync,
) -> Result<Option<T>>
where
    B: Binds + Send + 'q,
    ST: 'q,
    K: Kind,
    T: Send,
    Stmt<'q, B, ST, K>: QueryId,
{
    let mut first = None;
    for_each_row(conn, stmt, |row| {
        if first.is_none() {
            first = Some(decode(row)?);
        }
        Ok(())
    })
    .await?;
    Ok(first)
}

/// Runs a query and hands each row to `f`, reading the rows to their end.
async fn for_each_row<'q, B, ST, K>(
    conn: Conn<'_>,
    stmt: Stmt<'q, B, ST, K>,
    mut f: impl FnMut(Row<'_>) -> deserialize::Result<()> + Send,
) -> Result<()>
where
    B: Binds + Send + 'q,
    ST: 'q,
    K: Kind,
    Stmt<'q, B, ST, K>: QueryId,
{
    match conn {
        Conn::Diesel(conn) => {
            let result = async {
                let mut rows = with_key!(stmt, |stmt| {
                    AsyncConnectionCore::load(conn, stmt).await?
                });
                while let Some(row) = rows.try_next().await? {
                    f(Row::Diesel(&row)).map_err(diesel::result::Error::DeserializationError)?;
                }
                Ok(())
            }
            .await;
            checked(conn, result)
        }
        // Boxed, as in `Stmt::execute`.
        Conn::Pooler(conn) => Box::pin(conn.run(stmt.text, &stmt, f)).await.map(drop),
    }
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
            .build::<Dynamic>();
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

    type Id<'a, B, K> = <Stmt<'a, B, (), K> as QueryId>::QueryId;

    fn id_of<B: Binds, K: Kind>(_: &Stmt<'_, B, (), K>) -> Option<std::any::TypeId>
    where
        for<'a> Stmt<'a, B, (), K>: QueryId,
    {
        <Stmt<'_, B, (), K> as QueryId>::query_id()
    }

    #[test]
    fn static_keys_name_the_statement_and_its_bind_types() {
        use std::any::TypeId;
        let by_text = <Stmt<'_, (Bind<'_, Text, str>,), (), Dynamic> as QueryId>::query_id();
        assert_eq!(by_text, None, "dynamic SQL must be keyed by its text");
        let a = TypeId::of::<Id<'_, (Bind<'_, Text, str>,), DeleteSession>>();
        let b = TypeId::of::<Id<'_, (Bind<'_, Text, str>,), DeleteUserSessions>>();
        let c = TypeId::of::<Id<'_, (UserIdBind<'_, i64>,), DeleteUserSessions>>();
        let d = TypeId::of::<Id<'_, (UserIdBind<'_, String>,), DeleteUserSessions>>();
        assert_ne!(a, b, "two statement kinds with the same binds");
        assert_ne!(c, d, "one statement kind with different user id types");
        assert_eq!(b, d, "TEXT user ids bind as Text");
    }

    #[test]
    fn a_slot_stands_for_one_text_until_the_slots_run_out() {
        let mut texts = Vec::new();
        assert_eq!(slot_in(&mut texts, "SELECT 1", 2), Some(0));
        assert_eq!(slot_in(&mut texts, "SELECT 2", 2), Some(1));
        assert_eq!(
            slot_in(&mut texts, "SELECT 1", 2),
            Some(0),
            "same text, same slot"
        );
        assert_eq!(
            slot_in(&mut texts, "SELECT 3", 2),
            None,
            "no slot left: keyed by text"
        );
        assert_eq!(slot_in(&mut texts, "SELECT 2", 2), Some(1));
        assert_eq!(texts.len(), 2);
    }

    #[test]
    fn slotted_sql_is_keyed_by_its_slot_and_bind_types() {
        use std::any::TypeId;
        let a = TypeId::of::<Id<'_, (Bind<'_, Text, str>,), Slot<0>>>();
        let b = TypeId::of::<Id<'_, (Bind<'_, Text, str>,), Slot<1>>>();
        let c = TypeId::of::<Id<'_, (UserIdBind<'_, i64>,), Slot<0>>>();
        assert_ne!(a, b, "two slots");
        assert_ne!(a, c, "one slot with different bind types");
        let sql = SqlBuilder::new()
            .sql("DELETE FROM a_slotted_test_table WHERE id = ")
            .bind()
            .build::<Dynamic>()
            .slotted();
        let id = "v";
        let stmt = Stmt::exec(&sql, (Bind::<Text, str>::new(id),));
        // Other tests in this process take slots too.
        match stmt.slot {
            Some(slot) => assert!(usize::from(slot) < SLOTS),
            None => assert_eq!(SLOT_TEXTS.lock().unwrap().len(), SLOTS),
        }
        assert!(id_of(&stmt.keyed::<Slot<0>>()).is_some());
        // The same text built again gets the same slot.
        let again = SqlBuilder::new()
            .sql("DELETE FROM a_slotted_test_table WHERE id = ")
            .bind()
            .build::<Dynamic>()
            .slotted();
        assert_eq!(again.slot, sql.slot);
    }

    #[test]
    fn only_fixed_sql_is_run_with_a_static_key() {
        let sql = SqlBuilder::new()
            .sql("DELETE FROM t WHERE id = ")
            .bind()
            .build::<DeleteSession>();
        let id = "v";
        let custom = Stmt::exec(&sql, (Bind::<Text, str>::new(id),));
        assert!(!custom.fixed);
        assert_eq!(id_of(&custom.keyed::<Dynamic>()), None);
        let sql = sql.fixed(true);
        let default = Stmt::exec(&sql, (Bind::<Text, str>::new(id),));
        assert!(default.fixed);
        assert!(id_of(&default).is_some());
    }
}
