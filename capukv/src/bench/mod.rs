//! `capukv bench`: closed-loop load from N concurrent clients for a fixed
//! time, with throughput, latency percentiles and fsyncs per write, against
//! CapuKV or etcd ([`Target`]). The loop is bounded by the
//! duration; nothing runs after it.

mod disk;
mod history;
mod table;
mod target;

use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

pub use disk::{FsyncReport, measure as measure_fsync};
pub use history::{HistoryBenchConfig, HistoryCost, ReadLatency, measure_history};
pub use table::{TableError, comparison_table};
pub use target::{SyncCounts, Target};

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("no etcd leader among {endpoints}{}", .last.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    NoLeader { endpoints: String, last: Option<String> },
    #[error("{0} failed before the run; is the cluster up?")]
    NotReady(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchOp {
    Put,
    Get,
    /// Half puts, half gets.
    Mixed,
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub clients: usize,
    pub duration: Duration,
    pub value_size: usize,
    pub op: BenchOp,
    /// Keys are drawn from `bench-0 .. bench-{keys-1}`.
    pub keys: u64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BenchReport {
    /// `capukv` or `etcd`.
    pub target: String,
    pub op: String,
    pub clients: usize,
    pub operations: u64,
    /// Acknowledged writes among `operations`.
    pub writes: u64,
    pub errors: u64,
    pub seconds: f64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Fsyncs during the run on the leader and over all nodes (CapuKV: log
    /// syncs; etcd: WAL fsyncs, plus backend commits in `cluster_syncs`);
    /// zero when the counters could not be read or the leader changed.
    pub leader_syncs: u64,
    pub cluster_syncs: u64,
    /// Raft entries made durable by the leader's syncs (CapuKV only).
    pub leader_entries_synced: u64,
    /// Share of the machine's CPU time during the run that was busy, and
    /// that the hypervisor gave to others (steal), in percent; from
    /// /proc/stat, zero where it cannot be read.
    #[serde(default)]
    pub cpu_busy_pct: f64,
    #[serde(default)]
    pub steal_pct: f64,
}

impl BenchReport {
    pub fn writes_per_sync(&self) -> f64 {
        ratio(self.leader_entries_synced, self.leader_syncs)
    }

    /// Leader fsyncs per acknowledged write: below 1 when group commit
    /// shares one fsync between writes.
    pub fn leader_syncs_per_write(&self) -> f64 {
        ratio(self.leader_syncs, self.writes)
    }

    pub fn cluster_syncs_per_write(&self) -> f64 {
        ratio(self.cluster_syncs, self.writes)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The `p` quantile of sorted values (nearest rank).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("bench-{i}"))
}

/// What one worker measured: latencies of successful operations in
/// microseconds, acknowledged writes, errors.
struct WorkerResult {
    latencies: Vec<u32>,
    writes: u64,
    errors: u64,
}

pub async fn run(target: Target, endpoints: &[String], cfg: &BenchConfig) -> Result<BenchReport, BenchError> {
    let value = Bytes::from(vec![b'x'; cfg.value_size]);
    // Reads need something to read.
    if cfg.op != BenchOp::Put {
        let preload: Vec<_> = (0..cfg.keys)
            .map(|i| {
                let (mut target, value) = (target.clone(), value.clone());
                tokio::spawn(async move { target.put(key(i), &value).await })
            })
            .collect();
        for p in preload {
            if !p.await.expect("preload task") {
                return Err(BenchError::NotReady("writing the keys to read"));
            }
        }
    }
    // One untimed operation finds the leader and opens the connection, so
    // that the first timed one does not pay for them.
    let mut warm = target.clone();
    let warmed = if cfg.op == BenchOp::Get { warm.get(key(0)).await } else { warm.put(key(0), &value).await };
    if !warmed {
        return Err(BenchError::NotReady("a first operation"));
    }
    let before = target.syncs(endpoints).await;
    let cpu_before = CpuTimes::read();
    let started = Instant::now();
    let deadline = started + cfg.duration;
    let workers: Vec<_> = (0..cfg.clients)
        .map(|_| {
            let (mut target, value, op, keys) = (target.clone(), value.clone(), cfg.op, cfg.keys);
            tokio::spawn(async move {
                let mut r = WorkerResult { latencies: Vec::new(), writes: 0, errors: 0 };
                while Instant::now() < deadline {
                    let k = key(rand::rng().random_range(0..keys));
                    let write = match op {
                        BenchOp::Put => true,
                        BenchOp::Get => false,
                        BenchOp::Mixed => rand::rng().random_bool(0.5),
                    };
                    let t = Instant::now();
                    let ok = if write { target.put(k, &value).await } else { target.get(k).await };
                    if ok {
                        r.latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        r.writes += u64::from(write);
                    } else {
                        r.errors += 1;
                    }
                }
                r
            })
        })
        .collect();
    let mut all: Vec<u32> = Vec::new();
    let (mut writes, mut errors) = (0, 0);
    for w in workers {
        let r = w.await.expect("bench worker");
        all.extend(r.latencies);
        writes += r.writes;
        errors += r.errors;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = CpuTimes::read().zip(cpu_before).map(|(after, before)| after.since(&before)).unwrap_or_default();
    let after = target.syncs(endpoints).await;
    let syncs = match (before, after) {
        (Some(b), Some(a)) if a.leader >= b.leader && a.cluster >= b.cluster => SyncCounts {
            leader: a.leader - b.leader,
            cluster: a.cluster - b.cluster,
            leader_entries: a.leader_entries.saturating_sub(b.leader_entries),
        },
        _ => SyncCounts::default(),
    };
    all.sort_unstable();
    let ms: Vec<f64> = all.iter().map(|&us| us as f64 / 1000.0).collect();
    Ok(BenchReport {
        target: target.name().into(),
        op: format!("{:?}", cfg.op).to_lowercase(),
        clients: cfg.clients,
        operations: all.len() as u64,
        writes,
        errors,
        seconds,
        throughput: all.len() as f64 / seconds,
        p50_ms: percentile(&ms, 0.50),
        p99_ms: percentile(&ms, 0.99),
        p999_ms: percentile(&ms, 0.999),
        max_ms: ms.last().copied().unwrap_or(0.0),
        leader_syncs: syncs.leader,
        cluster_syncs: syncs.cluster,
        leader_entries_synced: syncs.leader_entries,
        cpu_busy_pct: cpu.0,
        steal_pct: cpu.1,
    })
}

/// The machine's CPU time so far, from the first line of /proc/stat.
struct CpuTimes {
    busy: u64,
    steal: u64,
    total: u64,
}

impl CpuTimes {
    fn read() -> Option<CpuTimes> {
        CpuTimes::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// `cpu user nice system idle iowait irq softirq steal ...`
    fn parse(stat: &str) -> Option<CpuTimes> {
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal, ..] = fields[..] else { return None };
        Some(CpuTimes {
            busy: user + nice + system + irq + softirq,
            steal,
            total: user + nice + system + idle + iowait + irq + softirq + steal,
        })
    }

    /// (busy %, steal %) between `before` and now.
    fn since(&self, before: &CpuTimes) -> (f64, f64) {
        let total = self.total.saturating_sub(before.total).max(1) as f64;
        (
            100.0 * self.busy.saturating_sub(before.busy) as f64 / total,
            100.0 * self.steal.saturating_sub(before.steal) as f64 / total,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_shares_come_from_the_first_proc_stat_line() {
        let before = CpuTimes::parse("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3\n").unwrap();
        let after = CpuTimes::parse("cpu  160 0 70 890 10 0 10 60 0 0\n").unwrap();
        let (busy, steal) = after.since(&before);
        // 200 ticks passed: 90 busy (60 user, 20 system, 10 softirq), 90 idle, 20 stolen.
        assert!((busy - 45.0).abs() < 1e-9, "{busy}");
        assert!((steal - 10.0).abs() < 1e-9, "{steal}");
        assert!(CpuTimes::parse("intr 1 2 3\n").is_none());
        assert!(CpuTimes::parse("cpu 1 2 3\n").is_none());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.50), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
