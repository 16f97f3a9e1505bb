//! [`Adapter::rotate_session`](crate::Adapter::rotate_session): the row
//! moves to its new id in one `UPDATE`, so every other column (attributes,
//! `created_at`, the activity) stays as it is and a crash at any point
//! leaves exactly one of the two ids.

use chrono::{DateTime, Utc};
use diesel::deserialize;
use diesel::sql_types::Timestamptz;

use super::{ConnectionSource, PostgresAdapter, UserId};
use crate::adapter::{Rotated, SessionRotation};
use crate::error::{DatabaseErrorKind, Error, Result};
use crate::exec::{Param, Row};

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
