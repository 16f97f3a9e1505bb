//! The results: one JSON line per run on stdout as it finishes, tables on
//! stderr at the end (and in `BENCHMARKS.md`, see `document.rs`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::POOL;
use crate::measure::{Run, memory_kb};
use crate::table::{Column, Table};
use crate::targets::Job;

/// `x` rounded to `places` decimals, for JSON.
pub fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

/// The protocol's JSON line for one run, plus the bench's extra fields.
pub fn run_line(imp: &str, job: Job, run: &Run, stmts: Option<f64>) -> Value {
    let mut line = json!({
        "impl": imp, "op": job.op.name(), "concurrency": job.c, "pool": POOL,
        "ops": run.ops, "secs": round(run.secs, 3), "ops_per_sec": run.ops_per_sec().round(),
        "p50_us": run.p50_us, "p99_us": run.p99_us, "sessions": job.sessions, "round": job.round,
        "client_cpu_us_per_op": round(run.cpu_us_per_op, 1),
        "server_cpu_us_per_op": round(run.server_cpu_us_per_op, 1),
    });
    if let Some(s) = stmts {
        line["statements_per_op"] = json!(round(s, 2));
    }
    line
}

/// One row of the main table.
pub struct Row {
    pub imp: &'static str,
    /// The operation, with the phase of a scenario (`validate/cleanup`).
    pub label: String,
    pub job: Job,
    pub ops_per_sec: f64,
    pub p50: u64,
    pub p99: u64,
    pub stmts: Option<f64>,
    pub cpu: f64,
    pub server_cpu: f64,
}

impl Row {
    pub fn new(imp: &'static str, label: String, job: Job, run: &Run, stmts: Option<f64>) -> Self {
        Row {
            imp,
            label,
            job,
            ops_per_sec: run.ops_per_sec(),
            p50: run.p50_us,
            p99: run.p99_us,
            stmts,
            cpu: run.cpu_us_per_op,
            server_cpu: run.server_cpu_us_per_op,
        }
    }

    /// The raw run this row compares with: the same operation at the same
    /// scale, concurrency and round (raw's `validate_session` is its
    /// `validate` of the manager's sessions).
    fn base<'a>(&self, rows: &'a [Row]) -> Option<&'a Row> {
        rows.iter().find(|r| {
            r.imp == "raw"
                && self.imp != "raw"
                && r.label == self.label
                && (r.job.sessions, r.job.c, r.job.round)
                    == (self.job.sessions, self.job.c, self.job.round)
        })
    }

    /// Whether two rows are rounds of the same implementation, operation,
    /// scale and concurrency.
    fn same_series(&self, other: &Row) -> bool {
        self.imp == other.imp
            && self.label == other.label
            && (self.job.sessions, self.job.c) == (other.job.sessions, other.job.c)
    }
}

/// The median of `values` (the lower middle one for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(f64::NAN)
}

/// One line of the table: the rounds of one series, summarized.
struct Summary {
    first: usize,
    rounds: usize,
    ops_per_sec: f64,
    p50: f64,
    p99: f64,
    /// The median, lowest and highest ratio to raw's run of the same round.
    ratio: Option<(f64, f64, f64)>,
    stmts: Option<f64>,
    cpu: f64,
    server_cpu: f64,
}

impl Summary {
    /// Every series in `rows`, in the order of its first round.
    fn all(rows: &[Row]) -> Vec<Summary> {
        let mut out = Vec::new();
        for (first, row) in rows.iter().enumerate() {
            if rows[..first].iter().any(|r| r.same_series(row)) {
                continue;
            }
            let series: Vec<&Row> = rows.iter().filter(|r| r.same_series(row)).collect();
            let of = |f: fn(&Row) -> f64| median(series.iter().map(|r| f(r)).collect());
            let ratios: Vec<f64> = series
                .iter()
                .filter_map(|r| r.base(rows).map(|b| r.ops_per_sec / b.ops_per_sec))
                .collect();
            let ratio = (!ratios.is_empty()).then(|| {
                let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let high = ratios.iter().copied().fold(0.0, f64::max);
                (median(ratios), low, high)
            });
            let stmts: Vec<f64> = series.iter().filter_map(|r| r.stmts).collect();
            out.push(Summary {
                first,
                rounds: series.len(),
                ops_per_sec: of(|r| r.ops_per_sec),
                p50: of(|r| r.p50 as f64),
                p99: of(|r| r.p99 as f64),
                ratio,
                stmts: (!stmts.is_empty()).then(|| median(stmts)),
                cpu: of(|r| r.cpu),
                server_cpu: of(|r| r.server_cpu),
            });
        }
        out
    }
}

/// A run's throughput and latency: ops/s, p50 us, p99 us.
pub type Headline = (f64, u64, u64);

/// The cleanup scenario's outcome for one run.
pub struct Cleanup {
    /// The implementation running the concurrent operation.
    pub imp: &'static str,
    pub job: Job,
    pub expired: u64,
    pub batch_size: u32,
    /// Rows deleted and how long `delete_expired_sessions` took.
    pub rows: u64,
    pub secs: f64,
    /// How long each batch took, checkout included.
    pub batches: Vec<Duration>,
    /// The concurrent operation without and during the cleanup.
    pub before: Headline,
    pub during: Headline,
}

impl Cleanup {
    fn batch_ms(&self) -> impl Iterator<Item = f64> {
        self.batches.iter().map(|d| d.as_secs_f64() * 1e3)
    }

    fn batch_max_ms(&self) -> f64 {
        self.batch_ms().fold(0.0, f64::max)
    }

    fn batch_mean_ms(&self) -> f64 {
        self.batch_ms().sum::<f64>() / self.batches.len().max(1) as f64
    }

    pub fn json(&self) -> Value {
        json!({
            "impl": "lucia-diesel", "op": "delete_expired_sessions", "pool": POOL,
            "load_impl": self.imp, "load_op": self.job.op.name(), "concurrency": self.job.c,
            "sessions": self.job.sessions, "expired": self.expired, "rows": self.rows,
            "secs": round(self.secs, 3), "batch_size": self.batch_size,
            "batches": self.batches.len(), "batch_max_ms": round(self.batch_max_ms(), 1),
            "batch_mean_ms": round(self.batch_mean_ms(), 1),
        })
    }
}

/// The soak scenario's memory series for one run.
pub struct Soak {
    pub imp: &'static str,
    pub job: Job,
    pub secs: f64,
    pub rss_kb: Vec<u64>,
}

/// This process's memory at the end: peak (VmHWM) and current (VmRSS), kB.
pub struct Memory {
    pub hwm_kb: Option<u64>,
    pub rss_kb: Option<u64>,
}

impl Memory {
    pub fn now() -> Self {
        Self {
            hwm_kb: memory_kb("VmHWM"),
            rss_kb: memory_kb("VmRSS"),
        }
    }

    /// `memory: peak (VmHWM) N kB, now (VmRSS) N kB`.
    pub fn text(&self) -> String {
        let kb = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
        format!(
            "memory: peak (VmHWM) {} kB, now (VmRSS) {} kB",
            kb(self.hwm_kb),
            kb(self.rss_kb)
        )
    }
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub cleanups: Vec<Cleanup>,
    pub soaks: Vec<Soak>,
    pub cache_runs: Vec<crate::cache::CacheRun>,
    pub lags: Vec<crate::cache::Lag>,
    pub poll_costs: Vec<crate::cache::PollCost>,
}

impl Report {
    /// The tables on stderr and the memory line on stdout and stderr.
    pub fn print(&self, memory: &Memory) {
        for table in self.tables() {
            eprintln!();
            eprintln!("{}", table.text());
        }
        println!(
            "{}",
            json!({"memory": "end", "vm_hwm_kb": memory.hwm_kb, "vm_rss_kb": memory.rss_kb})
        );
        eprintln!("{}", memory.text());
    }

    /// The tables of whatever ran: runs, then cleanups, soaks and the cache's.
    pub fn tables(&self) -> Vec<Table> {
        [
            self.runs_table(),
            self.cleanups_table(),
            self.soaks_table(),
            crate::cache::cache_runs_table(&self.cache_runs),
            crate::cache::triggers_table(&self.rows),
            crate::cache::lag_table(&self.lags),
            crate::cache::poll_table(&self.poll_costs),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Every series of runs: medians over rounds and the ratio to raw.
    fn runs_table(&self) -> Option<Table> {
        if self.rows.is_empty() {
            return None;
        }
        let mut table = Table::new(
            "medians over rounds; x raw: median ratio to raw's run of the same round (lowest-highest);\n\
             raw validate_session: raw validate of the sessions the manager validates",
            vec![
                Column::left("impl", 20),
                Column::left("op", 17),
                Column::right("sessions", 8),
                Column::right("c", 4),
                Column::right("rounds", 6),
                Column::right("ops/s", 9),
                Column::right("p50 us", 7),
                Column::right("p99 us", 7),
                Column::right("x raw", 16),
                Column::right("stmts/op", 8),
                Column::right("client us", 9),
                Column::right("server us", 9),
            ],
        );
        for s in Summary::all(&self.rows) {
            let r = &self.rows[s.first];
            let ratio = s
                .ratio
                .map(|(m, lo, hi)| format!("{m:.2} ({lo:.2}-{hi:.2})"))
                .unwrap_or_default();
            table.push(vec![
                r.imp.into(),
                r.label.clone(),
                r.job.sessions.to_string(),
                r.job.c.to_string(),
                s.rounds.to_string(),
                format!("{:.0}", s.ops_per_sec),
                format!("{:.0}", s.p50),
                format!("{:.0}", s.p99),
                ratio,
                s.stmts.map(|x| format!("{x:.2}")).unwrap_or_default(),
                format!("{:.1}", s.cpu),
                format!("{:.1}", s.server_cpu),
            ]);
        }
        Some(table)
    }

    fn cleanups_table(&self) -> Option<Table> {
        if self.cleanups.is_empty() {
            return None;
        }
        let mut table = Table::new(
            "cleanup: delete_expired_sessions while validate runs (ops/s p50/p99 us: before -> during)",
            vec![
                Column::left("impl", 20),
                Column::right("c", 4),
                Column::right("rows", 8),
                Column::right("batches", 7),
                Column::right("size", 6),
                Column::right("secs", 7),
                Column::right("max ms", 8),
                Column::right("mean ms", 8),
                Column::right("ops/s", 15),
                Column::right("p50 us", 15),
                Column::right("p99 us", 15),
            ],
        );
        for r in &self.cleanups {
            let (b, d) = (r.before, r.during);
            table.push(vec![
                r.imp.into(),
                r.job.c.to_string(),
                r.rows.to_string(),
                r.batches.len().to_string(),
                r.batch_size.to_string(),
                format!("{:.2}", r.secs),
                format!("{:.1}", r.batch_max_ms()),
                format!("{:.1}", r.batch_mean_ms()),
                format!("{:.0} -> {:.0}", b.0, d.0),
                format!("{} -> {}", b.1, d.1),
                format!("{} -> {}", b.2, d.2),
            ]);
        }
        Some(table)
    }

    fn soaks_table(&self) -> Option<Table> {
        if self.soaks.is_empty() {
            return None;
        }
        let mut table = Table::new(
            "soak: VmRSS sampled during the run (kB)",
            vec![
                Column::left("impl", 20),
                Column::left("op", 17),
                Column::right("c", 4),
                Column::right("secs", 6),
                Column::right("samples", 8),
                Column::right("first", 9),
                Column::right("last", 9),
                Column::right("max", 9),
                Column::right("growth", 8),
            ],
        );
        for s in &self.soaks {
            let (first, last) = (s.rss_kb.first(), s.rss_kb.last());
            let max = s.rss_kb.iter().max();
            let growth = last.zip(first).map(|(l, f)| *l as i64 - *f as i64);
            let kb = |v: Option<&u64>| v.map_or("?".into(), |v| v.to_string());
            table.push(vec![
                s.imp.into(),
                s.job.op.name().into(),
                s.job.c.to_string(),
                format!("{:.0}", s.secs),
                s.rss_kb.len().to_string(),
                kb(first),
                kb(last),
                kb(max),
                growth.map_or("?".into(), |g| g.to_string()),
            ]);
        }
        Some(table)
    }
}
