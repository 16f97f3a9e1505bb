//! The crate's one error type.
//!
//! Every variant says what went wrong and what to do about it, and none of
//! them ever carries a session token: database errors are copied into a
//! [`DatabaseError`] that keeps the message and the names of the table,
//! column and constraint involved, but never the row values PostgreSQL puts
//! into its `DETAIL` lines (which can hold a session id).

use std::fmt;

/// `Result<T, lucia_diesel::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `lucia-diesel`.
///
/// Match on the variants a caller acts on differently: fix the configuration
/// at startup ([`Error::Config`]), retry later ([`Error::Unavailable`],
/// [`Error::PoolTimeout`], [`Error::Timeout`]), report a client mistake
/// ([`Error::UnknownUser`], [`Error::InvalidAttributes`]), or treat as a bug
/// or an operational problem ([`Error::Database`], [`Error::Decode`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was rejected when it was built; fix it at startup.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),

    /// The database could not be reached, or the connection broke during the
    /// call. Retry later; the session state in the database is unchanged
    /// unless the call was a write whose outcome is unknown.
    #[error("database unavailable: {message}; check that PostgreSQL is running and reachable")]
    Unavailable {
        /// What the driver or pool reported (never contains a token).
        message: String,
    },

    /// No pooled connection became free within the pool's checkout timeout.
    #[error(
        "timed out waiting for a pooled database connection{}; raise the pool size or the checkout timeout, or check the database",
        last_error.as_deref().map(|e| format!(" (last connection error: {e})")).unwrap_or_default()
    )]
    PoolTimeout {
        /// The most recent error seen while opening connections, if any.
        last_error: Option<String>,
    },

    /// PostgreSQL cancelled the statement: `statement_timeout`,
    /// `lock_timeout` or an explicit `pg_cancel_backend`. The connection
    /// stays usable; retry later.
    #[error("the database cancelled the statement: {message}")]
    Timeout {
        /// PostgreSQL's message, e.g. "canceling statement due to statement timeout".
        message: String,
    },

    /// `set_session` named a user id that is not in the user table
    /// (the session table's foreign key rejected it). Nothing was written.
    #[error("unknown user: the session's user id does not exist in the user table")]
    UnknownUser,

    /// `set_session` was given a session id that already exists. The existing
    /// session was left untouched.
    #[error("a session with this id already exists; the existing session was not changed")]
    DuplicateSessionId,

    /// `set_session` was given a session id PostgreSQL cannot store as a
    /// key: empty, longer than
    /// [`MAX_SESSION_ID_BYTES`](crate::postgres::MAX_SESSION_ID_BYTES), or
    /// containing NUL. Nothing was written.
    #[error("invalid session id: it must be 1 to 512 bytes without NUL characters")]
    InvalidSessionId,

    /// Session attributes were rejected: an unknown column, a value of the
    /// wrong type or too long, a `NOT NULL` or `CHECK` constraint, or a value
    /// PostgreSQL cannot store (such as a NUL character). Nothing was written.
    #[error("invalid session attributes: {0}")]
    InvalidAttributes(String),

    /// The database is read-only (`default_transaction_read_only`, a hot
    /// standby). Reads still work; writes fail until it is writable again.
    #[error("the database is read-only: {message}")]
    ReadOnly {
        /// PostgreSQL's message.
        message: String,
    },

    /// A row could not be turned into a session or user: an attribute that
    /// does not fit the application's type, or a timestamp out of range
    /// (`'infinity'`, a year past 262143).
    #[error("could not decode a row from the session tables: {0}")]
    Decode(String),

    /// The database migrations failed.
    #[error("running migrations failed: {0}; the failed migration was rolled back")]
    Migration(String),

    /// Any other error PostgreSQL reported, such as a missing table or column
    /// (did you run the migrations?) or a permission problem.
    #[error("database error: {0}")]
    Database(DatabaseError),

    /// [`PostgresAdapter::verify_schema`](crate::PostgresAdapter::verify_schema)
    /// found the tables unfit for the adapter; fix the schema or the grants
    /// before serving traffic. Every problem found is listed.
    #[error("the session tables are not usable: {0}")]
    Schema(SchemaError),
}

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

/// A configuration value rejected when it was built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A table, schema or column name is empty (or has an empty part around a dot).
    #[error("the name {0:?} is empty or has an empty part")]
    EmptyIdentifier(String),
    /// A name contains a NUL character, which PostgreSQL identifiers cannot hold.
    #[error("the name {0:?} contains a NUL character")]
    NulInIdentifier(String),
    /// A name part is longer than PostgreSQL's 63-byte limit (it would be
    /// silently truncated and then name a different object).
    #[error("the name {name:?} has a part of {len} bytes; PostgreSQL identifiers hold at most 63")]
    IdentifierTooLong {
        /// The name as given.
        name: String,
        /// The byte length of its longest part.
        len: usize,
    },
    /// A name has more than one dot; use `schema.table`.
    #[error("the name {0:?} has more than one dot; write `table` or `schema.table`")]
    TooManyDots(String),
    /// A column name that the crate manages itself (`id`, `user_id`,
    /// `expires_at`) was given as an attribute.
    #[error("{0:?} is managed by lucia-diesel and cannot be set as an attribute")]
    ReservedColumn(String),
    /// A duration setting is zero, negative or too large.
    #[error("{name} must be positive and at most {max_days} days")]
    InvalidDuration {
        /// The setting.
        name: &'static str,
        /// The largest accepted value, in days.
        max_days: i64,
    },
    /// Any other invalid setting.
    #[error("{0}")]
    Invalid(String),
}

/// What PostgreSQL said about a failed statement, without any row values.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseError {
    kind: DatabaseErrorKind,
    message: String,
    table: Option<String>,
    column: Option<String>,
    constraint: Option<String>,
}

/// The broad kind of a [`DatabaseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DatabaseErrorKind {
    /// A unique constraint failed.
    UniqueViolation,
    /// A foreign key failed.
    ForeignKeyViolation,
    /// A `NOT NULL` constraint failed.
    NotNullViolation,
    /// A `CHECK` constraint failed.
    CheckViolation,
    /// A serialization failure in a concurrent transaction.
    SerializationFailure,
    /// Anything else.
    Other,
}

impl DatabaseError {
    pub(crate) fn new(
        kind: DatabaseErrorKind,
        message: String,
        table: Option<String>,
        column: Option<String>,
        constraint: Option<String>,
    ) -> Self {
        Self {
            kind,
            message,
            table,
            column,
            constraint,
        }
    }

    /// The broad kind of error.
    #[must_use]
    pub fn kind(&self) -> DatabaseErrorKind {
        self.kind
    }
    /// PostgreSQL's primary message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The table involved, when PostgreSQL named one.
    #[must_use]
    pub fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }
    /// The column involved, when PostgreSQL named one.
    #[must_use]
    pub fn column(&self) -> Option<&str> {
        self.column.as_deref()
    }
    /// The constraint involved, when PostgreSQL named one.
    #[must_use]
    pub fn constraint(&self) -> Option<&str> {
        self.constraint.as_deref()
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(c) = &self.constraint {
            write!(f, " (constraint {c:?})")?;
        } else if let Some(c) = &self.column {
            write!(f, " (column {c:?})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("table", &self.table)
            .field("column", &self.column)
            .field("constraint", &self.constraint)
            .finish()
    }
}

impl std::error::Error for DatabaseError {}

impl Error {
    /// Whether retrying later may succeed: the database was unreachable, the
    /// pool was exhausted, or a statement was cancelled.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::PoolTimeout { .. } | Self::Timeout { .. }
        )
    }

    pub(crate) fn unavailable(message: impl fmt::Display) -> Self {
        Self::Unavailable {
            message: message.to_string(),
        }
    }
}

/// Messages (by prefix) of errors that mean the connection or server went away.
const CONNECTION_LOST: &[&str] = &[
    "terminating connection",
    "the database system is",
    "server closed the connection",
    "connection closed",
    "error communicating with the server",
    "no connection to the server",
];

impl From<diesel::result::Error> for Error {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match err {
            E::DatabaseError(kind, info) => {
                let message = info.message().to_owned();
                if matches!(kind, K::UnableToSendCommand | K::ClosedConnection)
                    || CONNECTION_LOST.iter().any(|p| message.starts_with(p))
                {
                    return Self::Unavailable { message };
                }
                if message.starts_with("canceling statement due to") {
                    return Self::Timeout { message };
                }
                if matches!(kind, K::ReadOnlyTransaction) {
                    return Self::ReadOnly { message };
                }
                let kind = match kind {
                    K::UniqueViolation => DatabaseErrorKind::UniqueViolation,
                    K::ForeignKeyViolation => DatabaseErrorKind::ForeignKeyViolation,
                    K::NotNullViolation => DatabaseErrorKind::NotNullViolation,
                    K::CheckViolation => DatabaseErrorKind::CheckViolation,
                    K::SerializationFailure => DatabaseErrorKind::SerializationFailure,
                    _ => DatabaseErrorKind::Other,
                };
                Self::Database(DatabaseError {
                    kind,
                    message,
                    table: info.table_name().map(str::to_owned),
                    column: info.column_name().map(str::to_owned),
                    constraint: info.constraint_name().map(str::to_owned),
                })
            }
            E::DeserializationError(e) => Self::Decode(e.to_string()),
            E::SerializationError(e) => Self::InvalidAttributes(e.to_string()),
            E::BrokenTransactionManager => {
                Self::unavailable("the connection's transaction state is broken")
            }
            other => Self::Database(DatabaseError {
                kind: DatabaseErrorKind::Other,
                message: other.to_string(),
                table: None,
                column: None,
                constraint: None,
            }),
        }
    }
}

impl From<diesel::ConnectionError> for Error {
    fn from(err: diesel::ConnectionError) -> Self {
        // `ConnectionError::InvalidConnectionUrl` repeats nothing of the URL;
        // the other variants carry the driver's message.
        Self::unavailable(err)
    }
}
