//! `--scenario cache`: validation from memory against the raw floor, what
//! the cache's outbox triggers cost the writes, and how long a revocation
//! takes to reach another instance.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lucia_diesel::cache::{CacheOptions, CacheStats};
use lucia_diesel::{Attributes, PostgresAdapter, SessionManager};

use crate::data;
use crate::measure::measure;
use crate::report::{Row, median};
use crate::scenario::Bench;
use crate::table::{Column, Table};
use crate::targets::{Job, Op, Target, TypedManager, user_id};
use crate::{Res, USERS};

/// Revocations timed per load.
const REVOCATIONS: u64 = 1000;

/// The write operations whose cost with the outbox triggers is measured:
/// `touch` writes an earlier expiry (a revocation: an outbox row), `extend`
/// a later one (as validation does: none), `delete_user` deletes a user's
/// two sessions (two rows), `update_user` is the application's own UPDATE
/// of a user row (one row; on the raw client only).
const WRITES: [Op; 6] = [
    Op::Create,
    Op::Extend,
    Op::Touch,
    Op::Delete,
    Op::DeleteUser,
    Op::UpdateUser,
];

/// The phases of a write run, as they appear in its label.
const WITHOUT: &str = "no triggers";
const WITH: &str = "triggers";

/// How long revocations took to reach the cached instance, under a load.
pub struct Lag {
    /// Concurrent validations on the cached instance meanwhile (0: idle).
    pub load: usize,
    pub lags: Vec<Duration>,
}

/// What polling the outbox cost the server, for a number of readers.
pub struct PollCost {
    pub readers: usize,
    /// Revocations committed per second meanwhile (0: idle).
    pub revocations_per_sec: f64,
    pub polls_per_sec: f64,
    /// Server CPU seconds per second, over all its cores (1.0: one core).
    pub server_cpu: f64,
    pub cores: usize,
}

/// How long each poll-cost run measures.
const POLL_SECS: u64 = 5;

/// The server's CPU time so far (user and system, seconds), summed over
/// the `postgres` processes in `/proc`: the bench runs beside its server.
/// `None` when they cannot be read (a server elsewhere).
fn server_cpu() -> Option<f64> {
    let mut ticks = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((name, rest)) = stat.split_once(") ") else {
            continue;
        };
        if !name.ends_with("(postgres") {
            continue;
        }
        // Fields 14 and 15 (utime, stime); `rest` starts at field 3.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        ticks += field(14)? + field(15)?;
        found = true;
    }
    // Linux reports these in USER_HZ, 100 on every common configuration.
    found.then(|| ticks as f64 / 100.0)
}

/// What the cache did during one measured run.
pub struct CacheRun {
    pub job: Job,
    pub before: CacheStats,
    pub after: CacheStats,
}

impl Bench {
    /// The scenario: reads (the usual rounds, the cached implementation
    /// warmed first), then the writes with and without the triggers, then
    /// the revocation lag, idle and under load.
    pub async fn cache(&mut self) -> Res<()> {
        let sessions = self.max_sessions();
        self.load_live(sessions).await?;
        for (target, job) in self.jobs(sessions) {
            self.timed(&target, job, None).await;
        }
        self.trigger_cost(sessions).await?;
        self.lag(sessions).await?;
        self.poll_cost().await
    }

    /// Before a cached `validate_session` run: every token validated twice
    /// (the first pass writes what is due, and that write's invalidation
    /// empties the entry; the second fills), so the run measures the
    /// steady state. Returns the cache's counters before the run.
    pub async fn warm(&self, target: &Arc<Target>, job: Job) -> Option<CacheStats> {
        let tokens = target.tokens() as u64;
        target.cached()?;
        for _ in 0..2 {
            let next = Arc::new(AtomicU64::new(0));
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let (target, next) = (target.clone(), next.clone());
                    tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= tokens {
                                break;
                            }
                            target.call(job, i).await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("warming task");
            }
        }
        target.cache_stats()
    }

    /// Records what the cache did in a run (from `before`).
    pub fn cache_run(&mut self, target: &Target, job: Job, before: CacheStats) {
        let Some(after) = target.cache_stats() else {
            return;
        };
        self.report.cache_runs.push(CacheRun { job, before, after });
    }

    /// Create, touch and delete on every implementation but the cached one,
    /// without and with the triggers, in turns within each round.
    async fn trigger_cost(&mut self, sessions: u64) -> Res<()> {
        let targets: Vec<_> = (self.targets.iter())
            .filter(|t| t.cached().is_none())
            .cloned()
            .collect();
        for round in 0..self.args.rounds {
            for op in WRITES {
                for c in self.args.concurrency.clone() {
                    let mut phases = [false, true];
                    if round % 2 == 1 {
                        phases.reverse();
                    }
                    for installed in phases {
                        data::set_cache_triggers(&mut self.stats, installed).await?;
                        let phase = if installed { WITH } else { WITHOUT };
                        for target in targets
                            .iter()
                            .filter(|t| op != Op::UpdateUser || t.tag() == "raw")
                        {
                            // Rounds 2r and 2r + 1 hold round r's two phases
                            // (and keep the ids they create apart).
                            let round = 2 * round + u32::from(installed);
                            let job = Job {
                                op,
                                sessions,
                                c,
                                round,
                            };
                            self.timed(target, job, Some(phase)).await;
                        }
                    }
                }
            }
        }
        data::set_cache_triggers(&mut self.stats, true).await
    }

    /// Revocations on one instance (a manager of its own, with a cache) until
    /// the cached implementation answers invalid: idle, then while it
    /// validates at the highest concurrency.
    async fn lag(&mut self, sessions: u64) -> Res<()> {
        let Some(cached) = self.targets.iter().find(|t| t.cached().is_some()).cloned() else {
            return Ok(());
        };
        let a = SessionManager::new(PostgresAdapter::new(self.pool.clone()))
            .with_cache(CacheOptions::new())
            .await?;
        let c = self.args.concurrency.iter().copied().max().unwrap_or(32);
        for load in [0, c] {
            crate::scenario::progress(
                &cached,
                Job::new(Op::ValidateSession, sessions, load),
                "revocation lag",
            );
            let b = cached.cached().expect("the cached implementation");
            let revocations = async |_: &AtomicU64| revoke(&a, b, load).await;
            let lags = if load == 0 {
                revocations(&AtomicU64::new(0)).await?
            } else {
                let job = Job::new(Op::ValidateSession, sessions, load);
                measure(&cached, job, revocations).await.1?
            };
            self.report.lags.push(Lag { load, lags });
        }
        Ok(())
    }
}

impl Bench {
    /// The server CPU that polling costs: 20 and 200 readers (caches of
    /// their own on one pool, as that many app instances would poll) at
    /// the default interval, idle, and 20 readers while revocations
    /// commit.
    async fn poll_cost(&mut self) -> Res<()> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        for (readers, busy) in [(20, false), (20, true), (200, false)] {
            eprintln!(
                "poll cost: {readers} readers{}",
                if busy { ", revocations" } else { "" }
            );
            let mut caches = Vec::with_capacity(readers);
            for _ in 0..readers {
                let m = SessionManager::new(PostgresAdapter::new(self.pool.clone()))
                    .with_cache(CacheOptions::new())
                    .await?;
                caches.push(m);
            }
            let writer = SessionManager::new(PostgresAdapter::new(self.pool.clone()));
            let revoked = AtomicU64::new(0);
            let stop = std::sync::atomic::AtomicBool::new(false);
            let polls = || {
                caches
                    .iter()
                    .map(|m| m.cache_stats().map_or(0, |s| s.polls))
                    .sum::<u64>()
            };
            let measure = async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (polls0, cpu0, revoked0, start) = (
                    polls(),
                    server_cpu(),
                    revoked.load(Ordering::Relaxed),
                    Instant::now(),
                );
                tokio::time::sleep(Duration::from_secs(POLL_SECS)).await;
                let secs = start.elapsed().as_secs_f64();
                let cost = PollCost {
                    readers,
                    revocations_per_sec: (revoked.load(Ordering::Relaxed) - revoked0) as f64 / secs,
                    polls_per_sec: (polls() - polls0) as f64 / secs,
                    server_cpu: server_cpu()
                        .zip(cpu0)
                        .map_or(f64::NAN, |(b, a)| (b - a) / secs),
                    cores,
                };
                stop.store(true, Ordering::Relaxed);
                cost
            };
            let revoking = async {
                let mut i = 0u64;
                while busy && !stop.load(Ordering::Relaxed) {
                    let created = writer
                        .create_session(user_id(i % USERS), Attributes::new())
                        .await?;
                    writer.invalidate_session(&created.session.id).await?;
                    revoked.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok::<_, lucia_diesel::Error>(())
            };
            let (cost, revoking) = tokio::join!(measure, revoking);
            revoking?;
            self.report.poll_costs.push(cost);
        }
        Ok(())
    }
}

/// What polling cost the server, per number of readers.
pub fn poll_table(costs: &[PollCost]) -> Option<Table> {
    let mut table = Table::new(
        "poll cost: readers (caches polling every 20 ms, on one pool of 10) and the server CPU \
         their polls take, idle and while revocations commit; CPU per poll is the server's \
         whole CPU over the run divided by the polls",
        vec![
            Column::left("readers", 8),
            Column::right("revocations/s", 13),
            Column::right("polls/s", 8),
            Column::right("server CPU (cores)", 18),
            Column::right("share of the machine", 20),
            Column::right("CPU us/poll", 11),
        ],
    );
    for c in costs {
        table.push(vec![
            c.readers.to_string(),
            format!("{:.0}", c.revocations_per_sec),
            format!("{:.0}", c.polls_per_sec),
            format!("{:.2}", c.server_cpu),
            format!("{:.0}%", 100.0 * c.server_cpu / c.cores as f64),
            format!("{:.0}", 1e6 * c.server_cpu / c.polls_per_sec.max(1.0)),
        ]);
    }
    (!table.rows.is_empty()).then_some(table)
}

/// [`REVOCATIONS`] sessions created on `a`, cached by `b` (validated until
/// a hit), revoked on `a`: how long from the revoking call until `b`
/// validates it as invalid.
async fn revoke(
    a: &SessionManager<PostgresAdapter<lucia_diesel::PgPool>>,
    b: &TypedManager,
    load: usize,
) -> Res<Vec<Duration>> {
    let hits = || b.cache_stats().map_or(0, |s| s.hits);
    let mut lags = Vec::new();
    for i in 0..REVOCATIONS {
        let user = user_id((i * 7 + load as u64) % USERS);
        let created = a.create_session(user, Attributes::new()).await?;
        let token = created.token.as_str();
        loop {
            let before = hits();
            b.validate_session(token)
                .await?
                .ok_or("a new session is valid")?;
            if hits() > before {
                break;
            }
        }
        let start = Instant::now();
        a.invalidate_session(&created.session.id).await?;
        while b.validate_session(token).await?.is_some() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err("a revocation did not reach the other instance in 10 s".into());
            }
            tokio::task::yield_now().await;
        }
        lags.push(start.elapsed());
    }
    Ok(lags)
}

/// The writes' ops/s with the triggers over without, per round: the
/// median and the range.
pub fn triggers_table(rows: &[Row]) -> Option<Table> {
    let mut table = Table::new(
        "triggers: each write's ops/s with the cache's triggers over without them, \
         the two runs of each round back to back (median, lowest-highest)",
        vec![
            Column::left("impl", 20),
            Column::left("op", 17),
            Column::right("c", 4),
            Column::right("rounds", 6),
            Column::right("without ops/s", 13),
            Column::right("with ops/s", 10),
            Column::right("with / without", 16),
        ],
    );
    let phase = |r: &Row, phase: &str| r.label == format!("{}/{phase}", r.job.op.name());
    for (i, with) in rows.iter().enumerate().filter(|(_, r)| phase(r, WITH)) {
        let same = |r: &&Row| r.imp == with.imp && r.job.op == with.job.op && r.job.c == with.job.c;
        if rows[..i]
            .iter()
            .filter(|r| phase(r, WITH))
            .any(|r| same(&r))
        {
            continue;
        }
        let pairs: Vec<(f64, f64)> = (rows.iter().filter(|r| phase(r, WITH) && same(r)))
            .filter_map(|w| {
                let without = rows
                    .iter()
                    .find(|r| phase(r, WITHOUT) && same(r) && r.job.round / 2 == w.job.round / 2)?;
                Some((without.ops_per_sec, w.ops_per_sec))
            })
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let ratios: Vec<f64> = pairs.iter().map(|(wo, w)| w / wo).collect();
        let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let high = ratios.iter().copied().fold(0.0, f64::max);
        table.push(vec![
            with.imp.into(),
            with.job.op.name().into(),
            with.job.c.to_string(),
            pairs.len().to_string(),
            format!("{:.0}", median(pairs.iter().map(|p| p.0).collect())),
            format!("{:.0}", median(pairs.iter().map(|p| p.1).collect())),
            format!("{:.2} ({low:.2}-{high:.2})", median(ratios)),
        ]);
    }
    (!table.rows.is_empty()).then_some(table)
}

/// The revocation lags, idle and under load.
pub fn lag_table(lags: &[Lag]) -> Option<Table> {
    let mut table = Table::new(
        "revocation lag: from the start of `invalidate_session` on one instance until another \
         instance's `validate_session` answers invalid (its cache emptied by the poll that saw the revocation)",
        vec![
            Column::left("load on the cached instance", 28),
            Column::right("revocations", 11),
            Column::right("p50 ms", 7),
            Column::right("p99 ms", 7),
            Column::right("max ms", 7),
        ],
    );
    for lag in lags {
        let mut sorted = lag.lags.clone();
        sorted.sort();
        let ms = |p: usize| {
            let d = sorted[(sorted.len() * p / 100).min(sorted.len() - 1)];
            format!("{:.2}", d.as_secs_f64() * 1e3)
        };
        let load = if lag.load == 0 {
            "idle".to_owned()
        } else {
            format!("validate_session, c={}", lag.load)
        };
        table.push(vec![
            load,
            sorted.len().to_string(),
            ms(50),
            ms(99),
            ms(100),
        ]);
    }
    (!table.rows.is_empty()).then_some(table)
}

/// What the cache did in each measured cached run.
pub fn cache_runs_table(runs: &[CacheRun]) -> Option<Table> {
    let mut table = Table::new(
        "cache: lookups in each measured run of the cached implementation",
        vec![
            Column::left("op", 17),
            Column::right("c", 4),
            Column::right("round", 5),
            Column::right("hits", 10),
            Column::right("misses", 8),
            Column::right("bypasses", 8),
            Column::right("hit ratio", 9),
        ],
    );
    for run in runs {
        let (a, b) = (run.after, run.before);
        let (hits, misses, bypasses) = (
            a.hits - b.hits,
            a.misses - b.misses,
            a.bypasses - b.bypasses,
        );
        let lookups = (hits + misses + bypasses).max(1);
        table.push(vec![
            run.job.op.name().into(),
            run.job.c.to_string(),
            run.job.round.to_string(),
            hits.to_string(),
            misses.to_string(),
            bypasses.to_string(),
            format!("{:.4}", hits as f64 / lookups as f64),
        ]);
    }
    (!table.rows.is_empty()).then_some(table)
}
