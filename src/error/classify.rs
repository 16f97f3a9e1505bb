//! The one place errors from PostgreSQL are classified, by SQLSTATE.
//!
//! Both ways a statement can fail end here: through diesel-async (the
//! named-statement connections) and through tokio-postgres directly (the
//! pooler mode's unnamed statements). Each becomes a SQLSTATE first, then
//! one table decides what the caller sees and what happens to the
//! connection.

use std::sync::Arc;

use tokio_postgres::error::SqlState;

use super::{DatabaseError, DatabaseErrorKind, DatabaseErrorParts, Error};

/// What a failed statement means: the error for the caller, and what to
/// do with the connection and with the adapter's knowledge of its columns.
#[derive(Debug)]
pub(crate) struct ErrorClass {
    pub(crate) error: Error,
    /// The connection can no longer be trusted: never lend it again.
    pub(crate) retire: bool,
    /// The statement named a column that is gone or has another type: the
    /// adapter's columns may be out of date.
    pub(crate) stale_columns: bool,
}

impl From<ErrorClass> for Error {
    fn from(class: ErrorClass) -> Self {
        class.error
    }
}

/// PostgreSQL's error for a table that does not exist, for statements the
/// adapter cannot even render without it.
pub(crate) fn undefined_table(table: &str) -> Error {
    Error::Database(DatabaseError::new(DatabaseErrorParts {
        kind: DatabaseErrorKind::Other,
        code: Some(SqlState::UNDEFINED_TABLE.code().to_owned()),
        message: format!("relation {table} does not exist"),
        table: None,
        column: None,
        constraint: None,
    }))
}

impl ErrorClass {
    pub(crate) fn into_error(self) -> Error {
        self.error
    }

    /// An error that says nothing about the connection or the columns.
    pub(crate) fn from_error(error: Error) -> Self {
        Self::new(error)
    }

    fn new(error: Error) -> Self {
        Self {
            error,
            retire: false,
            stale_columns: false,
        }
    }
}

/// The parts of a server's error the crate keeps (never `DETAIL`, which
/// can hold key values such as a session id).
struct ServerError<'a> {
    code: Option<SqlState>,
    message: &'a str,
    table: Option<&'a str>,
    column: Option<&'a str>,
    constraint: Option<&'a str>,
}

impl ServerError<'_> {
    fn database_error(&self, kind: DatabaseErrorKind) -> DatabaseError {
        DatabaseError::new(DatabaseErrorParts {
            kind,
            code: self.code.as_ref().map(|c| c.code().to_owned()),
            message: self.message.to_owned(),
            table: self.table.map(str::to_owned),
            column: self.column.map(str::to_owned),
            constraint: self.constraint.map(str::to_owned),
        })
    }

    /// The table: what each SQLSTATE means for the caller and the connection.
    fn classify(&self) -> ErrorClass {
        let message = self.message.to_owned();
        let code = self.code.as_ref();
        let source =
            |kind| -> Option<super::ErrorSource> { Some(Arc::new(self.database_error(kind))) };
        let kind = match code {
            // Connection exceptions (class 08; PgBouncer reports its own
            // failures as 08P01), the server shutting down or starting up,
            // and a prepared statement dropped under the connection (a
            // pooler in transaction mode): the connection is done for.
            Some(c)
                if c.code().starts_with("08")
                    || [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                        SqlState::TOO_MANY_CONNECTIONS,
                    ]
                    .contains(c) =>
            {
                return ErrorClass {
                    retire: true,
                    ..ErrorClass::new(Error::Unavailable {
                        message,
                        source: source(DatabaseErrorKind::Other),
                    })
                };
            }
            Some(&SqlState::INVALID_SQL_STATEMENT_NAME) => {
                return ErrorClass {
                    retire: true,
                    ..ErrorClass::new(Error::Unavailable {
                        message: format!(
                            "{message}; the connection's prepared statements were dropped (a pooler in transaction mode? use PoolerPool)"
                        ),
                        source: source(DatabaseErrorKind::Other),
                    })
                };
            }
            Some(&SqlState::QUERY_CANCELED | &SqlState::LOCK_NOT_AVAILABLE) => {
                return ErrorClass::new(Error::Timeout {
                    message,
                    source: source(DatabaseErrorKind::Other),
                });
            }
            Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => {
                return ErrorClass::new(Error::ReadOnly {
                    message,
                    source: source(DatabaseErrorKind::Other),
                });
            }
            Some(&SqlState::UNIQUE_VIOLATION) => DatabaseErrorKind::UniqueViolation,
            Some(&SqlState::FOREIGN_KEY_VIOLATION) => DatabaseErrorKind::ForeignKeyViolation,
            Some(&SqlState::NOT_NULL_VIOLATION) => DatabaseErrorKind::NotNullViolation,
            Some(&SqlState::CHECK_VIOLATION) => DatabaseErrorKind::CheckViolation,
            Some(&SqlState::T_R_SERIALIZATION_FAILURE) => DatabaseErrorKind::SerializationFailure,
            _ => DatabaseErrorKind::Other,
        };
        ErrorClass {
            error: Error::Database(self.database_error(kind)),
            // "cached plan must not change result type": a column changed
            // type under a statement this connection has prepared, which
            // stays broken on this connection.
            retire: code == Some(&SqlState::FEATURE_NOT_SUPPORTED),
            stale_columns: matches!(
                code,
                Some(&SqlState::UNDEFINED_COLUMN | &SqlState::DATATYPE_MISMATCH)
            ),
        }
    }
}

/// A tokio-postgres error (the pooler mode's statements, connecting).
#[cfg(feature = "pooler")]
pub(crate) fn classify_postgres(err: tokio_postgres::Error) -> ErrorClass {
    match err.as_db_error() {
        Some(db) => ServerError {
            code: Some(db.code().clone()),
            message: db.message(),
            table: db.table(),
            column: db.column(),
            constraint: db.constraint(),
        }
        .classify(),
        // Closed sockets, I/O and protocol errors: the connection is not
        // to be trusted any more. Such errors hold no row values.
        None => ErrorClass {
            retire: true,
            ..ErrorClass::new(Error::unavailable_from(err))
        },
    }
}

/// A diesel error (diesel-async's named statements).
pub(crate) fn classify_diesel(err: diesel::result::Error) -> ErrorClass {
    use diesel::result::Error as E;
    match err {
        E::DatabaseError(kind, info) => ServerError {
            code: diesel_sqlstate(&kind, info.message()),
            message: info.message(),
            table: info.table_name(),
            column: info.column_name(),
            constraint: info.constraint_name(),
        }
        .classify(),
        E::DeserializationError(e) => ErrorClass::new(Error::decode(e)),
        E::SerializationError(e) => ErrorClass::new(Error::InvalidAttributes {
            message: e.to_string(),
            source: Some(Arc::from(e)),
        }),
        E::BrokenTransactionManager => ErrorClass {
            retire: true,
            ..ErrorClass::new(Error::unavailable(
                "the connection's transaction state is broken",
            ))
        },
        other => ErrorClass::new(Error::Database(DatabaseError::new(DatabaseErrorParts {
            kind: DatabaseErrorKind::Other,
            code: None,
            message: other.to_string(),
            table: None,
            column: None,
            constraint: None,
        }))),
    }
}

/// The SQLSTATE behind a diesel error.
///
/// diesel-async keeps a server error's SQLSTATE only as diesel's
/// `DatabaseErrorKind`, which names a few codes (unique, foreign key,
/// `NOT NULL`, `CHECK`, serialization failure, read-only); for every other
/// code it keeps the message alone. Those codes are recovered here from
/// PostgreSQL's message text, which assumes the server reports in English
/// (`lc_messages` `C` or `en_*`, the default). On a server that reports in
/// another language these errors classify as [`DatabaseErrorKind::Other`]
/// with no code; the pooler mode reads the SQLSTATE itself and is unaffected.
/// Errors without a server error at all (a closed socket) come from
/// diesel-async as `UnableToSendCommand`.
fn diesel_sqlstate(kind: &diesel::result::DatabaseErrorKind, message: &str) -> Option<SqlState> {
    use diesel::result::DatabaseErrorKind as K;
    Some(match kind {
        K::UniqueViolation => SqlState::UNIQUE_VIOLATION,
        K::ForeignKeyViolation => SqlState::FOREIGN_KEY_VIOLATION,
        K::NotNullViolation => SqlState::NOT_NULL_VIOLATION,
        K::CheckViolation => SqlState::CHECK_VIOLATION,
        K::RestrictViolation => SqlState::RESTRICT_VIOLATION,
        K::ExclusionViolation => SqlState::EXCLUSION_VIOLATION,
        K::SerializationFailure => SqlState::T_R_SERIALIZATION_FAILURE,
        K::ReadOnlyTransaction => SqlState::READ_ONLY_SQL_TRANSACTION,
        K::ClosedConnection => SqlState::CONNECTION_DOES_NOT_EXIST,
        K::UnableToSendCommand => SqlState::CONNECTION_FAILURE,
        _ => return sqlstate_from_message(message),
    })
}

/// PostgreSQL's English messages for the codes the crate acts on.
const MESSAGES: &[(&str, &str, SqlState)] = &[
    ("terminating connection", "", SqlState::ADMIN_SHUTDOWN),
    ("the database system is", "", SqlState::CANNOT_CONNECT_NOW),
    (
        "sorry, too many clients",
        "",
        SqlState::TOO_MANY_CONNECTIONS,
    ),
    (
        "canceling statement due to lock timeout",
        "",
        SqlState::LOCK_NOT_AVAILABLE,
    ),
    ("canceling statement due to", "", SqlState::QUERY_CANCELED),
    (
        "prepared statement \"",
        "\" does not exist",
        SqlState::INVALID_SQL_STATEMENT_NAME,
    ),
    ("column ", " does not exist", SqlState::UNDEFINED_COLUMN),
    (
        "relation \"",
        "\" does not exist",
        SqlState::UNDEFINED_TABLE,
    ),
    ("type \"", "\" does not exist", SqlState::UNDEFINED_OBJECT),
    ("permission denied", "", SqlState::INSUFFICIENT_PRIVILEGE),
    (
        "cached plan must not change result type",
        "",
        SqlState::FEATURE_NOT_SUPPORTED,
    ),
    ("column \"", "", SqlState::DATATYPE_MISMATCH),
    (
        "invalid input syntax",
        "",
        SqlState::INVALID_TEXT_REPRESENTATION,
    ),
    (
        "invalid input value for enum",
        "",
        SqlState::INVALID_TEXT_REPRESENTATION,
    ),
    (
        "value too long for type",
        "",
        SqlState::STRING_DATA_RIGHT_TRUNCATION,
    ),
    (
        "numeric field overflow",
        "",
        SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
    ),
    (
        "invalid byte sequence",
        "",
        SqlState::CHARACTER_NOT_IN_REPERTOIRE,
    ),
    (
        "unsupported Unicode escape sequence",
        "",
        SqlState::UNTRANSLATABLE_CHARACTER,
    ),
];

fn sqlstate_from_message(message: &str) -> Option<SqlState> {
    MESSAGES
        .iter()
        .find(|(start, end, code)| {
            message.starts_with(start)
                && message.ends_with(end)
                // `column "c" is of type integer but expression is of type text`
                && (*code != SqlState::DATATYPE_MISMATCH || message.contains(" is of type "))
        })
        .map(|(_, _, code)| code.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(code: &str) -> ErrorClass {
        ServerError {
            code: Some(SqlState::from_code(code)),
            message: "m",
            table: Some("t"),
            column: None,
            constraint: Some("c"),
        }
        .classify()
    }

    #[test]
    fn sqlstates_map_to_what_callers_act_on() {
        for code in [
            "08P01", "08006", "08003", "57P01", "57P02", "57P03", "53300", "26000",
        ] {
            let c = class(code);
            assert!(matches!(c.error, Error::Unavailable { .. }), "{code}");
            assert!(c.retire, "{code}");
        }
        for code in ["57014", "55P03"] {
            let c = class(code);
            assert!(matches!(c.error, Error::Timeout { .. }), "{code}");
            assert!(!c.retire, "{code}");
        }
        assert!(matches!(class("25006").error, Error::ReadOnly { .. }));
        let kinds = [
            ("23505", DatabaseErrorKind::UniqueViolation),
            ("23503", DatabaseErrorKind::ForeignKeyViolation),
            ("23502", DatabaseErrorKind::NotNullViolation),
            ("23514", DatabaseErrorKind::CheckViolation),
            ("40001", DatabaseErrorKind::SerializationFailure),
            ("42P01", DatabaseErrorKind::Other),
        ];
        for (code, kind) in kinds {
            match class(code).error {
                Error::Database(db) => {
                    assert_eq!(db.kind(), kind, "{code}");
                    assert_eq!(db.code(), Some(code));
                    assert_eq!((db.table(), db.constraint()), (Some("t"), Some("c")));
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        assert!(class("42703").stale_columns && class("42804").stale_columns);
        assert!(!class("42P01").stale_columns && !class("23505").stale_columns);
        assert!(class("0A000").retire);
    }

    #[test]
    fn english_messages_give_back_the_sqlstate() {
        let cases = [
            (
                "terminating connection due to administrator command",
                "57P01",
            ),
            ("the database system is shutting down", "57P03"),
            ("canceling statement due to statement timeout", "57014"),
            ("canceling statement due to user request", "57014"),
            ("canceling statement due to lock timeout", "55P03"),
            (
                "prepared statement \"__diesel_stmt_3\" does not exist",
                "26000",
            ),
            ("column s.country does not exist", "42703"),
            (
                "column \"n\" is of type integer but expression is of type text",
                "42804",
            ),
            ("relation \"user_session\" does not exist", "42P01"),
            ("permission denied for table user_session", "42501"),
            ("cached plan must not change result type", "0A000"),
            ("value too long for type character varying(3)", "22001"),
        ];
        for (message, code) in cases {
            assert_eq!(
                sqlstate_from_message(message).map(|c| c.code().to_owned()),
                Some(code.to_owned()),
                "{message}"
            );
        }
        assert_eq!(sqlstate_from_message("something else"), None);
    }

    #[test]
    fn a_server_error_never_keeps_its_detail() {
        let db = class("23505").error;
        let shown = format!("{db} {db:?}");
        assert!(
            !shown.contains("DETAIL") && !shown.contains("Key ("),
            "{shown}"
        );
    }
}
