//! Faults, each against a PostgreSQL cluster of the test's own (see the
//! `testkit` crate): restart and crash under load, the database down at
//! pool build and at call time, terminated and cancelled backends, pool
//! exhaustion, timeouts, a read-only database, a full disk, and futures
//! dropped mid-query.
//!
//! Every call is bounded (a hang fails the test), every error must be typed,
//! never is an error or `None` confused with a valid session, and every test
//! ends by checking that the pool serves a fresh create + validate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Duration as ChronoDuration;
use diesel::sql_types::Integer;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use lucia_diesel::{
    Attributes, ConnectionSource, Error, PgPool, PoolOptions, PostgresAdapter, SessionManager,
    SessionToken, migrations,
};
use testkit::Cluster;

use crate::support::clock::ManualClock;
use crate::support::scalar;

/// `application_name` of the connections under test (the admin's differ).
const APP: &str = "lucia_fault_app";

type Manager = SessionManager<PostgresAdapter<PgPool>>;

/// A cluster owned by one test, migrated, with users `user-1` ..= `user-32`.
struct Server {
    cluster: Option<Cluster>,
    url: String,
}

impl Server {
    async fn start() -> Self {
        let cluster = tokio::task::spawn_blocking(Cluster::start)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
        let url = cluster.url("postgres");
        migrations::run_pending_migrations_at(&url).await.unwrap();
        let server = Self {
            cluster: Some(cluster),
            url,
        };
        server
            .exec("INSERT INTO auth_user (id) SELECT 'user-' || g FROM generate_series(1, 32) g")
            .await;
        server
    }

    /// The URL the pools under test use: tagged with [`APP`], plus `params`.
    fn app_url(&self, params: &str) -> String {
        format!("{}?application_name={APP}{params}", self.url)
    }

    /// Runs a blocking `pg_ctl` operation off the runtime's threads.
    async fn control(&mut self, op: fn(&mut Cluster) -> Result<(), String>) {
        let mut cluster = self.cluster.take().expect("cluster");
        let (cluster, result) = tokio::task::spawn_blocking(move || {
            let result = op(&mut cluster);
            (cluster, result)
        })
        .await
        .unwrap();
        self.cluster = Some(cluster);
        result.unwrap_or_else(|e| panic!("{e}"));
    }

    async fn admin(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.unwrap()
    }

    async fn exec(&self, sql: &str) {
        self.admin()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn count(&self, sql: &str) -> i64 {
        scalar(&mut self.admin().await, sql).await
    }

    /// Holds `ACCESS EXCLUSIVE` on the session table until `COMMIT` (or 5 s
    /// idle, so that a failing test cannot leave it held).
    async fn lock_sessions(&self) -> AsyncPgConnection {
        let mut conn = self.admin().await;
        conn.batch_execute(
            "SET idle_in_transaction_session_timeout = '5s'; \
             BEGIN; LOCK TABLE user_session IN ACCESS EXCLUSIVE MODE",
        )
        .await
        .unwrap();
        conn
    }

    /// The pid of the one [`APP`] backend waiting for a lock (waits for it).
    async fn waiting_backend(&self) -> i32 {
        let mut conn = self.admin().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pid = scalar(
                &mut conn,
                &format!(
                    "SELECT COALESCE(max(pid), 0)::int8 AS n FROM pg_stat_activity \
                     WHERE application_name = '{APP}' AND wait_event_type = 'Lock'"
                ),
            )
            .await;
            if pid != 0 {
                return i32::try_from(pid).unwrap();
            }
            assert!(Instant::now() < deadline, "no backend ever waited");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn backend_pid(pool: &PgPool) -> i32 {
    pid_of(&mut pool.bb8().get().await.unwrap()).await
}

/// The server process behind `conn`.
async fn pid_of(conn: &mut AsyncPgConnection) -> i32 {
    use diesel_async::RunQueryDsl as _;
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Pid>(conn)
        .await
        .unwrap()
        .pid
}

/// Short, explicit bounds for every pool under test.
fn options() -> PoolOptions {
    PoolOptions::new()
        .with_checkout_timeout(Duration::from_millis(1000))
        .with_statement_timeout(Some(Duration::from_secs(2)))
}

/// The longest any call may take: checkout + statement timeout + slack.
const CALL_BOUND: Duration = Duration::from_secs(5);

async fn bounded<T>(what: &str, op: impl Future<Output = T>) -> T {
    tokio::time::timeout(CALL_BOUND, op)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {CALL_BOUND:?}"))
}

fn user(i: usize) -> String {
    format!("user-{}", i % 32 + 1)
}

/// The invariant every test ends with: a fresh create + validate works.
async fn assert_healthy(m: &Manager) {
    let created = bounded("create", m.create_session(user(0), Attributes::new()))
        .await
        .unwrap();
    let (s, u) = bounded("validate", m.validate_session(created.token.as_str()))
        .await
        .unwrap()
        .expect("a new session validates");
    assert_eq!((s.id, u.id), (created.session.id, user(0)));
}

// ---------------------------------------------------------------------------
// Restart and crash under load.

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    transient: AtomicU64,
    /// Each typed transient error, with when it happened.
    errors: Mutex<Vec<(Instant, String)>>,
    unexpected: Mutex<Vec<String>>,
}

impl Tally {
    fn record<T>(&self, what: &str, result: Result<lucia_diesel::Result<T>, ()>) -> Option<T> {
        match result {
            Ok(Ok(value)) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                Some(value)
            }
            Ok(Err(e)) if e.is_transient() => {
                self.transient.fetch_add(1, Ordering::Relaxed);
                self.errors
                    .lock()
                    .unwrap()
                    .push((Instant::now(), format!("{what}: {e}")));
                None
            }
            Ok(Err(e)) => {
                self.unexpected
                    .lock()
                    .unwrap()
                    .push(format!("{what}: {e:?}"));
                None
            }
            Err(()) => {
                self.unexpected
                    .lock()
                    .unwrap()
                    .push(format!("{what} hung for {CALL_BOUND:?}"));
                None
            }
        }
    }
}

struct Load {
    m: Arc<Manager>,
    known: Arc<Vec<(SessionToken, String)>>,
    created: Arc<Mutex<Vec<(SessionToken, String)>>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
}

/// One of 32 clients: creates a session every 4th call, validates a
/// known-valid one otherwise, backing off briefly after an error.
async fn client(i: usize, load: Arc<Load>) {
    let mut n = i;
    while !load.stop.load(Ordering::Relaxed) {
        n += 1;
        let ok = if n.is_multiple_of(4) {
            let user = user(i);
            let r = tokio::time::timeout(
                CALL_BOUND,
                load.m.create_session(user.clone(), Attributes::new()),
            )
            .await
            .map_err(drop);
            match load.tally.record("create", r) {
                Some(c) => {
                    load.created.lock().unwrap().push((c.token, user));
                    true
                }
                None => false,
            }
        } else {
            let (token, user) = &load.known[n % load.known.len()];
            let r = tokio::time::timeout(CALL_BOUND, load.m.validate_session(token.as_str()))
                .await
                .map_err(drop);
            match load.tally.record("validate", r) {
                Some(Some((_, u))) if &u.id == user => true,
                Some(other) => {
                    load.tally.unexpected.lock().unwrap().push(format!(
                        "a valid session came back as {:?}",
                        other.map(|(_, u)| u.id)
                    ));
                    false
                }
                None => false,
            }
        };
        if !ok {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Validates every session in `sessions` (16 at a time); all must be valid.
async fn assert_all_valid(m: &Arc<Manager>, sessions: Vec<(SessionToken, String)>) {
    let sessions = Arc::new(sessions);
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (m, sessions, next) = (Arc::clone(m), Arc::clone(&sessions), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap();
                    let Some((token, user)) = sessions.get(i) else {
                        return;
                    };
                    let found = bounded("validate", m.validate_session(token.as_str()))
                        .await
                        .unwrap_or_else(|e| panic!("after recovery: {e:?}"));
                    assert_eq!(
                        found.map(|(_, u)| u.id).as_ref(),
                        Some(user),
                        "session {i} lost"
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `pg_ctl restart -m fast`.
    Restart,
    /// `pg_ctl stop -m immediate`, down for a second, then start (crash recovery).
    Crash,
}

async fn under_load(fault: Fault) {
    let mut server = Server::start().await;
    // Commits must survive a crash: the test cluster turns this off for speed.
    server
        .exec("ALTER SYSTEM SET synchronous_commit = on")
        .await;
    server.exec("SELECT pg_reload_conf()").await;
    let pool = options()
        .with_max_size(16)
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = Arc::new(SessionManager::new(PostgresAdapter::new(pool)));
    let mut known = Vec::new();
    for i in 0..64 {
        let c = m.create_session(user(i), Attributes::new()).await.unwrap();
        known.push((c.token, user(i)));
    }
    let load = Arc::new(Load {
        m: Arc::clone(&m),
        known: Arc::new(known),
        created: Arc::default(),
        tally: Arc::default(),
        stop: Arc::default(),
    });
    let clients: Vec<_> = (0..32)
        .map(|i| tokio::spawn(client(i, Arc::clone(&load))))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ok_before = load.tally.ok.load(Ordering::Relaxed);
    assert!(ok_before > 0, "the load runs");
    let started = "SELECT (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::int8 AS n";
    let first_start = server.count(started).await;

    match fault {
        Fault::Restart => server.control(|c| c.restart()).await,
        Fault::Crash => {
            server.control(|c| c.stop("immediate")).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            server.control(Cluster::start_again).await;
        }
    }

    // Recovery: a known session validates again, within a bound.
    let down_since = Instant::now();
    loop {
        let r = bounded("validate", m.validate_session(load.known[0].0.as_str())).await;
        if let Ok(Some(_)) = r {
            break;
        }
        assert!(
            down_since.elapsed() < Duration::from_secs(20),
            "no recovery: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stale connections are gone within moments; then a quiet second.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = Instant::now();
    let transient_settled = load.tally.transient.load(Ordering::Relaxed);
    let ok_settled = load.tally.ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let unexpected = load.tally.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "untyped or wrong results: {unexpected:#?}"
    );
    let transient = load.tally.transient.load(Ordering::Relaxed);
    let ok = load.tally.ok.load(Ordering::Relaxed);
    let replaced = m.adapter().source().state().statistics;
    eprintln!(
        "{fault:?}: {ok} ok, {transient} typed transient errors; connections: {} created, {} dropped as broken",
        replaced.connections_created,
        replaced.connections_closed_broken + replaced.connections_closed_invalid
    );
    // The fault happened, and every connection of the pool died with it.
    assert_ne!(
        server.count(started).await,
        first_start,
        "the server restarted"
    );
    assert!(
        replaced.connections_closed_broken + replaced.connections_closed_invalid >= 16,
        "{replaced:?}"
    );
    // A restart can pass unnoticed (queries in flight finish, connections
    // that die between queries are replaced at checkout); a crash that
    // keeps the server down longer than the checkout timeout cannot.
    if fault == Fault::Crash {
        assert!(transient > 0, "the crash was felt by the clients");
    }
    let late: Vec<_> = load
        .tally
        .errors
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= settled)
        .map(|(at, e)| format!("+{:?} {e}", *at - settled))
        .collect();
    assert_eq!(
        transient, transient_settled,
        "no errors once recovered (full recovery): {late:#?}"
    );
    assert!(ok > ok_settled + 100, "the load ran on after recovery");

    // Nothing lost: every session created before or during the fault validates.
    let mut all: Vec<_> = load
        .known
        .iter()
        .map(|(t, u)| (t.clone(), u.clone()))
        .collect();
    let created: Vec<_> = load.created.lock().unwrap().drain(..).collect();
    assert!(!created.is_empty());
    all.extend(created);
    assert_all_valid(&m, all).await;
    assert_healthy(&m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_under_load_recovers_with_nothing_lost() {
    under_load(Fault::Restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_under_load_recovers_with_nothing_lost() {
    under_load(Fault::Crash).await;
}

// ---------------------------------------------------------------------------
// The database down.

#[tokio::test]
async fn database_down_at_pool_build_and_at_call_time() {
    let mut server = Server::start().await;
    server.control(|c| c.stop("fast")).await;
    let checkout = Duration::from_millis(500);

    let t = Instant::now();
    let err = bounded(
        "build",
        options()
            .with_checkout_timeout(checkout)
            .build(&server.app_url("")),
    )
    .await
    .unwrap_err();
    let took = t.elapsed();
    assert!(took < checkout + Duration::from_millis(500), "{took:?}");
    match &err {
        Error::PoolTimeout {
            last_error: Some(cause),
        } => assert!(
            cause.to_string().to_lowercase().contains("connect"),
            "{cause}"
        ),
        other => panic!("expected a pool timeout with its cause, got {other:?}"),
    }
    assert!(err.to_string().contains("last connection error"), "{err}");

    server.control(Cluster::start_again).await;
    let pool = options()
        .with_checkout_timeout(checkout)
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = SessionManager::new(PostgresAdapter::new(pool));
    let created = m.create_session(user(1), Attributes::new()).await.unwrap();

    server.control(|c| c.stop("fast")).await;
    for _ in 0..3 {
        let t = Instant::now();
        let err = bounded("validate", m.validate_session(created.token.as_str()))
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(t.elapsed() < checkout + Duration::from_millis(500));
        let err = bounded("create", m.create_session(user(1), Attributes::new()))
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
    }

    server.control(Cluster::start_again).await;
    let (s, _) = bounded("validate", m.validate_session(created.token.as_str()))
        .await
        .unwrap()
        .expect("valid again once the database is back");
    assert_eq!(s.id, created.session.id);
    assert_healthy(&m).await;
}

// ---------------------------------------------------------------------------
// Backends terminated under the pool.

#[tokio::test]
async fn terminated_idle_connections_cost_at_most_one_error_each() {
    let server = Server::start().await;
    let pool = options()
        .with_max_size(4)
        .build(&server.app_url(""))
        .await
        .unwrap();
    // Open all four connections, then let them sit idle.
    let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| pool.bb8().get()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    drop(held);
    assert_eq!(pool.state().idle_connections, 4);
    let m = SessionManager::new(PostgresAdapter::new(pool));
    let created = m.create_session(user(1), Attributes::new()).await.unwrap();

    let killed = server
        .count(&format!(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE application_name = '{APP}'"
        ))
        .await;
    assert_eq!(killed, 4);
    let mut results = Vec::new();
    for _ in 0..12 {
        results.push(bounded("validate", m.validate_session(created.token.as_str())).await);
    }
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(errors.len() <= 4, "{errors:?}");
    for e in &errors {
        assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    }
    for r in &results[8..] {
        assert!(matches!(r, Ok(Some(_))), "recovered: {r:?}");
    }
    eprintln!("idle connections terminated: {} errors", errors.len());
    assert_healthy(&m).await;
}

#[tokio::test]
async fn terminated_busy_connection_gives_one_typed_error() {
    let server = Server::start().await;
    let pool = options()
        .with_max_size(2)
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = Arc::new(SessionManager::new(PostgresAdapter::new(pool)));
    let created = m.create_session(user(1), Attributes::new()).await.unwrap();
    let mut locker = server.lock_sessions().await;
    let token = created.token.as_str().to_owned();
    let m2 = Arc::clone(&m);
    let call = tokio::spawn(async move { m2.validate_session(&token).await.map(|s| s.is_some()) });
    let pid = server.waiting_backend().await;
    let t = Instant::now();
    server
        .exec(&format!("SELECT pg_terminate_backend({pid})"))
        .await;
    let err = bounded("validate", call).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    locker.batch_execute("COMMIT").await.unwrap();
    assert!(
        bounded("validate", m.validate_session(created.token.as_str()))
            .await
            .unwrap()
            .is_some()
    );
    assert_healthy(&m).await;
}

/// An error that says the connection is gone must retire the connection
/// even before its socket reports the close (the race the busy case above
/// hits under load). Simulated deterministically: a trigger raises the
/// server's "terminating connection" message on a connection that stays open.
#[tokio::test]
async fn a_connection_reported_lost_is_never_lent_again() {
    let server = Server::start().await;
    let pool = options()
        .with_max_size(1)
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = SessionManager::new(PostgresAdapter::new(pool.clone()));
    let before = backend_pid(&pool).await;
    server
        .exec(
            "CREATE FUNCTION goodbye() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               RAISE EXCEPTION 'terminating connection due to administrator command'; END $$; \
             CREATE TRIGGER goodbye BEFORE INSERT ON user_session \
               FOR EACH ROW EXECUTE FUNCTION goodbye();",
        )
        .await;
    let err = m
        .create_session(user(1), Attributes::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_ne!(backend_pid(&pool).await, before, "the pool retired it");
    server.exec("DROP TRIGGER goodbye ON user_session").await;
    assert_healthy(&m).await;
}

// ---------------------------------------------------------------------------
// Waits: pool exhaustion and statement cancellation.

/// `err` is a `PoolTimeout` with no connection error behind it, after
/// waiting at least `checkout` and not much longer (queued waits may take
/// an eighth more, the pool timer's granularity).
fn assert_pool_timeout(err: &Error, took: Duration, checkout: Duration) {
    assert!(
        matches!(err, Error::PoolTimeout { last_error: None }),
        "{err:?}"
    );
    assert!(
        took >= checkout && took < checkout + Duration::from_millis(500),
        "{took:?}"
    );
}

#[tokio::test]
async fn pool_exhaustion_is_a_typed_timeout_within_its_bound() {
    let server = Server::start().await;
    let checkout = Duration::from_millis(300);
    let pool = options()
        .with_max_size(2)
        .with_checkout_timeout(checkout)
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = SessionManager::new(PostgresAdapter::new(pool.clone()));
    let created = m.create_session(user(1), Attributes::new()).await.unwrap();
    let first = pool.bb8().get().await.unwrap();
    let second = pool.bb8().get().await.unwrap();
    let t = Instant::now();
    let err = bounded("validate", m.validate_session(created.token.as_str()))
        .await
        .unwrap_err();
    assert_pool_timeout(&err, t.elapsed(), checkout);
    drop(first);
    assert!(
        bounded("validate", m.validate_session(created.token.as_str()))
            .await
            .unwrap()
            .is_some()
    );
    drop(second);
    assert_healthy(&m).await;
}

/// Holds `pool`'s one connection and checks that a caller queued behind it
/// gets a `PoolTimeout` within its bound.
async fn queued_timeout(pool: &PgPool, checkout: Duration) {
    let held = pool.connection().await.unwrap();
    let t = Instant::now();
    let err = bounded("queued checkout", pool.connection())
        .await
        .map(drop)
        .unwrap_err();
    assert_pool_timeout(&err, t.elapsed(), checkout);
    drop(held);
}

/// Queued callers are timed out by one timer per pool, a task on the
/// runtime of a caller who had to wait. Once that runtime is gone, the next
/// caller who has to wait, on another runtime, starts the timer again: its
/// wait still ends in a `PoolTimeout` within its bound.
#[test]
fn queued_waits_time_out_on_every_runtime_the_pool_is_used_from() {
    let checkout = Duration::from_millis(300);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let url = crate::support::server_url();
    let first = runtime();
    let pool = first.block_on(async {
        options()
            .with_max_size(1)
            .with_checkout_timeout(checkout)
            .build(url)
            .await
            .unwrap()
    });
    first.block_on(queued_timeout(&pool, checkout));
    // The timer task is still there, waiting for its next tick: dropped
    // with its runtime.
    drop(first);
    let second = runtime();
    second.block_on(queued_timeout(&pool, checkout));
    second.block_on(queued_timeout(&pool, checkout));
}

/// At low load the pool lends the connection returned last, so one warm
/// server process serves call after call while the others go idle (and
/// close after the idle timeout).
#[tokio::test]
async fn the_connection_returned_last_is_lent_first() {
    let pool = options()
        .with_max_size(3)
        .build(crate::support::server_url())
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.connection().await.unwrap());
    }
    let mut pids = Vec::new();
    for conn in &mut held {
        pids.push(pid_of(conn).await);
    }
    let last = pids[2];
    assert_ne!(pids[0], last, "three distinct connections");
    // Returned in order: the third one last.
    for conn in held {
        drop(conn);
    }
    for call in 0..5 {
        let mut conn = pool.connection().await.unwrap();
        assert_eq!(pid_of(&mut conn).await, last, "call {call}");
    }
}

/// More callers than connections, all asking again at once: each waits its
/// turn, none starves into a `PoolTimeout` while the pool is busy serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_serves_callers_in_turn() {
    let server = Server::start().await;
    let pool = options()
        .with_max_size(2)
        // Long enough that a loaded CI machine does not time out a fair
        // turn, short enough that a starving waiter (bb8 alone) does.
        .with_checkout_timeout(Duration::from_secs(1))
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = Arc::new(SessionManager::new(PostgresAdapter::new(pool)));
    let created = m.create_session(user(1), Attributes::new()).await.unwrap();
    let token: Arc<str> = created.token.as_str().into();
    let deadline = Instant::now() + Duration::from_secs(3);
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let (m, token) = (Arc::clone(&m), Arc::clone(&token));
            tokio::spawn(async move {
                let (mut ok, mut timeouts) = (0u32, 0u32);
                while Instant::now() < deadline {
                    match m.validate_session(&token).await {
                        Ok(Some(_)) => ok += 1,
                        Err(Error::PoolTimeout { .. }) => timeouts += 1,
                        other => panic!("{other:?}"),
                    }
                }
                (ok, timeouts)
            })
        })
        .collect();
    let (mut ok, mut timeouts) = (0, 0);
    for c in callers {
        let (o, t) = c.await.unwrap();
        assert!(o > 0, "a caller never got a turn");
        ok += o;
        timeouts += t;
    }
    eprintln!("saturated pool: {ok} validations, {timeouts} pool timeouts");
    assert_eq!(timeouts, 0, "{ok} served meanwhile");
}

/// Runs a validation while the session table is locked and returns its
/// error; the lock is released afterwards and the same connection (pool of
/// one) must then serve the next call.
async fn blocked_validation(
    server: &Server,
    pool: PgPool,
    interrupt: impl AsyncFnOnce(i32),
) -> Error {
    let before = backend_pid(&pool).await;
    let m = Arc::new(SessionManager::new(PostgresAdapter::new(pool.clone())));
    let created = m.create_session(user(1), Attributes::new()).await.unwrap();
    let mut locker = server.lock_sessions().await;
    let token = created.token.as_str().to_owned();
    let m2 = Arc::clone(&m);
    let call = tokio::spawn(async move { m2.validate_session(&token).await.map(|s| s.is_some()) });
    interrupt(server.waiting_backend().await).await;
    let err = bounded("validate", call).await.unwrap().unwrap_err();
    locker.batch_execute("COMMIT").await.unwrap();
    assert!(
        bounded("validate", m.validate_session(created.token.as_str()))
            .await
            .unwrap()
            .is_some(),
        "the connection is usable after {err:?}"
    );
    assert_eq!(backend_pid(&pool).await, before, "the same connection");
    assert_healthy(&m).await;
    err
}

#[tokio::test]
async fn statement_timeout_lock_timeout_and_cancel_are_typed_timeouts() {
    let server = Server::start().await;
    let one = |url: String, statement: u64| async move {
        options()
            .with_max_size(1)
            .with_statement_timeout(Some(Duration::from_millis(statement)))
            .build(&url)
            .await
            .unwrap()
    };

    let pool = one(server.app_url(""), 300).await;
    let t = Instant::now();
    let err = blocked_validation(&server, pool, async |_| {}).await;
    assert!(
        matches!(&err, Error::Timeout { message, .. } if message.contains("statement timeout")),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3));

    let pool = one(server.app_url("&options=-c%20lock_timeout%3D200"), 5000).await;
    let err = blocked_validation(&server, pool, async |_| {}).await;
    assert!(
        matches!(&err, Error::Timeout { message, .. } if message.contains("lock timeout")),
        "{err:?}"
    );

    let pool = one(server.app_url(""), 5000).await;
    let err = blocked_validation(&server, pool, async |pid| {
        server
            .exec(&format!("SELECT pg_cancel_backend({pid})"))
            .await;
    })
    .await;
    assert!(
        matches!(&err, Error::Timeout { message, .. } if message.contains("user request")),
        "{err:?}"
    );
    assert!(err.is_transient());
}

// ---------------------------------------------------------------------------
// Writes refused: a read-only database, a full disk.

#[tokio::test]
async fn read_only_database_refuses_writes_and_serves_valid_sessions() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let manager = |pool| {
        SessionManager::builder(PostgresAdapter::new(pool))
            .with_clock(clock.clone())
            .build()
            .unwrap()
    };
    let m = manager(options().build(&server.app_url("")).await.unwrap());
    // Seen from day 31: `expired` (made on day 0), `due` for extension
    // (day 11: 10 of 30 days left), `valid` (day 30: 29 days left).
    let expired = m.create_session(user(1), Attributes::new()).await.unwrap();
    clock.advance(ChronoDuration::days(11));
    let due = m.create_session(user(2), Attributes::new()).await.unwrap();
    clock.advance(ChronoDuration::days(19));
    let valid = m.create_session(user(1), Attributes::new()).await.unwrap();
    clock.advance(ChronoDuration::days(1));
    let rows = "SELECT count(*) AS n FROM user_session";
    let expiries = "SELECT sum(extract(epoch FROM expires_at))::int8 AS n FROM user_session";
    let (n0, e0) = (server.count(rows).await, server.count(expiries).await);
    assert_eq!(n0, 3);

    // An admin connection opened before the switch stays writable.
    let mut admin = server.admin().await;
    admin
        .batch_execute("ALTER DATABASE postgres SET default_transaction_read_only = on")
        .await
        .unwrap();
    // Settings apply to new connections: a new pool.
    let ro = manager(options().build(&server.app_url("")).await.unwrap());

    let err = ro
        .create_session(user(1), Attributes::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    let err = ro.invalidate_session(&valid.session.id).await.unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    let err = ro.invalidate_user_sessions(&user(1)).await.unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    // A valid session validates.
    let (s, _) = ro
        .validate_session(valid.token.as_str())
        .await
        .unwrap()
        .expect("valid while read-only");
    assert!(!s.fresh);
    // One due for extension still validates, without the extension.
    let (s, _) = ro
        .validate_session(due.token.as_str())
        .await
        .unwrap()
        .expect("valid while read-only, not extended");
    assert!(!s.fresh);
    assert_eq!(s.expires_at, due.session.expires_at);
    // An expired one is invalid (its row stays until the database is writable).
    assert!(
        ro.validate_session(expired.token.as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        ro.get_user_sessions(&user(1)).await.unwrap().len(),
        1,
        "listing works"
    );
    // Nothing changed.
    assert_eq!(scalar(&mut admin, rows).await, n0);
    assert_eq!(scalar(&mut admin, expiries).await, e0);

    admin
        .batch_execute("ALTER DATABASE postgres RESET default_transaction_read_only")
        .await
        .unwrap();
    let m = manager(options().build(&server.app_url("")).await.unwrap());
    let (s, _) = m
        .validate_session(due.token.as_str())
        .await
        .unwrap()
        .unwrap();
    assert!(s.fresh, "extended once writable again");
    assert!(
        m.validate_session(expired.token.as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(server.count(rows).await, 2, "the expired row is gone");
    assert_healthy(&m).await;
}

#[tokio::test]
async fn disk_full_fails_writes_typed_with_no_partial_state() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let m = SessionManager::builder(PostgresAdapter::new(
        options().build(&server.app_url("")).await.unwrap(),
    ))
    .with_clock(clock.clone())
    .build()
    .unwrap();
    let a = m.create_session(user(1), Attributes::new()).await.unwrap();
    server
        .exec(
            "CREATE TABLE disk_full (on_delete bool NOT NULL); \
             INSERT INTO disk_full VALUES (false); \
             CREATE FUNCTION raise_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF TG_OP <> 'DELETE' OR (SELECT on_delete FROM disk_full) THEN \
                 RAISE EXCEPTION 'could not extend file: No space left on device' \
                   USING ERRCODE = 'disk_full'; \
               END IF; \
               RETURN NULL; \
             END $$; \
             CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE OR DELETE ON user_session \
               FOR EACH ROW EXECUTE FUNCTION raise_disk_full();",
        )
        .await;
    let rows = "SELECT count(*) AS n FROM user_session";

    let err = m
        .create_session(user(1), Attributes::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Database(d) if d.message().contains("No space left")),
        "{err:?}"
    );
    assert_eq!(server.count(rows).await, 1, "nothing written");
    assert!(
        m.validate_session(a.token.as_str())
            .await
            .unwrap()
            .is_some(),
        "reads work"
    );
    // An extension is a write: it fails typed, and the session is not reported valid.
    clock.advance(ChronoDuration::days(20));
    let err = m.validate_session(a.token.as_str()).await.unwrap_err();
    assert!(matches!(err, Error::Database(_)), "{err:?}");

    server.exec("UPDATE disk_full SET on_delete = true").await;
    let err = m.invalidate_session(&a.session.id).await.unwrap_err();
    assert!(matches!(err, Error::Database(_)), "{err:?}");
    assert_eq!(server.count(rows).await, 1, "still there");

    server.exec("DROP TRIGGER disk_full ON user_session").await;
    m.invalidate_session(&a.session.id).await.unwrap();
    assert_eq!(server.count(rows).await, 0);
    assert_healthy(&m).await;
}

// ---------------------------------------------------------------------------
// Futures dropped mid-query.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_futures_leave_no_cross_talk() {
    let server = Server::start().await;
    // One connection, so every call after a cancellation reuses it.
    let pool = options()
        .with_max_size(1)
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = Arc::new(SessionManager::new(PostgresAdapter::new(pool)));
    let mut sessions = Vec::new();
    for i in 0..4 {
        let c = m.create_session(user(i), Attributes::new()).await.unwrap();
        sessions.push((c, user(i)));
    }
    let check_all = async || {
        for (c, u) in &sessions {
            let (s, user) = bounded("validate", m.validate_session(c.token.as_str()))
                .await
                .unwrap()
                .expect("valid");
            assert_eq!((&s.id, &user.id), (&c.session.id, u), "cross-talk");
            let listed = bounded("list", m.get_user_sessions(u)).await.unwrap();
            assert!(
                listed.iter().all(|s| &s.user_id == u),
                "cross-talk in a list"
            );
        }
    };

    // Dropped while waiting on a lock, i.e. certainly mid-query.
    let mut locker = server.lock_sessions().await;
    let (c0, _) = &sessions[0];
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        m.validate_session(c0.token.as_str()),
    )
    .await;
    assert!(dropped.is_err(), "still blocked when dropped");
    let dropped =
        tokio::time::timeout(Duration::from_millis(100), m.get_user_sessions(&user(1))).await;
    assert!(dropped.is_err());
    locker.batch_execute("COMMIT").await.unwrap();
    check_all().await;

    // Dropped at arbitrary points: before, during and after the round trip.
    let tokens: Vec<&str> = sessions.iter().map(|(c, _)| c.token.as_str()).collect();
    crate::support::drop_validations_midway(&m, &tokens, check_all).await;
    assert_healthy(&m).await;
}
