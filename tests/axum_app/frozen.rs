//! A private PostgreSQL cluster a test can freeze whole, as if the
//! database host stopped answering: `SIGSTOP` to the postmaster and every
//! process it started, so open connections get no answer and new ones no
//! handshake. Both examples' outage tests use it (the Rocket ones include
//! this file with `#[path]`).

use std::time::Duration;

use lucia_diesel::{ConnectionSource as _, PgPool};
use testkit::Cluster;

/// The slowest answer the examples may give with the database frozen: the
/// 1 s checkout, the 1.5 s statement timeout and its 250 ms margin (2.75 s
/// for one call), with room for the machine.
pub const FROZEN_BOUND: Duration = Duration::from_millis(3500);

/// Opens `n` connections in `pool` and leaves them idle, so that calls
/// made while the server is frozen get a connection at once and wait on
/// the server (the client-side deadline's case), not on the checkout.
pub async fn fill(pool: &PgPool, n: usize) {
    let held = futures_util::future::join_all((0..n).map(|_| pool.connection())).await;
    for conn in &held {
        assert!(conn.is_ok(), "a connection");
    }
}

/// A cluster of the test's own (freezing the shared one would stop every
/// other test), removed when dropped.
pub struct Server {
    cluster: Option<Cluster>,
    pub url: String,
}

impl Server {
    /// Starts the cluster and applies lucia-diesel's migrations and
    /// `app`'s.
    pub async fn start(app: diesel_migrations::EmbeddedMigrations) -> Self {
        let cluster = tokio::task::spawn_blocking(Cluster::start)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
        let url = cluster.url("postgres");
        lucia_diesel::migrations::run_pending_migrations_at(&url)
            .await
            .unwrap();
        let conn =
            <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&url)
                .await
                .unwrap();
        lucia_diesel::migrations::run_embedded_migrations(conn, app)
            .await
            .unwrap();
        Self {
            cluster: Some(cluster),
            url,
        }
    }

    /// Stops every process of the server until the returned guard is
    /// dropped.
    pub fn freeze(&self) -> Frozen {
        let cluster = self.cluster.as_ref().expect("the cluster");
        let pid_file = cluster.dir().join("data/postmaster.pid");
        let text = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
        let postmaster: u32 = text.lines().next().unwrap().trim().parse().unwrap();
        // The postmaster first, so that it starts nothing new meanwhile.
        signal("STOP", &[postmaster]);
        let children = children_of(postmaster);
        assert!(!children.is_empty(), "a running server has processes");
        signal("STOP", &children);
        let mut pids = children;
        pids.push(postmaster);
        Frozen(pids)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(cluster) = self.cluster.take() {
            // `pg_ctl stop` waits: off the runtime's thread when there is one.
            std::thread::spawn(move || drop(cluster)).join().unwrap();
        }
    }
}

/// The server's processes, stopped; `SIGCONT` on drop, so that a failing
/// test never leaves them stopped.
pub struct Frozen(Vec<u32>);

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("CONT", &self.0);
    }
}

fn signal(name: &str, pids: &[u32]) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pids:?}");
}

/// The processes whose parent is `parent`, from `/proc`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (name) state ppid ...": the name may hold spaces.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}
