//! The three scenarios: operations across scales, cleanup under load, and
//! a memory soak.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use lucia_diesel::{PgPool, PoolOptions, PostgresAdapter, SessionManager, SessionToken};
use serde_json::json;

use crate::batches::Batches;
use crate::data::{self, Expiry};
use crate::measure::{Run, measure, memory_kb, run_for};
use crate::report::{self, Cleanup, Report, Row, Soak, round};
use crate::targets::{Job, Op, Target, created_prefix};
use crate::{Args, POOL, Res};

/// The bench database, the implementations under test and the results.
pub struct Bench {
    pub args: Args,
    pub pool: PgPool,
    pub stats: AsyncPgConnection,
    /// The standby's statements, for `lucia-diesel-replicated`.
    standby_stats: Option<AsyncPgConnection>,
    pub targets: Vec<Arc<Target>>,
    /// Live sessions loaded so far: ids `0..loaded`.
    loaded: u64,
    pub report: Report,
}

impl Bench {
    /// The bench database at `url`, and at `standby` on a standby of it.
    pub async fn open(url: &str, standby: Option<&str>, args: Args) -> Res<Self> {
        let pool = PoolOptions::new().with_max_size(POOL).build(url).await?;
        let mut stats = AsyncPgConnection::establish(url).await?;
        // Tokens for the manager's validate_session: one a loaded session,
        // up to 100,000.
        let count = args.sessions.last().copied().unwrap_or(1).min(100_000);
        let manager = SessionManager::new(PostgresAdapter::new(pool.clone()));
        let tokens = (0..count)
            .map(|_| SessionToken::generate())
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<String> = tokens
            .iter()
            .map(|t| manager.session_id(t.as_str()).into_string())
            .collect();
        data::load_token_sessions(&mut stats, &ids).await?;
        if args.impls.iter().any(|i| i == "lucia-diesel-cached") {
            data::set_cache_triggers(&mut stats, true).await?;
        }
        let mut targets = Vec::new();
        for name in &args.impls {
            let target = Target::new(name, url, standby, &pool, &tokens).await?;
            targets.push(Arc::new(target));
        }
        let standby_stats = match standby {
            Some(url) => Some(data::connect_on_standby(url).await?),
            None => None,
        };
        Ok(Self {
            stats,
            standby_stats,
            args,
            pool,
            targets,
            loaded: 0,
            report: Report::default(),
        })
    }

    /// Every run of the scenario at `sessions`: each operation at each
    /// concurrency, `--rounds` times, on each implementation that has it.
    /// The implementations take turns within a round and swap order from
    /// one round to the next, so that drift on a shared machine (autovacuum,
    /// a neighbour's load) falls on all of them alike.
    pub fn jobs(&self, sessions: u64) -> Vec<(Arc<Target>, Job)> {
        let mut jobs = Vec::new();
        for &op in &self.args.ops {
            for &c in &self.args.concurrency {
                for round in 0..self.args.rounds {
                    let job = Job {
                        op,
                        sessions,
                        c,
                        round,
                    };
                    let mut targets: Vec<_> = self.targets.iter().collect();
                    if round % 2 == 1 {
                        targets.reverse();
                    }
                    jobs.extend(targets.into_iter().map(|t| (t.clone(), job)));
                }
            }
        }
        jobs
    }

    /// Loads live sessions up to `n` (the first `n` ids).
    pub async fn load_live(&mut self, n: u64) -> Res<()> {
        data::load_sessions(&mut self.stats, self.loaded, n, Expiry::Live).await?;
        self.loaded = self.loaded.max(n);
        Ok(())
    }

    /// The default scenario: every operation at every `--sessions` scale,
    /// loading the larger scales on top of the smaller ones.
    pub async fn ops(&mut self) -> Res<()> {
        for sessions in self.args.sessions.clone() {
            self.load_live(sessions).await?;
            for (target, job) in self.jobs(sessions) {
                self.timed(&target, job, None).await;
            }
        }
        Ok(())
    }

    /// One fixed-time run, with its statements per operation; `phase`
    /// labels it (the cache scenario's writes with and without triggers).
    pub async fn timed(&mut self, target: &Arc<Target>, job: Job, phase: Option<&str>) -> Run {
        if job.op == Op::Delete {
            // More rows than any run here deletes (about 60,000/s at best).
            let rows = (self.args.secs * 100_000.0) as u64;
            let prefix = created_prefix(target.tag(), job);
            progress(target, job, "loading sessions to delete");
            data::load_deletable(&mut self.stats, &prefix, rows)
                .await
                .expect("loading sessions to delete");
        }
        if job.op == Op::DeleteUser {
            let users = (self.args.secs * 20_000.0) as u64;
            let prefix = created_prefix(target.tag(), job);
            progress(target, job, "loading users to delete the sessions of");
            data::load_deletable_users(&mut self.stats, &prefix, users)
                .await
                .expect("loading users and sessions to delete");
        }
        target.settle().await;
        let cache = if job.op == Op::ValidateSession && target.cached().is_some() {
            progress(target, job, "warming the cache");
            self.warm(target, job).await
        } else {
            None
        };
        data::reset_statements(&mut self.stats).await;
        if let Some(standby) = &mut self.standby_stats {
            data::reset_statements(standby).await;
        }
        progress(target, job, &format!("running {:.0}s", self.args.secs));
        let run = run_for(target, job, self.args.secs).await;
        let mut stmts = data::statements_per_op(&mut self.stats, run.ops).await;
        if let (Some(standby), Some(n)) = (&mut self.standby_stats, &mut stmts) {
            *n += data::statements_per_op(standby, run.ops)
                .await
                .unwrap_or(0.0);
        }
        self.record(target, job, phase, &run, stmts);
        if let Some(before) = cache {
            self.cache_run(target, job, before);
        }
        run
    }

    /// Prints the JSON line of a run and adds its table row.
    fn record(
        &mut self,
        target: &Target,
        job: Job,
        phase: Option<&str>,
        run: &Run,
        stmts: Option<f64>,
    ) {
        let mut line = report::run_line(target.name(), job, run, stmts);
        let mut label = job.op.name().to_owned();
        if let Some(phase) = phase {
            line["phase"] = json!(phase);
            label = format!("{label}/{phase}");
        }
        println!("{line}");
        let row = Row::new(target.name(), label, job, run, stmts);
        self.report.rows.push(row);
    }

    pub fn max_sessions(&self) -> u64 {
        self.args.sessions.iter().copied().max().unwrap_or_default()
    }

    /// `--scenario cleanup`: per run, loads `--expired` expired sessions
    /// next to the live ones, runs the operation for `--secs`, then again
    /// while `delete_expired_sessions` removes the expired ones.
    pub async fn cleanup(&mut self) -> Res<()> {
        let (live, expired) = (self.max_sessions(), self.args.expired);
        self.load_live(live).await?;
        let batches = Batches::install();
        for (target, job) in self.jobs(live) {
            data::load_sessions(&mut self.stats, live, live + expired, Expiry::Expired).await?;
            let before = self.timed(&target, job, None).await;
            batches.take();
            let (during, rows, secs) = self.during_cleanup(&target, job).await?;
            let cleanup = Cleanup {
                imp: target.name(),
                job,
                expired,
                batch_size: self.args.cleanup_batch,
                rows,
                secs,
                batches: batches.take(),
                before: before.headline(),
                during: during.headline(),
            };
            println!("{}", cleanup.json());
            self.report.cleanups.push(cleanup);
        }
        Ok(())
    }

    /// Runs `job` until the cleanup is done; returns the run, the rows the
    /// cleanup deleted and how long it took.
    async fn during_cleanup(&mut self, target: &Arc<Target>, job: Job) -> Res<(Run, u64, f64)> {
        let adapter = PostgresAdapter::new(self.pool.clone());
        let batch = self.args.cleanup_batch;
        progress(target, job, "during delete_expired_sessions");
        let cleanup = async |_: &AtomicU64| {
            let start = Instant::now();
            let now = Utc::now();
            let mut rows = Ok(0);
            // What `delete_expired_sessions` does, with the bench's batch size.
            while let Ok(total) = rows {
                match adapter.delete_expired_batch(now, batch).await {
                    Ok(n) if n < u64::from(batch) => {
                        rows = Ok(total + n);
                        break;
                    }
                    Ok(n) => rows = Ok(total + n),
                    Err(e) => rows = Err(e),
                }
            }
            (rows, start.elapsed().as_secs_f64())
        };
        let (run, (rows, secs)) = measure(target, job, cleanup).await;
        self.record(target, job, Some("cleanup"), &run, None);
        Ok((run, rows?, secs))
    }

    /// `--soak SECS`: runs for `--secs`, sampling VmRSS every
    /// `--sample-secs`.
    pub async fn soak(&mut self) -> Res<()> {
        let sessions = self.max_sessions();
        self.load_live(sessions).await?;
        let (secs, every) = (self.args.secs, self.args.sample_secs);
        for (target, job) in self.jobs(sessions) {
            let name = target.name();
            let sample =
                async |started: &AtomicU64| sample_rss(name, job, secs, every, started).await;
            let (run, rss_kb) = measure(&target, job, sample).await;
            self.record(&target, job, Some("soak"), &run, None);
            let secs = run.secs;
            let soak = Soak {
                imp: name,
                job,
                secs,
                rss_kb,
            };
            self.report.soaks.push(soak);
        }
        Ok(())
    }
}

/// Samples this process's VmRSS every `every` seconds for `secs` seconds,
/// printing each sample as a JSON line.
async fn sample_rss(imp: &str, job: Job, secs: f64, every: f64, started: &AtomicU64) -> Vec<u64> {
    let start = Instant::now();
    let mut samples = Vec::new();
    loop {
        let left = secs - start.elapsed().as_secs_f64();
        if left <= 0.0 {
            return samples;
        }
        tokio::time::sleep(Duration::from_secs_f64(every.min(left))).await;
        let (t, kb) = (
            start.elapsed().as_secs_f64(),
            memory_kb("VmRSS").unwrap_or(0),
        );
        let ops = started.load(Ordering::Relaxed);
        println!(
            "{}",
            json!({"impl": imp, "op": job.op.name(), "concurrency": job.c, "phase": "soak_sample",
                   "t_secs": round(t, 1), "ops": ops, "vm_rss_kb": kb})
        );
        eprint!(
            "\r{imp:>20} {:<16} c={:<3} soak {t:.0}/{secs:.0}s VmRSS {kb} kB   ",
            job.op.name(),
            job.c
        );
        samples.push(kb);
    }
}

/// The progress line on stderr.
pub fn progress(target: &Target, job: Job, what: &str) {
    eprint!(
        "\r{:>20} {:<16} sessions={:<8} c={:<3} {what}...   ",
        target.name(),
        job.op.name(),
        job.sessions,
        job.c
    );
}
