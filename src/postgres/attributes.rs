//! Attribute columns, read as one JSON object per row and written from one
//! JSON object, so the application never declares them to the crate. The
//! statements name the columns once they are looked up in the catalog (see
//! `columns`); until then, and for column types a cast cannot
//! fill, they use `to_jsonb(row)` and `jsonb_populate_record`.

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::Jsonb;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::names::Ident;
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
