//! [`Cluster`]: a private PostgreSQL server on a fresh data directory.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::process::{after_this_process, is_root};

/// Settings every cluster gets, ahead of its port and socket directory:
/// speed over durability, and TCP on the loopback interface only.
const BASE_CONF: &str = "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
                         max_connections = 300\nlisten_addresses = '127.0.0.1'\n";

/// A running private PostgreSQL cluster: its own data directory, port and
/// socket directory, with the `postgres` superuser and `trust`
/// authentication.
///
/// Dropping it stops the server (`pg_ctl stop -m immediate`) and deletes
/// its directory.
#[derive(Debug)]
pub struct Cluster {
    /// The server binaries' directory.
    pub(crate) bin: PathBuf,
    /// The cluster's directory: `data/`, `server.log` and the Unix socket.
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    /// Whether the server runs as the `postgres` user (this process is root).
    pub(crate) run_as_postgres: bool,
    /// Whether the server is known to be stopped (nothing to stop on drop).
    pub(crate) stopped: bool,
}

/// The directory of the PostgreSQL server binaries: `LUCIA_PG_BIN` when it
/// is set and not empty (taken as it is, never passed over for another
/// install), else the newest `/usr/lib/postgresql/<version>/bin` that has
/// `initdb`, else the first directory on `PATH` with both `initdb` and
/// `pg_ctl`.
#[must_use]
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("LUCIA_PG_BIN").filter(|bin| !bin.is_empty()) {
        return Some(PathBuf::from(bin));
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    installed.sort();
    if let Some((_, bin)) = installed.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
}

/// A TCP port on 127.0.0.1 that nobody listens on now.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Starts a cluster: `initdb` and `pg_ctl start` on a fresh directory
    /// and a free port.
    ///
    /// # Errors
    /// No server binaries (the message says how to install them), or a
    /// step that failed, with its output and the server log.
    pub fn start() -> Result<Self, String> {
        Self::start_with("", &[])
    }

    /// Like [`Cluster::start`], with `extra_conf` appended to the server's
    /// settings (`postgresql.conf` lines, which win over the defaults) and
    /// `files` written into the data directory first, as `(name, content)`
    /// with mode 0600 and owned by the server's user: for example a TLS
    /// certificate and its key.
    ///
    /// # Errors
    /// As [`Cluster::start`].
    pub fn start_with(extra_conf: &str, files: &[(&str, &[u8])]) -> Result<Self, String> {
        let mut cluster = Self::new_dir()?;
        cluster.init()?;
        cluster.configure(extra_conf, files)?;
        cluster.pg_ctl(&["start", "-w", "-t", "60"])?;
        cluster.stopped = false;
        Ok(cluster)
    }

    /// A cluster not yet created: the server binaries, a fresh directory
    /// (owned by the server's user) and a free port.
    pub(crate) fn new_dir() -> Result<Self, String> {
        let bin = find_bin_dir().ok_or_else(|| {
            "no PostgreSQL server binaries found (initdb, pg_ctl): install them \
             (Debian/Ubuntu: `apt-get install -y postgresql`), point LUCIA_PG_BIN at \
             their directory, or set DATABASE_URL"
                .to_owned()
        })?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("lucia-diesel-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let cluster = Self {
            bin,
            dir,
            port: free_port().map_err(|e| format!("finding a free port: {e}"))?,
            run_as_postgres: is_root(),
            // Nothing to stop until the server has started.
            stopped: true,
        };
        if cluster.run_as_postgres {
            cluster.run(
                Command::new("chown")
                    .args(["-R", "postgres:"])
                    .arg(&cluster.dir),
                false,
            )?;
        }
        Ok(cluster)
    }

    /// `initdb`: the `postgres` superuser, `trust` authentication, UTF-8,
    /// the C locale, and no waiting for the disk.
    fn init(&self) -> Result<(), String> {
        let initdb = self.bin.join("initdb");
        self.run(
            self.command(&initdb).arg("-D").arg(self.data_dir()).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]),
            true,
        )
    }

    /// Writes `files` into the data directory and the settings into
    /// `postgresql.auto.conf`.
    pub(crate) fn configure(
        &self,
        extra_conf: &str,
        files: &[(&str, &[u8])],
    ) -> Result<(), String> {
        let data = self.data_dir();
        let mut conf = format!(
            "{BASE_CONF}port = {}\nunix_socket_directories = '{}'\n",
            self.port,
            self.dir.display()
        );
        if self.bin.join("../lib/pg_stat_statements.so").exists() {
            conf.push_str("shared_preload_libraries = 'pg_stat_statements'\n");
        }
        conf.push_str(extra_conf);
        // Ended, so that lines appended later (`pg_basebackup -R` appends
        // `primary_conninfo` to a standby's copy) start a line of their own.
        if !conf.ends_with('\n') {
            conf.push('\n');
        }
        for (name, content) in files {
            let path = data.join(name);
            std::fs::write(&path, content)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            self.run(Command::new("chmod").arg("600").arg(&path), false)?;
            if self.run_as_postgres {
                self.run(Command::new("chown").arg("postgres:").arg(&path), false)?;
            }
        }
        let conf_path = data.join("postgresql.auto.conf");
        let mut auto_conf = std::fs::read_to_string(&conf_path).unwrap_or_default();
        auto_conf.push_str(&conf);
        std::fs::write(&conf_path, auto_conf)
            .map_err(|e| format!("writing {}: {e}", conf_path.display()))
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `program`, run as the `postgres` user when this process is root.
    pub(crate) fn command(&self, program: &Path) -> Command {
        if self.run_as_postgres {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "postgres", "--"]).arg(program);
            runuser
        } else {
            Command::new(program)
        }
    }

    /// Runs `cmd` to completion; on failure, the error holds its output
    /// (stdout cut short when `quiet`) and the server log.
    pub(crate) fn run(&self, cmd: &mut Command, quiet: bool) -> Result<(), String> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {cmd:?}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let stdout: String = String::from_utf8_lossy(&out.stdout)
            .chars()
            .take(if quiet { 2000 } else { 10000 })
            .collect();
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        Err(format!(
            "{cmd:?} failed ({}): {stdout}{}\n{log}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
        ))
    }

    /// Runs `pg_ctl -D <data dir> -l <server log> <args>`.
    ///
    /// # Errors
    /// `pg_ctl` failed: its output and the server log.
    pub fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let pg_ctl = self.bin.join("pg_ctl");
        self.run(
            self.command(&pg_ctl)
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(args),
            false,
        )
    }

    /// Restarts the server (`pg_ctl restart -m fast`), waiting up to 60 s.
    ///
    /// # Errors
    /// As [`Cluster::pg_ctl`].
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl(&["restart", "-w", "-t", "60", "-m", "fast"])
    }

    /// Stops the server (`pg_ctl stop -m <mode>`, `mode` being `smart`,
    /// `fast` or `immediate`); [`Cluster::start_again`] starts it again.
    ///
    /// # Errors
    /// As [`Cluster::pg_ctl`].
    pub fn stop(&mut self, mode: &str) -> Result<(), String> {
        self.pg_ctl(&["stop", "-w", "-m", mode])?;
        self.stopped = true;
        Ok(())
    }

    /// Starts the server again after [`Cluster::stop`], on the same port
    /// and data, waiting up to 60 s.
    ///
    /// # Errors
    /// As [`Cluster::pg_ctl`].
    pub fn start_again(&mut self) -> Result<(), String> {
        self.pg_ctl(&["start", "-w", "-t", "60"])?;
        self.stopped = false;
        Ok(())
    }

    /// The server's TCP port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory: `data/`, `server.log` and the Unix socket.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the server binaries the cluster runs.
    #[must_use]
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// A URL for database `db` as the `postgres` superuser over TCP.
    #[must_use]
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Leaves the cluster running until this process exits, then stops the
    /// server and deletes its directory: for a cluster shared through a
    /// `static`, whose `Drop` never runs, or an example's, which must go
    /// however the example ends (Ctrl-C in a terminal, SIGTERM, a crash:
    /// see [`after_this_process`]). If the watcher that cleans up cannot
    /// start, the cluster is dropped (stopped) at once.
    pub fn stop_when_process_exits(self) {
        let cleanup = format!(
            "{runas}'{pg_ctl}' -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{dir}'",
            runas = if self.run_as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            },
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data_dir().display(),
            dir = self.dir.display(),
        );
        if after_this_process(&cleanup) {
            std::mem::forget(self);
        }
    }

    /// Waits up to `timeout` for the server to accept TCP connections
    /// (after a restart, say); false if it did not.
    #[must_use]
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
