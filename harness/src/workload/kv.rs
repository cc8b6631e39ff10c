//! `kv`: a few keys, with reads, writes, compare-and-sets and deletes; and
//! `kv-unique`, the same with every written value new.

use checker::ModelKind;
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::json;

use super::values::Values;
use super::{F, Op, Workload};

pub struct Kv {
    keys: usize,
    values: Values,
}

impl Kv {
    pub fn new(keys: usize) -> Kv {
        Kv { keys, values: Values::Small }
    }

    /// Every value written is new (`kv-unique`).
    pub fn unique(keys: usize) -> Kv {
        Kv { keys, values: Values::unique() }
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
        self.values.op(key, rng)
    }

    fn keys(&self) -> Vec<String> {
        (0..self.keys).map(|k| format!("k{k}")).collect()
    }
}
