//! The writes that give a session its id: [`Adapter::set_session`]'s
//! insert (one statement naming the attribute columns the application's
//! value has, and the errors a caller acts on) and
//! [`Adapter::rotate_session`](crate::Adapter::rotate_session)'s update,
//! which moves the row to its new id in one statement, so every other
//! column (attributes, `created_at`, the activity) stays as it is and a
//! crash at any point leaves exactly one of the two ids.

use chrono::{DateTime, Utc};
use diesel::deserialize;
use diesel::sql_types::{Bool, Timestamptz};
use serde::Serialize;
use serde_json::{Map, Value};

use super::attributes::{insert_values, session_values};
use super::columns::Known;
use super::{ConnectionSource, PostgresAdapter, SourceConnection as _, TableNames, UserId};
use crate::adapter::{DatabaseSession, Rotated, SessionRotation};
use crate::error::{DatabaseErrorKind, Error, ErrorClass, Result, undefined_table};
use crate::exec::{Conn, Param, Row, RunResult, Statement};

impl<S, U, SA, UA> PostgresAdapter<S, U, SA, UA>
where
    S: ConnectionSource,
    U: UserId,
{
    /// The insert behind [`Adapter::set_session`]: one statement naming the
    /// attribute columns the application's value has.
    pub(super) async fn insert(&self, session: &DatabaseSession<U, SA>) -> Result<()>
    where
        SA: Serialize + Sync,
    {
        if !session.id.storable() {
            return Err(Error::InvalidSessionId);
        }
        if !session.user_id.storable() {
            return Err(Error::UnknownUser);
        }
        let values = session_values(&session.attributes)?;
        let inserted = self.insert_retrying(session, &values).await;
        match inserted {
            Ok(1) => Ok(()),
            Ok(_) => Err(Error::DuplicateSessionId),
            Err(e) => Err(self
                .insert_error(&session.user_id, e, !values.is_empty())
                .await),
        }
    }

    /// The insert on a connection of its own: the columns first (looked up
    /// on first use), and once more if they changed.
    async fn insert_retrying(
        &self,
        session: &DatabaseSession<U, SA>,
        values: &Map<String, Value>,
    ) -> Result<u64> {
        let mut lent = self.source.connection().await?;
        let mut conn = lent.conn().within(self.source.operation_timeout());
        let (statements, names) = (&self.statements, &self.names);
        let known = self.columns.get(&mut conn, statements, names).await?;
        let failure = match self.insert_once(&mut conn, &known, session, values).await {
            Ok(inserted) => return Ok(inserted),
            Err(failure) => failure,
        };
        // Boxed: a rare path whose state would otherwise enlarge every insert's future.
        Box::pin(async move {
            let known = self
                .columns
                .again(&mut conn, statements, names, &known, failure);
            let known = known.await?;
            Ok(self.insert_once(&mut conn, &known, session, values).await?)
        })
        .await
    }

    /// One run of the insert with these columns: the number of rows
    /// inserted (0 when the id is taken).
    async fn insert_once(
        &self,
        conn: &mut Conn<'_>,
        known: &Known,
        session: &DatabaseSession<U, SA>,
        values: &Map<String, Value>,
    ) -> RunResult<u64> {
        let names: Vec<&str> = values.keys().map(String::as_str).collect();
        let Some((columns, sql)) = known.insert(&self.statements, &names) else {
            return Err(unknown_columns(known, &self.names));
        };
        let mut params = vec![
            Param::Text(session.id.as_str()),
            session.user_id.param(),
            Param::Timestamptz(session.expires_at),
            Param::Timestamptz(session.created_at),
            Param::Timestamptz(session.last_seen_at),
            Param::Timestamptz(session.authenticated_at),
        ];
        let attributes = insert_values(&columns, values);
        params.extend(attributes.into_iter().map(Param::Jsonb));
        conn.execute(Statement::new(&sql, &params)).await
    }

    /// Turns an insert failure into the error a caller can act on.
    async fn insert_error(&self, user_id: &U, err: Error, has_attributes: bool) -> Error {
        let Error::Database(db) = &err else {
            return err;
        };
        let invalid_attributes = || Error::InvalidAttributes {
            message: db.to_string(),
            source: Some(std::sync::Arc::new(db.clone())),
        };
        match db.kind() {
            DatabaseErrorKind::ForeignKeyViolation => {
                // The foreign key may be on an attribute column: ask whether
                // the user exists instead of parsing a localised message.
                let sql = &self.statements.user_exists;
                let params = [user_id.param()];
                let exists = self.query(sql, &params).await.and_then(|rows| {
                    let exists = rows.first().map(|row| row.get::<Bool, bool>(0));
                    exists.transpose().map_err(Error::decode)
                });
                match exists {
                    Ok(exists) if exists != Some(true) => Error::UnknownUser,
                    Ok(_) if has_attributes => invalid_attributes(),
                    Ok(_) => err,
                    Err(e) => e,
                }
            }
            _ if !has_attributes => err,
            // Values the column's type refuses (class 22: data exceptions)
            // and constraints (23). Without a code (a server reporting in
            // another language) the values are the likely cause.
            DatabaseErrorKind::Other
                if db
                    .code()
                    .is_some_and(|c| !c.starts_with("22") && !c.starts_with("23")) =>
            {
                err
            }
            _ => invalid_attributes(),
        }
    }
}

/// The insert named an attribute the session table does not have (looked
/// up again first, in case it was added), or the table is missing.
fn unknown_columns(known: &Known, names: &TableNames) -> ErrorClass {
    let error = if known.columns.complete {
        Error::invalid_attributes(format_args!(
            "an attribute names a column the session table {} does not have",
            names.session()
        ))
    } else {
        undefined_table(&names.session().to_sql())
    };
    ErrorClass {
        error,
        retire: false,
        stale_columns: true,
    }
}

impl<S, U, SA, UA> PostgresAdapter<S, U, SA, UA>
where
    S: ConnectionSource,
    U: UserId,
{
    /// The rotation's one statement: the session's times after it, or
    /// `None` when no live session of the user has the old id.
    pub(super) async fn rotate(&self, rotation: SessionRotation<'_, U>) -> Result<Option<Rotated>> {
        let (from, to, user_id) = (rotation.from, rotation.to, rotation.user_id);
        if !from.storable() || !user_id.storable() {
            return Ok(None);
        }
        if !to.storable() {
            return Err(Error::InvalidSessionId);
        }
        let live = rotation.live;
        let params = [
            Param::Text(to.as_str()),
            Param::Timestamptz(rotation.authenticated_at),
            Param::Text(from.as_str()),
            user_id.param(),
            Param::Timestamptz(live.expires_after),
            Param::Timestamptz(live.seen_after),
            Param::Timestamptz(live.created_after),
        ];
        let rows = match self.query(&self.statements.rotate, &params).await {
            Ok(rows) => rows,
            Err(Error::Database(db)) if db.kind() == DatabaseErrorKind::UniqueViolation => {
                return Err(Error::DuplicateSessionId);
            }
            Err(e) => return Err(e),
        };
        rows.first()
            .map(decode_rotated)
            .transpose()
            .map_err(Error::decode)
    }
}

/// The rotate statement's row: expires_at, created_at, last_seen_at,
/// authenticated_at.
fn decode_rotated(row: &Row) -> deserialize::Result<Rotated> {
    let time = |i| row.get::<Timestamptz, DateTime<Utc>>(i);
    Ok(Rotated {
        expires_at: time(0)?,
        created_at: time(1)?,
        last_seen_at: time(2)?,
        authenticated_at: time(3)?,
    })
}
