//! `capukv bench-history`: what keeping versions costs, measured on the
//! state machine itself (no network, no Raft) so that only the storage
//! layout shows: bytes on disk per version next to bytes per live key, and
//! read latency at the head next to reads at past revisions, side by side
//! in one run.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prost::Message as _;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::percentile;
use crate::proto::{self, command};
use crate::raft::{Entry, EntryKind};
use crate::state_machine::{self, ReadAt, StateMachine};
use crate::storage::{CF_HISTORY, CF_KV, Identity, Storage, StorageError};

#[derive(Debug, Clone, Copy)]
pub struct HistoryBenchConfig {
    pub keys: u64,
    pub versions_per_key: u64,
    pub value_bytes: usize,
    /// Reads of each kind timed.
    pub reads: usize,
    /// Keys per timed range read.
    pub range_keys: u64,
}

/// Latency of one kind of read, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct ReadLatency {
    pub what: String,
    pub reads: usize,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryCost {
    pub keys: u64,
    pub versions: u64,
    pub value_bytes: usize,
    /// On-disk bytes (SST files, after a full compaction) of the current
    /// records, per live key.
    pub head_bytes_per_key: f64,
    /// On-disk bytes of the version history, per version.
    pub history_bytes_per_version: f64,
    pub reads: Vec<ReadLatency>,
}

/// Writes `keys × versions_per_key` puts into a fresh state machine under
/// `dir` (removed after), then times gets and ranges at the head and at
/// random past revisions.
pub fn measure_history(dir: &Path, cfg: HistoryBenchConfig) -> Result<HistoryCost, StorageError> {
    let dir = dir.join(format!("capukv-bench-history-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| StorageError::Open { dir: dir.clone(), reason: e.to_string() })?;
    let result = run(&dir, cfg);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("key-{i:08}"))
}

fn run(dir: &Path, cfg: HistoryBenchConfig) -> Result<HistoryCost, StorageError> {
    let identity = Identity { node_id: 1, cluster: "bench".into(), voters: vec![1], cluster_id: 1 };
    let storage = Storage::open(dir, &identity)?;
    let mut sm = StateMachine::open(storage.clone(), 1)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let value: Vec<u8> = (0..cfg.value_bytes).map(|_| rng.random_range(b'a'..=b'z')).collect();
    let mut index = 0;
    // Round by round, so that every key has versions all through history.
    for _ in 0..cfg.versions_per_key {
        let entries: Vec<Entry> = (0..cfg.keys)
            .map(|k| {
                index += 1;
                let op = command::Op::Put(proto::PutRequest {
                    key: key(k),
                    value: Bytes::from(value.clone()),
                    omit_previous: true,
                    ..Default::default()
                });
                let data = proto::Command { client_id: 0, seq: 0, op: Some(op) }.encode_to_vec();
                Entry { index, term: 1, kind: EntryKind::Command, data: Bytes::from(data) }
            })
            .collect();
        for chunk in entries.chunks(1000) {
            sm.apply(chunk)?;
        }
    }
    storage.flush_state_machine()?;
    let size = |cf: &str| -> Result<f64, StorageError> {
        let handle = storage.cf(cf);
        storage.db.compact_range_cf(handle, None::<&[u8]>, None::<&[u8]>);
        let bytes = storage
            .db
            .property_int_value_cf(handle, "rocksdb.total-sst-files-size")
            .map_err(|e| storage.corrupt(e.to_string()))?
            .unwrap_or(0);
        Ok(bytes as f64)
    };
    let versions = cfg.keys * cfg.versions_per_key;
    let head_bytes_per_key = size(CF_KV)? / cfg.keys as f64;
    let history_bytes_per_version = size(CF_HISTORY)? / versions as f64;
    let head = sm.revision();
    let mut reads = Vec::new();
    let mut timed = |what: &str, read: &mut dyn FnMut(&mut rand::rngs::StdRng) -> Result<(), StorageError>| {
        let mut us = Vec::with_capacity(cfg.reads);
        for _ in 0..cfg.reads {
            let start = Instant::now();
            read(&mut rng)?;
            us.push(start.elapsed().as_secs_f64() * 1e6);
        }
        us.sort_by(f64::total_cmp);
        let mean_us = us.iter().sum::<f64>() / us.len().max(1) as f64;
        reads.push(ReadLatency {
            what: what.into(),
            reads: us.len(),
            mean_us,
            p50_us: percentile(&us, 0.5),
            p99_us: percentile(&us, 0.99),
        });
        Ok::<(), StorageError>(())
    };
    let storage: Arc<Storage> = storage;
    let fail = |e: state_machine::ReadError| match e {
        state_machine::ReadError::Storage(e) => e,
        other => storage.corrupt(other.to_string()),
    };
    let past = |rng: &mut rand::rngs::StdRng| ReadAt::Revision(rng.random_range(1..head.max(2)));
    timed("get at head", &mut |rng| {
        state_machine::get(&storage, &key(rng.random_range(0..cfg.keys)), &ReadAt::Head).map(drop).map_err(fail)
    })?;
    timed("get at a past revision", &mut |rng| {
        state_machine::get(&storage, &key(rng.random_range(0..cfg.keys)), &past(rng)).map(drop).map_err(fail)
    })?;
    let span = cfg.range_keys.min(cfg.keys);
    let range = |rng: &mut rand::rngs::StdRng| {
        let first = rng.random_range(0..=cfg.keys - span);
        (key(first), key(first + span))
    };
    timed(&format!("range of {span} keys at head"), &mut |rng| {
        let (s, e) = range(rng);
        state_machine::scan(&storage, (&s, &e), 0, &ReadAt::Head).map(drop).map_err(fail)
    })?;
    timed(&format!("range of {span} keys at a past revision"), &mut |rng| {
        let (s, e) = range(rng);
        let at = past(rng);
        state_machine::scan(&storage, (&s, &e), 0, &at).map(drop).map_err(fail)
    })?;
    Ok(HistoryCost {
        keys: cfg.keys,
        versions,
        value_bytes: cfg.value_bytes,
        head_bytes_per_key,
        history_bytes_per_version,
        reads,
    })
}
