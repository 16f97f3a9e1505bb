//! [`PostgresAdapter`]: Lucia's PostgreSQL adapter on diesel-async.
//!
//! This file holds the operations: each gets its connection (and, for the
//! statements that name them, the attribute columns), runs its statement
//! on the runner (`crate::exec`) and decodes its rows itself.
//! `statements` renders the adapter's SQL from its table names and
//! columns, `columns` knows the attribute columns (and retries once when
//! they changed), `attributes` decodes rows and encodes attributes,
//! `insert` holds the writes that give a session its id (`set_session`,
//! `rotate_session`), `verify` the schema check. Every value is a bind
//! parameter.

mod attributes;
mod columns;
mod insert;
mod statements;
mod verify;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::field::Empty;

pub use crate::names::{TableName, TableNames};
pub use crate::single::SingleConnection;
pub use crate::source::{ConnectionSource, SourceConnection};
pub use crate::user_id::UserId;

use self::attributes::{decode_refreshed, decode_session, decode_session_and_user};
use self::columns::{Known, KnownColumns, Read};
use self::statements::Statements;
use crate::adapter::{
    Adapter, Attributes, DatabaseSession, Refreshed, Rotated, SessionAndUser, SessionRefresh,
    SessionRotation,
};
use crate::error::{ConfigError, Error, Result};
use crate::exec::{Conn, Param, Row, Sql, Statement};
use crate::token::SessionId;
use crate::trace::traced;

pub use crate::token::MAX_SESSION_ID_BYTES;

/// How many expired sessions one `DELETE` removes at most, in
/// [`Adapter::delete_expired_sessions`]
/// and by default in the background cleanup: small enough that a large
/// cleanup never holds locks on many rows at once.
pub const CLEANUP_BATCH_SIZE: u32 = 1_000;

/// Lucia's PostgreSQL adapter on diesel-async.
///
/// Generic over where connections come from (`S`: a [`PgPool`](crate::PgPool),
/// a bb8 or deadpool pool, or a [`SingleConnection`]), the user id type
/// (`U`: `String`, `i32`, `i64`, `uuid::Uuid`), and the session and user
/// attribute types (`SA`, `UA`: [`Attributes`] — every extra column as
/// JSON — or any `serde` type).
///
/// Each operation is one SQL statement and, once its statement is prepared
/// on a connection, one round trip.
///
/// Attributes are read by name: before its first read or insert the
/// adapter looks up the tables' columns in the catalog (one more statement,
/// once) and names the extra columns in its statements; common types
/// (text, integers, boolean, uuid, jsonb) are decoded by the client, the
/// rest turned into JSON by the server. A column dropped, renamed or
/// retyped later costs no error: the failed statement looks the columns up
/// again and runs once more. A column added later is read after the
/// application restarts.
///
/// # Examples
/// ```no_run
/// use lucia_diesel::{Adapter, PoolOptions, PostgresAdapter, TableNames};
///
/// # async fn run() -> lucia_diesel::Result<()> {
/// let pool = PoolOptions::new().build("postgres://localhost/app").await?;
/// let adapter = PostgresAdapter::new(pool)
///     .with_table_names(TableNames::new("auth.users", "auth.sessions")?)
///     .with_user_id::<i64>();
/// let sessions = adapter.get_user_sessions(&42).await?;
/// # Ok(()) }
/// ```
pub struct PostgresAdapter<S, U = String, SA = Attributes, UA = Attributes> {
    source: S,
    names: TableNames,
    statements: Statements,
    columns: KnownColumns,
    _types: Types<U, SA, UA>,
}

/// The adapter's type parameters, held without owning values of them.
type Types<U, SA, UA> = PhantomData<fn() -> (U, SA, UA)>;

impl<S, U, SA, UA> fmt::Debug for PostgresAdapter<S, U, SA, UA> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresAdapter")
            .field("names", &self.names)
            .field("user_id", &std::any::type_name::<U>())
            .finish_non_exhaustive()
    }
}

impl<S: ConnectionSource> PostgresAdapter<S> {
    /// An adapter on Lucia's default tables (`auth_user`, `user_session`)
    /// with `TEXT` user ids and dynamic attributes.
    #[must_use]
    pub fn new(source: S) -> Self {
        let names = TableNames::default();
        Self {
            source,
            statements: Statements::new(&names),
            columns: KnownColumns::default(),
            names,
            _types: PhantomData,
        }
    }
}

impl<S, U, SA, UA> PostgresAdapter<S, U, SA, UA> {
    fn retype<U2, SA2, UA2>(self) -> PostgresAdapter<S, U2, SA2, UA2> {
        PostgresAdapter {
            source: self.source,
            names: self.names,
            statements: self.statements,
            columns: self.columns,
            _types: PhantomData,
        }
    }

    /// Uses these tables instead of `auth_user` / `user_session`.
    #[must_use]
    pub fn with_table_names(mut self, names: TableNames) -> Self {
        self.statements = Statements::new(&names);
        self.columns = KnownColumns::default();
        self.names = names;
        self
    }

    /// Sets the user id type (`String` by default).
    #[must_use]
    pub fn with_user_id<U2: UserId>(self) -> PostgresAdapter<S, U2, SA, UA> {
        self.retype()
    }

    /// Reads and writes session attributes as `SA2` (a `serde` type whose
    /// fields are the session table's extra columns) instead of [`Attributes`].
    #[must_use]
    pub fn with_session_attributes<SA2>(self) -> PostgresAdapter<S, U, SA2, UA>
    where
        SA2: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        self.retype()
    }

    /// Reads user attributes as `UA2` (a `serde` type whose fields are the
    /// user table's extra columns) instead of [`Attributes`].
    #[must_use]
    pub fn with_user_attributes<UA2>(self) -> PostgresAdapter<S, U, SA, UA2>
    where
        UA2: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        self.retype()
    }

    /// The connection source.
    #[must_use]
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The table names.
    #[must_use]
    pub fn table_names(&self) -> &TableNames {
        &self.names
    }
}

impl<S, U, SA, UA> Adapter for PostgresAdapter<S, U, SA, UA>
where
    S: ConnectionSource,
    U: UserId,
    SA: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    UA: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type UserId = U;
    type SessionAttributes = SA;
    type UserAttributes = UA;

    async fn get_session_and_user(&self, id: &SessionId) -> Result<Option<SessionAndUser<Self>>> {
        let span = tracing::debug_span!("get_session_and_user", found = Empty);
        traced(&span, async {
            let mut found = None;
            if id.storable() {
                let params = [Param::Text(id.as_str())];
                let (rows, known) = self.read(Read::SessionAndUser, &params).await?;
                let row = rows.first();
                found = row.map(|row| decode_session_and_user(row, &known.columns));
            }
            let found = found.transpose().map_err(Error::decode)?;
            span.record("found", found.is_some());
            Ok(found)
        })
        .await
    }

    async fn get_user_sessions(&self, user_id: &U) -> Result<Vec<DatabaseSession<U, SA>>> {
        let span = tracing::debug_span!("get_user_sessions", user_id = ?user_id, rows = Empty);
        traced(&span, async {
            let mut sessions = Vec::new();
            if user_id.storable() {
                let params = [user_id.param()];
                let (rows, known) = self.read(Read::UserSessions, &params).await?;
                let decode = |row| decode_session(row, &known.columns.session);
                let decoded = rows.iter().map(decode).collect::<deserialize::Result<_>>();
                sessions = decoded.map_err(Error::decode)?;
            }
            span.record("rows", sessions.len());
            Ok(sessions)
        })
        .await
    }

    async fn set_session(&self, session: &DatabaseSession<U, SA>) -> Result<()> {
        let span = tracing::debug_span!("set_session", user_id = ?session.user_id);
        traced(&span, self.insert(session)).await
    }

    async fn update_session_expiration(&self, id: &SessionId, at: DateTime<Utc>) -> Result<bool> {
        let span = tracing::debug_span!("update_session_expiration", found = Empty);
        traced(&span, async {
            let params = [Param::Timestamptz(at), Param::Text(id.as_str())];
            let sql = &self.statements.update_expiration;
            let found = id.storable() && self.execute(sql, &params).await? > 0;
            span.record("found", found);
            Ok(found)
        })
        .await
    }

    async fn delete_session(&self, id: &SessionId) -> Result<bool> {
        let span = tracing::debug_span!("delete_session", found = Empty);
        traced(&span, async {
            let sql = &self.statements.delete_session;
            let found = id.storable() && self.execute(sql, &[Param::Text(id.as_str())]).await? > 0;
            span.record("found", found);
            Ok(found)
        })
        .await
    }

    async fn delete_user_sessions(&self, user_id: &U) -> Result<u64> {
        let span = tracing::debug_span!("delete_user_sessions", user_id = ?user_id, rows = Empty);
        traced(&span, async {
            let mut n = 0;
            if user_id.storable() {
                let sql = &self.statements.delete_user_sessions;
                n = self.execute(sql, &[user_id.param()]).await?;
            }
            span.record("rows", n);
            Ok(n)
        })
        .await
    }

    async fn delete_other_user_sessions(&self, user_id: &U, keep: &SessionId) -> Result<u64> {
        let span =
            tracing::debug_span!("delete_other_user_sessions", user_id = ?user_id, rows = Empty);
        traced(&span, async {
            let mut n = 0;
            if user_id.storable() {
                let sql = &self.statements.delete_other_user_sessions;
                let params = [user_id.param(), Param::Text(keep.as_str())];
                n = self.execute(sql, &params).await?;
            }
            span.record("rows", n);
            Ok(n)
        })
        .await
    }

    async fn rotate_session(&self, rotation: SessionRotation<'_, U>) -> Result<Option<Rotated>> {
        let span =
            tracing::debug_span!("rotate_session", user_id = ?rotation.user_id, found = Empty);
        traced(&span, async {
            let rotated = self.rotate(rotation).await?;
            span.record("found", rotated.is_some());
            Ok(rotated)
        })
        .await
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        let span = tracing::debug_span!("delete_expired_sessions", rows = Empty);
        traced(&span, async {
            let mut total = 0;
            loop {
                let n = self.delete_expired_batch(now, CLEANUP_BATCH_SIZE).await?;
                total += n;
                span.record("rows", total);
                if n < u64::from(CLEANUP_BATCH_SIZE) {
                    return Ok(total);
                }
            }
        })
        .await
    }

    async fn refresh_session(
        &self,
        id: &SessionId,
        _stored: &DatabaseSession<U, SA>,
        refresh: SessionRefresh,
    ) -> Result<Option<Refreshed>> {
        let span = tracing::debug_span!("refresh_session", extended = Empty, found = Empty);
        traced(&span, async {
            let mut refreshed = None;
            if id.storable() {
                let (extend_by, seen_by) =
                    (refresh.extend_if_expiring_by, refresh.seen_if_last_seen_by);
                let params = [
                    Param::Text(id.as_str()),
                    Param::Timestamptz(extend_by),
                    Param::Timestamptz(refresh.expires_at),
                    Param::Timestamptz(seen_by),
                    Param::Timestamptz(refresh.seen_at),
                    Param::Timestamptz(extend_by),
                    Param::Timestamptz(seen_by),
                ];
                let rows = self.query(&self.statements.refresh, &params).await?;
                refreshed = rows
                    .first()
                    .map(decode_refreshed)
                    .transpose()
                    .map_err(Error::decode)?;
            }
            span.record("found", refreshed.is_some());
            span.record("extended", refreshed.is_some_and(|r| r.extended));
            Ok(refreshed)
        })
        .await
    }
}

impl<S, U, SA, UA> PostgresAdapter<S, U, SA, UA>
where
    S: ConnectionSource,
    U: UserId,
{
    /// Deletes at most `limit` sessions with `expires_at <= now` in one
    /// statement and returns how many it deleted. Rows locked by a
    /// concurrent request are skipped, never waited for.
    ///
    /// # Errors
    /// [`ConfigError::CleanupBatchSize`] for a `limit` of 0; any database
    /// error, typed as in [`Error`].
    pub async fn delete_expired_batch(&self, now: DateTime<Utc>, limit: u32) -> Result<u64> {
        let span = tracing::debug_span!("delete_expired_batch", limit, rows = Empty);
        traced(&span, async {
            if limit == 0 {
                return Err(ConfigError::CleanupBatchSize.into());
            }
            let params = [Param::Timestamptz(now), Param::BigInt(i64::from(limit))];
            let n = self
                .execute(&self.statements.delete_expired_batch, &params)
                .await?;
            span.record("rows", n);
            Ok(n)
        })
        .await
    }

    /// Runs one statement for its row count, on a connection of its own.
    pub(super) async fn execute(&self, sql: &Sql, params: &[Param<'_>]) -> Result<u64> {
        let mut lent = self.source.connection().await?;
        let mut conn = lent.conn().within(self.source.operation_timeout());
        Ok(conn.execute(Statement::new(sql, params)).await?)
    }

    /// Runs one query on a connection of its own, for its rows.
    pub(super) async fn query(&self, sql: &Sql, params: &[Param<'_>]) -> Result<Vec<Row>> {
        let mut lent = self.source.connection().await?;
        let mut conn = lent.conn().within(self.source.operation_timeout());
        Ok(conn.query(Statement::new(sql, params)).await?)
    }

    /// A read that decides validity, and the columns its rows have: on a
    /// replica first, if the source lends one, and asked again on the
    /// primary when the replica finds nothing (writes not replayed yet?)
    /// or fails but by a timeout (then the time is spent).
    async fn read(&self, read: Read, params: &[Param<'_>]) -> Result<(Vec<Row>, Arc<Known>)> {
        if let Some(mut lent) = self.source.read_connection().await {
            let mut conn = lent.conn().within(self.source.operation_timeout());
            match self.read_on(&mut conn, read, params).await {
                Ok((rows, _)) if rows.is_empty() => {}
                Err(error) if !matches!(error, Error::Timeout { .. }) => {}
                found => return found,
            }
        }
        let mut lent = self.source.connection().await?;
        let mut conn = lent.conn().within(self.source.operation_timeout());
        self.read_on(&mut conn, read, params).await
    }

    /// Runs `read` on a lent connection: the columns first (looked up on
    /// first use), and once more if they changed.
    async fn read_on(
        &self,
        conn: &mut Conn<'_>,
        read: Read,
        params: &[Param<'_>],
    ) -> Result<(Vec<Row>, Arc<Known>)> {
        let (statements, names) = (&self.statements, &self.names);
        let known = self.columns.get(conn, statements, names).await?;
        let failure = match conn.query(Statement::new(known.read(read), params)).await {
            Ok(rows) => return Ok((rows, known)),
            Err(failure) => failure,
        };
        // Boxed: a rare path whose state would otherwise enlarge every read's future.
        Box::pin(async move {
            let known = self.columns.again(conn, statements, names, &known, failure);
            let known = known.await?;
            let rows = conn.query(Statement::new(known.read(read), params)).await?;
            Ok((rows, known))
        })
        .await
    }
}
