//! `kv`: a few keys, with reads, writes, compare-and-sets and deletes; and
//! `kv-unique`, the same with every written value new.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use checker::ModelKind;
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::json;

use super::register::register_op;
use super::{F, Op, Workload};

pub struct Kv {
    keys: usize,
    unique: Option<UniqueValues>,
}

/// Values for `kv-unique`: writes and cas write a value never written
/// before; a cas expects one of the last values handed out for its key (so
/// that some succeed), or, before any, one that was never written.
struct UniqueValues {
    next: AtomicI64,
    /// The values last handed out to be written, per key, newest last.
    recent: Mutex<HashMap<String, Vec<i64>>>,
}

/// How many of a key's values a cas may expect.
const RECENT: usize = 3;

impl UniqueValues {
    fn fresh(&self, key: &str) -> i64 {
        let v = self.next.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let values = recent.entry(key.to_string()).or_default();
        values.push(v);
        if values.len() > RECENT {
            values.remove(0);
        }
        v
    }

    fn expected(&self, key: &str, rng: &mut SmallRng) -> i64 {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        match recent.get(key).filter(|v| !v.is_empty()) {
            Some(values) => values[rng.random_range(0..values.len())],
            None => -1,
        }
    }

    fn op(&self, key: String, rng: &mut SmallRng) -> Op {
        match rng.random_range(0..4) {
            0 | 1 => Op { f: F::Read, key, value: json!(null) },
            2 => {
                let v = self.fresh(&key);
                Op { f: F::Write, key, value: json!(v) }
            }
            _ => {
                let expected = self.expected(&key, rng);
                let new = self.fresh(&key);
                Op { f: F::Cas, key, value: json!([expected, new]) }
            }
        }
    }
}

impl Kv {
    pub fn new(keys: usize) -> Kv {
        Kv { keys, unique: None }
    }

    /// Every value written is new (`kv-unique`).
    pub fn unique(keys: usize) -> Kv {
        Kv { keys, unique: Some(UniqueValues { next: AtomicI64::new(0), recent: Mutex::new(HashMap::new()) }) }
    }
}

impl Workload for Kv {
    fn model(&self) -> ModelKind {
        ModelKind::Kv
    }

    fn next_op(&self, rng: &mut SmallRng) -> Op {
        let key = format!("k{}", rng.random_range(0..self.keys));
        if rng.random_range(0..10) == 0 {
            return Op { f: F::Delete, key, value: json!(null) };
        }
        match &self.unique {
            Some(values) => values.op(key, rng),
            None => register_op(key, rng),
        }
    }

    fn keys(&self) -> Vec<String> {
        (0..self.keys).map(|k| format!("k{k}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn kv_unique_never_writes_a_value_twice_and_its_cas_expect_recent_values() {
        let kv = Kv::unique(2);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut written = std::collections::HashSet::new();
        let mut cas_hits = 0;
        for _ in 0..2_000 {
            let op = kv.next_op(&mut rng);
            match op.f {
                F::Write => assert!(written.insert(op.value.as_i64().unwrap()), "{op:?}"),
                F::Cas => {
                    let (expected, new) = (op.value[0].as_i64().unwrap(), op.value[1].as_i64().unwrap());
                    cas_hits += usize::from(written.contains(&expected));
                    assert!(written.insert(new), "{op:?}");
                }
                _ => {}
            }
        }
        assert!(cas_hits > 100, "cas must expect values that were written: {cas_hits}");
    }
}
