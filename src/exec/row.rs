//! A row from either kind of connection, owned, read by column index with
//! diesel's `FromSql` (so both kinds decode alike), or as the JSON value
//! `to_jsonb` would make of a column of a common type.

use diesel::deserialize::{self, FromSql};
use diesel::pg::Pg;
use diesel_async::{AsyncConnectionCore, AsyncPgConnection};
use serde_json::Value;

use super::pooler::{self, PoolerRow};

/// A row of a query's answer.
pub(crate) enum Row {
    Diesel(PgRow),
    #[cfg_attr(not(feature = "pooler"), allow(dead_code))]
    Pooler(PoolerRow),
}

/// A row as diesel-async returns it.
pub(super) type PgRow = <AsyncPgConnection as AsyncConnectionCore>::Row<'static, 'static>;

impl Row {
    /// Column `idx` as `T`, read as SQL type `ST`.
    pub(crate) fn get<ST, T: FromSql<ST, Pg>>(&self, idx: usize) -> deserialize::Result<T> {
        match self {
            Row::Diesel(row) => diesel::row::Row::get_value::<ST, T, usize>(row, idx),
            Row::Pooler(row) => pooler::get(row, idx),
        }
    }

    /// Column `idx` as the JSON value `to_jsonb` makes of it, for the
    /// types read plainly (see [`oid`]); an error for any other type.
    pub(crate) fn json(&self, idx: usize) -> deserialize::Result<Value> {
        match self {
            Row::Diesel(row) => {
                let field = diesel::row::Row::get(row, idx).ok_or("no such column")?;
                let value = diesel::row::Field::value(&field);
                column_value(value.as_ref().map(|v| (v.get_oid().get(), v.as_bytes())))
            }
            Row::Pooler(row) => column_value(pooler::value(row, idx)?),
        }
    }
}

/// Type OIDs of the columns read plainly (the adapter selects other
/// types as `to_jsonb(column)`).
pub(crate) mod oid {
    pub(crate) const BOOL: u32 = 16;
    pub(crate) const NAME: u32 = 19;
    pub(crate) const INT8: u32 = 20;
    pub(crate) const INT2: u32 = 21;
    pub(crate) const INT4: u32 = 23;
    pub(crate) const TEXT: u32 = 25;
    pub(crate) const BPCHAR: u32 = 1042;
    pub(crate) const VARCHAR: u32 = 1043;
    pub(crate) const UUID: u32 = 2950;
    pub(crate) const JSONB: u32 = 3802;
}

/// One column's binary value as the JSON value `to_jsonb` makes of it.
fn column_value(value: Option<(u32, &[u8])>) -> deserialize::Result<Value> {
    let Some((oid, bytes)) = value else {
        return Ok(Value::Null);
    };
    let int = |bytes: &[u8]| -> deserialize::Result<i64> {
        Ok(match bytes.len() {
            2 => i64::from(i16::from_be_bytes([bytes[0], bytes[1]])),
            4 => i64::from(i32::from_be_bytes(bytes.try_into()?)),
            8 => i64::from_be_bytes(bytes.try_into()?),
            n => return Err(format!("an integer of {n} bytes").into()),
        })
    };
    Ok(match oid {
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME => {
            Value::String(std::str::from_utf8(bytes)?.to_owned())
        }
        oid::INT2 | oid::INT4 | oid::INT8 => Value::from(int(bytes)?),
        oid::BOOL => match bytes {
            [b] => Value::Bool(*b != 0),
            _ => return Err("a boolean of more than one byte".into()),
        },
        oid::UUID => {
            let bytes: &[u8; 16] = bytes.try_into()?;
            let hex = hex::encode(bytes);
            Value::String(format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            ))
        }
        oid::JSONB => match bytes.split_first() {
            Some((1, text)) => serde_json::from_slice(text)?,
            _ => return Err("unsupported jsonb encoding version".into()),
        },
        other => {
            return Err(format!("an attribute column of unexpected type (OID {other})").into());
        }
    })
}
