//! What [`PostgresAdapter::verify_schema`](crate::PostgresAdapter::verify_schema) reports.

use std::fmt;

/// What [`PostgresAdapter::verify_schema`](crate::PostgresAdapter::verify_schema)
/// found wrong: one or more [`SchemaProblem`]s, in the order checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    problems: Vec<SchemaProblem>,
}

impl SchemaError {
    pub(crate) fn new(problems: Vec<SchemaProblem>) -> Self {
        Self { problems }
    }

    /// Every problem found (never empty).
    #[must_use]
    pub fn problems(&self) -> &[SchemaProblem] {
        &self.problems
    }
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SchemaError {}

/// One thing wrong with the user or session table. Tables are named as SQL
/// (quoted, as the adapter uses them), columns by their bare names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaProblem {
    /// The schema of a schema-qualified table name does not exist.
    #[error("schema {schema} does not exist; create it (and the tables) or fix the table names")]
    SchemaNotFound {
        /// The schema, quoted.
        schema: String,
    },
    /// The connected role may not use the schema.
    #[error(
        "the database role has no USAGE privilege on schema {schema}; GRANT USAGE ON SCHEMA {schema} TO it"
    )]
    SchemaNotUsable {
        /// The schema, quoted.
        schema: String,
    },
    /// No table of this name is visible (wrong name, migrations not run, or
    /// an unqualified name not in `search_path`). Names are case-sensitive.
    #[error(
        "table {table} does not exist; run the migrations, or check the name (case-sensitive) and search_path"
    )]
    TableNotFound {
        /// The table, as SQL.
        table: String,
    },
    /// The name belongs to a view, sequence or other relation that is not a table.
    #[error("{table} is a {kind}, not a table")]
    NotATable {
        /// The table, as SQL.
        table: String,
        /// What it is instead (`view`, `materialized view`, `foreign table`, ...).
        kind: String,
    },
    /// A column the adapter needs is missing.
    #[error("table {table} has no column {column:?}; add it or run the migrations")]
    MissingColumn {
        /// The table, as SQL.
        table: String,
        /// The column.
        column: &'static str,
    },
    /// A column has a type the adapter cannot use.
    #[error("column {column:?} of {table} is {found}; expected {expected}")]
    WrongColumnType {
        /// The table, as SQL.
        table: String,
        /// The column.
        column: &'static str,
        /// Its type, as PostgreSQL prints it.
        found: String,
        /// What would work.
        expected: &'static str,
    },
    /// A column the adapter reads as a value allows `NULL`.
    #[error("column {column:?} of {table} allows NULL; make it NOT NULL")]
    NullableColumn {
        /// The table, as SQL.
        table: String,
        /// The column.
        column: &'static str,
    },
    /// The `id` column has no unique index that `INSERT ... ON CONFLICT (id)`
    /// can use, so a new session could not be told apart from an existing one.
    #[error(
        "column {column:?} of {table} has no unique index usable by ON CONFLICT ({column}); make it the PRIMARY KEY (or add a UNIQUE index on it alone, not partial, not deferrable)"
    )]
    NoUniqueIndex {
        /// The table, as SQL.
        table: String,
        /// The column.
        column: &'static str,
    },
    /// A `DEFERRABLE` unique constraint on the `id` column: `ON CONFLICT (id)`
    /// picks it up and fails, even when another unique index would do.
    #[error(
        "column {column:?} of {table} has a DEFERRABLE unique constraint, which ON CONFLICT ({column}) rejects; make it NOT DEFERRABLE"
    )]
    DeferrableUnique {
        /// The table, as SQL.
        table: String,
        /// The column.
        column: &'static str,
    },
    /// The connected role lacks a privilege the adapter needs.
    #[error("the database role lacks {privilege} on {table}; GRANT {privilege} ON {table} TO it")]
    MissingPrivilege {
        /// The table, as SQL.
        table: String,
        /// `SELECT`, `INSERT`, `UPDATE` or `DELETE`.
        privilege: &'static str,
    },
}
