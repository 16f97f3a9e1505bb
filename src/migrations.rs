//! The schema: embedded Diesel migrations, and DDL for custom names.
//!
//! `migrations/` in this crate is an ordinary Diesel migrations directory.
//! The same files are embedded in [`MIGRATIONS`], so an application can
//! either copy them into its own `migrations/` and run `diesel migration run`,
//! or call [`run_pending_migrations`] at startup. Both record the same
//! versions in `__diesel_schema_migrations`, so mixing them never applies a
//! migration twice.
//!
//! For other table names or user id types, [`create_tables_sql`] renders the
//! matching DDL and [`write_migration`] saves it as a migration of the
//! application's own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness as _, embed_migrations};

use crate::error::{Error, Result};
use crate::names::{TableName, TableNames};
use crate::user_id::UserId;

/// The crate's migrations (Lucia's schema on `auth_user` / `user_session`).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The notification triggers the validation cache needs (see the
/// [`cache`](crate::cache) module), on `auth_user` / `user_session`: run
/// after [`MIGRATIONS`] with [`run_embedded_migrations`], or copy
/// `migrations-cache/` into the application's migrations. For other names,
/// [`cache_triggers_sql`].
pub const CACHE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations-cache");

/// The advisory lock key held while migrating, so that several instances
/// starting at once apply each migration once. (ASCII "luciadsl".)
const MIGRATION_LOCK_KEY: i64 = 0x6c75_6369_6164_736c;

/// Applies every pending migration of [`MIGRATIONS`] and returns the
/// versions it applied (empty when the schema was up to date).
///
/// Runs the migrations on a blocking thread, so it works on both the
/// current-thread and the multi-thread tokio runtime. Concurrent callers
/// (several instances starting at once) are serialised with an advisory lock.
///
/// # Examples
/// ```no_run
/// use diesel_async::{AsyncConnection, AsyncPgConnection};
///
/// # async fn run() -> lucia_diesel::Result<()> {
/// let conn = AsyncPgConnection::establish("postgres://localhost/app").await?;
/// let applied = lucia_diesel::migrations::run_pending_migrations(conn).await?;
/// println!("applied {applied:?}");
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Migration`] when a migration fails (its transaction is rolled
/// back); [`Error::Unavailable`] when the connection breaks.
pub async fn run_pending_migrations(conn: AsyncPgConnection) -> Result<Vec<String>> {
    run_embedded_migrations(conn, MIGRATIONS).await
}

/// Applies every pending migration of `migrations` (an application's own
/// `embed_migrations!()`, run after [`MIGRATIONS`]) the same way as
/// [`run_pending_migrations`], and returns the versions applied.
///
/// # Errors
/// As [`run_pending_migrations`].
pub async fn run_embedded_migrations(
    conn: AsyncPgConnection,
    migrations: EmbeddedMigrations,
) -> Result<Vec<String>> {
    let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> = AsyncConnectionWrapper::from(conn);
    tokio::task::spawn_blocking(move || {
        use diesel::RunQueryDsl as _;
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
            .execute(&mut wrapper)?;
        let applied = wrapper
            .run_pending_migrations(migrations)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|e| Error::Migration {
                message: e.to_string(),
                source: Some(std::sync::Arc::from(e)),
            });
        let unlocked =
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                .execute(&mut wrapper);
        let applied = applied?;
        unlocked?;
        Ok(applied)
    })
    .await
    .map_err(|e| Error::Migration {
        message: format!("the migration task failed: {e}"),
        source: Some(std::sync::Arc::new(e)),
    })?
}

/// Connects to `database_url` and applies pending migrations; see
/// [`run_pending_migrations`].
///
/// # Errors
/// As [`run_pending_migrations`], plus [`Error::Unavailable`] when the
/// connection cannot be opened.
pub async fn run_pending_migrations_at(database_url: &str) -> Result<Vec<String>> {
    use diesel_async::AsyncConnection as _;
    let conn = AsyncPgConnection::establish(database_url).await?;
    run_pending_migrations(conn).await
}

/// The up and down SQL of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationSql {
    /// Creates the tables.
    pub up: String,
    /// Drops them.
    pub down: String,
}

/// DDL for Lucia's two tables under other names and with another user id
/// type: the same columns, keys and indexes as the crate's own migrations.
///
/// # Examples
/// ```
/// use lucia_diesel::{TableNames, migrations::create_tables_sql};
///
/// let sql = create_tables_sql::<i64>(&TableNames::new("auth.users", "auth.sessions")?);
/// assert!(sql.up.contains(r#"CREATE TABLE "auth"."users""#));
/// assert!(sql.up.contains("user_id BIGINT NOT NULL"));
/// # Ok::<(), lucia_diesel::ConfigError>(())
/// ```
#[must_use]
pub fn create_tables_sql<U: UserId>(names: &TableNames) -> MigrationSql {
    let user = names.user().to_sql();
    let session = names.session().to_sql();
    let id_type = U::SQL_TYPE;
    let id_default = match id_type {
        "INTEGER" | "BIGINT" => " GENERATED BY DEFAULT AS IDENTITY",
        "UUID" => " DEFAULT gen_random_uuid()",
        _ => "",
    };
    let mut up = String::new();
    let schemas: BTreeSet<String> = [names.user().schema_sql(), names.session().schema_sql()]
        .into_iter()
        .flatten()
        .collect();
    for schema in schemas {
        up.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {schema};\n\n"));
    }
    let user_idx = names.session().derived_ident_sql("user_id_idx");
    let expires_idx = names.session().derived_ident_sql("expires_at_idx");
    up.push_str(&format!(
        "CREATE TABLE {user} (\n    id {id_type} PRIMARY KEY{id_default}\n);\n\n\
         CREATE TABLE {session} (\n    id TEXT PRIMARY KEY,\n    expires_at TIMESTAMPTZ NOT NULL,\n    \
         user_id {id_type} NOT NULL REFERENCES {user} (id),\n    \
         created_at TIMESTAMPTZ NOT NULL DEFAULT now(),\n    \
         last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now()\n);\n\n\
         CREATE INDEX {user_idx} ON {session} (user_id);\n\
         CREATE INDEX {expires_idx} ON {session} (expires_at);\n"
    ));
    let down = format!("DROP TABLE {session};\nDROP TABLE {user};\n");
    MigrationSql { up, down }
}

/// DDL for the validation cache's notification triggers on tables of any
/// names (the crate's own names give [`CACHE_MIGRATIONS`]).
///
/// Each table gets a trigger function (named after the table, in its
/// schema) and two triggers, `lucia_diesel_notify` (each row updated or
/// deleted) and `lucia_diesel_notify_truncate`.
///
/// Two kinds of writes send nothing, because they cannot make a cached
/// session wrong. Inserts: the cache holds only sessions it has read, never
/// "not found" (an `INSERT ... ON CONFLICT DO UPDATE` that changes a row
/// fires the update trigger). And a session's extension or recorded use
/// (`expires_at` and `last_seen_at` later, every other column the same):
/// a cache holding the earlier times only goes to the database sooner. An
/// earlier expiry, any other column changed, or a delete does notify.
///
/// PostgreSQL commits transactions that notify one at a time (a lock held
/// through the commit's WAL flush), so on a durable server concurrent
/// logouts and revocations lose the group commit they would otherwise
/// share; see the README's cache section. They send on channel
/// `lucia_diesel_sessions`: `s:` and the hex SHA-256 of a session's id (never
/// the id, which in Lucia-compatible storage is the token), `u:` and a user's
/// id as text (`*` if that would not fit a notification), and `*` when a
/// table is truncated. A statement touching many rows sends one notification
/// a row.
///
/// # Examples
/// ```
/// use lucia_diesel::{TableNames, migrations::cache_triggers_sql};
///
/// let sql = cache_triggers_sql(&TableNames::new("auth.users", "auth.sessions")?);
/// assert!(sql.up.contains(r#"AFTER TRUNCATE ON "auth"."sessions""#));
/// # Ok::<(), lucia_diesel::ConfigError>(())
/// ```
#[must_use]
pub fn cache_triggers_sql(names: &TableNames) -> MigrationSql {
    let function = |table: &TableName| {
        let name = table.derived_ident_sql("notify");
        match table.schema_sql() {
            Some(schema) => format!("{schema}.{name}"),
            None => name,
        }
    };
    let (session, user) = (names.session().to_sql(), names.user().to_sql());
    let (session_fn, user_fn) = (function(names.session()), function(names.user()));
    let up = format!(
        "-- The validation cache's invalidations: every change to a session or a
-- user is announced on channel lucia_diesel_sessions, whoever makes it.
CREATE FUNCTION {session_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('lucia_diesel_sessions', '*');
        RETURN NULL;
    END IF;
    -- An extension or a recorded use (later times, nothing else changed)
    -- sends nothing: a cache still holding the earlier times only goes to
    -- the database sooner. Notifying transactions commit one at a time.
    IF TG_OP = 'UPDATE'
        AND NEW.expires_at >= OLD.expires_at
        AND (to_jsonb(NEW) ->> 'last_seen_at')::timestamptz
            >= (to_jsonb(OLD) ->> 'last_seen_at')::timestamptz
        AND to_jsonb(NEW) - 'expires_at' - 'last_seen_at'
            = to_jsonb(OLD) - 'expires_at' - 'last_seen_at'
    THEN
        RETURN NULL;
    END IF;
    -- A digest of the id: in Lucia-compatible storage the id is the token.
    PERFORM pg_notify('lucia_diesel_sessions',
        's:' || encode(sha256(convert_to(OLD.id::text, 'UTF8')), 'hex'));
    IF TG_OP = 'UPDATE' AND NEW.id IS DISTINCT FROM OLD.id THEN
        PERFORM pg_notify('lucia_diesel_sessions',
            's:' || encode(sha256(convert_to(NEW.id::text, 'UTF8')), 'hex'));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER lucia_diesel_notify AFTER UPDATE OR DELETE ON {session}
    FOR EACH ROW EXECUTE FUNCTION {session_fn}();
CREATE TRIGGER lucia_diesel_notify_truncate AFTER TRUNCATE ON {session}
    FOR EACH STATEMENT EXECUTE FUNCTION {session_fn}();

CREATE FUNCTION {user_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        payload := '*';
    ELSE
        payload := 'u:' || OLD.id::text;
        -- Notifications hold under 8000 bytes; '*' empties every cache.
        IF octet_length(payload) >= 7900 THEN
            payload := '*';
        END IF;
    END IF;
    PERFORM pg_notify('lucia_diesel_sessions', payload);
    RETURN NULL;
END
$$;

CREATE TRIGGER lucia_diesel_notify AFTER UPDATE OR DELETE ON {user}
    FOR EACH ROW EXECUTE FUNCTION {user_fn}();
CREATE TRIGGER lucia_diesel_notify_truncate AFTER TRUNCATE ON {user}
    FOR EACH STATEMENT EXECUTE FUNCTION {user_fn}();
"
    );
    let down = format!(
        "DROP TRIGGER lucia_diesel_notify_truncate ON {user};
DROP TRIGGER lucia_diesel_notify ON {user};
DROP FUNCTION {user_fn}();
DROP TRIGGER lucia_diesel_notify_truncate ON {session};
DROP TRIGGER lucia_diesel_notify ON {session};
DROP FUNCTION {session_fn}();
"
    );
    MigrationSql { up, down }
}

/// Writes [`create_tables_sql`] as a new migration in an application's
/// migrations directory (`<dir>/<timestamp>_create_auth_tables/{up,down}.sql`)
/// and returns the migration's directory.
///
/// # Errors
/// Any I/O error creating the directory or files.
pub fn write_migration<U: UserId>(
    names: &TableNames,
    migrations_dir: &Path,
) -> std::io::Result<PathBuf> {
    let sql = create_tables_sql::<U>(names);
    let stamp = chrono::Utc::now().format("%Y-%m-%d-%H%M%S");
    let dir = migrations_dir.join(format!("{stamp}_create_auth_tables"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("up.sql"), sql.up)?;
    std::fs::write(dir.join("down.sql"), sql.down)?;
    Ok(dir)
}

/// Runs [`create_tables_sql`] on a connection, for tests and tools that do
/// not keep migrations of their own.
///
/// # Errors
/// Any database error, e.g. when the tables already exist.
pub async fn create_tables<U: UserId>(
    conn: &mut AsyncPgConnection,
    names: &TableNames,
) -> Result<()> {
    use diesel_async::SimpleAsyncConnection as _;
    let sql = create_tables_sql::<U>(names);
    conn.batch_execute(&sql.up).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "migrations-cache/2026-12-01-000001_cache_triggers";

    #[test]
    fn the_cache_migration_is_the_generated_ddl_for_the_default_names() {
        let sql = cache_triggers_sql(&TableNames::default());
        let read = |file: &str| std::fs::read_to_string(format!("{DIR}/{file}")).unwrap();
        assert_eq!(read("up.sql"), sql.up);
        assert_eq!(read("down.sql"), sql.down);
    }
}
