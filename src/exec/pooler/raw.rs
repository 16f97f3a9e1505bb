//! Values between diesel and tokio-postgres, for the statements a
//! [`PoolerConnection`](super::PoolerConnection) runs on its tokio-postgres
//! client.
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

use crate::error::{Error, Result};

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
            let oid = meta.oid().map_err(Error::invalid_attributes)?;
            let ty = Type::from_oid(oid).ok_or_else(|| {
                Error::invalid_attributes(format_args!("bind parameter of unsupported type {oid}"))
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
