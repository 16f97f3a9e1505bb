//! session-bench v1: lucia-diesel against a raw tokio-postgres floor.
//!
//! ```sh
//! cargo run --release --example bench -- --secs 5 --sessions 100000
//! ```
//!
//! Uses `DATABASE_URL` (the server; the bench creates and drops its own
//! database `session_bench`) or starts a throwaway cluster. Prints one JSON
//! line per run on stdout, a progress line on stderr, and a table at the end.

#[path = "../../tests/support/cluster.rs"]
mod cluster;
mod raw;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use lucia_diesel::{Adapter, Attributes, PgPool, PoolOptions, PostgresAdapter, SessionManager};
use serde_json::json;

const POOL: u32 = 10;
const USERS: u64 = 10_000;

struct Args {
    secs: f64,
    sessions: u64,
    concurrency: Vec<usize>,
    ops: Vec<String>,
    impls: Vec<String>,
    keep: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        secs: 5.0,
        sessions: 100_000,
        concurrency: vec![1, 32],
        ops: [
            "validate",
            "miss",
            "touch",
            "list",
            "create",
            "delete",
            "validate_session",
        ]
        .map(String::from)
        .to_vec(),
        impls: vec!["raw".into(), "lucia-diesel".into()],
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--secs" => args.secs = value()?.parse().map_err(|e| format!("--secs: {e}"))?,
            "--sessions" => {
                args.sessions = value()?.parse().map_err(|e| format!("--sessions: {e}"))?
            }
            "--concurrency" => {
                args.concurrency = value()?
                    .split(',')
                    .map(|c| c.parse().map_err(|e| format!("--concurrency: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--ops" => args.ops = value()?.split(',').map(String::from).collect(),
            "--impl" => args.impls = value()?.split(',').map(String::from).collect(),
            "--keep-db" => args.keep = true,
            "--help" | "-h" => {
                return Err("usage: bench [--secs S] [--sessions N] [--concurrency 1,32] [--ops validate,miss,touch,list,create,delete,validate_session] [--impl raw,lucia-diesel,lucia-diesel-dynamic] [--keep-db]".into());
            }
            other => return Err(format!("unknown argument {other}; see --help")),
        }
    }
    Ok(args)
}

/// Session ids of the loaded data: like hashed-mode ids, 64 hex characters.
fn session_id(n: u64) -> String {
    format!("{:064x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// The loaded session ids, computed once so that building them is not
/// part of what is measured.
static IDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

fn loaded_id(n: u64) -> &'static str {
    &IDS.get().expect("ids are computed before the runs")[n as usize]
}

/// Distinguishes this run's created sessions from earlier runs' (--keep-db).
fn run_id() -> u64 {
    static RUN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *RUN.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or_default()
    })
}

fn user_id(n: u64) -> String {
    format!("user-{n}")
}

/// A small, fast PRNG for picking rows (not for tokens).
struct Pick(u64);
impl Pick {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

async fn setup(server: &str, sessions: u64) -> Result<String, Box<dyn std::error::Error>> {
    let mut admin = AsyncPgConnection::establish(server).await?;
    admin
        .batch_execute("DROP DATABASE IF EXISTS session_bench WITH (FORCE)")
        .await?;
    admin.batch_execute("CREATE DATABASE session_bench").await?;
    let url = match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/session_bench"),
        None => return Err("DATABASE_URL must be a URL".into()),
    };
    lucia_diesel::migrations::run_pending_migrations_at(&url).await?;
    let mut conn = AsyncPgConnection::establish(&url).await?;
    conn.batch_execute(&format!(
        "ALTER TABLE auth_user ADD COLUMN username TEXT NOT NULL UNIQUE;
         ALTER TABLE user_session ADD COLUMN country TEXT;
         INSERT INTO auth_user (id, username) SELECT 'user-' || n, 'name-' || n FROM generate_series(0, {users}) n;
         CREATE EXTENSION IF NOT EXISTS pg_stat_statements;",
        users = USERS - 1
    ))
    .await
    .ok();
    // Sessions: ids computed client side (the same function the ops use),
    // loaded in batches.
    let batch = 10_000;
    let mut n = 0;
    while n < sessions {
        let end = (n + batch).min(sessions);
        let mut sql =
            String::from("INSERT INTO user_session (id, user_id, expires_at, country) VALUES ");
        for i in n..end {
            if i > n {
                sql.push(',');
            }
            sql.push_str(&format!(
                "('{}','{}',now() + interval '30 days','nl')",
                session_id(i),
                user_id(i % USERS)
            ));
        }
        conn.batch_execute(&sql).await?;
        n = end;
        eprint!("\rloading sessions {n}/{sessions}");
    }
    conn.batch_execute("VACUUM ANALYZE").await?;
    eprintln!();
    Ok(url)
}

/// CPU time (user + system) of every local `postgres` process, in
/// microseconds: the server's share when it runs on this machine.
fn server_cpu_micros() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|e| {
            stat_cpu_micros(&std::fs::read_to_string(e.path().join("stat")).unwrap_or_default())
        })
        .sum()
}

/// This process's CPU time (user + system) in microseconds.
fn cpu_micros() -> u64 {
    stat_cpu_micros(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

fn stat_cpu_micros(stat: &str) -> u64 {
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    (ticks(11) + ticks(12)) * 10_000
}

struct Run {
    cpu_us_per_op: f64,
    server_cpu_us_per_op: f64,
    ops: u64,
    secs: f64,
    p50_us: u64,
    p99_us: u64,
}

/// Runs `op` from `concurrency` tasks for `secs` and measures each call.
async fn run<F, Fut>(concurrency: usize, secs: f64, op: F) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let seq = Arc::new(AtomicU64::new(0));
    let cpu_start = cpu_micros();
    let server_start = server_cpu_micros();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (op, seq) = (Arc::clone(&op), Arc::clone(&seq));
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 16);
                while Instant::now() < deadline {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    op(n).await;
                    lat.push(t.elapsed().as_micros() as u32);
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("bench task"));
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_micros().saturating_sub(cpu_start);
    let server_cpu = server_cpu_micros().saturating_sub(server_start);
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as u64
    };
    Run {
        cpu_us_per_op: cpu as f64 / all.len().max(1) as f64,
        server_cpu_us_per_op: server_cpu as f64 / all.len().max(1) as f64,
        ops: all.len() as u64,
        secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

async fn statements_per_op(conn: &mut AsyncPgConnection, ops: u64) -> Option<f64> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Calls {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        n: Option<i64>,
    }
    let calls = diesel::sql_query(
        "SELECT sum(calls)::bigint AS n FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE 'SET %'",
    )
    .get_result::<Calls>(conn)
    .await
    .ok()?;
    Some(calls.n.unwrap_or(0) as f64 / ops.max(1) as f64)
}

/// Session attributes of the bench schema, typed (the raw client decodes
/// typed columns too).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SessionAttrs {
    country: Option<String>,
}

/// User attributes of the bench schema, typed.
#[derive(Debug, Clone, serde::Deserialize)]
struct UserAttrs {
    #[allow(dead_code)]
    username: String,
}

type Typed = PostgresAdapter<PgPool, String, SessionAttrs, UserAttrs>;
type Dynamic = PostgresAdapter<PgPool>;

/// One lucia-diesel run of `op`, for either attribute representation.
#[allow(clippy::too_many_arguments)]
async fn lucia_run<SA, UA>(
    op: &str,
    c: usize,
    secs: f64,
    n: u64,
    adapter: &Arc<PostgresAdapter<PgPool, String, SA, UA>>,
    manager: &Arc<SessionManager<PostgresAdapter<PgPool, String, SA, UA>>>,
    tokens: &Arc<Vec<lucia_diesel::SessionToken>>,
    make_attributes: fn() -> SA,
    tag: &'static str,
) -> Result<Run, String>
where
    SA: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    UA: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    Ok(match op {
        "validate" => {
            let a = Arc::clone(adapter);
            run(c, secs, move |i| {
                let a = Arc::clone(&a);
                async move {
                    assert!(
                        a.get_session_and_user(loaded_id(Pick(i + 1).next(n)))
                            .await
                            .unwrap()
                            .is_some()
                    );
                }
            })
            .await
        }
        "miss" => {
            let a = Arc::clone(adapter);
            run(c, secs, move |i| {
                let a = Arc::clone(&a);
                async move {
                    assert!(
                        a.get_session_and_user(&format!("miss-{i}"))
                            .await
                            .unwrap()
                            .is_none()
                    );
                }
            })
            .await
        }
        "touch" => {
            let a = Arc::clone(adapter);
            run(c, secs, move |i| {
                let a = Arc::clone(&a);
                async move {
                    a.update_session_expiration(loaded_id(Pick(i + 1).next(n)), Utc::now())
                        .await
                        .unwrap();
                }
            })
            .await
        }
        "list" => {
            let a = Arc::clone(adapter);
            run(c, secs, move |i| {
                let a = Arc::clone(&a);
                async move {
                    a.get_user_sessions(&user_id(Pick(i + 1).next(USERS)))
                        .await
                        .unwrap();
                }
            })
            .await
        }
        "create" => {
            let a = Arc::clone(adapter);
            run(c, secs, move |i| {
                let a = Arc::clone(&a);
                async move {
                    let attributes = make_attributes();
                    a.set_session(&lucia_diesel::DatabaseSession {
                        id: format!("{tag}-{}-{c}-{i}", run_id()),
                        user_id: user_id(i % USERS),
                        expires_at: Utc::now(),
                        attributes,
                    })
                    .await
                    .unwrap();
                }
            })
            .await
        }
        "delete" => {
            let a = Arc::clone(adapter);
            run(c, secs, move |i| {
                let a = Arc::clone(&a);
                async move {
                    a.delete_session(&format!("{tag}-{}-{c}-{i}", run_id()))
                        .await
                        .unwrap();
                }
            })
            .await
        }
        "validate_session" => {
            let m = Arc::clone(manager);
            let t = Arc::clone(tokens);
            run(c, secs, move |i| {
                let (m, t) = (Arc::clone(&m), Arc::clone(&t));
                async move {
                    assert!(
                        m.validate_session(t[(i % 1000) as usize].as_str())
                            .await
                            .unwrap()
                            .is_some()
                    );
                }
            })
            .await
        }
        other => return Err(format!("unknown op {other}")),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| {
        eprintln!("{e}");
        e
    })?;
    let mut _cluster = None;
    let server = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let c = cluster::Cluster::start()?;
            let url = c.url("postgres");
            _cluster = Some(c);
            url
        }
    };
    let url = setup(&server, args.sessions).await?;
    let pool: PgPool = PoolOptions::new().with_max_size(POOL).build(&url).await?;
    let typed_adapter = || {
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<SessionAttrs>()
            .with_user_attributes::<UserAttrs>()
    };
    let typed: (Arc<Typed>, Arc<SessionManager<Typed>>) = (
        Arc::new(typed_adapter()),
        Arc::new(SessionManager::new(typed_adapter())),
    );
    let dynamic: (Arc<Dynamic>, Arc<SessionManager<Dynamic>>) = (
        Arc::new(PostgresAdapter::new(pool.clone())),
        Arc::new(SessionManager::new(PostgresAdapter::new(pool.clone()))),
    );
    let manager = &dynamic.1;
    let raw = Arc::new(raw::RawPool::connect(&url, POOL as usize).await?);
    let mut stats = AsyncPgConnection::establish(&url).await?;

    // Tokens for the manager's validate_session.
    let mut tokens = Vec::new();
    for i in 0..1000 {
        tokens.push(
            manager
                .create_session(user_id(i % USERS), Attributes::new())
                .await?
                .token,
        );
    }
    let tokens = Arc::new(tokens);
    let _ = IDS.set((0..args.sessions).map(session_id).collect());

    struct Row {
        imp: &'static str,
        op: String,
        c: usize,
        ops_per_sec: f64,
        p50: u64,
        p99: u64,
        ratio: Option<f64>,
        stmts: Option<f64>,
        cpu: f64,
        server_cpu: f64,
    }
    let mut table: Vec<Row> = Vec::new();
    for op in &args.ops {
        for &c in &args.concurrency {
            let mut raw_ops_per_sec = None;
            for imp in ["raw", "lucia-diesel", "lucia-diesel-dynamic"] {
                if (op == "validate_session" && imp == "raw")
                    || !args.impls.iter().any(|i| i == imp)
                {
                    continue;
                }
                let _ = stats
                    .batch_execute("SELECT pg_stat_statements_reset()")
                    .await;
                eprint!(
                    "\r{imp:>12} {op:<16} c={c:<3} running {:.0}s...   ",
                    args.secs
                );
                let n = args.sessions;
                let r = match (imp, op.as_str()) {
                    ("raw", "validate") => {
                        let raw = Arc::clone(&raw);
                        run(c, args.secs, move |i| {
                            let raw = Arc::clone(&raw);
                            async move {
                                assert!(
                                    raw.validate(loaded_id(Pick(i + 1).next(n))).await.unwrap()
                                );
                            }
                        })
                        .await
                    }
                    ("raw", "miss") => {
                        let raw = Arc::clone(&raw);
                        run(c, args.secs, move |i| {
                            let raw = Arc::clone(&raw);
                            async move {
                                assert!(!raw.validate(&format!("miss-{i}")).await.unwrap());
                            }
                        })
                        .await
                    }
                    ("raw", "touch") => {
                        let raw = Arc::clone(&raw);
                        run(c, args.secs, move |i| {
                            let raw = Arc::clone(&raw);
                            async move {
                                raw.touch(loaded_id(Pick(i + 1).next(n)), Utc::now())
                                    .await
                                    .unwrap();
                            }
                        })
                        .await
                    }
                    ("raw", "list") => {
                        let raw = Arc::clone(&raw);
                        run(c, args.secs, move |i| {
                            let raw = Arc::clone(&raw);
                            async move {
                                raw.list(&user_id(Pick(i + 1).next(USERS))).await.unwrap();
                            }
                        })
                        .await
                    }
                    ("raw", "create") => {
                        let raw = Arc::clone(&raw);
                        run(c, args.secs, move |i| {
                            let raw = Arc::clone(&raw);
                            async move {
                                raw.create(
                                    &format!("raw-{}-{c}-{i}", run_id()),
                                    &user_id(i % USERS),
                                    Utc::now(),
                                    "se",
                                )
                                .await
                                .unwrap();
                            }
                        })
                        .await
                    }
                    ("raw", "delete") => {
                        let raw = Arc::clone(&raw);
                        run(c, args.secs, move |i| {
                            let raw = Arc::clone(&raw);
                            async move {
                                raw.delete(&format!("raw-{}-{c}-{i}", run_id()))
                                    .await
                                    .unwrap();
                            }
                        })
                        .await
                    }
                    ("lucia-diesel", op) => {
                        lucia_run(
                            op,
                            c,
                            args.secs,
                            n,
                            &typed.0,
                            &typed.1,
                            &tokens,
                            || SessionAttrs {
                                country: Some("se".into()),
                            },
                            "ld",
                        )
                        .await?
                    }
                    (_, op) => {
                        lucia_run(
                            op,
                            c,
                            args.secs,
                            n,
                            &dynamic.0,
                            &dynamic.1,
                            &tokens,
                            || {
                                let mut attributes = Attributes::new();
                                attributes.insert("country".into(), json!("se"));
                                attributes
                            },
                            "ldd",
                        )
                        .await?
                    }
                };
                let per_op = statements_per_op(&mut stats, r.ops).await;
                let ops_per_sec = r.ops as f64 / r.secs;
                let mut line = json!({
                    "impl": imp, "op": op, "concurrency": c, "pool": POOL, "ops": r.ops,
                    "secs": (r.secs * 1000.0).round() / 1000.0, "ops_per_sec": ops_per_sec.round(),
                    "p50_us": r.p50_us, "p99_us": r.p99_us,
                    "client_cpu_us_per_op": (r.cpu_us_per_op * 10.0).round() / 10.0,
                    "server_cpu_us_per_op": (r.server_cpu_us_per_op * 10.0).round() / 10.0,
                });
                if let Some(s) = per_op {
                    line["statements_per_op"] = json!((s * 100.0).round() / 100.0);
                }
                println!("{line}");
                if imp == "raw" {
                    raw_ops_per_sec = Some(ops_per_sec);
                }
                let base = if op == "validate_session" {
                    table
                        .iter()
                        .find(|r| r.imp == "raw" && r.op == "validate" && r.c == c)
                        .map(|r| r.ops_per_sec)
                } else if imp == "raw" {
                    None
                } else {
                    raw_ops_per_sec
                };
                table.push(Row {
                    imp,
                    op: op.clone(),
                    c,
                    ops_per_sec,
                    p50: r.p50_us,
                    p99: r.p99_us,
                    ratio: base.map(|b| ops_per_sec / b),
                    stmts: per_op,
                    cpu: r.cpu_us_per_op,
                    server_cpu: r.server_cpu_us_per_op,
                });
            }
        }
    }
    eprintln!();
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
        });
    eprintln!(
        "{:<20} {:<17} {:>4} {:>10} {:>8} {:>8} {:>7} {:>9} {:>10} {:>10}",
        "impl",
        "op",
        "c",
        "ops/s",
        "p50 us",
        "p99 us",
        "x raw",
        "stmts/op",
        "client us",
        "server us"
    );
    for r in &table {
        eprintln!(
            "{:<20} {:<17} {:>4} {:>10.0} {:>8} {:>8} {:>7} {:>9} {:>10.1} {:>10.1}",
            r.imp,
            r.op,
            r.c,
            r.ops_per_sec,
            r.p50,
            r.p99,
            r.ratio.map(|x| format!("{x:.2}")).unwrap_or_default(),
            r.stmts.map(|x| format!("{x:.2}")).unwrap_or_default(),
            r.cpu,
            r.server_cpu
        );
    }
    eprintln!(
        "peak memory (VmHWM): {} kB",
        hwm.unwrap_or_else(|| "?".into())
    );
    Ok(())
}
