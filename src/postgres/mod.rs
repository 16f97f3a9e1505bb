//! [`PostgresAdapter`]: Lucia's PostgreSQL adapter on diesel-async.
//!
//! This module is the only place where identifiers meet SQL: table names
//! are validated when the adapter is built ([`TableNames`]) and rendered by
//! one quoting routine; every value is a bind parameter.

mod attributes;
mod columns;
mod names;
pub(crate) mod query;
pub(crate) mod raw;
mod source;
mod statements;
pub(crate) mod unnamed;
mod user_id;
mod verify;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Bool, Jsonb, Text, Timestamptz, Untyped};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::field::Empty;

pub use self::names::{TableName, TableNames};
pub use self::source::{ConnectionSource, SingleConnection, SourceConnection};
pub use self::user_id::UserId;

use self::attributes::{Json, from_columns, session_columns};
use self::columns::KnownColumns;
use self::query::{Bind, Conn, Row, Stmt, UserIdBind, load_first, load_rows};
use self::statements::Statements;
use crate::adapter::{
    Adapter, Attributes, DatabaseSession, DatabaseUser, Extension, SessionAndUser,
};
use crate::error::{DatabaseErrorKind, Error, Result};
use crate::trace::traced;

/// The longest session id the adapter stores or looks up, in bytes. Longer
/// ids are never found, and `set_session` rejects them.
pub const MAX_SESSION_ID_BYTES: usize = 512;

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
/// Attributes are read by name: on its first read the adapter looks up the
/// tables' columns in the catalog (one more statement, once) and selects the
/// extra columns themselves, which PostgreSQL serves much faster than
/// `to_jsonb(row)`; common types (text, integers, boolean, uuid, jsonb) are
/// decoded by the client, the rest turned into JSON by the server. A
/// column dropped or renamed later costs no error: the failed read looks
/// the columns up again and is retried once. A column added later is read
/// after the application restarts.
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
    /// The attribute columns, once looked up, and statements naming them.
    columns: KnownColumns,
    cleanup_batch_size: i64,
    _types: Types<U, SA, UA>,
}

/// The adapter's type parameters, held without owning values of them.
type Types<U, SA, UA> = PhantomData<fn() -> (U, SA, UA)>;

impl<S, U, SA, UA> fmt::Debug for PostgresAdapter<S, U, SA, UA> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresAdapter")
            .field("names", &self.names)
            .field("user_id", &std::any::type_name::<U>())
            .field("cleanup_batch_size", &self.cleanup_batch_size)
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
            columns: KnownColumns::new(),
            names,
            cleanup_batch_size: 10_000,
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
            cleanup_batch_size: self.cleanup_batch_size,
            _types: PhantomData,
        }
    }

    /// Uses these tables instead of `auth_user` / `user_session`.
    #[must_use]
    pub fn with_table_names(mut self, names: TableNames) -> Self {
        self.statements = Statements::new(&names);
        self.columns = KnownColumns::new();
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
    pub fn with_session_attributes<SA2>(self) -> PostgresAdapter<S, U, SA2, UA> {
        self.retype()
    }

    /// Reads user attributes as `UA2` (a `serde` type whose fields are the
    /// user table's extra columns) instead of [`Attributes`].
    #[must_use]
    pub fn with_user_attributes<UA2>(self) -> PostgresAdapter<S, U, SA, UA2> {
        self.retype()
    }

    /// How many expired sessions one `DELETE` removes at most during
    /// [`Adapter::delete_expired_sessions`] (default 10,000), so that a
    /// large cleanup never holds locks on millions of rows at once.
    ///
    /// # Panics
    /// Never; a size of 0 is treated as 1.
    #[must_use]
    pub fn with_cleanup_batch_size(mut self, size: u32) -> Self {
        self.cleanup_batch_size = i64::from(size.max(1));
        self
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

/// Whether a session id can be looked up at all: PostgreSQL text cannot hold
/// NUL, and ids longer than [`MAX_SESSION_ID_BYTES`] are never stored.
fn storable(session_id: &str) -> bool {
    !session_id.is_empty() && session_id.len() <= MAX_SESSION_ID_BYTES && !session_id.contains('\0')
}

impl<S, U, SA, UA> Adapter for PostgresAdapter<S, U, SA, UA>
where
    S: ConnectionSource,
    U: UserId,
    SA: Serialize + DeserializeOwned + Send + Sync + 'static,
    UA: DeserializeOwned + Send + Sync + 'static,
{
    type UserId = U;
    type SessionAttributes = SA;
    type UserAttributes = UA;

    async fn get_session_and_user(&self, session_id: &str) -> Result<Option<SessionAndUser<Self>>> {
        let span = tracing::debug_span!("get_session_and_user", found = Empty);
        traced(&span, async {
            if !storable(session_id) {
                span.record("found", false);
                return Ok(None);
            }
            let mut conn = self.source.connection().await?;
            let mut conn = conn.conn();
            let mut attempts = self.columns.attempts();
            let found = loop {
                let named = attempts.named(&mut conn, &self.names).await;
                let sql = named
                    .as_deref()
                    .map_or(&self.statements.get_session_and_user, |n| {
                        &n.get_session_and_user
                    });
                let decode = |row: Row<'_>| {
                    let user_id: U = row.get::<U::SqlType, U>(2)?;
                    let (session_attributes, user_attributes) = match named.as_deref() {
                        Some(n) => {
                            let session = n.session_attributes();
                            (
                                from_columns(&row, 3, session)?,
                                from_columns(&row, 3 + session.len(), n.user_attributes())?,
                            )
                        }
                        None => (
                            row.get::<Jsonb, Json<SA>>(3)?.0,
                            row.get::<Jsonb, Json<UA>>(4)?.0,
                        ),
                    };
                    Ok((
                        DatabaseSession {
                            id: row.get::<Text, String>(0)?,
                            user_id: user_id.clone(),
                            expires_at: row.get::<Timestamptz, DateTime<Utc>>(1)?,
                            attributes: session_attributes,
                        },
                        DatabaseUser {
                            id: user_id,
                            attributes: user_attributes,
                        },
                    ))
                };
                let stmt = Stmt::<_, Untyped, _>::new(sql, (Bind::<Text, str>::new(session_id),));
                let found = load_first(conn.reborrow(), stmt, &decode).await;
                if let Some(found) = attempts.done(found, named.is_some()) {
                    break found;
                }
            };
            let found = found?;
            span.record("found", found.is_some());
            Ok(found)
        })
        .await
    }

    async fn get_user_sessions(&self, user_id: &U) -> Result<Vec<DatabaseSession<U, SA>>> {
        let span = tracing::debug_span!("get_user_sessions", user_id = ?user_id, rows = Empty);
        traced(&span, async {
            let mut conn = self.source.connection().await?;
            let mut conn = conn.conn();
            let mut attempts = self.columns.attempts();
            let sessions = loop {
                let named = attempts.named(&mut conn, &self.names).await;
                let sql = named
                    .as_deref()
                    .map_or(&self.statements.get_user_sessions, |n| &n.get_user_sessions);
                let decode = |row: Row<'_>| {
                    Ok(DatabaseSession {
                        id: row.get::<Text, String>(0)?,
                        user_id: row.get::<U::SqlType, U>(2)?,
                        expires_at: row.get::<Timestamptz, DateTime<Utc>>(1)?,
                        attributes: match named.as_deref() {
                            Some(n) => from_columns(&row, 3, n.session_attributes())?,
                            None => row.get::<Jsonb, Json<SA>>(3)?.0,
                        },
                    })
                };
                let stmt = Stmt::<_, Untyped, _>::new(sql, (UserIdBind(user_id),));
                let sessions = load_rows(conn.reborrow(), stmt, &decode).await;
                if let Some(sessions) = attempts.done(sessions, named.is_some()) {
                    break sessions;
                }
            };
            let sessions = sessions?;
            span.record("rows", sessions.len());
            Ok(sessions)
        })
        .await
    }

    async fn set_session(&self, session: &DatabaseSession<U, SA>) -> Result<()> {
        let span = tracing::debug_span!("set_session", user_id = ?session.user_id);
        traced(&span, self.insert(session)).await
    }

    async fn update_session_expiration(
        &self,
        session_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        let span = tracing::debug_span!("update_session_expiration", found = Empty);
        traced(&span, async {
            if !storable(session_id) {
                span.record("found", false);
                return Ok(false);
            }
            let mut conn = self.source.connection().await?;
            let n = Stmt::exec(
                &self.statements.update_expiration,
                (
                    Bind::<Timestamptz, _>::new(&expires_at),
                    Bind::<Text, str>::new(session_id),
                ),
            )
            .execute(conn.conn())
            .await;
            let n = n?;
            span.record("found", n > 0);
            Ok(n > 0)
        })
        .await
    }

    async fn delete_session(&self, session_id: &str) -> Result<bool> {
        let span = tracing::debug_span!("delete_session", found = Empty);
        traced(&span, async {
            if !storable(session_id) {
                span.record("found", false);
                return Ok(false);
            }
            let mut conn = self.source.connection().await?;
            let n = Stmt::exec(
                &self.statements.delete_session,
                (Bind::<Text, str>::new(session_id),),
            )
            .execute(conn.conn())
            .await;
            let n = n?;
            span.record("found", n > 0);
            Ok(n > 0)
        })
        .await
    }

    async fn delete_user_sessions(&self, user_id: &U) -> Result<u64> {
        let span = tracing::debug_span!("delete_user_sessions", user_id = ?user_id, rows = Empty);
        traced(&span, async {
            let mut conn = self.source.connection().await?;
            let n = Stmt::exec(
                &self.statements.delete_user_sessions,
                (UserIdBind(user_id),),
            )
            .execute(conn.conn())
            .await;
            let n = n?;
            span.record("rows", n);
            Ok(n)
        })
        .await
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        let span = tracing::debug_span!("delete_expired_sessions", rows = Empty);
        traced(&span, async {
            let mut total = 0u64;
            loop {
                let n = self
                    .delete_expired_batch(now, self.cleanup_batch_size)
                    .await?;
                total += n;
                span.record("rows", total);
                if n < self.cleanup_batch_size as u64 {
                    return Ok(total);
                }
            }
        })
        .await
    }

    async fn extend_session_expiration(
        &self,
        session_id: &str,
        expires_at: DateTime<Utc>,
        threshold: DateTime<Utc>,
    ) -> Result<Extension> {
        let span = tracing::debug_span!("extend_session_expiration", extension = Empty);
        traced(&span, async {
            let extension = if storable(session_id) {
                self.extend(session_id, expires_at, threshold).await?
            } else {
                Extension::Gone
            };
            span.record(
                "extension",
                match extension {
                    Extension::Gone => "gone",
                    Extension::Extended(_) => "extended",
                    Extension::Unchanged(_) => "unchanged",
                },
            );
            Ok(extension)
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
    /// Any database error, typed as in [`Error`].
    pub async fn delete_expired_batch(&self, now: DateTime<Utc>, limit: i64) -> Result<u64> {
        let span = tracing::debug_span!("delete_expired_batch", limit, rows = Empty);
        traced(&span, async {
            let mut conn = self.source.connection().await?;
            let n = Stmt::exec(
                &self.statements.delete_expired_batch,
                (
                    Bind::<Timestamptz, _>::new(&now),
                    Bind::<diesel::sql_types::BigInt, _>::new(&limit),
                ),
            )
            .execute(conn.conn())
            .await;
            let n = n?;
            span.record("rows", n);
            Ok(n)
        })
        .await
    }

    /// The one statement behind [`Adapter::extend_session_expiration`].
    async fn extend(
        &self,
        session_id: &str,
        expires_at: DateTime<Utc>,
        threshold: DateTime<Utc>,
    ) -> Result<Extension> {
        let mut conn = self.source.connection().await?;
        let stmt = Stmt::<_, Untyped, _>::new(
            &self.statements.extend_expiration,
            (
                Bind::<Text, str>::new(session_id),
                Bind::<Timestamptz, _>::new(&expires_at),
                Bind::<Timestamptz, _>::new(&threshold),
            ),
        );
        let row = load_first(conn.conn(), stmt, |row| {
            Ok((
                row.get::<Timestamptz, DateTime<Utc>>(0)?,
                row.get::<Bool, bool>(1)?,
            ))
        })
        .await;
        Ok(match row? {
            None => Extension::Gone,
            Some((at, true)) => Extension::Extended(at),
            Some((at, false)) => Extension::Unchanged(at),
        })
    }

    /// The insert behind [`Adapter::set_session`].
    async fn insert(&self, session: &DatabaseSession<U, SA>) -> Result<()>
    where
        SA: Serialize,
    {
        if !storable(&session.id) {
            return Err(Error::InvalidSessionId);
        }
        let attributes = session_columns(&session.attributes)?;
        let mut conn = self.source.connection().await?;
        let mut conn = conn.conn();
        let inserted = if attributes.columns.is_empty() {
            Stmt::exec(
                &self.statements.insert_session,
                (
                    Bind::<Text, str>::new(&session.id),
                    UserIdBind(&session.user_id),
                    Bind::<Timestamptz, _>::new(&session.expires_at),
                ),
            )
            .execute(conn.reborrow())
            .await
        } else {
            let mut attempts = self.columns.attempts();
            loop {
                let named = attempts.named(&mut conn, &self.names).await;
                // A cast per column where the column types are known, else
                // `jsonb_populate_record`.
                let cast = named
                    .as_deref()
                    .and_then(|n| n.insert_session_with(&attributes.columns));
                let used = cast.is_some();
                let sql = cast.unwrap_or_else(|| {
                    Arc::new(self.statements.insert_session_with(&attributes.columns))
                });
                let inserted = Stmt::exec(
                    &sql,
                    (
                        Bind::<Text, str>::new(&session.id),
                        UserIdBind(&session.user_id),
                        Bind::<Timestamptz, _>::new(&session.expires_at),
                        Bind::<Jsonb, _>::new(&attributes.values),
                    ),
                )
                .execute(conn.reborrow())
                .await;
                if let Some(inserted) = attempts.done(inserted, used) {
                    break inserted;
                }
            }
        };
        match inserted {
            Ok(1) => Ok(()),
            Ok(_) => Err(Error::DuplicateSessionId),
            Err(e) => Err(self
                .insert_error(conn, &session.user_id, e, !attributes.columns.is_empty())
                .await),
        }
    }

    /// Turns an insert failure into the error a caller can act on.
    async fn insert_error(
        &self,
        conn: Conn<'_>,
        user_id: &U,
        err: Error,
        has_attributes: bool,
    ) -> Error {
        let Error::Database(db) = &err else {
            return err;
        };
        match db.kind() {
            DatabaseErrorKind::ForeignKeyViolation => {
                // The foreign key may be on an attribute column: ask whether
                // the user exists instead of parsing a localised message.
                let stmt = Stmt::<_, Untyped, _>::new(
                    &self.statements.user_exists,
                    (UserIdBind(user_id),),
                );
                let exists = load_first(conn, stmt, |row| row.get::<Bool, bool>(0)).await;
                match exists.map(|found| found.unwrap_or(false)) {
                    Ok(false) => Error::UnknownUser,
                    Ok(true) if has_attributes => Error::InvalidAttributes(db.to_string()),
                    Ok(true) => err,
                    Err(e) => e,
                }
            }
            DatabaseErrorKind::NotNullViolation
            | DatabaseErrorKind::CheckViolation
            | DatabaseErrorKind::UniqueViolation
                if has_attributes =>
            {
                Error::InvalidAttributes(db.to_string())
            }
            DatabaseErrorKind::Other if has_attributes && !is_schema_problem(db.message()) => {
                Error::InvalidAttributes(db.to_string())
            }
            _ => err,
        }
    }
}

/// Errors that point at the tables or grants, not at the attribute values.
fn is_schema_problem(message: &str) -> bool {
    message.starts_with("relation ")
        || message.starts_with("permission denied")
        || message.starts_with("type ")
}
