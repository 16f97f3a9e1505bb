//! Attribute columns, read as a map of column names to JSON values and
//! written from one JSON object, so the application never declares them to
//! the crate. The statements name the columns once they are looked up in
//! the catalog (see `columns`): reads then select the columns themselves,
//! decoded here ([`from_columns`]). Until then, and for column types a cast
//! cannot fill, they use `to_jsonb(row)` ([`Json`]) and `jsonb_populate_record`.

use std::fmt::Write as _;

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::Jsonb;
use serde::Serialize;
use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, Error as _, IntoDeserializer, MapAccess,
    Visitor,
};
use serde_json::{Map, Value};

use super::names::Ident;
use super::query::Row;
use crate::error::{ConfigError, Error, Result};

/// Columns the crate manages; never attributes.
pub(crate) const RESERVED_SESSION_COLUMNS: [&str; 3] = ["id", "expires_at", "user_id"];

/// A `jsonb` value decoded straight into the application's type.
pub(crate) struct Json<T>(pub(crate) T);

impl<T: DeserializeOwned> FromSql<Jsonb, Pg> for Json<T> {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        match value.as_bytes().split_first() {
            Some((1, text)) => Ok(Self(serde_json::from_slice(text)?)),
            _ => Err("unsupported jsonb encoding version".into()),
        }
    }
}

/// Attribute columns `start..start + names.len()` of `row`, decoded
/// straight into the application's type as the JSON object
/// `{"name": value, ..}` would be: the same values `to_jsonb(row)` gives,
/// without the server building JSON on every row.
pub(crate) fn from_columns<T: DeserializeOwned>(
    row: &Row<'_>,
    start: usize,
    names: &[Ident],
) -> deserialize::Result<T> {
    Ok(T::deserialize(Columns {
        row,
        start,
        names,
        next: 0,
    })?)
}

/// Attribute columns as a serde map of column names to values.
struct Columns<'a, 'r> {
    row: &'a Row<'r>,
    start: usize,
    names: &'a [Ident],
    next: usize,
}

impl<'de> Deserializer<'de> for Columns<'_, '_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(self)
    }

    /// As for a JSON object: an `Option` of the type is `Some`.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    /// As for a JSON object: a newtype wraps the map.
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de> MapAccess<'de> for Columns<'_, '_> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some(name) = self.names.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(name.as_str().into_deserializer())
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let idx = self.start + self.next;
        self.next += 1;
        let value = self
            .row
            .with_value(idx, column_value)
            .map_err(|e| serde_json::Error::custom(format_args!("column {idx}: {e}")))?;
        seed.deserialize(value)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.names.len() - self.next)
    }
}

/// Type OIDs of the columns read plainly (`columns::Read::Plain`).
mod oid {
    pub(super) const BOOL: u32 = 16;
    pub(super) const NAME: u32 = 19;
    pub(super) const INT8: u32 = 20;
    pub(super) const INT2: u32 = 21;
    pub(super) const INT4: u32 = 23;
    pub(super) const TEXT: u32 = 25;
    pub(super) const BPCHAR: u32 = 1042;
    pub(super) const VARCHAR: u32 = 1043;
    pub(super) const UUID: u32 = 2950;
    pub(super) const JSONB: u32 = 3802;
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
            let mut text = String::with_capacity(36);
            for (i, b) in bytes.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    text.push('-');
                }
                let _ = write!(text, "{b:02x}");
            }
            Value::String(text)
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

/// Session attributes ready for an insert: the column names (validated)
/// and the JSON object holding their values.
pub(crate) struct AttributeColumns {
    pub(crate) columns: Vec<Ident>,
    pub(crate) values: Value,
}

/// Turns the application's attributes into columns and values.
pub(crate) fn session_columns<A: Serialize>(attributes: &A) -> Result<AttributeColumns> {
    let map = match serde_json::to_value(attributes) {
        Ok(Value::Object(map)) => map,
        Ok(Value::Null) => Map::new(),
        Ok(other) => {
            return Err(Error::InvalidAttributes(format!(
                "session attributes must serialize to a JSON object of column names to values, not {}",
                json_kind(&other)
            )));
        }
        Err(e) => return Err(Error::InvalidAttributes(e.to_string())),
    };
    let mut columns = Vec::with_capacity(map.len());
    for key in map.keys() {
        if RESERVED_SESSION_COLUMNS.contains(&key.as_str()) {
            return Err(Error::InvalidAttributes(
                ConfigError::ReservedColumn(key.clone()).to_string(),
            ));
        }
        let ident = Ident::new(key, key).map_err(|e| Error::InvalidAttributes(e.to_string()))?;
        columns.push(ident);
    }
    Ok(AttributeColumns {
        columns,
        values: Value::Object(map),
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
