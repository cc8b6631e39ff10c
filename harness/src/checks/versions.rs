//! Version history: what the history says held at a revision must still be
//! readable there. Every acknowledged write, delete and successful cas
//! names its own revision, and every read the revision it was served at; the
//! state at a revision never changes afterwards, so after the run a read at
//! that revision (`get --rev`) must give the same value, until compaction
//! discards it (then the store says so, and the probe is skipped).
//!
//! Replica convergence compares the replicas with each other; this compares
//! the store with its own past, so it catches a history that is wrong on
//! every replica alike (versions written at the wrong revision, compaction
//! discarding a version reads can still ask for).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capukv::client::{ClientError, ReadAt};
use checker::{Event, EventType};
use serde_json::Value;

use super::{Finding, Outcome};
use crate::runtime::Access;

const CHECK: &str = "version-history";

/// A value the history says `key` held at `revision` (`None`: absent), and
/// the operation that says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub key: String,
    pub revision: u64,
    pub value: Option<Bytes>,
    pub why: String,
}

/// What the workloads store for a history value (`None`: absent).
fn stored(value: &Value) -> Option<Bytes> {
    (!value.is_null()).then(|| crate::workload::encode(value))
}

/// Every probe the history's ok completions give, one per key and
/// revision, in revision order.
pub fn probes(events: &[Event]) -> Vec<Probe> {
    let mut by_point: BTreeMap<(u64, String), Probe> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == EventType::Ok) {
        let (Some(revision), Some(key)) = (e.revision, e.key.as_ref()) else { continue };
        // Revision 0 is the empty store before any change: no read names it.
        if revision == 0 {
            continue;
        }
        let key = key.to_string();
        let value = match e.f.as_str() {
            "read" | "write" => stored(&e.value),
            "delete" => None,
            "cas" => match e.value.get(1) {
                Some(new) => stored(new),
                None => continue,
            },
            // An append's completion holds its suffix, not the value.
            _ => continue,
        };
        let why = format!("{} by process {} (event {})", e.f, e.process, e.index);
        by_point.entry((revision, key.clone())).or_insert(Probe { key, revision, value, why });
    }
    by_point.into_values().collect()
}

/// At most `count` of `all` (in revision order) worth reading back: half
/// the lowest at or above the compacted revision, where a compaction that
/// discards a version still visible shows, and half spread evenly over the
/// rest.
pub fn choose(all: &[Probe], compacted: u64, count: usize) -> Vec<Probe> {
    let live: Vec<&Probe> = all.iter().filter(|p| p.revision >= compacted).collect();
    if live.len() <= count {
        return live.into_iter().cloned().collect();
    }
    let (edge, rest) = live.split_at(count / 2);
    let spread = count - edge.len();
    let picked = (0..spread).map(|i| rest[i * rest.len() / spread]);
    edge.iter().copied().chain(picked).cloned().collect()
}

/// Reads each probe's key at its revision through `access`, within `within`.
pub async fn check(access: &Access, endpoints: Vec<String>, all: &[Probe], within: Duration) -> Finding {
    if all.is_empty() {
        return Finding::new(CHECK, Outcome::Skipped, "no operation named a revision to read back", vec![]);
    }
    let Ok(mut client) = access.client(endpoints) else {
        return Finding::new(CHECK, Outcome::Skipped, "no client for the cluster", vec![]);
    };
    client.timeout = Duration::from_secs(3);
    // Where compaction stands now (0, and every probe a candidate, if the
    // cluster cannot say).
    let compacted = client.snapshot_list().await.map_or(0, |l| l.compacted);
    let probes = choose(all, compacted, 600);
    let deadline = Instant::now() + within;
    let (mut matched, mut compacted, mut unasked) = (0usize, 0usize, 0usize);
    let mut wrong = Vec::new();
    for p in &probes {
        if Instant::now() >= deadline {
            unasked += 1;
            continue;
        }
        match client.get_as_of(p.key.clone(), &ReadAt::Revision(p.revision)).await {
            Ok((kv, _)) => {
                let found = kv.map(|kv| kv.value);
                if found == p.value {
                    matched += 1;
                } else {
                    wrong.push(format!(
                        "key {:?} at revision {}: {} says {}, a read there gives {}",
                        p.key,
                        p.revision,
                        p.why,
                        shown(&p.value),
                        shown(&found)
                    ));
                }
            }
            Err(ClientError::Compacted { .. }) => compacted += 1,
            Err(_) => unasked += 1,
        }
    }
    judge(matched, compacted, unasked, wrong)
}

fn shown(v: &Option<Bytes>) -> String {
    match v {
        None => "absent".into(),
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
    }
}

fn judge(matched: usize, compacted: usize, unasked: usize, wrong: Vec<String>) -> Finding {
    let counts = format!("{matched} read back, {compacted} compacted, {unasked} not answered");
    if !wrong.is_empty() {
        let summary =
            format!("{} values differ from what the history says held at their revision ({counts})", wrong.len());
        return Finding::new(CHECK, Outcome::Failed, summary, wrong);
    }
    if matched == 0 {
        return Finding::new(CHECK, Outcome::Skipped, format!("nothing could be read back ({counts})"), vec![]);
    }
    Finding::new(CHECK, Outcome::Passed, format!("every value read back at its revision ({counts})"), vec![])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(f: &str, kind: EventType, value: Value, revision: Option<u64>) -> Event {
        let key = Some(checker::Key::Str("k".into()));
        Event { revision, ..Event::new(0, kind, checker::Process::Client(1), f, key, value, 0) }
    }

    #[test]
    fn ok_reads_writes_deletes_and_cas_name_a_value_at_a_revision() {
        let events = vec![
            event("write", EventType::Ok, json!(3), Some(5)),
            event("read", EventType::Ok, json!(3), Some(6)),
            event("delete", EventType::Ok, Value::Null, Some(7)),
            event("cas", EventType::Ok, json!([3, 4]), Some(8)),
            event("append", EventType::Ok, json!("1,"), Some(9)),
            event("write", EventType::Info, json!(9), Some(10)),
            event("read", EventType::Ok, json!("x"), None),
            event("read", EventType::Ok, Value::Null, Some(0)),
        ];
        let p = probes(&events);
        let got: Vec<(u64, Option<Bytes>)> = p.iter().map(|p| (p.revision, p.value.clone())).collect();
        assert_eq!(
            got,
            [(5, Some(Bytes::from("3"))), (6, Some(Bytes::from("3"))), (7, None), (8, Some(Bytes::from("4")))]
        );
        let chosen =
            |compacted, count| -> Vec<u64> { choose(&p, compacted, count).iter().map(|p| p.revision).collect() };
        assert_eq!(chosen(0, 2), [5, 6], "the lowest, then spread over the rest");
        assert_eq!(chosen(0, 3), [5, 6, 7]);
        assert_eq!(chosen(6, 2), [6, 7], "none below the compacted revision");
        assert_eq!(chosen(6, 10), [6, 7, 8]);
    }

    #[test]
    fn a_value_that_differs_fails_and_nothing_read_back_is_no_pass() {
        assert_eq!(judge(3, 1, 0, vec![]).outcome, Outcome::Passed);
        assert_eq!(judge(0, 4, 0, vec![]).outcome, Outcome::Skipped);
        let f = judge(2, 0, 0, vec!["key \"k\" at revision 5: ...".into()]);
        assert_eq!(f.outcome, Outcome::Failed);
        assert!(f.summary.starts_with("1 values differ"), "{}", f.summary);
    }
}
