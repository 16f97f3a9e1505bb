//! Values and errors between diesel and tokio-postgres, for the statements
//! that run on a tokio-postgres client ([`super::unnamed`]).
//!
//! Binds are serialized by diesel (its `ToSql` impls, through the statement's
//! own `QueryFragment`), sent as raw bytes with their type OIDs, and rows are
//! read back through diesel's `FromSql`, so both paths encode and decode
//! every value alike.

use std::error::Error as StdError;
use std::num::NonZeroU32;

use bytes::BytesMut;
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgMetadataLookup, PgTypeMetadata, PgValue};
use diesel::query_builder::QueryFragment;
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::error::{DatabaseError, DatabaseErrorKind, Error, Result};

/// One bind value, already serialized by diesel.
#[derive(Debug)]
pub(crate) struct RawBind(Option<Vec<u8>>);

impl ToSql for RawBind {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        Ok(match &self.0 {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                IsNull::No
            }
            None => IsNull::Yes,
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The statement's binds with the types PostgreSQL should parse them as.
pub(crate) fn binds(stmt: &impl QueryFragment<Pg>) -> Result<Vec<(RawBind, Type)>> {
    let mut collector = RawBytesBindCollector::<Pg>::new();
    stmt.collect_binds(&mut collector, &mut BuiltinTypesOnly, &Pg)
        .map_err(Error::from)?;
    collector
        .metadata
        .iter()
        .zip(collector.binds)
        .map(|(meta, bytes)| {
            let oid = meta
                .oid()
                .map_err(|e| Error::InvalidAttributes(e.to_string()))?;
            let ty = Type::from_oid(oid).ok_or_else(|| {
                Error::InvalidAttributes(format!("bind parameter of unsupported type {oid}"))
            })?;
            Ok((RawBind(bytes), ty))
        })
        .collect()
}

/// The adapter binds built-in types only (text, timestamptz, jsonb, integers,
/// uuid), whose OIDs diesel knows without asking the server.
struct BuiltinTypesOnly;

impl PgMetadataLookup for BuiltinTypesOnly {
    fn lookup_type(&mut self, type_name: &str, schema: Option<&str>) -> PgTypeMetadata {
        let key = diesel::pg::PgMetadataCacheKey::new(
            schema.map(|s| s.to_owned().into()),
            type_name.to_owned().into(),
        );
        PgTypeMetadata::from_result(Err(diesel::pg::FailedToLookupTypeError::new(key)))
    }
}

/// A column's bytes and type, borrowed from a row without decoding.
struct RawValue<'a>(&'a [u8], u32);

impl<'a> tokio_postgres::types::FromSql<'a> for RawValue<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Self(raw, ty.oid()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Column `idx` of `row` decoded by diesel's `FromSql` for `ST`.
pub(crate) fn get<ST, T: FromSql<ST, Pg>>(
    row: &tokio_postgres::Row,
    idx: usize,
) -> deserialize::Result<T> {
    let value: Option<RawValue<'_>> = row.try_get(idx)?;
    match value {
        Some(RawValue(bytes, oid)) => {
            let oid = NonZeroU32::new(oid).ok_or("a column without a type")?;
            T::from_nullable_sql(Some(PgValue::new(bytes, &oid)))
        }
        None => T::from_nullable_sql(None),
    }
}

/// Column `idx` of `row` as its type's OID and bytes; `None` for NULL.
pub(crate) fn value(
    row: &tokio_postgres::Row,
    idx: usize,
) -> deserialize::Result<Option<(u32, &[u8])>> {
    let value: Option<RawValue<'_>> = row.try_get(idx)?;
    Ok(value.map(|RawValue(bytes, oid)| (oid, bytes)))
}

/// SQLSTATE classes and codes the crate treats specially.
mod sqlstate {
    pub(super) const CONNECTION_EXCEPTION_CLASS: &str = "08";
    pub(super) const ADMIN_SHUTDOWN: &str = "57P01";
    pub(super) const CRASH_SHUTDOWN: &str = "57P02";
    pub(super) const CANNOT_CONNECT_NOW: &str = "57P03";
    pub(super) const QUERY_CANCELED: &str = "57014";
    pub(super) const LOCK_NOT_AVAILABLE: &str = "55P03";
    pub(super) const READ_ONLY_SQL_TRANSACTION: &str = "25006";
    pub(super) const UNIQUE_VIOLATION: &str = "23505";
    pub(super) const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub(super) const NOT_NULL_VIOLATION: &str = "23502";
    pub(super) const CHECK_VIOLATION: &str = "23514";
    pub(super) const SERIALIZATION_FAILURE: &str = "40001";
}

/// A tokio-postgres error as the crate's, classified by SQLSTATE (not by
/// message, so a server with localised messages classifies alike). Like
/// [`DatabaseError`] everywhere, PostgreSQL's `DETAIL` (which can hold key
/// values) is never kept.
pub(crate) fn error(err: &tokio_postgres::Error) -> Error {
    let Some(db) = err.as_db_error() else {
        // Closed sockets, I/O errors, protocol errors: the connection is
        // not to be trusted any more. tokio-postgres keeps the cause (such
        // as "Connection refused") out of its own message.
        return Error::unavailable(match StdError::source(err) {
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        });
    };
    from_db(
        db.code().code(),
        db.message().to_owned(),
        db.table().map(str::to_owned),
        db.column().map(str::to_owned),
        db.constraint().map(str::to_owned),
    )
}

/// What PostgreSQL (or the pooler) reported, by SQLSTATE.
fn from_db(
    code: &str,
    message: String,
    table: Option<String>,
    column: Option<String>,
    constraint: Option<String>,
) -> Error {
    let kind = match code {
        c if c.starts_with(sqlstate::CONNECTION_EXCEPTION_CLASS)
            || matches!(
                c,
                sqlstate::ADMIN_SHUTDOWN | sqlstate::CRASH_SHUTDOWN | sqlstate::CANNOT_CONNECT_NOW
            ) =>
        {
            return Error::Unavailable { message };
        }
        sqlstate::QUERY_CANCELED | sqlstate::LOCK_NOT_AVAILABLE => {
            return Error::Timeout { message };
        }
        sqlstate::READ_ONLY_SQL_TRANSACTION => return Error::ReadOnly { message },
        sqlstate::UNIQUE_VIOLATION => DatabaseErrorKind::UniqueViolation,
        sqlstate::FOREIGN_KEY_VIOLATION => DatabaseErrorKind::ForeignKeyViolation,
        sqlstate::NOT_NULL_VIOLATION => DatabaseErrorKind::NotNullViolation,
        sqlstate::CHECK_VIOLATION => DatabaseErrorKind::CheckViolation,
        sqlstate::SERIALIZATION_FAILURE => DatabaseErrorKind::SerializationFailure,
        _ => DatabaseErrorKind::Other,
    };
    Error::Database(DatabaseError::new(kind, message, table, column, constraint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(code: &str) -> Error {
        from_db(code, "m".into(), Some("t".into()), None, Some("c".into()))
    }

    #[test]
    fn sqlstates_map_to_what_callers_act_on() {
        // PgBouncer reports its own failures as 08P01.
        for code in ["08P01", "08006", "08003", "57P01", "57P02", "57P03"] {
            assert!(
                matches!(classify(code), Error::Unavailable { .. }),
                "{code}"
            );
        }
        for code in ["57014", "55P03"] {
            assert!(matches!(classify(code), Error::Timeout { .. }), "{code}");
        }
        assert!(matches!(classify("25006"), Error::ReadOnly { .. }));
        let kinds = [
            ("23505", DatabaseErrorKind::UniqueViolation),
            ("23503", DatabaseErrorKind::ForeignKeyViolation),
            ("23502", DatabaseErrorKind::NotNullViolation),
            ("23514", DatabaseErrorKind::CheckViolation),
            ("40001", DatabaseErrorKind::SerializationFailure),
            ("42P01", DatabaseErrorKind::Other),
        ];
        for (code, kind) in kinds {
            match classify(code) {
                Error::Database(db) => {
                    assert_eq!(db.kind(), kind, "{code}");
                    assert_eq!((db.table(), db.constraint()), (Some("t"), Some("c")));
                }
                other => panic!("{code}: {other:?}"),
            }
        }
    }
}
