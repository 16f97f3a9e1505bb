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
//! application's own; [`authenticated_at_sql`] upgrades such a table made
//! before `authenticated_at`.

mod outbox;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness as _, embed_migrations};

#[cfg(feature = "cache")]
pub(crate) use self::outbox::TRIGGERS;
pub use self::outbox::cache_triggers_sql;
use crate::error::{Error, Result};
use crate::names::TableNames;
use crate::user_id::UserId;

/// The crate's migrations (Lucia's schema on `auth_user` / `user_session`).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The outbox and triggers the validation cache needs (see the
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
         last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),\n    \
         authenticated_at TIMESTAMPTZ NOT NULL DEFAULT now()\n);\n\n\
         CREATE INDEX {user_idx} ON {session} (user_id);\n\
         CREATE INDEX {expires_idx} ON {session} (expires_at);\n"
    ));
    let down = format!("DROP TABLE {session};\nDROP TABLE {user};\n");
    MigrationSql { up, down }
}

/// The upgrade of a session table made before `authenticated_at` (by
/// [`create_tables_sql`] of an earlier version, or by hand): the crate's
/// migration `2026-12-03-100000_session_authenticated_at` for these names.
/// New rows default to the time of their insert (a sign-in); rows already
/// there take their `created_at`, when their user last signed in for
/// certain. The `UPDATE` writes every row once: with the cache's triggers
/// installed, each also queues an invalidation.
///
/// # Examples
/// ```
/// use lucia_diesel::{TableNames, migrations::authenticated_at_sql};
///
/// let sql = authenticated_at_sql(&TableNames::new("auth.users", "auth.sessions")?);
/// assert!(sql.up.starts_with(r#"ALTER TABLE "auth"."sessions" ADD COLUMN authenticated_at"#));
/// # Ok::<(), lucia_diesel::ConfigError>(())
/// ```
#[must_use]
pub fn authenticated_at_sql(names: &TableNames) -> MigrationSql {
    let session = names.session().to_sql();
    MigrationSql {
        up: format!(
            "ALTER TABLE {session} ADD COLUMN authenticated_at TIMESTAMPTZ NOT NULL DEFAULT now();\n\
             UPDATE {session} SET authenticated_at = created_at;\n"
        ),
        down: format!("ALTER TABLE {session} DROP COLUMN authenticated_at;\n"),
    }
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

    const DIR: &str = "migrations-cache/2026-12-03-000000_cache_outbox";
    const AUTHENTICATED_AT: &str = "migrations/2026-12-03-100000_session_authenticated_at";

    #[test]
    fn the_cache_migration_is_the_generated_ddl_for_the_default_names() {
        let sql = cache_triggers_sql(&TableNames::default());
        let read = |file: &str| std::fs::read_to_string(format!("{DIR}/{file}")).unwrap();
        assert_eq!(read("up.sql"), sql.up);
        assert_eq!(read("down.sql"), sql.down);
    }

    #[test]
    fn the_authenticated_at_migration_is_the_generated_upgrade_for_the_default_names() {
        let sql = authenticated_at_sql(&TableNames::default());
        let read = |file: &str| {
            let text = std::fs::read_to_string(format!("{AUTHENTICATED_AT}/{file}")).unwrap();
            // The files open with a comment the generator does not write.
            text.lines()
                .filter(|line| !line.starts_with("--"))
                .map(|line| format!("{line}\n"))
                .collect::<String>()
        };
        assert_eq!(read("up.sql"), sql.up);
        assert_eq!(read("down.sql"), sql.down);
    }
}
