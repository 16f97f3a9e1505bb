//! A private PgBouncer in transaction pooling mode in front of the test
//! server, started by the test that needs it and stopped when dropped.
//!
//! Needs the Debian package `pgbouncer` (`.ci/run` installs it). PgBouncer
//! refuses to run as root, so as root it runs as the `postgres` user.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The database name clients use on the bouncer.
pub const DB: &str = "lucia";

pub struct PgBouncer {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    user: Option<(u32, u32)>,
}

/// The pgbouncer binary, if installed.
pub fn find() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("pgbouncer"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    ["/usr/sbin/pgbouncer".into(), "/usr/bin/pgbouncer".into()]
        .into_iter()
        .chain(on_path)
        .find(|p: &PathBuf| p.exists())
}

/// A bouncer of this test's own with `server_pool` server connections, or
/// `None` after saying why there is none (a failure under CI).
pub fn own_or_skip(test: &str, server_pool: u32) -> Option<PgBouncer> {
    let bin = find_or_skip(test)?;
    Some(PgBouncer::start(&bin, super::server_url(), server_pool))
}

/// The binary, or `None` after saying why (a failure under CI).
pub fn find_or_skip(test: &str) -> Option<PathBuf> {
    let found = find();
    if found.is_none() {
        let msg = format!("{test} needs pgbouncer: apt-get install -y pgbouncer");
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
    }
    found
}

/// A port nobody listens on now. Ports are handed out from the top of the
/// range in steps, away from the kernel's ephemeral ports for outgoing
/// connections, which a port released by `bind(0)` may become at once.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 500) as u16 * 20;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 20;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn id(flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

impl PgBouncer {
    /// Starts a bouncer for `server_url` (the test server) in transaction
    /// mode with `server_pool` server connections at most.
    pub fn start(bin: &Path, server_url: &str, server_pool: u32) -> Self {
        let config: tokio_postgres::Config = server_url.parse().expect("server URL");
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres");
        let dbname = config.get_dbname().unwrap_or(user);
        let password = config
            .get_password()
            .map(|p| format!(" password={}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        let listen = free_port();
        let dir = std::env::temp_dir().join(format!(
            "lucia-diesel-pgbouncer-{}-{listen}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("bouncer dir");
        let ini = format!(
            "[databases]\n\
             {DB} = host={host} port={port} dbname={dbname} user={user}{password}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {listen}\n\
             unix_socket_dir =\n\
             auth_type = any\n\
             pool_mode = transaction\n\
             default_pool_size = {server_pool}\n\
             max_client_conn = 500\n\
             server_round_robin = 0\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {log}\n\
             pidfile = {pid}\n",
            pid = dir.join("pgbouncer.pid").display(),
            log = dir.join("pgbouncer.log").display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).expect("write ini");
        let user = testkit::is_root()
            .then(|| Some((id("-u")?, id("-g")?)))
            .flatten();
        if let Some((uid, gid)) = user {
            let ok = Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the bouncer directory to postgres");
        }
        let mut bouncer = Self {
            child: None,
            dir,
            port: listen,
            bin: bin.to_owned(),
            user,
        };
        bouncer.start_again();
        bouncer
    }

    /// Starts the process (again, after [`PgBouncer::kill`]) on the same port.
    pub fn start_again(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("pgbouncer.pid"));
        let mut cmd = Command::new(&self.bin);
        cmd.arg(self.dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd.spawn().expect("start pgbouncer");
        let deadline = Instant::now() + Duration::from_secs(20);
        // Listening is not enough: another process may hold the port. The
        // pid file appears once this bouncer has bound its socket.
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
            || !self.dir.join("pgbouncer.pid").exists()
        {
            let exited = child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "pgbouncer did not start ({exited:?}): {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "pgbouncer exited: {}",
            self.log()
        );
        self.child = Some(child);
    }

    /// Kills the process (clients see their connections drop).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DB}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PgBouncer {
    /// Stops the bouncer and deletes its directory once this process
    /// exits, for a bouncer kept in a `static` (whose `Drop` never runs).
    fn stop_when_process_exits(mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        let cleanup = format!(
            "kill {bouncer} 2>/dev/null; rm -rf '{dir}'",
            bouncer = child.id(),
            dir = self.dir.display(),
        );
        if testkit::after_this_process(&cleanup) {
            std::mem::forget(child);
            std::mem::forget(self);
        } else {
            self.child = Some(child);
        }
    }
}

/// The URL of a bouncer shared by the tests that do not stop it, started
/// on first use in front of the test server; without pgbouncer (outside
/// CI), the test server itself, so the pooler path still runs.
pub fn shared_url() -> &'static str {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| match find_or_skip("the pooler suite") {
        Some(bin) => {
            let bouncer = PgBouncer::start(&bin, super::server_url(), 3);
            let url = bouncer.url();
            bouncer.stop_when_process_exits();
            url
        }
        None => super::server_url().to_owned(),
    })
}
