//! Rows and attributes. Rows: what each statement's rows hold, decoded
//! (sessions, a session with its user, `refresh`'s outcome).
//! Attributes: the extra columns of the tables, read into a map of column
//! names to JSON values (or the application's own `serde` type) and written
//! from the application's value serialized as a JSON object, so the
//! application never declares them to the crate.
//!
//! Reads select the attribute columns themselves (see
//! [`Statements::get_session_and_user`](super::statements::Statements::get_session_and_user));
//! [`from_columns`] decodes them as the JSON object `to_jsonb(row)` would
//! give, without the server building JSON. Inserts bind one `jsonb` value
//! per attribute ([`insert_values`]).

use chrono::{DateTime, Utc};
use diesel::deserialize;
use diesel::sql_types::{Bool, Text, Timestamptz};
use serde::Serialize;
use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, Error as _, IntoDeserializer, MapAccess,
    Visitor,
};
use serde_json::{Map, Value};

use super::UserId;
use super::statements::{self, Column, MANAGED_SESSION_COLUMNS, Write};
use crate::adapter::{DatabaseSession, DatabaseUser, Refreshed};
use crate::error::{ConfigError, Error, Result};
use crate::exec::Row;
use crate::names::Ident;
use crate::token::SessionId;

/// Attribute columns `start..start + columns.len()` of `row`, decoded
/// straight into the application's type as the JSON object
/// `{"name": value, ..}` would be: the same values `to_jsonb(row)` gives,
/// without the server building JSON on every row.
pub(crate) fn from_columns<T: DeserializeOwned>(
    row: &Row,
    start: usize,
    columns: &[Column],
) -> deserialize::Result<T> {
    Ok(T::deserialize(Columns {
        row,
        start,
        columns,
        next: 0,
    })?)
}

/// Attribute columns as a serde map of column names to values.
struct Columns<'a> {
    row: &'a Row,
    start: usize,
    columns: &'a [Column],
    next: usize,
}

impl<'de> Deserializer<'de> for Columns<'_> {
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

impl<'de> MapAccess<'de> for Columns<'_> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some(column) = self.columns.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(column.name.as_str().into_deserializer())
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
            .json(idx)
            .map_err(|e| serde_json::Error::custom(format_args!("column {idx}: {e}")))?;
        seed.deserialize(value)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.columns.len() - self.next)
    }
}

/// Session attributes ready for an insert: the attribute values by
/// column name, in the order the application's value gives them.
pub(crate) fn session_values<A: Serialize>(attributes: &A) -> Result<Map<String, Value>> {
    let map = match serde_json::to_value(attributes) {
        Ok(Value::Object(map)) => map,
        Ok(Value::Null) => Map::new(),
        Ok(_) => {
            return Err(Error::invalid_attributes(
                "session attributes must serialize to a JSON object of column names to values",
            ));
        }
        Err(e) => {
            return Err(Error::InvalidAttributes {
                message: e.to_string(),
                source: Some(std::sync::Arc::new(e)),
            });
        }
    };
    for key in map.keys() {
        if MANAGED_SESSION_COLUMNS.contains(&key.as_str()) {
            return Err(Error::invalid_attributes(ConfigError::ReservedColumn(
                key.clone(),
            )));
        }
        Ident::new(key, key).map_err(Error::invalid_attributes)?;
    }
    Ok(map)
}

/// The insert's attribute binds, one per column of `columns` (the session
/// table's columns named by `values`, in that order): the value itself, or
/// `{"column": value}` for a column written through
/// `jsonb_populate_record` ([`Write::Record`]).
pub(crate) fn insert_values(columns: &[&Column], values: &Map<String, Value>) -> Vec<Value> {
    columns
        .iter()
        .map(|c| {
            let value = values.get(c.name.as_str()).cloned().unwrap_or(Value::Null);
            match c.write {
                Write::Record => {
                    Value::Object(Map::from_iter([(c.name.as_str().to_owned(), value)]))
                }
                Write::Cast(_) | Write::Json(_) => value,
            }
        })
        .collect()
}

/// A session row: id, expires_at, user_id, created_at, last_seen_at,
/// authenticated_at, then the attribute columns.
pub(super) fn decode_session<U: UserId, SA: DeserializeOwned>(
    row: &Row,
    attributes: &[Column],
) -> deserialize::Result<DatabaseSession<U, SA>> {
    Ok(DatabaseSession {
        id: SessionId::new(row.get::<Text, String>(0)?),
        expires_at: row.get::<Timestamptz, DateTime<Utc>>(1)?,
        user_id: row.get::<U::SqlType, U>(2)?,
        created_at: row.get::<Timestamptz, DateTime<Utc>>(3)?,
        last_seen_at: row.get::<Timestamptz, DateTime<Utc>>(4)?,
        authenticated_at: row.get::<Timestamptz, DateTime<Utc>>(5)?,
        attributes: from_columns(row, SESSION_COLUMNS, attributes)?,
    })
}

/// The managed columns every session row starts with (see
/// [`Statements::get_session_and_user`]); the attribute columns follow.
const SESSION_COLUMNS: usize = statements::MANAGED_SESSION_COLUMNS.len();

/// `refresh`'s row: the expiry and last use as they now stand, and
/// whether this call extended the session.
pub(super) fn decode_refreshed(row: &Row) -> deserialize::Result<Refreshed> {
    Ok(Refreshed {
        expires_at: row.get::<Timestamptz, _>(0)?,
        last_seen_at: row.get::<Timestamptz, _>(1)?,
        extended: row.get::<Bool, bool>(2)?,
    })
}

/// A session row followed by its user's attribute columns.
pub(super) fn decode_session_and_user<U: UserId, SA: DeserializeOwned, UA: DeserializeOwned>(
    row: &Row,
    columns: &statements::Columns,
) -> deserialize::Result<(DatabaseSession<U, SA>, DatabaseUser<U, UA>)> {
    let session: DatabaseSession<U, SA> = decode_session(row, &columns.session)?;
    let user = DatabaseUser {
        id: session.user_id.clone(),
        attributes: from_columns(row, SESSION_COLUMNS + columns.session.len(), &columns.user)?,
    };
    Ok((session, user))
}
