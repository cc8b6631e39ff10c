//! `register` (one key) and `cas-register` (independent keys): reads, writes
//! and compare-and-sets of small integers, checked as a cas-register; and
//! `register-unique` and `cas-register-unique`, the same with every written
//! value new.

use checker::ModelKind;
use rand::rngs::SmallRng;

use super::values::Values;
use super::{Op, RotatingKeys, Workload};

pub struct Register {
    keys: Option<RotatingKeys>,
    values: Values,
}

impl Register {
    pub fn single() -> Register {
        Register { keys: None, values: Values::Small }
    }

    pub fn independent(ops_per_key: u64) -> Register {
        Register { keys: Some(RotatingKeys::new(ops_per_key)), values: Values::Small }
    }

    /// Every value written is new (the `-unique` workloads).
    pub fn unique(self) -> Register {
        Register { values: Values::unique(), ..self }
    }
}

impl Workload for Register {
    fn model(&self) -> ModelKind {
        ModelKind::CasRegister
    }

    fn next_op(&self, rng: &mut SmallRng) -> Op {
        let key = self.keys.as_ref().map_or_else(|| "r".to_string(), RotatingKeys::next);
        self.values.op(key, rng)
    }

    fn keys(&self) -> Vec<String> {
        self.keys.as_ref().map_or_else(|| vec!["r".to_string()], RotatingKeys::all)
    }
}
