//! The SQL of every adapter operation, rendered once per adapter.

use std::sync::{Arc, Mutex};

use super::names::{Ident, TableNames};
use super::query::{
    DeleteExpiredBatch, DeleteSession, DeleteUserSessions, ExtendExpiration, GetSessionAndUser,
    GetUserSessions, InsertSession, Sql, SqlBuilder, UpdateExpiration, UserExists,
};

/// Strips the managed columns from a session row turned into JSON. Used
/// until the attribute columns are known (see [`Reads`]).
const SESSION_ATTRIBUTES: &str = "to_jsonb(s) - ARRAY['id', 'expires_at', 'user_id']";

/// The columns of the session and user tables, in table order, as the
/// adapter's statements see them (`$1` session table, `$2` user table, each
/// as SQL, resolved through the connection's `search_path`).
/// Also each column's type as SQL and how a JSON value becomes one
/// (see [`Cast`]): `json` for json/jsonb, `scalar` for types read from
/// text, `other` for arrays, composites and domains over either.
pub(crate) const TABLE_COLUMNS: &str = "SELECT a.attrelid = to_regclass($1) AS session, a.attname::text, \
     format_type(a.atttypid, NULL), \
     CASE WHEN bt.typname IN ('json', 'jsonb') AND bt.typnamespace = 'pg_catalog'::regnamespace THEN 'json' \
     WHEN bt.typcategory = 'A' OR bt.typtype IN ('c', 'd', 'p') THEN 'other' ELSE 'scalar' END \
     FROM pg_catalog.pg_attribute a \
     JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
     JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
     WHERE a.attrelid IN (to_regclass($1), to_regclass($2)) AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attnum";

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

/// `jsonb_build_object` takes at most 100 arguments: 50 columns a call.
const COLUMNS_PER_OBJECT: usize = 50;

/// The reads, with the attribute columns named: `jsonb_build_object('c',
/// s."c", ..)` instead of `to_jsonb(s) - ..`. Same JSON, but PostgreSQL's
/// `to_jsonb(record)` looks up each column's type on every row, which made
/// listing a user's sessions cost about 1.5x the server time of selecting
/// the columns themselves (pgbench, 10 sessions a user); naming them makes
/// it the same as plain columns.
#[derive(Debug)]
pub(crate) struct Reads {
    /// As [`Statements::get_session_and_user`].
    pub(crate) get_session_and_user: Sql<GetSessionAndUser>,
    /// As [`Statements::get_user_sessions`].
    pub(crate) get_user_sessions: Sql<GetUserSessions>,
    /// The session table's attribute columns and their casts.
    session_columns: Vec<(Ident, Cast)>,
    names: TableNames,
    /// Inserts already rendered, by their attribute columns (at most
    /// [`MAX_CACHED_INSERTS`]: an application writes few column sets).
    inserts: Mutex<Vec<CachedInsert>>,
}

/// An insert's attribute columns and its SQL.
type CachedInsert = (Box<[Ident]>, Arc<Sql>);

/// How many column sets' inserts [`Reads`] keeps rendered.
const MAX_CACHED_INSERTS: usize = 32;

impl Reads {
    /// The reads for these attribute columns, or `None` when a name cannot
    /// be written as a plain SQL string literal (a quote or a backslash), in
    /// which case the generic statements stay in use.
    pub(crate) fn new(
        names: &TableNames,
        session_columns: Vec<(Ident, Cast)>,
        user: &[Ident],
    ) -> Option<Self> {
        let literal_safe = |c: &Ident| !c.as_str().contains(['\'', '\\']);
        let session: Vec<Ident> = session_columns.iter().map(|(c, _)| c.clone()).collect();
        if !session.iter().chain(user).all(literal_safe) {
            return None;
        }
        let session = &session[..];
        let session_attributes = attributes_object("s", session);
        let user_attributes = attributes_object("u", user);
        Some(Self {
            get_session_and_user: SqlBuilder::new()
                .sql("SELECT s.id, s.expires_at, s.user_id, ")
                .sql(&session_attributes)
                .sql(", ")
                .sql(&user_attributes)
                .sql(" FROM ")
                .table(names.session())
                .sql(" AS s INNER JOIN ")
                .table(names.user())
                .sql(" AS u ON u.id = s.user_id WHERE s.id = ")
                .bind()
                .build(),
            get_user_sessions: SqlBuilder::new()
                .sql("SELECT s.id, s.expires_at, s.user_id, ")
                .sql(&session_attributes)
                .sql(" FROM ")
                .table(names.session())
                .sql(" AS s WHERE s.user_id = ")
                .bind()
                .build(),
            session_columns,
            names: names.clone(),
            inserts: Mutex::new(Vec::new()),
        })
    }

    /// [`Reads::render_insert`], rendered once per column set.
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
    /// the same values as [`Statements::insert_session_with`] without
    /// `jsonb_populate_record`, which costs the server a record type lookup
    /// on every call (a third fewer inserts a second in pgbench). `None`
    /// when a column is unknown or not a plain type: then that one is used.
    fn render_insert(&self, columns: &[Ident]) -> Option<Sql> {
        let mut b = SqlBuilder::new()
            .sql("INSERT INTO ")
            .table(self.names.session())
            .sql(" (id, user_id, expires_at");
        for c in columns {
            b = b.sql(", ").ident(c);
        }
        b = b.sql(") SELECT ").bind().sql(", ").bind().sql(", ").bind();
        for c in columns {
            let (_, cast) = self.session_columns.iter().find(|(known, _)| known == c)?;
            // Column names here passed `Reads::new`'s literal check.
            b = match cast {
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
                .build(),
        )
    }
}

/// A `jsonb` object of `columns` of the row aliased `alias`.
fn attributes_object(alias: &str, columns: &[Ident]) -> String {
    if columns.is_empty() {
        return "'{}'::jsonb".to_owned();
    }
    let mut out = String::new();
    for (i, chunk) in columns.chunks(COLUMNS_PER_OBJECT).enumerate() {
        if i > 0 {
            out.push_str(" || ");
        }
        out.push_str("jsonb_build_object(");
        for (j, column) in chunk.iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            // Checked by `Reads::new`: no quote or backslash in the name.
            out.push('\'');
            out.push_str(column.as_str());
            out.push_str("', ");
            out.push_str(alias);
            out.push('.');
            column.write_quoted(&mut out);
        }
        out.push(')');
    }
    out
}

#[derive(Debug, Clone)]
pub(crate) struct Statements {
    names: TableNames,
    /// `$1` session id -> id, expires_at, user_id, session attrs, user attrs.
    pub(crate) get_session_and_user: Sql<GetSessionAndUser>,
    /// `$1` user id -> id, expires_at, user_id, session attrs.
    pub(crate) get_user_sessions: Sql<GetUserSessions>,
    /// `$1` id, `$2` user id, `$3` expires_at; no attribute columns.
    pub(crate) insert_session: Sql<InsertSession>,
    /// `$1` expires_at, `$2` id.
    pub(crate) update_expiration: Sql<UpdateExpiration>,
    /// `$1` id, `$2` new expires_at, `$3` extend only if expires_at is at or before this.
    pub(crate) extend_expiration: Sql<ExtendExpiration>,
    /// `$1` id.
    pub(crate) delete_session: Sql<DeleteSession>,
    /// `$1` user id.
    pub(crate) delete_user_sessions: Sql<DeleteUserSessions>,
    /// `$1` now, `$2` batch size.
    pub(crate) delete_expired_batch: Sql<DeleteExpiredBatch>,
    /// `$1` user id -> bool.
    pub(crate) user_exists: Sql<UserExists>,
    /// [`TABLE_COLUMNS`].
    pub(crate) table_columns: Sql,
}

impl Statements {
    pub(crate) fn new(names: &TableNames) -> Self {
        let s = names.session();
        let u = names.user();
        // With the default names the SQL is the same in every adapter.
        let fixed = *names == TableNames::default();
        Self {
            names: names.clone(),
            get_session_and_user: SqlBuilder::new()
                .sql("SELECT s.id, s.expires_at, s.user_id, ")
                .sql(SESSION_ATTRIBUTES)
                .sql(", to_jsonb(u) - 'id' FROM ")
                .table(s)
                .sql(" AS s INNER JOIN ")
                .table(u)
                .sql(" AS u ON u.id = s.user_id WHERE s.id = ")
                .bind()
                .build()
                .fixed(fixed),
            get_user_sessions: SqlBuilder::new()
                .sql("SELECT s.id, s.expires_at, s.user_id, ")
                .sql(SESSION_ATTRIBUTES)
                .sql(" FROM ")
                .table(s)
                .sql(" AS s WHERE s.user_id = ")
                .bind()
                .build()
                .fixed(fixed),
            insert_session: SqlBuilder::new()
                .sql("INSERT INTO ")
                .table(s)
                .sql(" (id, user_id, expires_at) VALUES (")
                .bind()
                .sql(", ")
                .bind()
                .sql(", ")
                .bind()
                .sql(") ON CONFLICT (id) DO NOTHING")
                .build()
                .fixed(fixed),
            update_expiration: SqlBuilder::new()
                .sql("UPDATE ")
                .table(s)
                .sql(" SET expires_at = ")
                .bind()
                .sql(" WHERE id = ")
                .bind()
                .build()
                .fixed(fixed),
            // Lock the row first (waiting for a concurrent delete to finish),
            // then move the expiry only if it still needs moving: a deleted
            // session stays deleted, and racing requests write once.
            extend_expiration: SqlBuilder::new()
                .sql("WITH cur AS (SELECT id, expires_at FROM ")
                .table(s)
                .sql(" WHERE id = ")
                .bind()
                .sql(" FOR NO KEY UPDATE), upd AS (UPDATE ")
                .table(s)
                .sql(" AS t SET expires_at = ")
                .bind()
                .sql(" FROM cur WHERE t.id = cur.id AND cur.expires_at <= ")
                .bind()
                .sql(
                    " RETURNING t.expires_at) \
                     SELECT COALESCE((SELECT expires_at FROM upd), cur.expires_at), \
                     EXISTS (SELECT 1 FROM upd) FROM cur",
                )
                .build()
                .fixed(fixed),
            delete_session: SqlBuilder::new()
                .sql("DELETE FROM ")
                .table(s)
                .sql(" WHERE id = ")
                .bind()
                .build()
                .fixed(fixed),
            delete_user_sessions: SqlBuilder::new()
                .sql("DELETE FROM ")
                .table(s)
                .sql(" WHERE user_id = ")
                .bind()
                .build()
                .fixed(fixed),
            // `id = ANY(ARRAY(..))`, not `id IN (..)`: the planner turns the
            // latter into a hash join over the whole table on every batch;
            // this way each batch is one index scan plus key lookups.
            delete_expired_batch: SqlBuilder::new()
                .sql("DELETE FROM ")
                .table(s)
                .sql(" WHERE id = ANY(ARRAY(SELECT id FROM ")
                .table(s)
                .sql(" WHERE expires_at <= ")
                .bind()
                .sql(" LIMIT ")
                .bind()
                .sql(" FOR UPDATE SKIP LOCKED))")
                .build()
                .fixed(fixed),
            table_columns: SqlBuilder::new().template(TABLE_COLUMNS).build(),
            user_exists: SqlBuilder::new()
                .sql("SELECT EXISTS (SELECT 1 FROM ")
                .table(u)
                .sql(" WHERE id = ")
                .bind()
                .sql(")")
                .build()
                .fixed(fixed),
        }
    }

    /// The insert for a session with these attribute columns. Values come
    /// from one `jsonb` parameter turned into a row of the session table's
    /// type, so each column gets its own type; columns not listed keep their
    /// defaults.
    pub(crate) fn insert_session_with(&self, columns: &[Ident]) -> Sql {
        let s = self.names.session();
        let mut b = SqlBuilder::new()
            .sql("INSERT INTO ")
            .table(s)
            .sql(" (id, user_id, expires_at");
        for c in columns {
            b = b.sql(", ").ident(c);
        }
        b = b.sql(") SELECT ").bind().sql(", ").bind().sql(", ").bind();
        for c in columns {
            b = b.sql(", r.").ident(c);
        }
        b.sql(" FROM jsonb_populate_record(NULL::")
            .table(s)
            .sql(", ")
            .bind()
            .sql(") AS r ON CONFLICT (id) DO NOTHING")
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idents(names: &[&str]) -> Vec<Ident> {
        names.iter().map(|n| Ident::new(n, n).unwrap()).collect()
    }

    #[test]
    fn reads_name_each_attribute_column() {
        let names = TableNames::new("auth.users", "Sessions").unwrap();
        let columns = idents(&["country", "IP addr"])
            .into_iter()
            .map(|c| (c, Cast::Scalar("text".into())))
            .collect();
        let reads = Reads::new(&names, columns, &[]).unwrap();
        assert_eq!(
            reads.get_user_sessions.text(),
            "SELECT s.id, s.expires_at, s.user_id, jsonb_build_object('country', s.\"country\", \
             'IP addr', s.\"IP addr\") FROM \"Sessions\" AS s WHERE s.user_id = $1"
        );
        assert!(
            reads
                .get_session_and_user
                .text()
                .contains("'{}'::jsonb FROM \"Sessions\" AS s INNER JOIN \"auth\".\"users\" AS u")
        );
    }

    #[test]
    fn many_columns_are_joined_objects_and_odd_names_fall_back() {
        let many: Vec<String> = (0..120).map(|i| format!("c{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let object = attributes_object("u", &idents(&many));
        assert_eq!(object.matches("jsonb_build_object(").count(), 3);
        assert_eq!(object.matches(" || ").count(), 2);
        let names = TableNames::default();
        let odd = vec![(idents(&["it's"]).remove(0), Cast::Other)];
        assert!(Reads::new(&names, odd, &[]).is_none());
        assert!(Reads::new(&names, Vec::new(), &idents(&["back\\slash"])).is_none());
    }
}
