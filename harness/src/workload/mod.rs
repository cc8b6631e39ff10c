//! Workloads: what the logical clients ask of the store. A workload chooses
//! operations and names the model the checker judges them by; [`execute`]
//! carries one operation to CapuKV and classifies the outcome.

pub mod append;
mod kv;
mod register;
pub mod txn;
mod values;

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use capukv::{Client, ClientError};
use checker::{EventType, ModelKind};
use rand::rngs::SmallRng;
use serde_json::{Value, json};
use tonic::Code;

use crate::options::{RunOptions, WorkloadKind};

pub use append::Append;
pub use kv::Kv;
pub use register::Register;
pub use txn::Txn;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F {
    Read,
    Write,
    Cas,
    Delete,
    Append,
    /// A transaction of micro-operations (the op's value); no key of its own.
    Txn,
}

impl F {
    pub fn name(self) -> &'static str {
        match self {
            F::Read => "read",
            F::Write => "write",
            F::Cas => "cas",
            F::Delete => "delete",
            F::Append => "append",
            F::Txn => "txn",
        }
    }
}

/// An operation as invoked: `value` is what the history's invoke line holds.
#[derive(Clone, Debug)]
pub struct Op {
    pub f: F,
    pub key: String,
    pub value: Value,
}

impl Op {
    /// A read, or a transaction of reads only: served without the log, so
    /// it changes nothing and carries no write id.
    pub fn reads_only(&self) -> bool {
        self.f == F::Read || (self.f == F::Txn && txn::reads_only(&self.value))
    }
}

/// How an operation completed.
#[derive(Clone, Debug)]
pub struct Completion {
    pub kind: EventType,
    pub value: Value,
    pub error: Option<String>,
    /// The store revision of the answer, and the key's mod revision as the
    /// operation found it (0: absent), where the answer gives them.
    pub revision: Option<u64>,
    pub mod_revision: Option<u64>,
}

pub trait Workload: Send + Sync {
    /// The model the history is checked against.
    fn model(&self) -> ModelKind;
    fn next_op(&self, rng: &mut SmallRng) -> Op;
    /// Every key operations may have touched, for the final reads.
    fn keys(&self) -> Vec<String>;
    /// Whether values are strings (append) rather than integers.
    fn string_values(&self) -> bool {
        false
    }
    /// Whether operations are transactions, checked for strict
    /// serializability rather than per key.
    fn transactional(&self) -> bool {
        false
    }
    /// The operations that read `keys` after the run, each with the keys it
    /// reads (in the order its answer gives them): one read per key.
    fn final_reads(&self, keys: &[String]) -> Vec<(Vec<String>, Op)> {
        keys.iter().map(|k| (vec![k.clone()], Op { f: F::Read, key: k.clone(), value: Value::Null })).collect()
    }
    /// Acknowledged writes missing from the final reads, by key, for a
    /// workload that can tell (`None`: this one cannot).
    fn lost_writes(
        &self,
        _events: &[checker::Event],
        _final_reads: &std::collections::BTreeMap<String, Option<String>>,
    ) -> Option<std::collections::BTreeMap<String, Vec<String>>> {
        None
    }
}

pub fn build(options: &RunOptions) -> Box<dyn Workload> {
    match options.workload {
        WorkloadKind::Register => Box::new(Register::single()),
        WorkloadKind::RegisterUnique => Box::new(Register::single().unique()),
        WorkloadKind::CasRegister => Box::new(Register::independent(options.ops_per_key)),
        WorkloadKind::CasRegisterUnique => Box::new(Register::independent(options.ops_per_key).unique()),
        WorkloadKind::Kv => Box::new(Kv::new(5)),
        WorkloadKind::KvUnique => Box::new(Kv::unique(5)),
        WorkloadKind::Append => Box::new(Append::new(options.ops_per_key)),
        WorkloadKind::Txn => Box::new(Txn::new()),
    }
}

/// Keys that move on after a number of operations, like Jepsen's independent generator.
pub struct RotatingKeys {
    ops: AtomicU64,
    per_key: u64,
}

impl RotatingKeys {
    pub fn new(per_key: u64) -> RotatingKeys {
        RotatingKeys { ops: AtomicU64::new(0), per_key: per_key.max(1) }
    }

    pub fn next(&self) -> String {
        format!("k{}", self.ops.fetch_add(1, Ordering::Relaxed) / self.per_key)
    }

    pub fn all(&self) -> Vec<String> {
        let last = self.ops.load(Ordering::Relaxed).saturating_sub(1) / self.per_key;
        (0..=last).map(|k| format!("k{k}")).collect()
    }
}

fn decode(bytes: &[u8], strings: bool) -> Value {
    let text = String::from_utf8_lossy(bytes);
    if !strings && let Ok(n) = text.parse::<i64>() {
        return json!(n);
    }
    json!(text)
}

pub(crate) fn encode(value: &Value) -> Bytes {
    match value {
        Value::String(s) => Bytes::from(s.clone()),
        other => Bytes::from(other.to_string()),
    }
}

/// Whether an error proves the operation did not happen. Only the server's
/// validation (`InvalidArgument`, before anything is proposed) on a request
/// none of whose attempts may have reached a leader does, and having no
/// endpoint at all. Everything else may hide a write that took effect: a
/// timeout, a lost connection, an answer too large to decode (tonic's
/// `OutOfRange`, after the write applied), and any refusal that followed an
/// attempt whose outcome is unknown (the client library says so with
/// [`ClientError::Indefinite`]).
fn certainly_not_applied(error: &ClientError) -> bool {
    match error {
        ClientError::Rejected(status) => status.code() == Code::InvalidArgument,
        // The session expired on this attempt, and no earlier one may have
        // reached a leader (that would be Indefinite); or the write was never sent.
        ClientError::NoEndpoints | ClientError::SessionExpired { .. } | ClientError::NoSession(_) => true,
        // Refused, this attempt and (else it would be Indefinite) every earlier one.
        ClientError::Compacted { .. } => true,
        ClientError::BadEndpoint { .. } | ClientError::Timeout { .. } | ClientError::Indefinite { .. } => false,
    }
}

pub fn failed(op: &Op, error: ClientError) -> Completion {
    // A read changes nothing (nor does a transaction of reads only):
    // whatever went wrong, it certainly had no effect.
    let reads_only = op.reads_only();
    let kind = if reads_only || certainly_not_applied(&error) { EventType::Fail } else { EventType::Info };
    // A transaction's value is its invocation's: reads unknown (null).
    Completion { kind, value: op.value.clone(), error: Some(error.to_string()), revision: None, mod_revision: None }
}

fn ok(value: Value, revision: u64, mod_revision: Option<u64>) -> Completion {
    Completion { kind: EventType::Ok, value, error: None, revision: Some(revision), mod_revision }
}

/// The mod revision of a pair as found (an absent key's is 0).
fn found(kv: &Option<capukv::proto::KeyValue>) -> Option<u64> {
    Some(kv.as_ref().map_or(0, |kv| kv.mod_revision))
}

/// Carries `op` out. `reader` serves reads (a node-local client for stale reads).
pub async fn execute(client: &Client, reader: &Client, op: &Op, strings: bool) -> Completion {
    let key = Bytes::from(op.key.clone());
    match op.f {
        F::Read => match reader.get_at(key).await {
            Ok((kv, revision)) => {
                ok(kv.as_ref().map_or(Value::Null, |kv| decode(&kv.value, strings)), revision, found(&kv))
            }
            Err(e) => failed(op, e),
        },
        F::Write => match client.set(key, encode(&op.value)).await {
            Ok(revision) => ok(op.value.clone(), revision, None),
            Err(e) => failed(op, e),
        },
        F::Delete => match client.delete_at(key).await {
            Ok((previous, revision)) => ok(Value::Null, revision, found(&previous)),
            Err(e) => failed(op, e),
        },
        F::Append => match client.append(key, encode(&op.value)).await {
            Ok(kv) => ok(op.value.clone(), kv.mod_revision, None),
            Err(e) => failed(op, e),
        },
        F::Txn => match client.txn(txn::request(&op.value)).await {
            Ok(answer) => ok(txn::completed(&op.value, &answer), answer.revision, None),
            Err(e) => failed(op, e),
        },
        F::Cas => {
            let (expected, new) = (&op.value[0], &op.value[1]);
            match client.cas_at(key, Some(encode(expected)), encode(new)).await {
                Ok(r) if r.succeeded => ok(op.value.clone(), r.revision, found(&r.current)),
                Ok(r) => Completion {
                    kind: EventType::Fail,
                    value: op.value.clone(),
                    error: Some("mismatch".into()),
                    revision: Some(r.revision),
                    mod_revision: found(&r.current),
                },
                Err(e) => failed(op, e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tonic::Status;

    fn write() -> Op {
        Op { f: F::Write, key: "k".into(), value: json!(1) }
    }

    #[test]
    fn a_write_is_fail_only_when_it_certainly_did_not_happen() {
        let kind = |e: ClientError| failed(&write(), e).kind;
        assert_eq!(kind(ClientError::Rejected(Status::invalid_argument("the key is empty"))), EventType::Fail);
        assert_eq!(kind(ClientError::NoEndpoints), EventType::Fail);
        // tonic's answer-too-large-to-decode comes after the write applied.
        assert_eq!(kind(ClientError::Rejected(Status::out_of_range("decoded message too large"))), EventType::Info);
        assert_eq!(kind(ClientError::Rejected(Status::resource_exhausted("too big"))), EventType::Info);
        let bad = ClientError::BadEndpoint { endpoint: "x".into(), reason: "redirected to nonsense".into() };
        assert_eq!(kind(bad), EventType::Info);
        assert_eq!(kind(ClientError::Timeout { timeout: Duration::from_secs(1), last: "-".into() }), EventType::Info);
        // A refusal after an attempt that may have reached a leader.
        let after = ClientError::Indefinite {
            last: Box::new(ClientError::Rejected(Status::invalid_argument("stale"))),
            earlier: "no answer".into(),
        };
        assert_eq!(kind(after), EventType::Info);
        // A write on an expired session applied nothing, unless an earlier
        // attempt (before the eviction) may have: then the write is in doubt.
        let expired = || ClientError::SessionExpired { session: 3, message: "evicted".into() };
        assert_eq!(kind(expired()), EventType::Fail);
        assert_eq!(
            kind(ClientError::Indefinite { last: Box::new(expired()), earlier: "no answer".into() }),
            EventType::Info
        );
        let never_sent = ClientError::NoSession(Box::new(ClientError::Timeout {
            timeout: Duration::from_secs(1),
            last: "-".into(),
        }));
        assert_eq!(kind(never_sent), EventType::Fail);
        // A read changes nothing: whatever went wrong, it did not happen.
        let read = Op { f: F::Read, key: "k".into(), value: json!(null) };
        assert_eq!(failed(&read, ClientError::Rejected(Status::out_of_range("x"))).kind, EventType::Fail);
    }
}
