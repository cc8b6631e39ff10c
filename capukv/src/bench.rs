//! `capukv bench`: closed-loop load from N concurrent clients for a fixed
//! time, with throughput and latency percentiles. The loop is bounded by the
//! duration; nothing runs after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

use crate::client::{Client, ClientError};

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

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub op: String,
    pub clients: usize,
    pub operations: u64,
    pub errors: u64,
    pub seconds: f64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Log syncs and entries synced on the leader during the run.
    pub leader_syncs: u64,
    pub leader_entries_synced: u64,
}

impl BenchReport {
    pub fn writes_per_sync(&self) -> f64 {
        if self.leader_syncs == 0 { 0.0 } else { self.leader_entries_synced as f64 / self.leader_syncs as f64 }
    }
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("bench-{i}"))
}

/// Sync counters of whichever endpoint leads now: (syncs, entries).
async fn leader_syncs(client: &Client) -> Option<(String, u64, u64)> {
    for addr in client.endpoints() {
        if let Ok(s) = client.status_of(addr).await
            && s.role == "leader"
        {
            return Some((addr.clone(), s.log_syncs, s.log_entries_synced));
        }
    }
    None
}

pub async fn run(client: Arc<Client>, cfg: &BenchConfig) -> Result<BenchReport, ClientError> {
    let value = Bytes::from(vec![b'x'; cfg.value_size]);
    // Reads need something to read.
    if cfg.op != BenchOp::Put {
        let preload: Vec<_> = (0..cfg.keys)
            .map(|i| {
                let (client, value) = (client.clone(), value.clone());
                tokio::spawn(async move { client.put(key(i), value).await })
            })
            .collect();
        for p in preload {
            p.await.expect("preload task")?;
        }
    }
    let before = leader_syncs(&client).await;
    let started = Instant::now();
    let deadline = started + cfg.duration;
    let workers: Vec<_> = (0..cfg.clients)
        .map(|_| {
            let (client, value, op, keys) = (client.clone(), value.clone(), cfg.op, cfg.keys);
            tokio::spawn(async move {
                let mut latencies: Vec<u32> = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let k = key(rand::rng().random_range(0..keys));
                    let write = match op {
                        BenchOp::Put => true,
                        BenchOp::Get => false,
                        BenchOp::Mixed => rand::rng().random_bool(0.5),
                    };
                    let t = Instant::now();
                    let ok =
                        if write { client.put(k, value.clone()).await.is_ok() } else { client.get(k).await.is_ok() };
                    if ok {
                        latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all: Vec<u32> = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.expect("bench worker");
        all.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = leader_syncs(&client).await;
    let (leader_syncs, leader_entries_synced) = match (before, after) {
        (Some((a, s0, e0)), Some((b, s1, e1))) if a == b => (s1 - s0, e1 - e0),
        _ => (0, 0),
    };
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i] as f64 / 1000.0
    };
    Ok(BenchReport {
        op: format!("{:?}", cfg.op).to_lowercase(),
        clients: cfg.clients,
        operations: all.len() as u64,
        errors,
        seconds,
        throughput: all.len() as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
        max_ms: all.last().map_or(0.0, |&m| m as f64 / 1000.0),
        leader_syncs,
        leader_entries_synced,
    })
}
