//! session-bench v1: lucia-diesel against a raw tokio-postgres floor.
//!
//! ```sh
//! cargo run --release -p lucia-diesel-bench -- --secs 5 --sessions 100000
//! # validate at three scales, loaded one on top of the other
//! cargo run --release -p lucia-diesel-bench -- --ops validate --sessions 10000,100000,1000000
//! # delete_expired_sessions on 10^6 expired rows while validate runs at c=32
//! cargo run --release -p lucia-diesel-bench -- --scenario cleanup
//! # memory over a 60 s validate run at c=32, sampled every 5 s
//! cargo run --release -p lucia-diesel-bench -- --soak 60
//! ```
//!
//! Uses `DATABASE_URL` (the server; the bench creates its own database
//! `session_bench` and drops it at the end unless `--keep-db`) or starts a
//! throwaway cluster. Sessions are generated server side (`INSERT ...
//! SELECT generate_series`), so 10^6 load in seconds.
//!
//! `--impl lucia-diesel-replicated` is the crate's `ReplicatedPool` over
//! the server and a hot standby of it, a pool of 10 on each: validations
//! on the standby, writes on the server. Without `DATABASE_URL` the bench
//! starts the standby itself (`testkit`'s `Cluster::start_standby`). With
//! it, set `REPLICA_URL` to a hot standby streaming from that server
//! (physical replication, `hot_standby = on`), reachable with the same
//! user: the bench's database, created on the server, reaches it by
//! replication, and each run waits until the standby has replayed the
//! sessions loaded before it.
//!
//! Scenarios:
//! - `ops` (default): each operation for `--secs` at each concurrency on
//!   each implementation, at each `--sessions` scale.
//! - `cleanup`: loads `--expired` expired sessions beside the live ones, runs
//!   the operation (default `validate`, c=32) for `--secs`, then again while
//!   the crate's `delete_expired_sessions` removes them in batches of
//!   `--cleanup-batch`; reports the cleanup's time, rows, batches (observed
//!   through the crate's `delete_expired_batch` tracing spans) and the
//!   operation's ops/s, p50 and p99 without and during the cleanup.
//! - `cache`: `validate_session` (and any `--ops`) on raw, `lucia-diesel`
//!   and `lucia-diesel-cached` (warmed before each run, its hit ratio
//!   reported); then create, extend, touch, delete, delete_user and
//!   update_user without and with the cache's outbox triggers, back to back
//!   in each round; then the revocation lag: 1,000 sessions revoked on one
//!   instance until the cached one answers invalid, idle and under
//!   validation load; then the server CPU that polling takes for 20 and
//!   200 readers.
//! - `soak` (`--soak SECS`): runs the operation (default `validate` on
//!   lucia-diesel, c=32) for SECS, sampling VmRSS every `--sample-secs`.
//!
//! Prints one JSON line per run on stdout (the protocol's fields plus
//! `sessions`, CPU per operation and, with `pg_stat_statements`, statements
//! per operation; scenario runs add `phase`), a progress line on stderr,
//! and tables at the end with peak (VmHWM) and current (VmRSS) memory.
//!
//! Then writes the tables into `BENCHMARKS.md` at the repository root, with
//! the date, command, commit, machine and server: the scenario's section is
//! replaced in place between its markers (`<!-- bench:ops -->` ..
//! `<!-- /bench:ops -->`), the rest of the file kept. `--no-write` skips
//! that.

mod batches;
mod cache;
mod context;
mod data;
mod document;
mod measure;
mod raw;
mod report;
mod scenario;
mod table;
mod targets;

use std::str::FromStr;

use context::{Context, Server, Source};
use report::Memory;
use scenario::Bench;
use targets::{Op, Target};

const POOL: u32 = 10;
const USERS: u64 = 10_000;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "\
usage: bench [--scenario ops|cleanup|soak|cache] [--secs S] [--rounds R] [--sessions N[,N...]]
             [--concurrency C[,C...]] [--ops OP[,OP...]] [--impl IMPL[,IMPL...]]
             [--expired N] [--cleanup-batch N] [--soak SECS] [--sample-secs S] [--keep-db]
             [--no-write]

  --scenario      ops (default), cleanup, soak or cache
  --secs          seconds per run (default 2 for ops, 5 for cleanup; the soak's length)
  --rounds        runs of each implementation per operation and concurrency,
                  taking turns (default 3 for ops, else 1); the table shows
                  medians and the ratio to raw's run in the same round
  --sessions      live sessions, one scale or several loaded in turn (default 100000)
  --concurrency   tasks calling at once (default 1,32; cleanup and soak: 32)
  --ops           validate,miss,touch,list,create,delete,validate_session
                  (default all; cleanup and soak: validate; cache: validate_session)
  --impl          raw,lucia-diesel,lucia-diesel-dynamic,lucia-diesel-pooler,
                  lucia-diesel-replicated, lucia-diesel-cached (default raw,lucia-diesel;
                  soak: lucia-diesel; cache: raw,lucia-diesel,lucia-diesel-cached);
                  lucia-diesel-replicated with DATABASE_URL needs REPLICA_URL, a hot
                  standby of that server
  --expired       cleanup: expired sessions to load and delete (default 1000000)
  --cleanup-batch cleanup: rows per DELETE (default 1000, the crate's CLEANUP_BATCH_SIZE)
  --soak SECS     same as --scenario soak --secs SECS
  --sample-secs   soak: seconds between VmRSS samples (default 5)
  --keep-db       keep the session_bench database at the end
  --no-write      do not write the scenario's section of BENCHMARKS.md";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Ops,
    Cleanup,
    Soak,
    Cache,
}

impl Scenario {
    /// Its name in `--scenario` and in `BENCHMARKS.md`'s markers.
    fn name(self) -> &'static str {
        match self {
            Scenario::Ops => "ops",
            Scenario::Cleanup => "cleanup",
            Scenario::Soak => "soak",
            Scenario::Cache => "cache",
        }
    }

    fn default_secs(self) -> f64 {
        if matches!(self, Scenario::Ops | Scenario::Cache) {
            2.0
        } else {
            5.0
        }
    }

    fn default_rounds(self) -> u32 {
        if matches!(self, Scenario::Ops | Scenario::Cache) {
            3
        } else {
            1
        }
    }
}

#[derive(Clone)]
pub struct Args {
    scenario: Scenario,
    secs: f64,
    rounds: u32,
    sessions: Vec<u64>,
    concurrency: Vec<usize>,
    ops: Vec<Op>,
    impls: Vec<String>,
    expired: u64,
    cleanup_batch: u32,
    sample_secs: f64,
    keep: bool,
    /// Whether to write the results into `BENCHMARKS.md`.
    write: bool,
}

/// `--flag value` parsed as `T`.
fn num<T: FromStr>(flag: &str, value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| format!("{flag} {value}: {e}"))
}

/// `--flag a,b,c` parsed as `T`s.
fn list<T: FromStr>(flag: &str, value: &str) -> Result<Vec<T>, String>
where
    T::Err: std::fmt::Display,
{
    value.split(',').map(|v| num(flag, v)).collect()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        scenario: Scenario::Ops,
        secs: f64::NAN,
        rounds: 0,
        sessions: vec![100_000],
        concurrency: Vec::new(),
        ops: Vec::new(),
        impls: Vec::new(),
        expired: 1_000_000,
        cleanup_batch: lucia_diesel::postgres::CLEANUP_BATCH_SIZE,
        sample_secs: 5.0,
        keep: false,
        write: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let flag = flag.as_str();
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag {
            "--scenario" => args.scenario = scenario(&value()?)?,
            "--secs" => args.secs = num(flag, &value()?)?,
            "--rounds" => args.rounds = num::<u32>(flag, &value()?)?.max(1),
            "--sessions" => args.sessions = list(flag, &value()?)?,
            "--concurrency" => args.concurrency = list(flag, &value()?)?,
            "--ops" => args.ops = list(flag, &value()?)?,
            "--impl" => args.impls = list(flag, &value()?)?,
            "--expired" => args.expired = num(flag, &value()?)?,
            "--cleanup-batch" => args.cleanup_batch = num(flag, &value()?)?,
            "--soak" => (args.scenario, args.secs) = (Scenario::Soak, num(flag, &value()?)?),
            "--sample-secs" => args.sample_secs = num(flag, &value()?)?,
            "--keep-db" => args.keep = true,
            "--no-write" => args.write = false,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}; see --help")),
        }
    }
    args.with_defaults()
}

fn scenario(name: &str) -> Result<Scenario, String> {
    [
        Scenario::Ops,
        Scenario::Cleanup,
        Scenario::Soak,
        Scenario::Cache,
    ]
    .into_iter()
    .find(|s| s.name() == name)
    .ok_or_else(|| format!("unknown scenario {name}; see --help"))
}

impl Args {
    /// Fills in the scenario's defaults and checks the values.
    fn with_defaults(mut self) -> Result<Self, String> {
        let ops = matches!(self.scenario, Scenario::Ops | Scenario::Cache);
        if self.ops.is_empty() {
            self.ops = match self.scenario {
                Scenario::Ops => Op::ALL.to_vec(),
                Scenario::Cache => vec![Op::ValidateSession],
                Scenario::Cleanup | Scenario::Soak => vec![Op::Validate],
            };
        }
        if self.secs.is_nan() {
            // Not given.
            self.secs = self.scenario.default_secs();
        }
        if self.rounds == 0 {
            self.rounds = self.scenario.default_rounds();
        }
        if self.concurrency.is_empty() {
            self.concurrency = if ops { vec![1, 32] } else { vec![32] };
        }
        if self.impls.is_empty() {
            let names: &[&str] = match self.scenario {
                Scenario::Soak => &["lucia-diesel"],
                Scenario::Cache => &["raw", "lucia-diesel", "lucia-diesel-cached"],
                Scenario::Ops | Scenario::Cleanup => &["raw", "lucia-diesel"],
            };
            self.impls = names.iter().map(|&n| n.to_owned()).collect();
        }
        if let Some(bad) = self
            .impls
            .iter()
            .find(|i| !Target::NAMES.contains(&i.as_str()))
        {
            return Err(format!("unknown implementation {bad}; see --help"));
        }
        self.sessions.sort_unstable();
        let total = self.sessions.last().copied().unwrap_or(0) + self.expired;
        if self.sessions.first() == Some(&0) || total >= 1 << 31 {
            return Err("--sessions: from 1 to 2^31 sessions in all, --expired included".into());
        }
        if self.concurrency.contains(&0) || self.secs <= 0.0 || self.sample_secs <= 0.0 {
            return Err("--concurrency, --secs and --sample-secs must be positive".into());
        }
        Ok(self)
    }
}

/// The servers the bench runs on.
struct Servers {
    /// `DATABASE_URL`, or the throwaway cluster's.
    primary: String,
    /// A hot standby of it, when an implementation needs one.
    standby: Option<String>,
    /// The throwaway clusters, if any: they stop when dropped.
    clusters: Vec<testkit::Cluster>,
}

/// The servers: `DATABASE_URL` (and `REPLICA_URL`, when `standby`), or a
/// throwaway cluster with `pg_stat_statements` loaded when the server has
/// it (and a streaming standby of it, when `standby`).
fn servers(standby: bool) -> Res<Servers> {
    let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(primary) = var("DATABASE_URL") {
        let standby = match var("REPLICA_URL") {
            Some(url) if standby => Some(url),
            None if standby => {
                return Err(
                    "lucia-diesel-replicated with DATABASE_URL needs REPLICA_URL: \
                            a hot standby streaming from that server"
                        .into(),
                );
            }
            _ => None,
        };
        return Ok(Servers {
            primary,
            standby,
            clusters: Vec::new(),
        });
    }
    let cluster =
        testkit::Cluster::start_with("shared_preload_libraries = 'pg_stat_statements'", &[])
            .or_else(|_| testkit::Cluster::start())?;
    let mut servers = Servers {
        primary: cluster.url("postgres"),
        standby: None,
        clusters: vec![cluster],
    };
    if standby {
        let standby = servers.clusters[0].start_standby()?;
        servers.standby = Some(standby.url("postgres"));
        servers.clusters.push(standby);
    }
    Ok(servers)
}

/// With feature `metrics`: a Prometheus recorder installed for the whole
/// run, as an application serving `/metrics` has, its upkeep every 5 s.
#[cfg(feature = "metrics")]
fn record_metrics() -> Res<()> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    lucia_diesel::metrics::describe();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            handle.run_upkeep();
        }
    });
    eprintln!("metrics: recorded into a Prometheus recorder");
    Ok(())
}

/// Without feature `metrics`: nothing is recorded.
#[cfg(not(feature = "metrics"))]
fn record_metrics() -> Res<()> {
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let args = parse_args().inspect_err(|e| eprintln!("{e}"))?;
    record_metrics()?;
    // The clusters, if any, stop when dropped at the end.
    let replicated = args.impls.iter().any(|i| i == "lucia-diesel-replicated");
    let servers = servers(replicated)?;
    let server = &servers.primary;
    let url = data::create(server).await?;
    let source = if servers.clusters.is_empty() {
        Source::database_url(server)
    } else {
        Source::Throwaway
    };
    let mut server_info = Server::query(&url, source).await?;
    server_info.standby = servers.standby.is_some();
    let context = Context::new(server_info);
    let standby = servers
        .standby
        .as_deref()
        .map(data::database_url)
        .transpose()?;
    let mut bench = Bench::open(&url, standby.as_deref(), args.clone()).await?;
    let outcome = match args.scenario {
        Scenario::Ops => bench.ops().await,
        Scenario::Cleanup => bench.cleanup().await,
        Scenario::Soak => bench.soak().await,
        Scenario::Cache => bench.cache().await,
    };
    let memory = Memory::now();
    bench.report.print(&memory);
    let written = if !args.write {
        Ok(())
    } else if outcome.is_ok() {
        write(&args, &context, &bench.report, &memory)
    } else {
        eprintln!("BENCHMARKS.md not written: the run failed");
        Ok(())
    };
    drop(bench);
    if !args.keep {
        data::drop(server).await?;
    }
    drop(servers);
    outcome.and(written)
}

/// Writes the run's section of `BENCHMARKS.md`.
fn write(args: &Args, context: &Context, report: &report::Report, memory: &Memory) -> Res<()> {
    let name = args.scenario.name();
    let body = document::section(args.scenario, args, context, report, memory);
    let path = document::write(name, &body).inspect_err(|e| eprintln!("{e}"))?;
    eprintln!("wrote the `{name}` section of {}", path.display());
    Ok(())
}
