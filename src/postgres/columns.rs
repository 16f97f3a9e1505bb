//! The attribute columns, looked up in the catalog once per adapter, and
//! the statements that name them.
//!
//! Lucia's adapter reads every extra column of the tables as an attribute.
//! Reading them with `to_jsonb(row)` needs no knowledge of the columns but
//! makes PostgreSQL look up each column's type on every row; inserting them
//! with `jsonb_populate_record` costs a record type lookup on every call.
//! Once the columns and their types are known, the statements name them
//! instead ([`Named`]): reads select the columns themselves and the client
//! turns them into the attributes (see `attributes::from_columns`), inserts
//! cast each value to its column's type. Until then, and where a column
//! needs it, the generic statements of [`super::statements`] stay in use.

use std::sync::{Arc, Mutex, RwLock};

use diesel::sql_types::{Bool, Text, Untyped};

use super::attributes::RESERVED_SESSION_COLUMNS;
use super::names::{Ident, TableNames};
use super::query::{
    Bind, Conn, GetSessionAndUser, GetUserSessions, Sql, SqlBuilder, Stmt, load_rows,
};
use crate::error::{DatabaseErrorKind, Error, Result};

/// What one adapter knows of its tables' columns.
#[derive(Debug)]
pub(crate) struct KnownColumns {
    /// [`TABLE_COLUMNS`].
    lookup: Sql,
    /// `None` until looked up; then the named statements, or `None` where
    /// the generic ones are kept (a column name the crate cannot name).
    known: RwLock<Option<Option<Arc<Named>>>>,
}

impl KnownColumns {
    pub(crate) fn new() -> Self {
        Self {
            lookup: SqlBuilder::new().template(TABLE_COLUMNS).build(),
            known: RwLock::new(None),
        }
    }

    /// The named statements, looked up on first use (one more statement,
    /// once per adapter). `None`: use the generic statements (the lookup
    /// failed, a table is missing, or a column name cannot be quoted).
    async fn get(&self, conn: &mut Conn<'_>, names: &TableNames) -> Option<Arc<Named>> {
        if let Some(known) = self.known.read().ok()?.as_ref() {
            return known.clone();
        }
        // Boxed: the lookup runs once per adapter, and inline its state
        // would enlarge (and be copied with) every operation's future.
        let found = Box::pin(self.look_up(conn.reborrow(), names)).await.ok()?;
        // Not cached while a table is missing: the migrations may not have
        // run yet, and the next call looks again.
        let known = found?.map(Arc::new);
        if let Ok(mut slot) = self.known.write() {
            *slot = Some(known.clone());
        }
        known
    }

    /// A statement's attempts with the named statements: at most two, the
    /// second after the columns are looked up again (see [`Attempts`]).
    pub(crate) fn attempts(&self) -> Attempts<'_> {
        Attempts {
            columns: self,
            retried: false,
        }
    }

    /// Whether `result` is an error that can mean the named columns are out
    /// of date; if so, they are forgotten.
    fn stale<T>(&self, result: &Result<T>) -> bool {
        let Err(Error::Database(db)) = result else {
            return false;
        };
        // A value the table refuses says nothing about its columns.
        let refused = matches!(
            db.kind(),
            DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation
        );
        if refused {
            return false;
        }
        if let Ok(mut slot) = self.known.write() {
            *slot = None;
        }
        true
    }

    /// `None` when a table is missing; `Some(None)` when the generic
    /// statements are to be kept.
    async fn look_up(&self, conn: Conn<'_>, names: &TableNames) -> Result<Option<Option<Named>>> {
        let (session_table, user_table) = (names.session().to_sql(), names.user().to_sql());
        let stmt = Stmt::<_, Untyped, _>::new(
            &self.lookup,
            (
                Bind::<Text, str>::new(&session_table),
                Bind::<Text, str>::new(&user_table),
            ),
        );
        let columns = load_rows(conn, stmt, |row| {
            Ok((
                row.get::<Bool, bool>(0)?,
                row.get::<Text, String>(1)?,
                row.get::<Text, String>(2)?,
                row.get::<Text, String>(3)?,
                row.get::<Bool, bool>(4)?,
            ))
        })
        .await?;
        let (mut session, mut user) = (Vec::new(), Vec::new());
        let (mut session_found, mut user_found) = (false, false);
        for (in_session, name, type_sql, kind, plain) in columns {
            let Ok(ident) = Ident::new(&name, &name) else {
                return Ok(Some(None));
            };
            let read = if plain { Read::Plain } else { Read::ToJsonb };
            if in_session {
                session_found = true;
                if !RESERVED_SESSION_COLUMNS.contains(&name.as_str()) {
                    session.push(SessionColumn {
                        ident,
                        cast: Cast::new(type_sql, &kind),
                        read,
                    });
                }
            } else {
                user_found = true;
                if name != "id" {
                    user.push((ident, read));
                }
            }
        }
        Ok((session_found && user_found).then(|| Some(Named::new(names, session, user))))
    }
}

/// Runs a statement that may name the attribute columns, once more when
/// the columns in it turn out to be out of date (dropped, renamed or
/// retyped since they were looked up). A failed statement wrote nothing,
/// so running it again is safe:
///
/// ```text
/// let mut attempts = self.columns.attempts();
/// let result = loop {
///     let named = attempts.named(&mut conn, names).await;
///     let result = /* run the statement, named or generic */;
///     if let Some(result) = attempts.done(result, named.is_some()) {
///         break result;
///     }
/// };
/// ```
pub(crate) struct Attempts<'a> {
    columns: &'a KnownColumns,
    retried: bool,
}

impl Attempts<'_> {
    /// The named statements for this attempt (see [`KnownColumns::get`]).
    pub(crate) async fn named(
        &mut self,
        conn: &mut Conn<'_>,
        names: &TableNames,
    ) -> Option<Arc<Named>> {
        self.columns.get(conn, names).await
    }

    /// `Some(result)` when this attempt is the last; `None` when the named
    /// statement it `used` failed on out-of-date columns and is to be run
    /// again.
    pub(crate) fn done<T>(&mut self, result: Result<T>, used: bool) -> Option<Result<T>> {
        if self.retried || !used || !self.columns.stale(&result) {
            return Some(result);
        }
        self.retried = true;
        None
    }
}

/// The columns of the session and user tables, in table order, as the
/// adapter's statements see them (`$1` session table, `$2` user table, each
/// as SQL, resolved through the connection's `search_path`).
/// Also each column's type as SQL, how a JSON value becomes one
/// (see [`Cast`]: `json` for json/jsonb, `scalar` for types read from
/// text, `other` for arrays, composites and domains over either), and
/// whether the client decodes the column itself (see [`Read`]): text,
/// varchar, char, name, smallint, integer, bigint, boolean, uuid and jsonb,
/// or a domain over one of them (PostgreSQL describes a domain's column
/// with its base type).
const TABLE_COLUMNS: &str = "SELECT a.attrelid = to_regclass($1) AS session, a.attname::text, \
     format_type(a.atttypid, NULL), \
     CASE WHEN bt.typname IN ('json', 'jsonb') AND bt.typnamespace = 'pg_catalog'::regnamespace THEN 'json' \
     WHEN bt.typcategory = 'A' OR bt.typtype IN ('c', 'd', 'p') THEN 'other' ELSE 'scalar' END, \
     bt.oid IN (16, 19, 20, 21, 23, 25, 1042, 1043, 2950, 3802) \
     FROM pg_catalog.pg_attribute a \
     JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
     JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
     WHERE a.attrelid IN (to_regclass($1), to_regclass($2)) AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attnum";

/// How a read selects an attribute column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// The column itself, decoded by the client from its binary form.
    Plain,
    /// `to_jsonb(column)`: every other type, turned into JSON by the
    /// server exactly as `to_jsonb(row)` would.
    ToJsonb,
}

/// A session attribute column: how inserts fill it and how reads select it.
#[derive(Debug, Clone)]
pub(crate) struct SessionColumn {
    pub(crate) ident: Ident,
    pub(crate) cast: Cast,
    pub(crate) read: Read,
}

/// How an attribute's JSON value becomes its column's value on insert,
/// matching `jsonb_populate_record` (JSON null is SQL NULL; a string is its
/// text, anything else its JSON text, through the type's input).
#[derive(Debug, Clone)]
pub(crate) enum Cast {
    /// `(j ->> 'c')::type`, with the type as `format_type` writes it.
    Scalar(String),
    /// `NULLIF(j -> 'c', 'null')::type` for json and jsonb.
    Json(String),
    /// Arrays, composites and the like: left to `jsonb_populate_record`.
    Other,
}

impl Cast {
    pub(crate) fn new(type_sql: String, kind: &str) -> Self {
        match kind {
            "scalar" => Self::Scalar(type_sql),
            "json" => Self::Json(type_sql),
            _ => Self::Other,
        }
    }
}

/// The statements that name the attribute columns. Reads select each
/// column (`s."c"`) instead of `to_jsonb(s) - ..`: PostgreSQL's
/// `to_jsonb(record)` looks up each column's type on every row, which made
/// listing a user's sessions cost about 1.5x the server time of selecting
/// the columns themselves (pgbench, 10 sessions a user), and building one
/// object per row with `jsonb_build_object` still cost validate about 15%
/// more server time than plain columns (the bench). The client builds the
/// attributes from the columns.
#[derive(Debug)]
pub(crate) struct Named {
    /// As `Statements::get_session_and_user`, with the session's attribute
    /// columns from index 3 on, then the user's.
    pub(crate) get_session_and_user: Sql<GetSessionAndUser>,
    /// As `Statements::get_user_sessions`, with the attribute columns from
    /// index 3 on.
    pub(crate) get_user_sessions: Sql<GetUserSessions>,
    /// The session table's attribute columns, in the order selected.
    session: Box<[Ident]>,
    /// The user table's attribute columns, in the order selected.
    user: Box<[Ident]>,
    /// The session table's attribute columns and their casts.
    session_columns: Vec<SessionColumn>,
    names: TableNames,
    /// Inserts already rendered, by their attribute columns (at most
    /// [`MAX_CACHED_INSERTS`]: an application writes few column sets).
    inserts: Mutex<Vec<CachedInsert>>,
}

/// An insert's attribute columns and its SQL.
type CachedInsert = (Box<[Ident]>, Arc<Sql>);

/// How many column sets' inserts [`Named`] keeps rendered.
const MAX_CACHED_INSERTS: usize = 32;

impl Named {
    /// The statements for these attribute columns.
    pub(crate) fn new(
        names: &TableNames,
        session_columns: Vec<SessionColumn>,
        user: Vec<(Ident, Read)>,
    ) -> Self {
        let session: Vec<(Ident, Read)> = session_columns
            .iter()
            .map(|c| (c.ident.clone(), c.read))
            .collect();
        let session_attributes = select_list("s", &session);
        let user_attributes = select_list("u", &user);
        Self {
            get_session_and_user: SqlBuilder::new()
                .sql("SELECT s.id, s.expires_at, s.user_id")
                .sql(&session_attributes)
                .sql(&user_attributes)
                .sql(" FROM ")
                .table(names.session())
                .sql(" AS s INNER JOIN ")
                .table(names.user())
                .sql(" AS u ON u.id = s.user_id WHERE s.id = ")
                .bind()
                .build()
                .slotted(),
            get_user_sessions: SqlBuilder::new()
                .sql("SELECT s.id, s.expires_at, s.user_id")
                .sql(&session_attributes)
                .sql(" FROM ")
                .table(names.session())
                .sql(" AS s WHERE s.user_id = ")
                .bind()
                .build()
                .slotted(),
            session: session.into_iter().map(|(c, _)| c).collect(),
            user: user.into_iter().map(|(c, _)| c).collect(),
            session_columns,
            names: names.clone(),
            inserts: Mutex::new(Vec::new()),
        }
    }

    /// The session table's attribute columns, in the order the reads select them.
    pub(crate) fn session_attributes(&self) -> &[Ident] {
        &self.session
    }

    /// The user table's attribute columns, in the order the reads select them.
    pub(crate) fn user_attributes(&self) -> &[Ident] {
        &self.user
    }

    /// [`Named::render_insert`], rendered once per column set.
    pub(crate) fn insert_session_with(&self, columns: &[Ident]) -> Option<Arc<Sql>> {
        if let Ok(cached) = self.inserts.lock()
            && let Some((_, sql)) = cached.iter().find(|(c, _)| **c == *columns)
        {
            return Some(Arc::clone(sql));
        }
        let sql = Arc::new(self.render_insert(columns)?);
        if let Ok(mut cached) = self.inserts.lock()
            && cached.len() < MAX_CACHED_INSERTS
        {
            cached.push((columns.into(), Arc::clone(&sql)));
        }
        Some(sql)
    }

    /// The insert for a session with these attribute columns, each value
    /// taken from the `jsonb` parameter and cast to its column's type:
    /// the same values as `Statements::insert_session_with` without
    /// `jsonb_populate_record`, which costs the server a record type lookup
    /// on every call (a third fewer inserts a second in pgbench). `None`
    /// when a column is unknown or not a plain type: then that one is used.
    fn render_insert(&self, columns: &[Ident]) -> Option<Sql> {
        // The values are taken out of the JSON by name, in a literal.
        if columns.iter().any(|c| c.as_str().contains(['\'', '\\'])) {
            return None;
        }
        let mut b = SqlBuilder::new()
            .sql("INSERT INTO ")
            .table(self.names.session())
            .sql(" (id, user_id, expires_at");
        for c in columns {
            b = b.sql(", ").ident(c);
        }
        b = b.sql(") SELECT ").bind().sql(", ").bind().sql(", ").bind();
        for c in columns {
            let column = self
                .session_columns
                .iter()
                .find(|known| known.ident == *c)?;
            // Checked above: no quote or backslash in the name.
            b = match &column.cast {
                Cast::Scalar(ty) => b.sql(", (v.j ->> '").sql(c.as_str()).sql("')::").sql(ty),
                Cast::Json(ty) => b
                    .sql(", NULLIF(v.j -> '")
                    .sql(c.as_str())
                    .sql("', 'null'::jsonb)::")
                    .sql(ty),
                Cast::Other => return None,
            };
        }
        Some(
            b.sql(" FROM (SELECT ")
                .bind()
                .sql("::jsonb AS j) AS v ON CONFLICT (id) DO NOTHING")
                .build()
                .slotted(),
        )
    }
}

/// `, alias."c"` for each column (`, to_jsonb(alias."c")` where the server
/// makes the JSON).
fn select_list(alias: &str, columns: &[(Ident, Read)]) -> String {
    let mut out = String::new();
    for (column, read) in columns {
        out.push_str(", ");
        if *read == Read::ToJsonb {
            out.push_str("to_jsonb(");
        }
        out.push_str(alias);
        out.push('.');
        column.write_quoted(&mut out);
        if *read == Read::ToJsonb {
            out.push(')');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(name: &str) -> Ident {
        Ident::new(name, name).unwrap()
    }

    fn text_column(name: &str, read: Read) -> SessionColumn {
        SessionColumn {
            ident: ident(name),
            cast: Cast::Scalar("text".into()),
            read,
        }
    }

    #[test]
    fn named_statements_select_each_attribute_column() {
        let names = TableNames::new("auth.users", "Sessions").unwrap();
        let session = vec![
            text_column("country", Read::Plain),
            text_column("IP addr", Read::ToJsonb),
        ];
        let user = vec![(ident("it's"), Read::Plain)];
        let named = Named::new(&names, session, user);
        assert_eq!(
            named.get_user_sessions.text(),
            "SELECT s.id, s.expires_at, s.user_id, s.\"country\", to_jsonb(s.\"IP addr\") \
             FROM \"Sessions\" AS s WHERE s.user_id = $1"
        );
        assert_eq!(
            named.get_session_and_user.text(),
            "SELECT s.id, s.expires_at, s.user_id, s.\"country\", to_jsonb(s.\"IP addr\"), \
             u.\"it's\" FROM \"Sessions\" AS s INNER JOIN \"auth\".\"users\" AS u \
             ON u.id = s.user_id WHERE s.id = $1"
        );
        assert_eq!(
            named.session_attributes(),
            &[ident("country"), ident("IP addr")]
        );
        assert_eq!(named.user_attributes(), &[ident("it's")]);
    }

    #[test]
    fn no_attribute_columns_select_none() {
        let named = Named::new(&TableNames::default(), Vec::new(), Vec::new());
        assert_eq!(
            named.get_user_sessions.text(),
            "SELECT s.id, s.expires_at, s.user_id FROM \"user_session\" AS s WHERE s.user_id = $1"
        );
    }

    #[test]
    fn inserts_need_names_a_literal_can_hold() {
        let session = vec![
            text_column("it's", Read::Plain),
            text_column("ok", Read::Plain),
        ];
        let named = Named::new(&TableNames::default(), session, Vec::new());
        assert!(named.insert_session_with(&[ident("it's")]).is_none());
        let sql = named.insert_session_with(&[ident("ok")]).unwrap();
        assert!(
            sql.text().contains("(v.j ->> 'ok')::text"),
            "{}",
            sql.text()
        );
    }
}
