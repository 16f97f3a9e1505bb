//! What a run ran on: when, the command, the commit, the machine and the
//! server. `BENCHMARKS.md` records it beside the figures.

use std::path::Path;
use std::process::Command;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::Res;

/// Where the server came from.
pub enum Source {
    /// `DATABASE_URL`: its host and port.
    DatabaseUrl(String),
    /// A throwaway cluster the bench started (see the `testkit` crate).
    Throwaway,
}

/// The server's version and the settings that decide what a write costs.
pub struct Server {
    pub source: Source,
    pub version: String,
    pub fsync: String,
    pub synchronous_commit: String,
    /// Whether a hot standby of it serves `lucia-diesel-replicated`.
    pub standby: bool,
}

impl Server {
    /// Asks the server at `url` (the bench database) for its version and
    /// settings.
    pub async fn query(url: &str, source: Source) -> Res<Self> {
        #[derive(diesel::QueryableByName)]
        struct Settings {
            #[diesel(sql_type = diesel::sql_types::Text)]
            version: String,
            #[diesel(sql_type = diesel::sql_types::Text)]
            fsync: String,
            #[diesel(sql_type = diesel::sql_types::Text)]
            synchronous_commit: String,
        }
        let mut conn = AsyncPgConnection::establish(url).await?;
        let settings = diesel::sql_query(
            "SELECT current_setting('server_version') AS version, \
             current_setting('fsync') AS fsync, \
             current_setting('synchronous_commit') AS synchronous_commit",
        )
        .get_result::<Settings>(&mut conn)
        .await?;
        Ok(Self {
            source,
            version: settings.version,
            fsync: settings.fsync,
            synchronous_commit: settings.synchronous_commit,
            standby: false,
        })
    }

    /// Whether commits wait for the disk: figures worth quoting need it.
    pub fn durable(&self) -> bool {
        matches!(self.source, Source::DatabaseUrl(_)) && self.fsync == "on"
    }

    /// `PostgreSQL 15.4 on DATABASE_URL (127.0.0.1:5432); fsync on, ...`.
    pub fn describe(&self) -> String {
        let source = match &self.source {
            Source::DatabaseUrl(at) => format!("the `DATABASE_URL` server ({at})"),
            Source::Throwaway => "a throwaway cluster started by the bench".to_owned(),
        };
        let standby = if self.standby {
            "; a hot standby of it serves `lucia-diesel-replicated`"
        } else {
            ""
        };
        format!(
            "PostgreSQL {} on {source}; `fsync` {}, `synchronous_commit` {}{standby}",
            self.version, self.fsync, self.synchronous_commit
        )
    }
}

impl Source {
    /// `DATABASE_URL`'s host and port (never its user or password).
    pub fn database_url(url: &str) -> Self {
        let at = url
            .parse::<tokio_postgres::Config>()
            .ok()
            .and_then(|config| {
                let host = match config.get_hosts().first()? {
                    tokio_postgres::config::Host::Tcp(host) => host.clone(),
                    tokio_postgres::config::Host::Unix(dir) => dir.display().to_string(),
                };
                let port = config.get_ports().first().copied().unwrap_or(5432);
                Some(format!("{host}:{port}"))
            })
            .unwrap_or_else(|| "host not given".to_owned());
        Source::DatabaseUrl(at)
    }
}

/// The machine: cores, CPU model, memory and kernel, from `/proc`.
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: Option<f64>,
    pub kernel: String,
    /// The one-minute load average when the run started: other work on a
    /// shared machine shows here.
    pub load: Option<String>,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_owned())
            })
        };
        let listed = cpuinfo
            .lines()
            .filter(|line| line.split(':').next().map(str::trim) == Some("processor"))
            .count();
        let cores = if listed > 0 {
            listed
        } else {
            std::thread::available_parallelism().map_or(0, |n| n.get())
        };
        let cpu = field("model name")
            .or_else(|| field("Hardware"))
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|meminfo| {
                let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map(|kb| kb as f64 / (1024.0 * 1024.0));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| format!("Linux {}", release.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.to_owned());
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|loadavg| loadavg.split_whitespace().next().map(str::to_owned));
        Self {
            cores,
            cpu,
            memory_gib,
            kernel,
            load,
        }
    }

    /// `2 cores (AMD EPYC), 23.5 GiB memory, Linux 6.1.0; load average
    /// 0.12 at the start`.
    pub fn describe(&self) -> String {
        let memory = self
            .memory_gib
            .map_or("unknown".to_owned(), |gib| format!("{gib:.1} GiB"));
        let load = self
            .load
            .as_ref()
            .map(|load| format!("; load average {load} at the start"))
            .unwrap_or_default();
        format!(
            "{} cores ({}), {memory} memory, {}{load}",
            self.cores, self.cpu, self.kernel
        )
    }
}

/// Everything `BENCHMARKS.md` says about a run besides its arguments and
/// results.
pub struct Context {
    /// When the run started, UTC.
    pub date: String,
    /// The command that repeats the run.
    pub command: String,
    /// The checked-out commit, if the bench runs from a git checkout.
    pub commit: Option<Commit>,
    pub release: bool,
    pub machine: Machine,
    pub server: Server,
}

impl Context {
    pub fn new(server: Server) -> Self {
        Self {
            date: Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            command: command_line(),
            commit: commit(Path::new(env!("CARGO_MANIFEST_DIR"))),
            release: !cfg!(debug_assertions),
            machine: Machine::read(),
            server,
        }
    }
}

/// `cargo run --release -p lucia-diesel-bench -- <this
/// process's arguments>`,
/// each argument quoted for the shell where it needs it.
fn command_line() -> String {
    let mut command = if cfg!(debug_assertions) {
        "cargo run -p lucia-diesel-bench".to_owned()
    } else {
        "cargo run --release -p lucia-diesel-bench".to_owned()
    };
    let args: Vec<String> = std::env::args().skip(1).map(|a| shell_word(&a)).collect();
    if !args.is_empty() {
        command.push_str(" -- ");
        command.push_str(&args.join(" "));
    }
    command
}

/// `word`, single-quoted unless it is made only of characters the shell
/// leaves alone.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.,=/:+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The commit the bench was built from.
pub struct Commit {
    /// `HEAD`'s short hash.
    pub hash: String,
    /// Whether tracked files other than `BENCHMARKS.md` (which the bench
    /// itself writes) have uncommitted changes.
    pub changed: bool,
}

/// `HEAD` of the git checkout at `dir`, if it is one.
fn commit(dir: &Path) -> Option<Commit> {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let hash = git(&["rev-parse", "--short", "HEAD"])?;
    let changes = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ":/",
        ":!/BENCHMARKS.md",
    ])?;
    Some(Commit {
        hash,
        changed: !changes.is_empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("--ops"), "--ops");
        assert_eq!(shell_word("validate,miss"), "validate,miss");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
