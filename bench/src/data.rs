//! The bench database: schema, users, sessions, and `pg_stat_statements`.

use std::time::Instant;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use crate::{Res, USERS};

/// The database the bench creates (and drops unless `--keep-db`).
const DATABASE: &str = "session_bench";

/// `targets::LoadedId::new(n)` in SQL, for `n` below 2^31.
const SESSION_ID_SQL: &str = "repeat(lpad(to_hex((n * 2654435761) % 4294967296), 8, '0'), 8)";

/// Runs `{insert}` with the session table's constraints and indexes
/// dropped, then recreates them from their saved definitions: building an
/// index once is several times faster than growing it row by row (10^6
/// sessions load in seconds, not tens of seconds).
const WITHOUT_INDEXES: &str = "DO $$
DECLARE
    t regclass := 'user_session';
    recreate text[];
    stmt text;
BEGIN
    SELECT array_agg(pg_get_indexdef(indexrelid)) INTO recreate FROM pg_index i
    WHERE indrelid = t AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = i.indexrelid);
    SELECT recreate || array_agg(format('ALTER TABLE %s ADD CONSTRAINT %I %s',
        t, conname, pg_get_constraintdef(oid)) ORDER BY contype = 'f') INTO recreate
    FROM pg_constraint WHERE conrelid = t AND contype IN ('p', 'u', 'f');
    FOR stmt IN
        SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', t, conname) FROM pg_constraint
        WHERE conrelid = t AND contype IN ('p', 'u', 'f') ORDER BY contype <> 'f'
    LOOP EXECUTE stmt; END LOOP;
    FOR stmt IN SELECT format('DROP INDEX %s', indexrelid::regclass) FROM pg_index WHERE indrelid = t
    LOOP EXECUTE stmt; END LOOP;
    {insert};
    FOREACH stmt IN ARRAY recreate LOOP EXECUTE stmt; END LOOP;
END $$";

/// When loaded sessions expire.
#[derive(Clone, Copy)]
pub enum Expiry {
    Live,
    Expired,
}

/// (Re)creates the bench database on `server` with the schema of the
/// protocol and its users; returns the database's URL.
pub async fn create(server: &str) -> Res<String> {
    drop(server).await?;
    let mut admin = AsyncPgConnection::establish(server).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
        .await?;
    let url = database_url(server)?;
    lucia_diesel::migrations::run_pending_migrations_at(&url).await?;
    let mut conn = AsyncPgConnection::establish(&url).await?;
    conn.batch_execute(&format!(
        "ALTER TABLE auth_user ADD COLUMN username TEXT NOT NULL UNIQUE;
         ALTER TABLE user_session ADD COLUMN country TEXT;
         INSERT INTO auth_user (id, username)
         SELECT 'user-' || n, 'name-' || n FROM generate_series(0, {last}) n;",
        last = USERS - 1
    ))
    .await?;
    // Statements per operation need the extension (and the library preloaded).
    let _ = conn
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await;
    Ok(url)
}

/// The bench database's URL on `server` (a URL naming another database).
pub fn database_url(server: &str) -> Res<String> {
    match server.rsplit_once('/') {
        Some((base, _)) => Ok(format!("{base}/{DATABASE}")),
        None => Err("DATABASE_URL and REPLICA_URL must be URLs".into()),
    }
}

/// A connection to the bench database at `url` on a standby, once the
/// standby has replayed its creation (waiting at most 30 s).
pub async fn connect_on_standby(url: &str) -> Res<AsyncPgConnection> {
    let start = Instant::now();
    loop {
        match AsyncPgConnection::establish(url).await {
            Ok(conn) => return Ok(conn),
            Err(e) if start.elapsed().as_secs() >= 30 => return Err(e.into()),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

/// Drops the bench database.
pub async fn drop(server: &str) -> Res<()> {
    let mut admin = AsyncPgConnection::establish(server).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .await?;
    Ok(())
}

/// Inserts sessions `from..to` server side (session `n`: id
/// `targets::LoadedId::new(n)`, user `n % USERS`), then vacuums and
/// analyzes the table.
pub async fn load_sessions(
    conn: &mut AsyncPgConnection,
    from: u64,
    to: u64,
    expiry: Expiry,
) -> Res<()> {
    if from >= to {
        return Ok(());
    }
    let expires = match expiry {
        Expiry::Live => "now() + interval '30 days'",
        Expiry::Expired => "now() - interval '1 day'",
    };
    eprint!(
        "\r{:<100}\rloading sessions {from}..{to} ({expires})... ",
        ""
    );
    let start = Instant::now();
    let insert = format!(
        "INSERT INTO user_session (id, user_id, expires_at, country)
         SELECT {SESSION_ID_SQL}, 'user-' || n % {USERS}, {expires}, 'nl'
         FROM generate_series({from}::bigint, {last}) n",
        last = to - 1
    );
    conn.batch_execute(&WITHOUT_INDEXES.replace("{insert}", &insert))
        .await?;
    conn.batch_execute("VACUUM ANALYZE user_session").await?;
    eprintln!("{:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Sessions `prefix0`, `prefix1`, .. up to `prefix{n - 1}` (the ids
/// `targets::created_id` gives), for a `delete` run to remove: every
/// delete then finds its row, whichever implementation runs faster. Ids a
/// `create` run already inserted are kept.
pub async fn load_deletable(conn: &mut AsyncPgConnection, prefix: &str, n: u64) -> Res<()> {
    conn.batch_execute(&format!(
        "INSERT INTO user_session (id, user_id, expires_at, country)
         SELECT '{prefix}' || n, 'user-' || n % {USERS}, now() + interval '30 days', 'se'
         FROM generate_series(0, {last}) n ON CONFLICT (id) DO NOTHING",
        last = n.max(1) - 1
    ))
    .await?;
    // A statement of its own: VACUUM cannot run in the insert's transaction.
    conn.batch_execute("VACUUM ANALYZE user_session").await?;
    Ok(())
}

/// Users `prefix` `u0` .. `u{n - 1}` with two sessions each, for a
/// `delete_user` run: every call then deletes two rows.
pub async fn load_deletable_users(conn: &mut AsyncPgConnection, prefix: &str, n: u64) -> Res<()> {
    let last = n.max(1) - 1;
    conn.batch_execute(&format!(
        "INSERT INTO auth_user (id, username)
         SELECT '{prefix}u' || n, '{prefix}u' || n FROM generate_series(0, {last}) n
         ON CONFLICT (id) DO NOTHING;
         INSERT INTO user_session (id, user_id, expires_at, country)
         SELECT '{prefix}u' || n || '-' || k, '{prefix}u' || n, now() + interval '30 days', 'se'
         FROM generate_series(0, {last}) n, generate_series(1, 2) k ON CONFLICT (id) DO NOTHING"
    ))
    .await?;
    conn.batch_execute("VACUUM ANALYZE user_session").await?;
    Ok(())
}

pub async fn reset_statements(conn: &mut AsyncPgConnection) {
    let _ = conn
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await;
}

/// Statements run in this database since the last reset, per operation;
/// `None` without `pg_stat_statements`.
pub async fn statements_per_op(conn: &mut AsyncPgConnection, ops: u64) -> Option<f64> {
    #[derive(diesel::QueryableByName)]
    struct Calls {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        n: Option<i64>,
    }
    let calls = diesel::sql_query(
        "SELECT sum(calls)::bigint AS n FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE 'SET %'",
    )
    .get_result::<Calls>(conn)
    .await
    .ok()?;
    Some(calls.n.unwrap_or(0) as f64 / ops.max(1) as f64)
}

/// Users of the sessions the manager validates (`validate_session`), apart
/// from the loaded sessions' users so that `list` reads what it always did.
const TOKEN_USERS: u64 = 1000;

/// Inserts live sessions with these ids (the stored ids of the tokens
/// `validate_session` presents), in batches, then vacuums and analyzes.
pub async fn load_token_sessions(conn: &mut AsyncPgConnection, ids: &[String]) -> Res<()> {
    use diesel::sql_types::{Array, Text};
    eprint!(
        "\r{:<100}\rloading {} sessions with tokens... ",
        "",
        ids.len()
    );
    let start = Instant::now();
    conn.batch_execute(&format!(
        "INSERT INTO auth_user (id, username)
         SELECT 'token-user-' || n, 'token-name-' || n FROM generate_series(0, {last}) n
         ON CONFLICT DO NOTHING",
        last = TOKEN_USERS - 1
    ))
    .await?;
    for batch in ids.chunks(10_000) {
        diesel::sql_query(format!(
            "INSERT INTO user_session (id, user_id, expires_at, country)
             SELECT id, 'token-user-' || n % {TOKEN_USERS}, now() + interval '30 days', 'se'
             FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n)"
        ))
        .bind::<Array<Text>, _>(batch)
        .execute(conn)
        .await?;
    }
    conn.batch_execute("VACUUM ANALYZE user_session").await?;
    eprintln!("{:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Installs (or removes) the validation cache's triggers on the bench's
/// tables, unless they already are (or are not).
pub async fn set_cache_triggers(conn: &mut AsyncPgConnection, installed: bool) -> Res<()> {
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    let now = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'lucia_diesel_invalidate') AS found",
    )
    .get_result::<Found>(conn)
    .await?
    .found;
    if now != installed {
        let sql =
            lucia_diesel::migrations::cache_triggers_sql(&lucia_diesel::TableNames::default());
        conn.batch_execute(if installed { &sql.up } else { &sql.down })
            .await?;
    }
    Ok(())
}
