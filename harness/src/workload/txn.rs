//! `txn`: Elle's list-append over multi-key transactions. Each transaction
//! is one to four micro-operations, `append k e` and `read k`, on a small
//! set of keys in use at once; a key retires after a bounded number of
//! appends and a fresh one takes its place, so that reads stay short and
//! the version order of every key is inferable. Every appended element is
//! unique (one counter for the run). A transaction is one CapuKV `Txn`
//! (appends and gets in one branch, no compares), checked by
//! `checker::txn` for strict serializability.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use capukv::proto::txn_op_response;
use checker::ModelKind;
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::{Value, json};

use super::{F, Op, Workload};

/// Keys in use at once, and appends a key takes before it retires (Elle's
/// defaults are of this size: few keys make transactions collide).
const ACTIVE_KEYS: usize = 5;
const APPENDS_PER_KEY: u64 = 32;
const MAX_MOPS: usize = 4;

struct Keys {
    active: Vec<u64>,
    appends: Vec<u64>,
    next: u64,
}

pub struct Txn {
    keys: Mutex<Keys>,
    next_element: AtomicU64,
}

impl Txn {
    pub fn new() -> Txn {
        let keys =
            Keys { active: (0..ACTIVE_KEYS as u64).collect(), appends: vec![0; ACTIVE_KEYS], next: ACTIVE_KEYS as u64 };
        Txn { keys: Mutex::new(keys), next_element: AtomicU64::new(1) }
    }
}

impl Default for Txn {
    fn default() -> Txn {
        Txn::new()
    }
}

pub fn key_name(k: u64) -> String {
    format!("t{k}")
}

impl Workload for Txn {
    fn model(&self) -> ModelKind {
        ModelKind::Kv
    }

    fn transactional(&self) -> bool {
        true
    }

    fn next_op(&self, rng: &mut SmallRng) -> Op {
        let n = rng.random_range(1..=MAX_MOPS);
        let mut keys = self.keys.lock().expect("not poisoned");
        let mops: Vec<Value> = (0..n)
            .map(|_| {
                let slot = rng.random_range(0..keys.active.len());
                let key = key_name(keys.active[slot]);
                if rng.random_bool(0.5) {
                    keys.appends[slot] += 1;
                    if keys.appends[slot] == APPENDS_PER_KEY {
                        (keys.active[slot], keys.appends[slot]) = (keys.next, 0);
                        keys.next += 1;
                    }
                    json!(["append", key, self.next_element.fetch_add(1, Ordering::Relaxed)])
                } else {
                    json!(["r", key, null])
                }
            })
            .collect();
        Op { f: F::Txn, key: String::new(), value: Value::Array(mops) }
    }

    fn keys(&self) -> Vec<String> {
        let next = self.keys.lock().expect("not poisoned").next;
        (0..next).map(key_name).collect()
    }

    /// One transaction per 64 keys (under the store's 128 operations).
    fn final_reads(&self, keys: &[String]) -> Vec<(Vec<String>, Op)> {
        keys.chunks(64)
            .map(|chunk| {
                let mops: Vec<Value> = chunk.iter().map(|k| json!(["r", k, null])).collect();
                (chunk.to_vec(), Op { f: F::Txn, key: String::new(), value: Value::Array(mops) })
            })
            .collect()
    }
}

/// Whether a transaction only reads, by the store's own rule (such a one
/// takes no session and leaves no write in the log).
pub fn reads_only(mops: &Value) -> bool {
    capukv::state_machine::reads_only(&request(mops))
}

/// The transaction a list of micro-operations asks for.
pub fn request(mops: &Value) -> capukv::proto::TxnRequest {
    let success = mops
        .as_array()
        .map(|mops| {
            mops.iter()
                .map(|m| {
                    let key = m[1].as_str().unwrap_or_default().to_string();
                    if m[0] == "append" {
                        capukv::txn::append(key, format!("{},", m[2]))
                    } else {
                        capukv::txn::get(key)
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    capukv::proto::TxnRequest { success, ..Default::default() }
}

/// The micro-operations with their reads filled in from the answer.
pub fn completed(mops: &Value, answer: &capukv::proto::TxnResponse) -> Value {
    let mut done = mops.clone();
    if let Some(items) = done.as_array_mut() {
        for (m, r) in items.iter_mut().zip(&answer.responses) {
            if let Some(txn_op_response::Result::Get(g)) = &r.result {
                m[2] = match &g.kv {
                    None => Value::Null,
                    Some(kv) => list(&kv.value),
                };
            }
        }
    }
    done
}

/// A key's value, `1,2,3,`, as the list `[1, 2, 3]` (an element that is not
/// a number is kept as text, for the checker to call a phantom).
fn list(value: &[u8]) -> Value {
    let text = String::from_utf8_lossy(value);
    Value::Array(
        text.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>().map_or_else(|_| json!(s), |n| json!(n)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use capukv::ClientError;
    use capukv::proto::{GetRequest, GetResponse, KeyValue, TxnOpResponse, TxnResponse, txn_op};
    use rand::SeedableRng;

    #[test]
    fn keys_rotate_and_elements_are_unique() {
        let w = Txn::new();
        let mut rng = SmallRng::seed_from_u64(3);
        let mut elements = std::collections::HashSet::new();
        for _ in 0..2_000 {
            let op = w.next_op(&mut rng);
            for m in op.value.as_array().unwrap() {
                if m[0] == "append" {
                    assert!(elements.insert(m[2].as_u64().unwrap()), "element {} twice", m[2]);
                }
            }
        }
        let keys = w.keys();
        assert!(keys.len() > ACTIVE_KEYS, "keys retire: {}", keys.len());
        let per_key_bound = APPENDS_PER_KEY as usize;
        assert!(elements.len() <= keys.len() * per_key_bound);
    }

    #[test]
    fn a_transaction_goes_out_and_comes_back_as_micro_operations() {
        let mops = json!([["append", "t1", 7], ["r", "t1", null], ["r", "t2", null]]);
        let req = request(&mops);
        assert_eq!(req.success.len(), 3);
        assert!(matches!(&req.success[0].op, Some(txn_op::Op::Append(a)) if a.suffix == "7,"));
        assert!(matches!(&req.success[1].op, Some(txn_op::Op::Get(GetRequest { key, .. })) if key == "t1"));
        let get = |v: Option<&str>| TxnOpResponse {
            result: Some(txn_op_response::Result::Get(GetResponse {
                kv: v.map(|v| KeyValue { value: v.to_string().into(), ..Default::default() }),
                revision: 4,
            })),
        };
        let answer = TxnResponse {
            succeeded: true,
            responses: vec![TxnOpResponse::default(), get(Some("3,7,")), get(None)],
            revision: 4,
        };
        assert_eq!(completed(&mops, &answer), json!([["append", "t1", 7], ["r", "t1", [3, 7]], ["r", "t2", null]]));
        assert_eq!(list(b"1,x,"), json!([1, "x"]));
    }

    #[test]
    fn final_reads_cover_every_key_in_transactions_of_at_most_64_reads() {
        let keys: Vec<String> = (0..130).map(key_name).collect();
        let reads = Txn::new().final_reads(&keys);
        assert_eq!(reads.iter().map(|(k, _)| k.len()).collect::<Vec<_>>(), vec![64, 64, 2]);
        let (chunk, op) = &reads[2];
        assert_eq!(op.value, json!([["r", "t128", null], ["r", "t129", null]]));
        assert_eq!(chunk, &vec!["t128".to_string(), "t129".to_string()]);
        assert!(reads_only(&op.value) && !reads_only(&json!([["append", "t1", 3]])));
        // A read-only transaction that went wrong changed nothing: fail, not info.
        let timeout = || ClientError::Timeout { timeout: std::time::Duration::from_secs(1), last: "-".into() };
        assert_eq!(super::super::failed(op, timeout()).kind, checker::EventType::Fail);
        let write = Op { f: F::Txn, key: String::new(), value: json!([["r", "t1", null], ["append", "t1", 4]]) };
        assert_eq!(super::super::failed(&write, timeout()).kind, checker::EventType::Info);
    }
}
