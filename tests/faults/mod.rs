//! Faults, each against a PostgreSQL cluster of the test's own (see the
//! `testkit` crate): restart and crash under load, the database down at
//! pool build and at call time, terminated and cancelled backends, pool
//! exhaustion, timeouts, a read-only database, a full disk, and futures
//! dropped mid-query.
//!
//! Every call is bounded (a hang fails the test), every error must be typed,
//! never is an error or `None` confused with a valid session, and every test
//! ends by checking that the pool serves a fresh create + validate.

mod cancelled;
mod connections;
mod exhaustion;
mod restarts;
mod timeouts;
mod writes;

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
