//! Timing many concurrent calls, CPU time and memory of this process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::targets::{Job, Target};

/// Latencies in microseconds: exact below 128 us, then 64 buckets per
/// power of two (at most 1.6% wide). Fixed size, so that a long run does
/// not grow the bench's own memory.
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const EXACT: u64 = 128;
const PER_OCTAVE: u64 = 64;
/// Latencies are capped at 2^40 us; the highest bucket holds that.
const BUCKETS: usize = (EXACT + 33 * PER_OCTAVE) as usize;

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }

    fn index(us: u64) -> usize {
        let us = us.min((1 << 40) - 1);
        if us < EXACT {
            return us as usize;
        }
        let shift = u64::from(63 - us.leading_zeros()) - 6;
        (EXACT + (shift - 1) * PER_OCTAVE + ((us >> shift) - PER_OCTAVE)) as usize
    }

    /// The middle of bucket `index`.
    fn value(index: usize) -> u64 {
        let index = index as u64;
        if index < EXACT {
            return index;
        }
        let shift = (index - EXACT) / PER_OCTAVE + 1;
        let low = ((index - EXACT) % PER_OCTAVE + PER_OCTAVE) << shift;
        low + (1 << shift) / 2
    }

    pub fn record(&mut self, us: u64) {
        self.counts[Self::index(us)] += 1;
        self.total += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// The latency below which a share `p` of the calls finished.
    pub fn percentile(&self, p: f64) -> u64 {
        let rank = ((self.total as f64 * p) as u64 + 1).min(self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank && seen > 0 {
                return Self::value(index);
            }
        }
        0
    }
}

/// The outcome of one run.
pub struct Run {
    pub ops: u64,
    pub secs: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub cpu_us_per_op: f64,
    pub server_cpu_us_per_op: f64,
}

impl Run {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }

    pub fn headline(&self) -> crate::report::Headline {
        (self.ops_per_sec(), self.p50_us, self.p99_us)
    }
}

/// Runs `job` on `target` from `job.c` tasks until `until` (given the
/// count of calls started so far) completes; returns the run and what
/// `until` returned.
pub async fn measure<R>(
    target: &Arc<Target>,
    job: Job,
    until: impl AsyncFnOnce(&AtomicU64) -> R,
) -> (Run, R) {
    let started = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clocks = Clocks::start();
    let tasks: Vec<_> = (0..job.c)
        .map(|_| {
            let (target, started, stop) = (target.clone(), started.clone(), stop.clone());
            tokio::spawn(worker(target, job, started, stop))
        })
        .collect();
    let out = until(&started).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Histogram::new();
    for task in tasks {
        latencies.merge(&task.await.expect("bench task"));
    }
    (clocks.finish(&latencies), out)
}

/// [`measure`] for `secs` seconds.
pub async fn run_for(target: &Arc<Target>, job: Job, secs: f64) -> Run {
    let sleep = async |_: &AtomicU64| tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    measure(target, job, sleep).await.0
}

/// One task of a run: calls one after another until told to stop.
async fn worker(
    target: Arc<Target>,
    job: Job,
    started: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Histogram {
    let mut latencies = Histogram::new();
    while !stop.load(Ordering::Relaxed) {
        let i = started.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        target.call(job, i).await;
        latencies.record(t.elapsed().as_micros() as u64);
    }
    latencies
}

/// Wall clock and CPU time at the start of a run.
struct Clocks {
    start: Instant,
    cpu: u64,
    server_cpu: u64,
}

impl Clocks {
    fn start() -> Self {
        Self {
            cpu: cpu_micros(),
            server_cpu: server_cpu_micros(),
            start: Instant::now(),
        }
    }

    fn finish(self, latencies: &Histogram) -> Run {
        let secs = self.start.elapsed().as_secs_f64();
        let ops = latencies.total;
        let per_op = |us: u64| us as f64 / ops.max(1) as f64;
        Run {
            ops,
            secs,
            p50_us: latencies.percentile(0.50),
            p99_us: latencies.percentile(0.99),
            cpu_us_per_op: per_op(cpu_micros().saturating_sub(self.cpu)),
            server_cpu_us_per_op: per_op(server_cpu_micros().saturating_sub(self.server_cpu)),
        }
    }
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

/// A memory figure of this process in kB from `/proc/self/status`:
/// `VmRSS` (now) or `VmHWM` (peak).
pub fn memory_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn buckets_are_ordered_and_narrow() {
        let mut last = 0;
        for us in (0..200_000).chain([1 << 30, (1 << 40) - 1, u64::MAX]) {
            let index = Histogram::index(us);
            assert!(index >= last && index < super::BUCKETS);
            last = index;
            let value = Histogram::value(index).min((1 << 40) - 1) as f64;
            assert!((value - us.min((1 << 40) - 1) as f64).abs() <= value * 0.016 + 0.5);
        }
    }
}
