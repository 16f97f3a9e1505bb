//! The background cleanup task: bounded batches on the manager's clock,
//! prompt shutdown, and carrying on after a failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use lucia_diesel::cleanup::{CleanupHandle, CleanupOptions, CleanupStats};
use lucia_diesel::{Attributes, PgPool, PoolOptions, PostgresAdapter, SessionManager};

use crate::support::TestDb;
use crate::support::capture::Capture;
use crate::support::clock::ManualClock;
use crate::support::scalar;

type Manager = Arc<SessionManager<PostgresAdapter<PgPool>>>;

async fn setup(pool: PoolOptions) -> (TestDb, Manager) {
    let db = TestDb::new().await;
    lucia_diesel::migrations::run_pending_migrations(db.connect().await)
        .await
        .unwrap();
    db.exec("INSERT INTO auth_user (id) VALUES ('alice')").await;
    // The manager's clock is at 2030-01-01, ahead of the real one.
    let m = SessionManager::builder(PostgresAdapter::new(pool.build(&db.url).await.unwrap()))
        .with_clock(ManualClock::new())
        .build()
        .unwrap();
    (db, Arc::new(m))
}

/// `n` sessions of alice expiring at `at` (ids `<prefix>-1` ...).
async fn insert(db: &TestDb, prefix: &str, n: u32, at: &str) {
    db.exec(&format!(
        "INSERT INTO user_session (id, user_id, expires_at) \
         SELECT '{prefix}-' || g, 'alice', '{at}'::timestamptz FROM generate_series(1, {n}) g"
    ))
    .await;
}

async fn rows_like(db: &TestDb, pattern: &str) -> i64 {
    scalar(
        &mut db.connect().await,
        &format!("SELECT count(*) AS n FROM user_session WHERE id LIKE '{pattern}'"),
    )
    .await
}

/// Polls `handle` until `done` holds or 10 s pass.
async fn wait_for(handle: &CleanupHandle, done: impl Fn(&CleanupStats) -> bool) -> CleanupStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = handle.stats();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "timed out; stats: {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Holds an `ACCESS EXCLUSIVE` lock on the session table until released
/// with `COMMIT`, or for at most 5 s: a failing test unwinds with its runtime
/// blocked in `TestDb`'s drop, so the server must let go by itself.
pub async fn lock_sessions(db: &TestDb) -> AsyncPgConnection {
    let mut conn = db.connect().await;
    conn.batch_execute(
        "SET idle_in_transaction_session_timeout = '5s'; \
         BEGIN; LOCK TABLE user_session IN ACCESS EXCLUSIVE MODE",
    )
    .await
    .unwrap();
    conn
}

#[tokio::test]
async fn deletes_expired_sessions_in_batches_on_the_managers_clock() {
    let (db, m) = setup(PoolOptions::new().with_max_size(2)).await;
    // Expired on the manager's clock, though still in the future on the real one.
    insert(&db, "expired", 250, "2029-06-01 00:00:00+00").await;
    insert(&db, "live", 20, "2031-01-01 00:00:00+00").await;
    let created = m
        .create_session("alice".into(), Attributes::new())
        .await
        .unwrap();
    let started = Instant::now();
    let handle = CleanupOptions::new()
        .with_batch_size(40)
        .with_pause(Duration::from_millis(20))
        .with_interval(Duration::from_secs(3600))
        .spawn(Arc::clone(&m))
        .unwrap();
    let stats = wait_for(&handle, |s| s.passes >= 1).await;
    let took = started.elapsed();
    assert_eq!(
        (stats.passes, stats.batches, stats.deleted, stats.failures),
        (1, 7, 250, 0),
        "250 rows in 6 full batches of 40 and one of 10: {stats:?}"
    );
    assert!(
        took >= Duration::from_millis(6 * 20),
        "paused between batches: {took:?}"
    );
    assert_eq!(rows_like(&db, "expired-%").await, 0);
    assert_eq!(
        rows_like(&db, "live-%").await,
        20,
        "live sessions untouched"
    );
    assert!(
        m.validate_session(created.token.as_str())
            .await
            .unwrap()
            .is_some()
    );
    tokio::time::timeout(Duration::from_secs(2), handle.shutdown())
        .await
        .expect("shutdown while idle is immediate");
}

#[tokio::test]
async fn shutdown_is_prompt_even_with_a_batch_in_flight_and_drop_stops_the_task() {
    let (db, m) = setup(PoolOptions::new().with_max_size(1)).await;
    insert(&db, "expired", 5, "2029-06-01 00:00:00+00").await;
    let mut locker = lock_sessions(&db).await;
    let handle = CleanupOptions::new()
        .with_interval(Duration::from_secs(3600))
        .spawn(Arc::clone(&m))
        .unwrap();
    // Wait until its DELETE is blocked on the table lock.
    let mut watcher = db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while scalar(
        &mut watcher,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM%'",
    )
    .await
        == 0
    {
        assert!(Instant::now() < deadline, "the cleanup never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), handle.shutdown())
        .await
        .expect("shutdown does not wait for a blocked batch");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    locker.batch_execute("COMMIT").await.unwrap();
    // The connection that carried the abandoned batch still serves correctly.
    let created = m
        .create_session("alice".into(), Attributes::new())
        .await
        .unwrap();
    let (session, _) = m
        .validate_session(created.token.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.id, created.session.id);

    // Dropping the handle stops the task, which then lets go of the manager.
    let handle = CleanupOptions::new()
        .with_interval(Duration::from_millis(10))
        .spawn(Arc::clone(&m))
        .unwrap();
    wait_for(&handle, |s| s.passes >= 2).await;
    assert_eq!(Arc::strong_count(&m), 2);
    drop(handle);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Arc::strong_count(&m) > 1 {
        assert!(Instant::now() < deadline, "the task outlived its handle");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_failed_batch_is_logged_and_retried_at_the_next_interval() {
    let (db, m) = setup(
        PoolOptions::new()
            .with_max_size(2)
            .with_statement_timeout(Some(Duration::from_millis(200))),
    )
    .await;
    insert(&db, "expired", 30, "2029-06-01 00:00:00+00").await;
    let capture = Capture::start();
    let mut locker = lock_sessions(&db).await;
    let handle = CleanupOptions::new()
        .with_batch_size(10)
        .with_pause(Duration::ZERO)
        .with_interval(Duration::from_millis(100))
        .spawn(Arc::clone(&m))
        .unwrap();
    let stats = wait_for(&handle, |s| s.failures >= 2).await;
    assert_eq!(stats.deleted, 0);
    locker.batch_execute("COMMIT").await.unwrap();
    let stats = wait_for(&handle, |s| s.deleted == 30).await;
    assert!(stats.batches >= 3, "{stats:?}");
    assert_eq!(rows_like(&db, "expired-%").await, 0);
    assert!(!handle.is_finished(), "still running after the failures");
    handle.shutdown().await;
    let lines = capture.lines();
    let warning = lines
        .iter()
        .find(|l| l.starts_with("event lucia_diesel::cleanup WARN"))
        .unwrap_or_else(|| panic!("no warning logged: {lines:#?}"));
    assert!(warning.contains("statement timeout"), "{warning}");
}

#[tokio::test]
async fn bad_options_are_rejected() {
    let (_db, m) = setup(PoolOptions::new().with_max_size(1)).await;
    assert!(
        CleanupOptions::new()
            .with_interval(Duration::ZERO)
            .spawn(Arc::clone(&m))
            .is_err()
    );
    assert!(
        CleanupOptions::new()
            .with_batch_size(0)
            .spawn(Arc::clone(&m))
            .is_err()
    );
    let outside = Arc::clone(&m);
    let spawned = std::thread::spawn(move || CleanupOptions::new().spawn(outside).is_err())
        .join()
        .unwrap();
    assert!(
        spawned,
        "no tokio runtime on that thread: an error, not a panic"
    );
}
