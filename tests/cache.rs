//! The validation cache (feature `cache`) on a real PostgreSQL: two managers
//! with pools, listeners and caches of their own on one database, as two
//! app instances; revocations by the crate and by plain SQL; the listener
//! killed and the server restarted; the stale-fill race held open at its
//! two orderings.
//!
//! Each test has a database of its own: notifications are per database, so
//! no test sees another's.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use lucia_diesel::cache::{APPLICATION_NAME, CacheOptions, CacheStats};
use lucia_diesel::migrations::{
    CACHE_MIGRATIONS, cache_triggers_sql, run_embedded_migrations, run_pending_migrations,
};
use lucia_diesel::{
    Attributes, ConfigError, Error, PgPool, PoolOptions, PostgresAdapter, SessionManager,
    TableNames,
};
use serde::Deserialize;

use crate::support::clock::ManualClock;
use crate::support::{server_url, unique_name};

type Manager<UA = Attributes> = SessionManager<PostgresAdapter<PgPool, String, Attributes, UA>>;

/// `server` with its database replaced by `db`.
fn database_url(server: &str, db: &str) -> String {
    let (base, query) = server.split_once('?').unwrap_or((server, ""));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{db}{query}", &base[..path])
}

/// A database of its own with the crate's tables, a `name` column on the
/// user table and a `country` column on the session table, and (unless `triggers` is false) the cache's triggers.
struct CacheDb {
    name: String,
    url: String,
    server: String,
}

impl CacheDb {
    async fn new(triggers: bool) -> Self {
        Self::on(server_url(), triggers).await
    }

    async fn on(server: &str, triggers: bool) -> Self {
        let name = unique_name("ldc");
        let mut admin = AsyncPgConnection::establish(server).await.unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let db = Self {
            url: database_url(server, &name),
            name,
            server: server.to_owned(),
        };
        run_pending_migrations(db.connect().await).await.unwrap();
        if triggers {
            run_embedded_migrations(db.connect().await, CACHE_MIGRATIONS)
                .await
                .unwrap();
        }
        db.exec(
            "ALTER TABLE auth_user ADD COLUMN name TEXT NOT NULL DEFAULT ''; \
             ALTER TABLE user_session ADD COLUMN country TEXT",
        )
        .await;
        db
    }

    async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.unwrap()
    }

    async fn exec(&self, sql: &str) {
        self.connect()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn pool(&self) -> PgPool {
        PoolOptions::new()
            .with_max_size(4)
            .build(&self.url)
            .await
            .unwrap()
    }

    /// An app instance: a pool, a manager and a cache of its own.
    async fn instance<UA>(&self) -> Manager<UA>
    where
        UA: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
    {
        SessionManager::new(PostgresAdapter::new(self.pool().await).with_user_attributes::<UA>())
            .with_cache(CacheOptions::new(&self.url))
            .await
            .unwrap()
    }

    async fn user(&self, id: &str, name: &str) -> String {
        self.exec(&format!(
            "INSERT INTO auth_user (id, name) VALUES ('{id}', '{name}')"
        ))
        .await;
        id.to_owned()
    }
}

impl Drop for CacheDb {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        crate::support::cleanup(&self.server, &[drop]);
    }
}

fn stats<UA>(m: &Manager<UA>) -> CacheStats
where
    UA: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    m.cache_stats().expect("a cache")
}

/// Waits (up to 20 s) until `done`, and returns how long that took.
async fn until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
    start.elapsed()
}

/// Whether `m` finds `token` valid (an error counts as a failure).
async fn valid<UA>(m: &Manager<UA>, token: &str) -> bool
where
    UA: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    m.validate_session(token).await.unwrap().is_some()
}

/// Validates until a validation of `token` is a hit (the first fills).
async fn cached<UA>(m: &Manager<UA>, token: &str)
where
    UA: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    for _ in 0..50 {
        let hits = stats(m).hits;
        assert!(valid(m, token).await);
        if stats(m).hits > hits {
            return;
        }
    }
    panic!("never served from the cache: {:?}", stats(m));
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// A user's `name` column.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Named {
    name: String,
}

/// Waits until `m` has handled `n` more notifications than `before`.
async fn handled<UA>(m: &Manager<UA>, before: &CacheStats, n: u64) -> Duration
where
    UA: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    until("the notification", || {
        stats(m).invalidations >= before.invalidations + n
    })
    .await
}

#[tokio::test]
async fn a_hit_makes_no_query_and_answers_as_the_database_did() {
    use crate::round_trips::Counter;
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    let counter = Counter::default();
    let mut conn = db.connect().await;
    conn.set_instrumentation(counter.clone());
    let adapter = PostgresAdapter::new(lucia_diesel::SingleConnection::new(conn))
        .with_user_attributes::<Named>();
    let m = SessionManager::new(adapter)
        .with_cache(CacheOptions::new(&db.url))
        .await
        .unwrap();
    let created = m.create_session(alice, Attributes::new()).await.unwrap();
    let token = created.token.as_str();
    counter.take();
    let (session, user) = m.validate_session(token).await.unwrap().unwrap();
    assert_eq!(counter.take().0, 1, "a miss reads the database");
    for _ in 0..3 {
        let (again, same_user) = m.validate_session(token).await.unwrap().unwrap();
        assert_eq!(counter.take().0, 0, "a hit makes no query");
        assert_eq!(again.id, session.id);
        assert_eq!(again.expires_at, session.expires_at);
        assert_eq!(again.last_seen_at, session.last_seen_at);
        assert!(!again.fresh);
        assert_eq!(same_user.attributes, user.attributes);
        assert_eq!(same_user.attributes.name, "Alice");
    }
    let s = m.cache_stats().unwrap();
    assert_eq!(
        (s.fills, s.hits, s.misses, s.bypasses),
        (1, 3, 1, 0),
        "{s:?}"
    );
    assert!(s.listening);
    // Unknown and malformed tokens are not cached: each unknown one reads.
    for _ in 0..2 {
        assert!(m.validate_session(&"a".repeat(40)).await.unwrap().is_none());
    }
    assert_eq!(counter.take().0, 2);

    // Without a cache, every validation reads, as before.
    let mut conn = db.connect().await;
    conn.set_instrumentation(counter.clone());
    let plain = SessionManager::new(PostgresAdapter::new(lucia_diesel::SingleConnection::new(
        conn,
    )));
    assert!(plain.cache_stats().is_none());
    for _ in 0..2 {
        assert!(plain.validate_session(token).await.unwrap().is_some());
    }
    assert_eq!(counter.take().0, 3, "a column lookup, then a read each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_the_other_instance_within_milliseconds() {
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    let a = db.instance::<Attributes>().await;
    let b = db.instance::<Attributes>().await;
    let mut lags = Vec::new();
    for _ in 0..1000 {
        let created = a
            .create_session(alice.clone(), Attributes::new())
            .await
            .unwrap();
        let token = created.token.as_str();
        cached(&b, token).await;
        cached(&a, token).await;
        // From the start of the revoking call to its notification handled.
        let (before, start) = (stats(&b), Instant::now());
        a.invalidate_session(&created.session.id).await.unwrap();
        handled(&b, &before, 1).await;
        lags.push(start.elapsed());
        assert!(!valid(&b, token).await, "served after its notification");
        // The revoking instance forgot it at once.
        assert!(!valid(&a, token).await);
    }
    lags.sort();
    println!(
        "revocation lag over {} revocations: p50 {:?}, p99 {:?}, max {:?}",
        lags.len(),
        percentile(&lags, 50),
        percentile(&lags, 99),
        lags[lags.len() - 1]
    );

    // All of a user's sessions ("sign out everywhere", a password change).
    let bob = db.user("bob", "Bob").await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let created = a
            .create_session(bob.clone(), Attributes::new())
            .await
            .unwrap();
        cached(&b, created.token.as_str()).await;
        tokens.push(created.token);
    }
    let kept = a
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    cached(&b, kept.token.as_str()).await;
    let before = stats(&b);
    assert_eq!(a.invalidate_user_sessions(&bob).await.unwrap(), 3);
    handled(&b, &before, 3).await;
    for token in &tokens {
        assert!(!valid(&b, token.as_str()).await);
    }
    assert!(
        valid(&b, kept.token.as_str()).await,
        "another user's session stays"
    );
    assert_eq!(stats(&b).bypasses, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_outside_the_crate_invalidate_every_instance() {
    let db = CacheDb::new(true).await;
    let carol = db.user("carol", "Carol").await;
    let b = db.instance::<Named>().await;
    let session = async || {
        let created = b
            .create_session(carol.clone(), Attributes::new())
            .await
            .unwrap();
        cached(&b, created.token.as_str()).await;
        created
    };
    // Runs `sql` (with `{id}` replaced by the session's id) and waits until
    // `b` has handled its `n` notifications.
    let write = async |sql: &str, id: &str, n: u64| {
        let before = stats(&b);
        db.exec(&sql.replace("{id}", id)).await;
        handled(&b, &before, n).await;
    };

    let s = session().await;
    write(
        "DELETE FROM user_session WHERE id = '{id}'",
        s.session.id.as_str(),
        1,
    )
    .await;
    assert!(!valid(&b, s.token.as_str()).await, "deleted by plain SQL");

    let s = session().await;
    let sql = "UPDATE user_session SET expires_at = now() - interval '1 second' WHERE id = '{id}'";
    write(sql, s.session.id.as_str(), 1).await;
    let before = stats(&b);
    assert!(!valid(&b, s.token.as_str()).await, "expired by plain SQL");
    // Found expired, it was deleted: that notifies too.
    handled(&b, &before, 1).await;

    // An extension notifies nothing (the cache's earlier expiry only sends
    // it to the database sooner); a later notification is the barrier that
    // shows none came before it.
    let s = session().await;
    let extended = "UPDATE user_session SET expires_at = expires_at + interval '1 day', \
                    last_seen_at = now() WHERE id = '{id}'";
    db.exec(&extended.replace("{id}", s.session.id.as_str()))
        .await;
    let other = session().await;
    write(
        "DELETE FROM user_session WHERE id = '{id}'",
        other.session.id.as_str(),
        1,
    )
    .await;
    let before = stats(&b);
    let (got, _) = b.validate_session(s.token.as_str()).await.unwrap().unwrap();
    assert_eq!(stats(&b).hits, before.hits + 1, "still cached");
    assert_eq!(got.expires_at, s.session.expires_at);
    // An earlier expiry notifies: then the database's.
    let shortened =
        "UPDATE user_session SET expires_at = expires_at - interval '1 hour' WHERE id = '{id}'";
    write(shortened, s.session.id.as_str(), 1).await;
    let (got, _) = b.validate_session(s.token.as_str()).await.unwrap().unwrap();
    let expected = s.session.expires_at + chrono::Duration::days(1) - chrono::Duration::hours(1);
    assert_eq!(got.expires_at, expected);

    // Any other column changed notifies, with the new value.
    let s = session().await;
    write(
        "UPDATE user_session SET country = 'se' WHERE id = '{id}'",
        s.session.id.as_str(),
        1,
    )
    .await;
    let (got, _) = b.validate_session(s.token.as_str()).await.unwrap().unwrap();
    assert_eq!(
        got.attributes.get("country"),
        Some(&serde_json::json!("se"))
    );

    let s = session().await;
    write(
        "UPDATE auth_user SET name = 'Carol Two' WHERE id = 'carol'",
        "",
        1,
    )
    .await;
    let (_, user) = b.validate_session(s.token.as_str()).await.unwrap().unwrap();
    assert_eq!(
        user.attributes.name, "Carol Two",
        "the new attribute, not the cached one"
    );

    let dave = db.user("dave", "Dave").await;
    let d = b.create_session(dave, Attributes::new()).await.unwrap();
    cached(&b, d.token.as_str()).await;
    let s = session().await;
    // A notification for each of carol's sessions and one for carol.
    let sessions = crate::support::scalar(
        &mut db.connect().await,
        "SELECT count(*) AS n FROM user_session WHERE user_id = 'carol'",
    )
    .await;
    let sql = "DELETE FROM user_session WHERE user_id = 'carol'; DELETE FROM auth_user WHERE id = 'carol'";
    write(sql, "", u64::try_from(sessions).unwrap() + 1).await;
    assert!(!valid(&b, s.token.as_str()).await, "user deleted");
    assert!(
        valid(&b, d.token.as_str()).await,
        "another user's session stays"
    );
    cached(&b, d.token.as_str()).await;

    let flushes = stats(&b).flushes;
    write("TRUNCATE user_session", "", 1).await;
    assert!(!valid(&b, d.token.as_str()).await, "sessions truncated");
    assert_eq!(stats(&b).flushes, flushes + 1);

    let erin = db.user("erin", "Erin").await;
    let e = b.create_session(erin, Attributes::new()).await.unwrap();
    cached(&b, e.token.as_str()).await;
    // Truncating the users cascades to the sessions: both tables notify
    // `*`, and PostgreSQL delivers a transaction's equal notifications once.
    write("TRUNCATE auth_user CASCADE", "", 1).await;
    assert!(!valid(&b, e.token.as_str()).await, "users truncated");
}

/// Terminates the backends of cache listeners on `db`; how many.
async fn kill_listeners(db: &CacheDb) -> i64 {
    crate::support::scalar(
        &mut db.connect().await,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE application_name = '{APPLICATION_NAME}' AND datname = current_database()"
        ),
    )
    .await
}

/// A login role of its own for a listener, so that a test can keep the
/// listener from reconnecting (`NOLOGIN`); dropped with the value.
struct ListenRole {
    name: String,
    server: String,
}

impl ListenRole {
    async fn new(db: &CacheDb) -> Self {
        let name = unique_name("ldl");
        db.exec(&format!("CREATE ROLE {name} LOGIN")).await;
        Self {
            name,
            server: db.server.clone(),
        }
    }

    /// `db`'s URL as this role (a later `user` parameter wins).
    fn url(&self, db: &CacheDb) -> String {
        let sep = if db.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}user={}", db.url, self.name)
    }

    async fn allow_login(&self, db: &CacheDb, allow: bool) {
        let login = if allow { "LOGIN" } else { "NOLOGIN" };
        db.exec(&format!("ALTER ROLE {} {login}", self.name)).await;
    }
}

impl Drop for ListenRole {
    fn drop(&mut self) {
        let drop = format!("DROP ROLE IF EXISTS {}", self.name);
        crate::support::cleanup(&self.server, &[drop]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_bypasses_the_cache_until_it_is_back() {
    let db = CacheDb::new(true).await;
    let role = ListenRole::new(&db).await;
    let alice = db.user("alice", "Alice").await;
    let b: Manager = SessionManager::new(PostgresAdapter::new(db.pool().await))
        .with_cache(CacheOptions::new(role.url(&db)))
        .await
        .unwrap();
    let mut created = Vec::new();
    for _ in 0..40 {
        let c = b
            .create_session(alice.clone(), Attributes::new())
            .await
            .unwrap();
        cached(&b, c.token.as_str()).await;
        created.push(c);
    }
    let (revoked, kept) = created.split_at(20);
    let revoke = async |c: &lucia_diesel::CreatedSession<String, Attributes>| {
        db.exec(&format!(
            "DELETE FROM user_session WHERE id = '{}'",
            c.session.id.as_str()
        ))
        .await;
    };

    // Revocations race the listener's death; it cannot reconnect until the
    // role may log in again.
    let flushes = stats(&b).flushes;
    role.allow_login(&db, false).await;
    revoke(&revoked[0]).await;
    assert_eq!(kill_listeners(&db).await, 1);
    for c in &revoked[1..10] {
        revoke(c).await;
    }
    until("the listener noticed", || !stats(&b).listening).await;
    for c in &revoked[10..] {
        revoke(c).await;
    }
    // While it is down, nothing is served from memory.
    let down = stats(&b);
    for c in revoked {
        assert!(
            !valid(&b, c.token.as_str()).await,
            "revoked, served while down"
        );
    }
    for c in kept {
        assert!(valid(&b, c.token.as_str()).await);
    }
    let still_down = stats(&b);
    assert!(!still_down.listening);
    assert_eq!(still_down.hits, down.hits, "{still_down:?}");
    assert_eq!(still_down.bypasses, down.bypasses + 40);

    // Back: emptied first, then it serves and listens again.
    role.allow_login(&db, true).await;
    until("the listener is back", || stats(&b).listening).await;
    assert_eq!(
        stats(&b).flushes,
        flushes + 1,
        "emptied when it reconnected"
    );
    for c in revoked {
        assert!(
            !valid(&b, c.token.as_str()).await,
            "revoked while down, served after"
        );
    }
    for c in kept {
        assert!(valid(&b, c.token.as_str()).await);
    }
    cached(&b, kept[0].token.as_str()).await;
    let before = stats(&b);
    revoke(&kept[0]).await;
    handled(&b, &before, 1).await;
    assert!(!valid(&b, kept[0].token.as_str()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_bypasses_then_flushes_and_resumes() {
    let cluster = testkit::Cluster::start().unwrap();
    let db = CacheDb::on(&cluster.url("postgres"), true).await;
    let alice = db.user("alice", "Alice").await;
    let b = db.instance::<Attributes>().await;
    let one = b
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    let two = b.create_session(alice, Attributes::new()).await.unwrap();
    cached(&b, one.token.as_str()).await;
    cached(&b, two.token.as_str()).await;
    let flushes = stats(&b).flushes;

    cluster.restart().unwrap();
    // The first statements after a restart may fail on dead connections.
    let mut revoked = false;
    for _ in 0..100 {
        let mut conn = match AsyncPgConnection::establish(&db.url).await {
            Ok(conn) => conn,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let sql = format!(
            "DELETE FROM user_session WHERE id = '{}'",
            one.session.id.as_str()
        );
        if conn.batch_execute(&sql).await.is_ok() {
            revoked = true;
            break;
        }
    }
    assert!(revoked);
    // Whatever the listener's state now, the revoked session is never valid.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match b.validate_session(one.token.as_str()).await {
            Ok(found) => assert!(found.is_none(), "revoked during the restart, served"),
            Err(e) => assert!(e.is_transient(), "{e}"),
        }
        if stats(&b).listening && stats(&b).flushes > flushes {
            break;
        }
        assert!(Instant::now() < deadline, "the listener never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!valid(&b, one.token.as_str()).await);
    cached(&b, two.token.as_str()).await;
}

/// A user's name whose decoding (after the row was read, before the cache
/// is filled) waits at the gate, when one is set: the validation is held
/// between its read and its fill.
#[derive(Debug, Clone)]
struct Gated;

type Gate = (mpsc::Sender<()>, mpsc::Receiver<()>);
static GATE: Mutex<Option<Gate>> = Mutex::new(None);

impl<'de> Deserialize<'de> for Gated {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Named::deserialize(d)?;
        let gate = GATE.lock().unwrap().take();
        if let Some((read, release)) = gate {
            read.send(()).unwrap();
            release.recv().unwrap();
        }
        Ok(Self)
    }
}

/// Sets the gate; returns (read, release): a validation that reads sends on
/// the first and waits for the second.
fn set_gate() -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (read_tx, read_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    *GATE.lock().unwrap() = Some((read_tx, release_rx));
    (read_rx, release_tx)
}

/// Waits (on a blocking thread) for the held validation to have read.
async fn read_happened(read: mpsc::Receiver<()>) {
    let waited = tokio::task::spawn_blocking(move || read.recv_timeout(Duration::from_secs(20)));
    waited.await.unwrap().expect("the validation never read");
}

// The held validation runs on the test's own thread (multi-thread runtime:
// the listener and the orchestration run on the workers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_that_read_before_a_revocation_never_caches_it() {
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    let b = Arc::new(db.instance::<Gated>().await);

    // 1. The revocation commits and its notification is handled while the
    // validation is between its read and its fill: the fill is dropped.
    let s = b
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    let before = stats(&b);
    let (read, release) = set_gate();
    let orchestrate = {
        let (b, db_url) = (Arc::clone(&b), db.url.clone());
        let id = s.session.id.as_str().to_owned();
        tokio::spawn(async move {
            read_happened(read).await;
            let mut conn = AsyncPgConnection::establish(&db_url).await.unwrap();
            conn.batch_execute(&format!("DELETE FROM user_session WHERE id = '{id}'"))
                .await
                .unwrap();
            handled(&b, &before, 1).await;
            release.send(()).unwrap();
        })
    };
    // Held at the gate on this thread until the orchestration releases it.
    let result = b.validate_session(s.token.as_str()).await;
    orchestrate.await.unwrap();
    // It read the row before the revocation: valid for this request.
    assert!(result.unwrap().is_some());
    let after = stats(&b);
    assert_eq!(after.dropped_fills, before.dropped_fills + 1, "{after:?}");
    assert_eq!(after.fills, before.fills);
    assert!(!valid(&b, s.token.as_str()).await, "never served after");

    // 2. The revocation's commit is held until the validation has read the
    // row and filled the cache: the notification that follows empties it.
    let s = b.create_session(alice, Attributes::new()).await.unwrap();
    let mut tx = db.connect().await;
    tx.batch_execute(&format!(
        "BEGIN; DELETE FROM user_session WHERE id = '{}'",
        s.session.id.as_str()
    ))
    .await
    .unwrap();
    let before = stats(&b);
    assert!(
        valid(&b, s.token.as_str()).await,
        "the delete is not committed"
    );
    assert_eq!(stats(&b).fills, before.fills + 1);
    tx.batch_execute("COMMIT").await.unwrap();
    handled(&b, &before, 1).await;
    assert!(!valid(&b, s.token.as_str()).await, "never served after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_due_for_a_write_or_expired_go_to_the_database() {
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    let clock = ManualClock::new();
    let m: Manager = SessionManager::builder(PostgresAdapter::new(db.pool().await))
        .with_clock(clock.clone())
        .build()
        .unwrap()
        .with_cache(CacheOptions::new(&db.url))
        .await
        .unwrap();
    let s = m.create_session(alice, Attributes::new()).await.unwrap();
    let token = s.token.as_str();
    cached(&m, token).await;

    // Activity to record (the default resolution is 5 minutes): written,
    // and cached as written (a recorded use notifies nothing).
    clock.advance(chrono::Duration::minutes(6));
    let before = stats(&m);
    let (got, _) = m.validate_session(token).await.unwrap().unwrap();
    assert_eq!(got.last_seen_at, clock.get());
    let after = stats(&m);
    assert_eq!((after.hits, after.fills), (before.hits, before.fills + 1));
    let (again, _) = m.validate_session(token).await.unwrap().unwrap();
    assert_eq!(again.last_seen_at, clock.get());
    assert_eq!(stats(&m).hits, before.hits + 1);

    // In the second half of its lifetime: extended by the database, then
    // served from memory with the new expiry.
    clock.advance(chrono::Duration::days(16));
    let before = stats(&m);
    let (got, _) = m.validate_session(token).await.unwrap().unwrap();
    assert!(got.fresh);
    assert_eq!(stats(&m).hits, before.hits);
    let (again, _) = m.validate_session(token).await.unwrap().unwrap();
    assert_eq!((again.expires_at, again.fresh), (got.expires_at, false));
    assert_eq!(stats(&m).hits, before.hits + 1);

    // Past its expiry: invalid (and deleted), though it was cached.
    clock.advance(chrono::Duration::days(31));
    let before = stats(&m);
    assert!(!valid(&m, token).await);
    assert_eq!(stats(&m).hits, before.hits);
    assert_eq!(
        crate::support::scalar(
            &mut db.connect().await,
            "SELECT count(*) AS n FROM user_session"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn enabling_the_cache_needs_the_triggers_and_a_reachable_server() {
    let db = CacheDb::new(false).await;
    let manager = async || SessionManager::new(PostgresAdapter::new(db.pool().await));
    let err = manager()
        .await
        .with_cache(CacheOptions::new(&db.url))
        .await
        .unwrap_err();
    let Error::Config(ConfigError::CacheTriggers(table)) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(table, r#""user_session""#);
    assert!(err.to_string().contains("CACHE_MIGRATIONS"), "{err}");

    run_embedded_migrations(db.connect().await, CACHE_MIGRATIONS)
        .await
        .unwrap();
    db.exec("ALTER TABLE auth_user DISABLE TRIGGER lucia_diesel_notify")
        .await;
    let err = manager()
        .await
        .with_cache(CacheOptions::new(&db.url))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(ConfigError::CacheTriggers(t)) if t == r#""auth_user""#),
        "{err:?}"
    );
    db.exec("ALTER TABLE auth_user ENABLE TRIGGER lucia_diesel_notify")
        .await;
    assert!(
        manager()
            .await
            .with_cache(CacheOptions::new(&db.url))
            .await
            .is_ok()
    );

    // Settings refused before connecting, by name.
    let refused = [
        (
            CacheOptions::new(&db.url).with_ping_interval(Duration::ZERO),
            "ping",
        ),
        (
            CacheOptions::new(&db.url).with_ping_interval(Duration::from_secs(3601)),
            "ping",
        ),
        (
            CacheOptions::new(&db.url).with_max_age(Duration::from_secs(86_401)),
            "age",
        ),
        (
            CacheOptions::new(&db.url).with_max_age(Duration::MAX),
            "age",
        ),
    ];
    for (options, what) in refused {
        let err = manager().await.with_cache(options).await.unwrap_err();
        let expected = match what {
            "ping" => matches!(err, Error::Config(ConfigError::CachePingInterval)),
            _ => matches!(err, Error::Config(ConfigError::CacheMaxAge)),
        };
        assert!(expected, "{what}: {err:?}");
    }

    let err = manager()
        .await
        .with_cache(CacheOptions::new("postgres://x:y@host:notaport/db"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ConfigError::DatabaseUrl(_))),
        "{err:?}"
    );
    let unreachable = "postgres://app:hunter2secret@127.0.0.1:1/db";
    let options = CacheOptions::new(unreachable);
    assert!(!format!("{options:?}").contains("hunter2secret"));
    let err = manager().await.with_cache(options).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        !format!("{err} {err:?}").contains("hunter2secret"),
        "{err:?}"
    );
}

/// A listener whose runtime shut down (its task aborted) leaves the cache
/// bypassed: nothing would invalidate it any more.
#[test]
fn a_listener_gone_with_its_runtime_leaves_the_cache_bypassed() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let (app, listener) = (runtime(), runtime());
    let db = app.block_on(CacheDb::new(true));
    let (manager, alice) = app.block_on(async {
        let manager = SessionManager::new(PostgresAdapter::new(db.pool().await));
        (manager, db.user("alice", "Alice").await)
    });
    let b: Manager = listener
        .block_on(manager.with_cache(CacheOptions::new(&db.url)))
        .unwrap();
    let token = app.block_on(async {
        let c = b.create_session(alice, Attributes::new()).await.unwrap();
        cached(&b, c.token.as_str()).await;
        c.token
    });

    drop(listener);
    let before = stats(&b);
    assert!(!before.listening, "{before:?}");
    app.block_on(async {
        assert!(valid(&b, token.as_str()).await);
    });
    let after = stats(&b);
    assert_eq!(after.hits, before.hits, "{after:?}");
    assert_eq!(after.bypasses, before.bypasses + 1, "{after:?}");
    drop(b);
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_table_names_get_their_triggers_from_the_generated_ddl() {
    use lucia_diesel::migrations::create_tables_sql;
    let db = CacheDb::new(false).await;
    let names = TableNames::new("Auth.Users", "Auth.Session Rows").unwrap();
    let tables = create_tables_sql::<String>(&names);
    let triggers = cache_triggers_sql(&names);
    db.exec(&tables.up).await;
    db.exec(&triggers.up).await;
    db.exec(r#"INSERT INTO "Auth"."Users" (id) VALUES ('zoe')"#)
        .await;
    let m: Manager =
        SessionManager::new(PostgresAdapter::new(db.pool().await).with_table_names(names.clone()))
            .with_cache(CacheOptions::new(&db.url))
            .await
            .unwrap();
    let s = m
        .create_session("zoe".into(), Attributes::new())
        .await
        .unwrap();
    cached(&m, s.token.as_str()).await;
    let before = stats(&m);
    db.exec(&format!(
        r#"DELETE FROM "Auth"."Session Rows" WHERE id = '{}'"#,
        s.session.id.as_str()
    ))
    .await;
    handled(&m, &before, 1).await;
    assert!(!valid(&m, s.token.as_str()).await);
    // The down migration removes what the up one made.
    db.exec(&triggers.down).await;
    let err = SessionManager::new(PostgresAdapter::new(db.pool().await).with_table_names(names))
        .with_cache(CacheOptions::new(&db.url))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ConfigError::CacheTriggers(_))),
        "{err:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn cache_events_are_countable_and_carry_no_secret() {
    use crate::observability::Capture;
    use sha2::Digest as _;
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    let capture = Capture::default();
    let guard = tracing::subscriber::set_default(capture.clone());
    // Other tests' threads may have registered the cache's callsites while
    // no subscriber wanted them: recompute their interest with this one.
    tracing::callsite::rebuild_interest_cache();
    let m = db.instance::<Attributes>().await;
    let s = m.create_session(alice, Attributes::new()).await.unwrap();
    cached(&m, s.token.as_str()).await;
    let before = stats(&m);
    db.exec(&format!(
        "DELETE FROM user_session WHERE id = '{}'",
        s.session.id.as_str()
    ))
    .await;
    handled(&m, &before, 1).await;
    assert!(!valid(&m, s.token.as_str()).await);
    drop(guard);

    let lines = capture.lines();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert!(count("event=hit") >= 1, "{lines:#?}");
    assert!(count("event=miss") >= 2, "{lines:#?}");
    assert_eq!(count("event=invalidate of=session"), 1, "{lines:#?}");
    let digest = hex::encode(sha2::Sha256::digest(s.session.id.as_str()));
    for line in &lines {
        for secret in [s.token.as_str(), s.session.id.as_str(), &digest] {
            assert!(!line.contains(secret), "{line}");
        }
    }
}
