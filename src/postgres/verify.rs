//! [`PostgresAdapter::verify_schema`]: a startup check that the configured
//! tables are what the adapter's statements need, reported in full.
//!
//! Everything is read from the system catalogs for the connected role, so
//! the check sees what the adapter will see: names resolved through the
//! connection's `search_path`, privileges of the role it connects as.

use diesel::deserialize;
use diesel::sql_types::{BigInt, Bool, Integer, Text};

use super::{ConnectionSource, PostgresAdapter, SourceConnection as _, TableName, UserId};
use crate::error::{Error, Result, SchemaError, SchemaProblem};
use crate::exec::{Conn, Param, Row, Sql, SqlBuilder, Statement};
use crate::trace::traced;

/// The schema, and whether the role may use it.
const SCHEMA: &str = "SELECT has_schema_privilege(oid, 'USAGE') AS usable \
     FROM pg_catalog.pg_namespace WHERE nspname = $1";

/// The relation a (quoted) name resolves to, as the adapter's statements
/// would resolve it.
const RELATION: &str = "SELECT c.oid::int8 AS oid, c.relkind::text AS kind, \
     has_table_privilege(c.oid, 'DELETE') AS can_delete \
     FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)";

/// Every live column: its type (domains resolved to their base type), and
/// what the role may do with it. `unique_alone` is a unique index on this
/// column alone that `ON CONFLICT (column)` can infer: valid, immediate
/// (not deferrable), without a predicate or expressions. `deferrable` is a
/// deferrable one, which `ON CONFLICT (column)` also infers, and rejects.
const COLUMNS: &str = "SELECT a.attname::text AS name, a.attnotnull AS not_null, \
     format_type(a.atttypid, a.atttypmod) AS declared, bt.typname::text AS base, \
     CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod, \
     has_column_privilege(a.attrelid, a.attnum, 'SELECT') AS can_select, \
     has_column_privilege(a.attrelid, a.attnum, 'INSERT') AS can_insert, \
     has_column_privilege(a.attrelid, a.attnum, 'UPDATE') AS can_update, \
     EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = a.attrelid \
     AND i.indisunique AND i.indimmediate AND i.indisvalid AND i.indpred IS NULL \
     AND i.indexprs IS NULL AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum) AS unique_alone, \
     EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = a.attrelid \
     AND i.indisunique AND NOT i.indimmediate AND i.indpred IS NULL \
     AND i.indexprs IS NULL AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum) AS deferrable \
     FROM pg_catalog.pg_attribute a \
     JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
     JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
     WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attnum";

/// Session ids are the 64-character hex SHA-256 of the token by default.
const MIN_ID_CHARS: i32 = 64;

struct RelationRow {
    oid: i64,
    kind: String,
    can_delete: bool,
}

impl RelationRow {
    fn decode(row: &Row) -> deserialize::Result<Self> {
        Ok(Self {
            oid: row.get::<BigInt, _>(0)?,
            kind: row.get::<Text, _>(1)?,
            can_delete: row.get::<Bool, _>(2)?,
        })
    }
}

/// One row of [`COLUMNS`], in its column order.
struct ColumnRow {
    name: String,
    not_null: bool,
    declared: String,
    base: String,
    typmod: i32,
    can_select: bool,
    can_insert: bool,
    can_update: bool,
    unique_alone: bool,
    deferrable: bool,
}

impl ColumnRow {
    fn decode(row: &Row) -> deserialize::Result<Self> {
        Ok(Self {
            name: row.get::<Text, _>(0)?,
            not_null: row.get::<Bool, _>(1)?,
            declared: row.get::<Text, _>(2)?,
            base: row.get::<Text, _>(3)?,
            typmod: row.get::<Integer, _>(4)?,
            can_select: row.get::<Bool, _>(5)?,
            can_insert: row.get::<Bool, _>(6)?,
            can_update: row.get::<Bool, _>(7)?,
            unique_alone: row.get::<Bool, _>(8)?,
            deferrable: row.get::<Bool, _>(9)?,
        })
    }
}

/// The catalog queries, as statements either kind of connection runs.
struct Queries {
    schema: Sql,
    relation: Sql,
    columns: Sql,
}

impl Queries {
    fn new() -> Self {
        Self {
            schema: SqlBuilder::new().template(SCHEMA).build(),
            relation: SqlBuilder::new().template(RELATION).build(),
            columns: SqlBuilder::new().template(COLUMNS).build(),
        }
    }
}

/// A column type the adapter can read and bind: the base types that fit
/// (domains count as their base type), and what to say otherwise.
#[derive(Debug, Clone, Copy)]
struct Want(&'static [&'static str], &'static str);

/// Session ids: `text`, or `varchar` long enough for a hashed id (checked
/// in [`Want::mismatch`]).
const SESSION_ID: Want = Want(
    &["text", "varchar"],
    "text (or varchar of at least 64 characters)",
);
const TIMESTAMPTZ: Want = Want(&["timestamptz"], "timestamptz (timestamp with time zone)");

impl Want {
    fn user_id<U: UserId>() -> Self {
        match U::SQL_TYPE {
            "TEXT" => Want(
                &["text", "varchar"],
                "text or varchar, to match the String user id type",
            ),
            "INTEGER" => Want(&["int4"], "integer, to match the i32 user id type"),
            "BIGINT" => Want(&["int8"], "bigint, to match the i64 user id type"),
            _ => Want(&["uuid"], "uuid, to match the uuid::Uuid user id type"),
        }
    }

    /// `None` when `column` fits, else what would.
    fn mismatch(self, column: &ColumnRow) -> Option<&'static str> {
        // varchar(n) stores typmod n + 4; -1 is unlimited.
        let too_short = self.1 == SESSION_ID.1
            && column.base == "varchar"
            && column.typmod >= 0
            && column.typmod - 4 < MIN_ID_CHARS;
        (!self.0.contains(&column.base.as_str()) || too_short).then_some(self.1)
    }
}

/// One column the adapter needs and what it does with it: its name, its
/// type, whether it must have a unique index of its own (`ON CONFLICT
/// (id)`, the join), and whether `INSERT` and `UPDATE` write it.
struct Need(&'static str, Want, bool, bool, bool);

impl<S, U, SA, UA> PostgresAdapter<S, U, SA, UA>
where
    S: ConnectionSource,
    U: UserId,
{
    /// Checks, as the role the adapter connects as, that the user and
    /// session tables are fit for the adapter. Call it once at startup,
    /// before serving traffic, so that a wrong schema is a clear error
    /// rather than failed logins.
    ///
    /// Checked: both tables exist (through the connection's `search_path`
    /// for unqualified names) and are tables; the session table has `id`
    /// (`text`, or `varchar` of at least 64 characters), `expires_at`
    /// (`timestamptz`), `created_at` and `last_seen_at` (`timestamptz`, from
    /// the crate's second migration), `authenticated_at` (`timestamptz`,
    /// from its third: [`authenticated_at_sql`](crate::migrations::authenticated_at_sql)
    /// for custom tables) and `user_id`, and the user table has `id`, both user
    /// ids of the column type of `U` (`text`/`varchar`, `integer`, `bigint`
    /// or `uuid`); those columns are `NOT NULL`; each table's `id` has a
    /// unique index of its own that `ON CONFLICT (id)` can use (a primary
    /// key does); and the role may `SELECT` both tables and `INSERT`,
    /// `UPDATE` and `DELETE` sessions. Extra columns (attributes) and
    /// row-level security policies are not checked.
    ///
    /// # Examples
    /// ```no_run
    /// use lucia_diesel::{PoolOptions, PostgresAdapter};
    ///
    /// # async fn run() -> lucia_diesel::Result<()> {
    /// let adapter = PostgresAdapter::new(PoolOptions::new().build("postgres://localhost/app").await?);
    /// adapter.verify_schema().await?; // e.g. "table \"user_session\" does not exist; run the migrations, ..."
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Schema`] listing every problem found (see [`SchemaProblem`]);
    /// [`Error::Unavailable`] or [`Error::PoolTimeout`] when the database
    /// cannot be reached.
    pub async fn verify_schema(&self) -> Result<()> {
        let span = tracing::debug_span!("verify_schema");
        traced(&span, async {
            let mut lent = self.source.connection().await?;
            let mut conn = lent.conn().within(self.source.operation_timeout());
            let queries = Queries::new();
            let user_id = Want::user_id::<U>();
            let session_needs = [
                Need("id", SESSION_ID, true, true, true),
                Need("expires_at", TIMESTAMPTZ, false, true, true),
                Need("user_id", user_id, false, true, false),
                Need("created_at", TIMESTAMPTZ, false, true, false),
                Need("last_seen_at", TIMESTAMPTZ, false, true, true),
                Need("authenticated_at", TIMESTAMPTZ, false, true, true),
            ];
            let user_needs = [Need("id", user_id, true, false, false)];
            let (user, session) = (self.names.user(), self.names.session());
            let mut problems = check_table(&mut conn, &queries, user, &user_needs, false).await?;
            problems.extend(check_table(&mut conn, &queries, session, &session_needs, true).await?);
            if problems.is_empty() {
                Ok(())
            } else {
                Err(Error::Schema(SchemaError::new(problems)))
            }
        })
        .await
    }
}

/// What is wrong with one table.
async fn check_table(
    conn: &mut Conn<'_>,
    queries: &Queries,
    name: &TableName,
    needs: &[Need],
    writable: bool,
) -> Result<Vec<SchemaProblem>> {
    let mut problems = Vec::new();
    let table = name.to_sql();
    if let (Some(schema), Some(quoted)) = (name.schema(), name.schema_sql()) {
        let params = [Param::Text(schema)];
        let stmt = Statement::new(&queries.schema, &params);
        let rows = conn.query(stmt).await?;
        let usable = rows.first().map(|row| row.get::<Bool, bool>(0));
        match usable.transpose().map_err(Error::decode)? {
            None => return Ok(vec![SchemaProblem::SchemaNotFound { schema: quoted }]),
            Some(false) => return Ok(vec![SchemaProblem::SchemaNotUsable { schema: quoted }]),
            Some(true) => {}
        }
    }
    let params = [Param::Text(&table)];
    let stmt = Statement::new(&queries.relation, &params);
    let rows = conn.query(stmt).await?;
    let relation = rows.first().map(RelationRow::decode);
    let Some(relation) = relation.transpose().map_err(Error::decode)? else {
        return Ok(vec![SchemaProblem::TableNotFound { table }]);
    };
    if !matches!(relation.kind.as_str(), "r" | "p") {
        let kind = relation_kind(&relation.kind).to_owned();
        return Ok(vec![SchemaProblem::NotATable { table, kind }]);
    }
    let params = [Param::BigInt(relation.oid)];
    let stmt = Statement::new(&queries.columns, &params);
    let rows = conn.query(stmt).await?;
    let columns = rows
        .iter()
        .map(ColumnRow::decode)
        .collect::<deserialize::Result<Vec<_>>>();
    let columns = columns.map_err(Error::decode)?;
    for &Need(name, want, unique, _, _) in needs {
        let (table, column) = (table.clone(), name);
        let Some(c) = columns.iter().find(|c| c.name == name) else {
            problems.push(SchemaProblem::MissingColumn { table, column });
            continue;
        };
        if let Some(expected) = want.mismatch(c) {
            let found = c.declared.clone();
            let (table, column) = (table.clone(), name);
            problems.push(SchemaProblem::WrongColumnType {
                table,
                column,
                found,
                expected,
            });
        }
        if !c.not_null {
            problems.push(SchemaProblem::NullableColumn {
                table: table.clone(),
                column,
            });
        }
        if unique && !c.unique_alone {
            problems.push(SchemaProblem::NoUniqueIndex {
                table: table.clone(),
                column,
            });
        }
        if unique && c.deferrable {
            problems.push(SchemaProblem::DeferrableUnique { table, column });
        }
    }
    // Every column is read (attributes are all the other columns).
    let can = |column: &str, check: fn(&ColumnRow) -> bool| {
        columns.iter().find(|c| c.name == column).is_none_or(check)
    };
    let inserts = needs
        .iter()
        .filter(|n| n.3)
        .all(|n| can(n.0, |c| c.can_insert));
    let updates = needs
        .iter()
        .filter(|n| n.4)
        .all(|n| can(n.0, |c| c.can_update));
    let missing = [
        ("SELECT", columns.iter().all(|c| c.can_select)),
        ("INSERT", !writable || inserts),
        ("UPDATE", !writable || updates),
        ("DELETE", !writable || relation.can_delete),
    ];
    for (privilege, granted) in missing {
        if !granted {
            problems.push(SchemaProblem::MissingPrivilege {
                table: table.clone(),
                privilege,
            });
        }
    }
    Ok(problems)
}

/// `pg_class.relkind` in words.
fn relation_kind(kind: &str) -> &'static str {
    match kind {
        "v" => "view",
        "m" => "materialized view",
        "f" => "foreign table",
        "S" => "sequence",
        "i" | "I" => "index",
        "c" => "composite type",
        "t" => "TOAST table",
        _ => "relation of another kind",
    }
}
