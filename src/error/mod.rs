//! The crate's one error type.
//!
//! Every variant says what went wrong and what to do about it, and none of
//! them ever carries a session token: errors PostgreSQL reports are reduced
//! to a [`DatabaseError`] (the SQLSTATE, the message and the names of the
//! table, column and constraint involved), never keeping the row values
//! PostgreSQL puts into its `DETAIL` lines, which can hold a session id.
//! Where an error has a cause, [`std::error::Error::source`] returns it.

mod classify;
mod config;
mod schema;

use std::fmt;
use std::sync::Arc;

pub use self::config::ConfigError;
#[cfg(feature = "bb8")]
pub(crate) use self::config::parse_database_url;
pub use self::schema::{SchemaError, SchemaProblem};
pub use crate::token::RngError;

#[cfg(feature = "pooler")]
pub(crate) use self::classify::classify_postgres;
pub(crate) use self::classify::{ErrorClass, classify_diesel, undefined_table};

/// `Result<T, lucia_diesel::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cause behind an [`Error`], shared so that `Error` stays `Clone`.
///
/// It never holds a token or a row value: a database error is always a
/// [`DatabaseError`] here, never the driver's own error (whose `Debug`
/// and `Display` include PostgreSQL's `DETAIL`).
pub type ErrorSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in `lucia-diesel`.
///
/// Match on the variants a caller acts on differently: fix the configuration
/// at startup ([`Error::Config`]), retry later ([`Error::Unavailable`],
/// [`Error::PoolTimeout`], [`Error::Timeout`]; see [`Error::is_transient`]),
/// report a client mistake ([`Error::UnknownUser`],
/// [`Error::InvalidAttributes`]), or treat as a bug or an operational
/// problem ([`Error::Database`], [`Error::Decode`], [`Error::Rng`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was rejected when it was built; fix it at startup.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),

    /// The operating system's random number generator failed, so no session
    /// token could be made. No session was created; this is a problem of
    /// the host (no entropy source), and retrying rarely helps.
    #[error(transparent)]
    Rng(#[from] RngError),

    /// The database could not be reached, or the connection broke during the
    /// call. Retry later; the session state in the database is unchanged
    /// unless the call was a write whose outcome is unknown.
    #[error("database unavailable: {message}; check that PostgreSQL is running and reachable")]
    Unavailable {
        /// What the driver, the pool or the server reported.
        message: String,
        /// The driver's or the server's error.
        #[source]
        source: Option<ErrorSource>,
    },

    /// No pooled connection became free within the pool's checkout timeout.
    #[error(
        "timed out waiting for a pooled database connection{}; raise the pool size or the checkout timeout, or check the database",
        last_error.as_ref().map(|e| format!(" (last connection error: {e})")).unwrap_or_default()
    )]
    PoolTimeout {
        /// The most recent error seen while opening connections during the
        /// wait, if any.
        #[source]
        last_error: Option<ErrorSource>,
    },

    /// The statement did not finish in time: PostgreSQL cancelled it
    /// (`statement_timeout`, `lock_timeout`, `pg_cancel_backend`), or the
    /// server stopped answering and the pool's client-side deadline passed
    /// (then a cancel request was sent and the connection retired). Retry
    /// later.
    #[error("the statement did not finish in time: {message}")]
    Timeout {
        /// What happened, e.g. "canceling statement due to statement timeout".
        message: String,
        /// The server's error, when the server cancelled the statement.
        #[source]
        source: Option<ErrorSource>,
    },

    /// `set_session` named a user id that is not in the user table
    /// (the session table's foreign key rejected it, or the id cannot be
    /// stored at all, such as a text id holding NUL). Nothing was written.
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
    #[error("invalid session attributes: {message}")]
    InvalidAttributes {
        /// What was wrong.
        message: String,
        /// The serializer's or the server's error.
        #[source]
        source: Option<ErrorSource>,
    },

    /// The database is read-only (`default_transaction_read_only`, a hot
    /// standby). Reads still work; writes fail until it is writable again.
    #[error("the database is read-only: {message}")]
    ReadOnly {
        /// PostgreSQL's message.
        message: String,
        /// The server's error.
        #[source]
        source: Option<ErrorSource>,
    },

    /// A row could not be turned into a session or user: an attribute that
    /// does not fit the application's type, or a timestamp out of range
    /// (`'infinity'`, a year past 262143).
    #[error("could not decode a row from the session tables: {message}")]
    Decode {
        /// What did not fit.
        message: String,
        /// The decoder's error.
        #[source]
        source: Option<ErrorSource>,
    },

    /// The database migrations failed.
    #[error("running migrations failed: {message}; the failed migration was rolled back")]
    Migration {
        /// What failed.
        message: String,
        /// The migration harness's error.
        #[source]
        source: Option<ErrorSource>,
    },

    /// Any other error PostgreSQL reported, such as a missing table or column
    /// (did you run the migrations?) or a permission problem.
    #[error("database error: {0}")]
    Database(#[source] DatabaseError),

    /// [`PostgresAdapter::verify_schema`](crate::PostgresAdapter::verify_schema)
    /// found the tables unfit for the adapter; fix the schema or the grants
    /// before serving traffic. Every problem found is listed.
    #[error("the session tables are not usable: {0}")]
    Schema(SchemaError),
}

impl Error {
    /// Whether retrying later may succeed: the database was unreachable, the
    /// pool was exhausted, or a statement did not finish in time.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::PoolTimeout { .. } | Self::Timeout { .. }
        )
    }

    /// [`Error::Unavailable`] with a message and no cause.
    pub(crate) fn unavailable(message: impl fmt::Display) -> Self {
        Self::Unavailable {
            message: message.to_string(),
            source: None,
        }
    }

    /// [`Error::Unavailable`] caused by `source` (an error that holds no
    /// row values: an I/O or connection error, never a server's error).
    pub(crate) fn unavailable_from(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable {
            message: source.to_string(),
            source: Some(Arc::new(source)),
        }
    }

    /// [`Error::InvalidAttributes`] with a message and no cause.
    pub(crate) fn invalid_attributes(message: impl fmt::Display) -> Self {
        Self::InvalidAttributes {
            message: message.to_string(),
            source: None,
        }
    }

    /// [`Error::Decode`] from a decoder's error.
    pub(crate) fn decode(source: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self::Decode {
            message: source.to_string(),
            source: Some(Arc::from(source)),
        }
    }
}

/// What PostgreSQL said about a failed statement, without any row values:
/// the SQLSTATE, the primary message and the names of the table, column and
/// constraint involved.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseError(Arc<DatabaseErrorParts>);

/// The parts of a [`DatabaseError`], behind one pointer so that [`Error`]
/// stays small.
#[derive(PartialEq, Eq)]
pub(crate) struct DatabaseErrorParts {
    pub(crate) kind: DatabaseErrorKind,
    pub(crate) code: Option<String>,
    pub(crate) message: String,
    pub(crate) table: Option<String>,
    pub(crate) column: Option<String>,
    pub(crate) constraint: Option<String>,
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
    pub(crate) fn new(parts: DatabaseErrorParts) -> Self {
        Self(Arc::new(parts))
    }

    /// The broad kind of error.
    #[must_use]
    pub fn kind(&self) -> DatabaseErrorKind {
        self.0.kind
    }
    /// The SQLSTATE code (`"42P01"`), when it is known. Errors that came
    /// through diesel-async carry it for the kinds diesel knows and for the
    /// messages listed in the crate's classifier; others may not.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        self.0.code.as_deref()
    }
    /// PostgreSQL's primary message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.0.message
    }
    /// The table involved, when PostgreSQL named one.
    #[must_use]
    pub fn table(&self) -> Option<&str> {
        self.0.table.as_deref()
    }
    /// The column involved, when PostgreSQL named one.
    #[must_use]
    pub fn column(&self) -> Option<&str> {
        self.0.column.as_deref()
    }
    /// The constraint involved, when PostgreSQL named one.
    #[must_use]
    pub fn constraint(&self) -> Option<&str> {
        self.0.constraint.as_deref()
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())?;
        if let Some(c) = self.constraint() {
            write!(f, " (constraint {c:?})")?;
        } else if let Some(c) = self.column() {
            write!(f, " (column {c:?})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseError")
            .field("kind", &self.kind())
            .field("code", &self.code())
            .field("message", &self.message())
            .field("table", &self.table())
            .field("column", &self.column())
            .field("constraint", &self.constraint())
            .finish()
    }
}

impl std::error::Error for DatabaseError {}

impl From<diesel::result::Error> for Error {
    fn from(err: diesel::result::Error) -> Self {
        classify_diesel(err).into_error()
    }
}

impl From<diesel::ConnectionError> for Error {
    fn from(err: diesel::ConnectionError) -> Self {
        match err {
            diesel::ConnectionError::CouldntSetupConfiguration(e) => Self::from(e),
            // The other variants carry the driver's message, which repeats
            // nothing of the URL's password.
            other => Self::unavailable_from(other),
        }
    }
}
