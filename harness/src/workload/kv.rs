//! `kv`: a few keys, with reads, writes, compare-and-sets and deletes.

use checker::ModelKind;
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::json;

use super::register::register_op;
use super::{F, Op, Workload};

pub struct Kv {
    keys: usize,
}

impl Kv {
    pub fn new(keys: usize) -> Kv {
        Kv { keys }
    }
}

impl Workload for Kv {
    fn model(&self) -> ModelKind {
        ModelKind::Kv
    }

    fn next_op(&self, rng: &mut SmallRng) -> Op {
        let key = format!("k{}", rng.random_range(0..self.keys));
        if rng.random_range(0..10) == 0 { Op { f: F::Delete, key, value: json!(null) } } else { register_op(key, rng) }
    }

    fn keys(&self) -> Vec<String> {
        (0..self.keys).map(|k| format!("k{k}")).collect()
    }
}
