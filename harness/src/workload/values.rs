//! The values a register's writes and cas write: small integers, as in
//! Jepsen's register tests (cas succeeds often; a read may match several
//! writes), or values never written twice, for the `-unique` workloads: with
//! those each read names the one write (or cas) it saw, so the checker
//! decides a key by inference, without a search, however many clients are
//! in flight, and a stale read never passes for the current value by chance.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::json;

use super::{F, Op};

pub enum Values {
    /// 0 to 4, for writes and for both sides of a cas.
    Small,
    Unique(UniqueValues),
}

impl Values {
    pub fn unique() -> Values {
        Values::Unique(UniqueValues::default())
    }

    /// Half reads, a quarter writes, a quarter cas.
    pub fn op(&self, key: String, rng: &mut SmallRng) -> Op {
        let small = |rng: &mut SmallRng| rng.random_range(0..5i64);
        match rng.random_range(0..4) {
            0 | 1 => Op { f: F::Read, key, value: json!(null) },
            2 => {
                let v = match self {
                    Values::Small => small(rng),
                    Values::Unique(u) => u.fresh(&key),
                };
                Op { f: F::Write, key, value: json!(v) }
            }
            _ => {
                let (expected, new) = match self {
                    Values::Small => (small(rng), small(rng)),
                    Values::Unique(u) => (u.expected(&key, rng), u.fresh(&key)),
                };
                Op { f: F::Cas, key, value: json!([expected, new]) }
            }
        }
    }
}

/// Writes and cas write a value never handed out before; a cas expects one
/// of the last values handed out for its key (so that some succeed), or,
/// before any, one that was never written.
#[derive(Default)]
pub struct UniqueValues {
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
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn no_value_is_written_twice_and_cas_expect_recent_values() {
        let values = Values::unique();
        let mut rng = SmallRng::seed_from_u64(7);
        let mut written = std::collections::HashSet::new();
        let mut cas_hits = 0;
        for i in 0..2_000 {
            let op = values.op(format!("k{}", i % 2), &mut rng);
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
