//! Read replicas: a `ReplicatedPool` over a real primary and hot standby
//! (`testkit`'s `Cluster::start_standby`), each test on a pair of its own
//! (the adapter suite shares one), so that replay can be paused, servers
//! stopped and promoted, and statements counted per server without
//! another test's traffic.
//!
//! Which server served a read is checked on the servers themselves:
//! `pg_stat_statements` counts the session-and-user `JOIN` on each.

#[cfg(feature = "cache")]
mod cached_reads;
mod routing;
mod standby_faults;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use lucia_diesel::{
    PoolOptions, PostgresAdapter, ReplicaStatus, ReplicatedPool, SessionManager, migrations,
};
use testkit::Cluster;

use crate::support::scalar;

pub type Manager<S> = SessionManager<PostgresAdapter<S>>;

/// A cluster the test controls from a blocking thread (its controls run
/// `pg_ctl` and `psql`, which would stall the runtime's own thread).
#[derive(Clone)]
pub struct Server {
    cluster: Arc<Mutex<Cluster>>,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
}

impl Server {
    fn new(cluster: Cluster) -> Self {
        Self {
            url: cluster.url("postgres"),
            cluster: Arc::new(Mutex::new(cluster)),
        }
    }

    /// Runs `op` on the cluster off the runtime's threads.
    pub async fn control<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Cluster) -> Result<T, String> + Send + 'static,
    ) -> T {
        let cluster = Arc::clone(&self.cluster);
        tokio::task::spawn_blocking(move || op(&mut cluster.lock().unwrap()))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Times the session-and-user `JOIN` ran on this server so far.
    pub async fn joins(&self) -> i64 {
        let mut conn = AsyncPgConnection::establish(&self.url).await.unwrap();
        let sql = "SELECT coalesce(sum(calls), 0)::int8 AS n FROM pg_stat_statements \
                   WHERE query LIKE '% AS s INNER JOIN %'";
        scalar(&mut conn, sql).await
    }

    pub async fn exec(&self, sql: &str) {
        let mut conn = AsyncPgConnection::establish(&self.url).await.unwrap();
        conn.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A primary and a hot standby streaming from it, migrated, with users
/// `user-1` ..= `user-10` and `pg_stat_statements`. Commits are
/// synchronous (PostgreSQL's default; the test clusters' is off), so a
/// commit is in the WAL the sampler compares with when it returns.
pub struct Pair {
    pub primary: Server,
    pub standby: Server,
}

impl Pair {
    pub async fn start() -> Self {
        let (primary, standby) = tokio::task::spawn_blocking(|| {
            let primary = Cluster::start_with("synchronous_commit = on\n", &[])?;
            let standby = primary.start_standby()?;
            Ok::<_, String>((primary, standby))
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
        let pair = Self {
            primary: Server::new(primary),
            standby: Server::new(standby),
        };
        migrations::run_pending_migrations_at(&pair.primary.url)
            .await
            .unwrap();
        pair.primary
            .exec(
                "CREATE EXTENSION pg_stat_statements; \
                 INSERT INTO auth_user (id) SELECT 'user-' || g FROM generate_series(1, 10) g",
            )
            .await;
        pair.caught_up().await;
        pair
    }

    /// Waits until the standby has replayed all the primary has written.
    pub async fn caught_up(&self) {
        let standby = Arc::clone(&self.standby.cluster);
        self.primary
            .control(move |p| p.wait_for_replay(&standby.lock().unwrap(), Duration::from_secs(10)))
            .await;
    }

    /// A replicated pool over the pair with short bounds, once its standby
    /// serves reads.
    pub async fn pool(&self, max_lag: Duration) -> ReplicatedPool {
        let pool = options()
            .with_max_replica_lag(max_lag)
            .build_replicated(&self.primary.url, &[&self.standby.url])
            .await
            .unwrap();
        wait_usable(&pool).await;
        pool
    }

    /// Validations served by (standby, primary), counted on the servers.
    pub async fn joins(&self) -> (i64, i64) {
        (self.standby.joins().await, self.primary.joins().await)
    }
}

/// Short, explicit bounds for every pool under test.
pub fn options() -> PoolOptions {
    PoolOptions::new()
        .with_max_size(4)
        .with_checkout_timeout(Duration::from_secs(1))
        .with_statement_timeout(Some(Duration::from_secs(2)))
}

/// A manager on `source` with the default tables.
pub fn manager<S: lucia_diesel::ConnectionSource>(source: S) -> Manager<S> {
    SessionManager::new(PostgresAdapter::new(source))
}

/// Waits (at most `bound`) until `done` holds; how long that took.
pub async fn wait_until(what: &str, bound: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

pub fn usable(pool: &ReplicatedPool) -> bool {
    matches!(pool.replica_status()[0], ReplicaStatus::Usable { .. })
}

pub async fn wait_usable(pool: &ReplicatedPool) {
    wait_until("the standby serves reads", Duration::from_secs(10), || {
        usable(pool)
    })
    .await;
}

/// The pair the adapter suite runs on, shared by its tests and stopped
/// when the process exits: the primary waits for the standby to apply each
/// commit (`synchronous_commit = remote_apply`), the strict setting the
/// `replica` module documents, so Lucia's read-after-write cases hold on
/// the standby. Its (primary, standby) URLs.
fn strict_pair() -> &'static (String, String) {
    static PAIR: OnceLock<(String, String)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let start = || {
            let primary = Cluster::start()?;
            let standby = primary.start_standby()?;
            primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")?;
            primary.psql("ALTER SYSTEM SET synchronous_commit = 'remote_apply'")?;
            primary.psql("SELECT pg_reload_conf()")?;
            Ok::<_, String>((primary, standby))
        };
        let (primary, standby) = start().unwrap_or_else(|e| panic!("{e}"));
        let urls = (primary.url("postgres"), standby.url("postgres"));
        primary.stop_when_process_exits();
        standby.stop_when_process_exits();
        urls
    })
}

/// The strict pair's primary URL, for a test database on it.
pub fn strict_primary_url() -> &'static str {
    &strict_pair().0
}

/// A replicated pool over the strict pair for `url` (its primary's URL
/// with options, such as a test schema's search path), once the standby
/// serves reads.
pub async fn strict_pool(url: String) -> ReplicatedPool {
    let (primary, standby) = strict_pair();
    let replica = url.replacen(primary.as_str(), standby, 1);
    let pool = PoolOptions::new()
        .with_max_size(2)
        .with_max_replica_lag(Duration::from_millis(400))
        .build_replicated(&url, &[&replica])
        .await
        .unwrap();
    wait_usable(&pool).await;
    pool
}
