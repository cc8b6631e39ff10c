//! `append`: every append adds a unique element (`N,`) to a key, reads return
//! the whole list. A lost acknowledged write shows as a missing element.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use checker::{Event, EventType, ModelKind, Process};
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::json;

use super::{F, Op, RotatingKeys, Workload};

pub struct Append {
    keys: RotatingKeys,
    next_element: AtomicU64,
}

impl Append {
    pub fn new(ops_per_key: u64) -> Append {
        Append { keys: RotatingKeys::new(ops_per_key), next_element: AtomicU64::new(1) }
    }
}

impl Workload for Append {
    fn model(&self) -> ModelKind {
        ModelKind::Kv
    }

    fn next_op(&self, rng: &mut SmallRng) -> Op {
        let key = self.keys.next();
        if rng.random_bool(0.5) {
            Op { f: F::Read, key, value: json!(null) }
        } else {
            let element = self.next_element.fetch_add(1, Ordering::Relaxed);
            Op { f: F::Append, key, value: json!(format!("{element},")) }
        }
    }

    fn keys(&self) -> Vec<String> {
        self.keys.all()
    }

    fn string_values(&self) -> bool {
        true
    }

    fn lost_writes(
        &self,
        events: &[Event],
        final_reads: &BTreeMap<String, Option<String>>,
    ) -> Option<BTreeMap<String, Vec<String>>> {
        Some(lost_appends(events, final_reads))
    }
}

/// Acknowledged appends missing from the final read of their key. The final
/// reads come after every acknowledgement, so each must contain them all.
pub fn lost_appends(events: &[Event], final_reads: &BTreeMap<String, Option<String>>) -> BTreeMap<String, Vec<String>> {
    let mut acked: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in events {
        let (Process::Client(_), EventType::Ok, Some(key)) =
            (e.process, e.kind, e.key.as_ref().and_then(checker::Key::as_str))
        else {
            continue;
        };
        if let ("append", Some(element)) = (e.f.as_str(), e.value.as_str()) {
            acked.entry(key).or_default().insert(element);
        }
    }
    let mut lost = BTreeMap::new();
    for (key, elements) in acked {
        let Some(read) = final_reads.get(key) else { continue };
        let read = read.as_deref().unwrap_or("");
        let present: BTreeSet<String> = read.split(',').filter(|s| !s.is_empty()).map(|s| format!("{s},")).collect();
        let missing: Vec<String> = elements.iter().filter(|e| !present.contains(**e)).map(|e| e.to_string()).collect();
        if !missing.is_empty() {
            lost.insert(key.to_string(), missing);
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(f: &str, key: &str, value: serde_json::Value) -> Event {
        Event::new(0, EventType::Ok, Process::Client(1), f, Some(key.into()), value, 0)
    }

    #[test]
    fn an_acknowledged_append_missing_from_the_final_read_is_lost() {
        let events = vec![
            ok("append", "k0", json!("1,")),
            ok("append", "k0", json!("12,")),
            ok("append", "k1", json!("3,")),
            ok("read", "k0", json!("1,12,")),
        ];
        let finals =
            BTreeMap::from([("k0".to_string(), Some("12,".to_string())), ("k1".to_string(), Some("3,".to_string()))]);
        let lost = lost_appends(&events, &finals);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost["k0"], vec!["1,".to_string()], "an earlier read does not excuse the final one");
        assert!(lost_appends(&events, &BTreeMap::new()).is_empty(), "no final read, nothing to judge");
    }
}
