//! `register` (one key) and `cas-register` (independent keys): reads, writes
//! and compare-and-sets of small integers, checked as a cas-register.

use checker::ModelKind;
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::json;

use super::{F, Op, RotatingKeys, Workload};

pub struct Register {
    keys: Option<RotatingKeys>,
}

impl Register {
    pub fn single() -> Register {
        Register { keys: None }
    }

    pub fn independent(ops_per_key: u64) -> Register {
        Register { keys: Some(RotatingKeys::new(ops_per_key)) }
    }
}

/// Half reads, a quarter writes, a quarter cas, over values 0 to 4 (few
/// values make cas succeed often and reads ambiguous rarely).
pub fn register_op(key: String, rng: &mut SmallRng) -> Op {
    let v = |rng: &mut SmallRng| rng.random_range(0..5i64);
    match rng.random_range(0..4) {
        0 | 1 => Op { f: F::Read, key, value: json!(null) },
        2 => Op { f: F::Write, key, value: json!(v(rng)) },
        _ => Op { f: F::Cas, key, value: json!([v(rng), v(rng)]) },
    }
}

impl Workload for Register {
    fn model(&self) -> ModelKind {
        ModelKind::CasRegister
    }

    fn next_op(&self, rng: &mut SmallRng) -> Op {
        let key = self.keys.as_ref().map_or_else(|| "r".to_string(), RotatingKeys::next);
        register_op(key, rng)
    }

    fn keys(&self) -> Vec<String> {
        self.keys.as_ref().map_or_else(|| vec!["r".to_string()], RotatingKeys::all)
    }
}
