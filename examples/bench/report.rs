//! The results: one JSON line per run on stdout as it finishes, tables on
//! stderr at the end.

use std::time::Duration;

use serde_json::{Value, json};

use crate::POOL;
use crate::measure::{Run, memory_kb};
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
fn median(mut values: Vec<f64>) -> f64 {
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

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub cleanups: Vec<Cleanup>,
    pub soaks: Vec<Soak>,
}

impl Report {
    pub fn print(&self) {
        eprintln!();
        self.print_rows();
        self.print_cleanups();
        self.print_soaks();
        let (hwm, rss) = (memory_kb("VmHWM"), memory_kb("VmRSS"));
        println!(
            "{}",
            json!({"memory": "end", "vm_hwm_kb": hwm, "vm_rss_kb": rss})
        );
        let kb = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
        eprintln!(
            "memory: peak (VmHWM) {} kB, now (VmRSS) {} kB",
            kb(hwm),
            kb(rss)
        );
    }

    fn print_rows(&self) {
        if self.rows.is_empty() {
            return;
        }
        eprintln!(
            "medians over rounds; x raw: median ratio to raw's run of the same round (lowest-highest);\n\
             raw validate_session: raw validate of the sessions the manager validates"
        );
        eprintln!(
            "{:<20} {:<17} {:>8} {:>4} {:>6} {:>9} {:>7} {:>7} {:>16} {:>8} {:>9} {:>9}",
            "impl",
            "op",
            "sessions",
            "c",
            "rounds",
            "ops/s",
            "p50 us",
            "p99 us",
            "x raw",
            "stmts/op",
            "client us",
            "server us"
        );
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_default();
        for s in Summary::all(&self.rows) {
            let r = &self.rows[s.first];
            let ratio = s
                .ratio
                .map(|(m, lo, hi)| format!("{m:.2} ({lo:.2}-{hi:.2})"))
                .unwrap_or_default();
            eprintln!(
                "{:<20} {:<17} {:>8} {:>4} {:>6} {:>9.0} {:>7.0} {:>7.0} {:>16} {:>8} {:>9.1} {:>9.1}",
                r.imp,
                r.label,
                r.job.sessions,
                r.job.c,
                s.rounds,
                s.ops_per_sec,
                s.p50,
                s.p99,
                ratio,
                opt(s.stmts),
                s.cpu,
                s.server_cpu
            );
        }
    }

    fn print_cleanups(&self) {
        if self.cleanups.is_empty() {
            return;
        }
        eprintln!(
            "\ncleanup: delete_expired_sessions while validate runs (ops/s p50/p99 us: before -> during)"
        );
        eprintln!(
            "{:<20} {:>4} {:>8} {:>7} {:>6} {:>7} {:>8} {:>8} {:>15} {:>15} {:>15}",
            "impl",
            "c",
            "rows",
            "batches",
            "size",
            "secs",
            "max ms",
            "mean ms",
            "ops/s",
            "p50 us",
            "p99 us"
        );
        for r in &self.cleanups {
            let (b, d) = (r.before, r.during);
            eprintln!(
                "{:<20} {:>4} {:>8} {:>7} {:>6} {:>7.2} {:>8.1} {:>8.1} {:>15} {:>15} {:>15}",
                r.imp,
                r.job.c,
                r.rows,
                r.batches.len(),
                r.batch_size,
                r.secs,
                r.batch_max_ms(),
                r.batch_mean_ms(),
                format!("{:.0} -> {:.0}", b.0, d.0),
                format!("{} -> {}", b.1, d.1),
                format!("{} -> {}", b.2, d.2)
            );
        }
    }

    fn print_soaks(&self) {
        if self.soaks.is_empty() {
            return;
        }
        eprintln!("\nsoak: VmRSS sampled during the run (kB)");
        eprintln!(
            "{:<20} {:<17} {:>4} {:>6} {:>8} {:>9} {:>9} {:>9} {:>8}",
            "impl", "op", "c", "secs", "samples", "first", "last", "max", "growth"
        );
        for s in &self.soaks {
            let (first, last) = (s.rss_kb.first(), s.rss_kb.last());
            let max = s.rss_kb.iter().max();
            let growth = last.zip(first).map(|(l, f)| *l as i64 - *f as i64);
            let kb = |v: Option<&u64>| v.map_or("?".into(), |v| v.to_string());
            eprintln!(
                "{:<20} {:<17} {:>4} {:>6.0} {:>8} {:>9} {:>9} {:>9} {:>8}",
                s.imp,
                s.job.op.name(),
                s.job.c,
                s.secs,
                s.rss_kb.len(),
                kb(first),
                kb(last),
                kb(max),
                growth.map_or("?".into(), |g| g.to_string())
            );
        }
    }
}
