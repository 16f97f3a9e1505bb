//! The SQL of every adapter operation, rendered once per adapter from its
//! table names and, where they name them, its attribute columns.
//!
//! SQL text is assembled only by [`SqlBuilder`]: identifiers (table,
//! column and type names) go through the quoting of [`crate::names`], and
//! every value is a bind parameter. Nothing read from the catalog reaches
//! SQL except as a quoted identifier.

use crate::exec::{Sql, SqlBuilder};
use crate::names::{Ident, TableName, TableNames};

/// An attribute column: how reads select it and how inserts fill it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) name: Ident,
    /// `true`: selected as itself and decoded by the client (text,
    /// varchar, char, name, integers, boolean, uuid, jsonb and domains over
    /// them); `false`: selected as `to_jsonb(column)`, turned into JSON by
    /// the server exactly as `to_jsonb(row)` would.
    pub(crate) plain: bool,
    pub(crate) write: Write,
}

/// How an insert turns an attribute's JSON value (a `jsonb` parameter)
/// into the column's value: the same value `jsonb_populate_record` makes
/// (JSON null is SQL NULL; a string is its text, anything else its JSON
/// text, through the type's input function).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Write {
    /// `CAST($n #>> '{}' AS type)`: types read from text.
    Cast(TableName),
    /// `CAST(NULLIF($n, 'null') AS type)`: json, jsonb and domains over them.
    Json(TableName),
    /// `(jsonb_populate_record(NULL::table, $n)).column`, the parameter
    /// being `{"column": value}`: arrays, composites and domains over them,
    /// which a JSON value does not reach through text.
    Record,
}

/// The attribute columns of both tables, in table order. `complete` is
/// `false` when a table was not found (the migrations may not have run
/// yet): then the statements name no attribute columns and PostgreSQL
/// reports the missing table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Columns {
    pub(crate) session: Vec<Column>,
    pub(crate) user: Vec<Column>,
    pub(crate) complete: bool,
}

/// The columns the crate manages in the session table; never attributes.
pub(crate) const MANAGED_SESSION_COLUMNS: [&str; 6] = [
    "id",
    "expires_at",
    "user_id",
    "created_at",
    "last_seen_at",
    "authenticated_at",
];

/// The attribute columns of the session table (`$1`) and the user table
/// (`$2`), each given as SQL and resolved through the connection's
/// `search_path`: whether the column is the session table's, its name, its
/// type's schema and name, how a value is written (see [`Write`]:
/// `json`, `record` for arrays, composites and domains over them, else
/// `cast`), and whether the client decodes it (see [`Column::plain`];
/// PostgreSQL describes a domain's values with its base type).
const TABLE_COLUMNS: &str = "SELECT COALESCE(a.attrelid = to_regclass($1), false), a.attname::text, \
     n.nspname::text, t.typname::text, \
     CASE WHEN bt.typname IN ('json', 'jsonb') AND bt.typnamespace = 'pg_catalog'::regnamespace THEN 'json' \
     WHEN bt.typcategory = 'A' OR bt.typtype IN ('c', 'd', 'p') THEN 'record' ELSE 'cast' END, \
     bt.oid IN (16, 19, 20, 21, 23, 25, 1042, 1043, 2950, 3802) \
     FROM pg_catalog.pg_attribute a \
     JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
     JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
     JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
     WHERE a.attrelid IN (to_regclass($1), to_regclass($2)) AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attnum";

/// The statements of one adapter that do not depend on its columns.
#[derive(Debug, Clone)]
pub(crate) struct Statements {
    names: TableNames,
    /// `$1` session table, `$2` user table (as SQL text) -> see [`TABLE_COLUMNS`].
    pub(crate) table_columns: Sql,
    /// `$1` expires_at, `$2` id.
    pub(crate) update_expiration: Sql,
    /// `$1` id, `$2` extend if expires_at is at or before this, `$3` the new
    /// expires_at, `$4` record activity if last_seen_at is at or before
    /// this, `$5` the new last_seen_at, `$6` = `$2`, `$7` = `$4` -> the
    /// expires_at and last_seen_at after it, whether it moved the expiry.
    pub(crate) refresh: Sql,
    /// `$1` the new id, `$2` authenticated_at unless the stored one is
    /// later, `$3` id, `$4` user id, and the row must be live: `$5` expires
    /// after, `$6` last seen after, `$7` created after -> expires_at,
    /// created_at, last_seen_at, authenticated_at. The row keeps every
    /// other column: one statement, so a crash leaves one of the two ids.
    pub(crate) rotate: Sql,
    /// `$1` id.
    pub(crate) delete_session: Sql,
    /// `$1` user id.
    pub(crate) delete_user_sessions: Sql,
    pub(crate) delete_other_user_sessions: Sql,
    /// `$1` now, `$2` batch size.
    pub(crate) delete_expired_batch: Sql,
    /// `$1` user id -> bool.
    pub(crate) user_exists: Sql,
}

impl Statements {
    pub(crate) fn new(names: &TableNames) -> Self {
        let (s, u) = (names.session(), names.user());
        Self {
            names: names.clone(),
            table_columns: SqlBuilder::new().template(TABLE_COLUMNS).build(),
            update_expiration: SqlBuilder::new()
                .sql("UPDATE ")
                .table(s)
                .template(" SET expires_at = $1 WHERE id = $2")
                .build(),
            // Lock the row first (waiting for a concurrent delete to finish),
            // then move each time only if it still needs moving: a deleted
            // session stays deleted, and racing requests write once.
            refresh: SqlBuilder::new()
                .sql("WITH cur AS (SELECT id, expires_at, last_seen_at FROM ")
                .table(s)
                .sql(" WHERE id = ")
                .bind()
                .sql(" FOR NO KEY UPDATE), upd AS (UPDATE ")
                .table(s)
                .template(
                    " AS t SET expires_at = CASE WHEN cur.expires_at <= $1 THEN $2 ELSE cur.expires_at END, \
                     last_seen_at = CASE WHEN cur.last_seen_at <= $3 THEN $4 ELSE cur.last_seen_at END \
                     FROM cur WHERE t.id = cur.id AND (cur.expires_at <= $5 OR cur.last_seen_at <= $6) \
                     RETURNING t.expires_at, t.last_seen_at) \
                     SELECT COALESCE(upd.expires_at, cur.expires_at), \
                     COALESCE(upd.last_seen_at, cur.last_seen_at), \
                     upd.expires_at IS DISTINCT FROM cur.expires_at AND upd.expires_at IS NOT NULL \
                     FROM cur LEFT JOIN upd ON true",
                )
                .build(),
            rotate: SqlBuilder::new()
                .sql("UPDATE ")
                .table(s)
                .template(
                    " SET id = $1, authenticated_at = GREATEST(authenticated_at, $2) \
                     WHERE id = $3 AND user_id = $4 AND expires_at > $5 AND last_seen_at > $6 \
                     AND created_at > $7 \
                     RETURNING expires_at, created_at, last_seen_at, authenticated_at",
                )
                .build(),
            delete_session: SqlBuilder::new()
                .sql("DELETE FROM ")
                .table(s)
                .template(" WHERE id = $1")
                .build(),
            delete_user_sessions: SqlBuilder::new()
                .sql("DELETE FROM ")
                .table(s)
                .template(" WHERE user_id = $1")
                .build(),
            delete_other_user_sessions: SqlBuilder::new()
                .sql("DELETE FROM ")
                .table(s)
                .template(" WHERE user_id = $1 AND id <> $2")
                .build(),
            // `id = ANY(ARRAY(..))`, not `id IN (..)`: the planner turns the
            // latter into a hash join over the whole table on every batch;
            // this way each batch is one index scan plus key lookups.
            delete_expired_batch: SqlBuilder::new()
                .sql("DELETE FROM ")
                .table(s)
                .sql(" WHERE id = ANY(ARRAY(SELECT id FROM ")
                .table(s)
                .template(" WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED))")
                .build(),
            user_exists: SqlBuilder::new()
                .sql("SELECT EXISTS (SELECT 1 FROM ")
                .table(u)
                .template(" WHERE id = $1)")
                .build(),
        }
    }

    /// `$1` session id -> id, expires_at, user_id, created_at, last_seen_at,
    /// the session's attribute columns, the user's. One `JOIN`.
    ///
    /// Reads select each attribute column (`s."c"`), and the client builds
    /// the attributes: `to_jsonb(record)` would look up each column's type
    /// on every row (see BENCHMARKS.md's notes for what that cost).
    pub(crate) fn get_session_and_user(&self, columns: &Columns) -> Sql {
        SqlBuilder::new()
            .sql("SELECT s.id, s.expires_at, s.user_id, s.created_at, s.last_seen_at, s.authenticated_at")
            .sql(&select_list("s", &columns.session))
            .sql(&select_list("u", &columns.user))
            .sql(" FROM ")
            .table(self.names.session())
            .sql(" AS s INNER JOIN ")
            .table(self.names.user())
            .template(" AS u ON u.id = s.user_id WHERE s.id = $1")
            .build()
    }

    /// `$1` user id -> id, expires_at, user_id, created_at, last_seen_at,
    /// the attribute columns.
    pub(crate) fn get_user_sessions(&self, columns: &Columns) -> Sql {
        SqlBuilder::new()
            .sql("SELECT s.id, s.expires_at, s.user_id, s.created_at, s.last_seen_at, s.authenticated_at")
            .sql(&select_list("s", &columns.session))
            .sql(" FROM ")
            .table(self.names.session())
            .template(" AS s WHERE s.user_id = $1")
            .build()
    }

    /// `$1` id, `$2` user id, `$3` expires_at, `$4` created_at, `$5`
    /// last_seen_at, `$6` authenticated_at, then one `jsonb` parameter per attribute column, in the
    /// order given (see [`Write`]). Columns left
    /// out keep their defaults. One row (`true`) when inserted, none when the
    /// id is taken (never an overwrite).
    pub(crate) fn insert_session(&self, columns: &[&Column]) -> Sql {
        let session = self.names.session();
        let mut b = SqlBuilder::new()
            .sql("INSERT INTO ")
            .table(session)
            .sql(" (id, user_id, expires_at, created_at, last_seen_at, authenticated_at");
        for c in columns {
            b = b.sql(", ").ident(&c.name);
        }
        b = b.template(") VALUES ($1, $2, $3, $4, $5, $6");
        for c in columns {
            b = match &c.write {
                Write::Cast(ty) => b
                    .sql(", CAST(")
                    .bind()
                    .sql(" #>> '{}' AS ")
                    .table(ty)
                    .sql(")"),
                Write::Json(ty) => b
                    .sql(", CAST(NULLIF(")
                    .bind()
                    .sql(", 'null') AS ")
                    .table(ty)
                    .sql(")"),
                Write::Record => b
                    .sql(", (jsonb_populate_record(NULL::")
                    .table(session)
                    .sql(", ")
                    .bind()
                    .sql(")).")
                    .ident(&c.name),
            };
        }
        b.sql(") ON CONFLICT (id) DO NOTHING RETURNING true")
            .build()
    }
}

/// `, alias."c"` for each column (`, to_jsonb(alias."c")` where the server
/// makes the JSON).
fn select_list(alias: &str, columns: &[Column]) -> String {
    let mut out = String::new();
    for column in columns {
        out.push_str(", ");
        if !column.plain {
            out.push_str("to_jsonb(");
        }
        out.push_str(alias);
        out.push('.');
        column.name.write_quoted(&mut out);
        if !column.plain {
            out.push(')');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, plain: bool, write: Write) -> Column {
        Column {
            name: Ident::new(name, name).unwrap(),
            plain,
            write,
        }
    }

    fn ty(name: &str) -> TableName {
        TableName::qualified(Some("pg_catalog"), name).unwrap()
    }

    #[test]
    fn reads_select_each_attribute_column() {
        let s = Statements::new(&TableNames::new("auth.users", "Sessions").unwrap());
        let columns = Columns {
            session: vec![
                column("country", true, Write::Cast(ty("text"))),
                column("IP addr", false, Write::Cast(ty("inet"))),
            ],
            user: vec![column("it's", true, Write::Cast(ty("text")))],
            complete: true,
        };
        assert_eq!(
            s.get_user_sessions(&columns).text(),
            "SELECT s.id, s.expires_at, s.user_id, s.created_at, s.last_seen_at, s.authenticated_at, \
             s.\"country\", \
             to_jsonb(s.\"IP addr\") FROM \"Sessions\" AS s WHERE s.user_id = $1"
        );
        assert_eq!(
            s.get_session_and_user(&columns).text(),
            "SELECT s.id, s.expires_at, s.user_id, s.created_at, s.last_seen_at, s.authenticated_at, \
             s.\"country\", \
             to_jsonb(s.\"IP addr\"), u.\"it's\" FROM \"Sessions\" AS s INNER JOIN \
             \"auth\".\"users\" AS u ON u.id = s.user_id WHERE s.id = $1"
        );
        let none = Columns::default();
        assert_eq!(
            s.get_user_sessions(&none).text(),
            "SELECT s.id, s.expires_at, s.user_id, s.created_at, s.last_seen_at, s.authenticated_at \
             FROM \"Sessions\" AS s WHERE s.user_id = $1"
        );
    }

    #[test]
    fn inserts_cast_each_parameter_to_its_column_type() {
        let s = Statements::new(&TableNames::default());
        let (a, b, c) = (
            column("n", true, Write::Cast(ty("int4"))),
            column("j'son", true, Write::Json(ty("jsonb"))),
            column("arr", false, Write::Record),
        );
        let sql = s.insert_session(&[&a, &b, &c]);
        assert_eq!(
            sql.text(),
            "INSERT INTO \"user_session\" (id, user_id, expires_at, created_at, last_seen_at, \
             authenticated_at, \"n\", \"j'son\", \"arr\") VALUES ($1, $2, $3, $4, $5, $6, \
             CAST($7 #>> '{}' AS \"pg_catalog\".\"int4\"), \
             CAST(NULLIF($8, 'null') AS \"pg_catalog\".\"jsonb\"), \
             (jsonb_populate_record(NULL::\"user_session\", $9)).\"arr\") \
             ON CONFLICT (id) DO NOTHING RETURNING true"
        );
        assert_eq!(sql.parts().len(), 10);
    }
}
