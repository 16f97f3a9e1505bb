//! A throwaway PostgreSQL cluster from the installed server binaries.
//!
//! Shared by the tests and the examples (included with `#[path]`): when
//! `DATABASE_URL` is not set they start a private cluster here instead of
//! relying on a server that may not exist. `initdb` and `postgres` refuse to
//! run as root, so as root the cluster runs as the `postgres` system user.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running private cluster. Dropping it stops the server and deletes
/// its directory.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    run_as_postgres: bool,
    stopped: bool,
}

/// Where the server binaries are: `initdb` on PATH, or the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
}

/// Whether this process runs as root (then servers run as `postgres`).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// `initdb` + `pg_ctl start` on a fresh directory and a free port.
    pub fn start() -> Result<Self, String> {
        Self::start_with("", &[])
    }

    /// Like [`Cluster::start`], with more `postgresql.conf` settings and
    /// files written into the data directory first (owned by the server's
    /// user, mode 0600: e.g. a TLS certificate and key).
    pub fn start_with(extra_conf: &str, files: &[(&str, &[u8])]) -> Result<Self, String> {
        let bin = find_bin_dir().ok_or_else(|| {
            "no PostgreSQL server binaries found (initdb, pg_ctl): install them \
             (Debian/Ubuntu: `apt-get install -y postgresql`) or set DATABASE_URL"
                .to_owned()
        })?;
        let dir = std::env::temp_dir().join(format!(
            "lucia-diesel-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let run_as_postgres = is_root();
        let mut cluster = Self {
            bin,
            dir,
            port: free_port().map_err(|e| format!("finding a free port: {e}"))?,
            run_as_postgres,
            stopped: true,
        };
        if run_as_postgres {
            cluster.run(
                Command::new("chown")
                    .args(["-R", "postgres:"])
                    .arg(&cluster.dir),
                false,
            )?;
        }
        let data = cluster.data_dir();
        let initdb = cluster.bin.join("initdb");
        cluster.run(
            cluster.command(&initdb).arg("-D").arg(&data).args([
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
        )?;
        let mut conf = String::from(
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             max_connections = 300\nlisten_addresses = '127.0.0.1'\n",
        );
        conf.push_str(&format!(
            "port = {}\nunix_socket_directories = '{}'\n",
            cluster.port,
            cluster.dir.display()
        ));
        if cluster.bin.join("../lib/pg_stat_statements.so").exists() {
            conf.push_str("shared_preload_libraries = 'pg_stat_statements'\n");
        }
        conf.push_str(extra_conf);
        for (name, content) in files {
            let path = data.join(name);
            std::fs::write(&path, content)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            cluster.run(Command::new("chmod").arg("600").arg(&path), false)?;
            if cluster.run_as_postgres {
                cluster.run(Command::new("chown").arg("postgres:").arg(&path), false)?;
            }
        }
        let conf_path = data.join("postgresql.auto.conf");
        let mut existing = std::fs::read_to_string(&conf_path).unwrap_or_default();
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing)
            .map_err(|e| format!("writing {}: {e}", conf_path.display()))?;
        cluster.pg_ctl(&["start", "-w", "-t", "60"])?;
        cluster.stopped = false;
        Ok(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &Path) -> Command {
        if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn run(&self, cmd: &mut Command, quiet: bool) -> Result<(), String> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            Err(format!(
                "{cmd:?} failed ({}): {}{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
                    .chars()
                    .take(if quiet { 2000 } else { 10000 })
                    .collect::<String>(),
                String::from_utf8_lossy(&out.stderr),
                log
            ))
        }
    }

    /// Runs `pg_ctl -D <data> -l <log> <args>`.
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

    /// `pg_ctl restart -m fast`.
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl(&["restart", "-w", "-t", "60", "-m", "fast"])
    }

    /// `pg_ctl stop -m <mode>` (`fast`, `immediate`).
    pub fn stop(&mut self, mode: &str) -> Result<(), String> {
        self.pg_ctl(&["stop", "-w", "-m", mode])?;
        self.stopped = true;
        Ok(())
    }

    /// `pg_ctl start` after [`Cluster::stop`].
    pub fn start_again(&mut self) -> Result<(), String> {
        self.pg_ctl(&["start", "-w", "-t", "60"])?;
        self.stopped = false;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// A URL for database `db` as the `postgres` superuser over TCP.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the server and deletes the directory once this process exits,
    /// for clusters kept in a `static` (whose `Drop` never runs).
    pub fn stop_when_process_exits(self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let cleanup = format!(
            "{runas}'{pg_ctl}' -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{dir}'",
            runas = if self.run_as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            },
            pg_ctl = pg_ctl.display(),
            data = self.data_dir().display(),
            dir = self.dir.display(),
        );
        if after_this_process(&cleanup) {
            std::mem::forget(self);
        }
    }

    /// Waits until the server accepts TCP connections again.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// Runs the shell command `cleanup` once this process has exited, from a
/// watcher process of its own; false when the watcher could not start.
pub fn after_this_process(cleanup: &str) -> bool {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {cleanup}",
        pid = std::process::id()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .is_ok()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
