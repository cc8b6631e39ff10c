//! Writes a key-value history as the kv log that Porcupine's own kv test
//! reads (one EDN-like map per line: `get`, `put` and `append` on string
//! keys and string values), so the two checkers can be timed on the same
//! histories (bench/compare-porcupine.sh).
//!
//! Porcupine's kv model knows no absence: a missing key reads as `""`. An
//! operation whose completion is missing returns at the end of the history.
//! So the mapping keeps every verdict:
//! - a read of `null` (absent) is a `get` of `""`; no written value is empty;
//! - a `fail` did not happen, and is left out with its invocation;
//! - an `info` write or append keeps its invocation only (it may take effect
//!   any time after it: placed last, it is as if it never happened);
//! - an `info` read observed nothing, and is left out.
//!
//! Only read, write and append fit; anything else is an error.

use std::collections::HashMap;
use std::fmt::Write;

use crate::history::{EventType, History, Process};

/// The log, one line per event kept.
pub fn kv_log(history: &History) -> Result<String, String> {
    // Each invocation's completion (by process, in order).
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut completion: HashMap<usize, usize> = HashMap::new();
    for (i, e) in history.events.iter().enumerate() {
        let Process::Client(p) = e.process else { continue };
        if e.kind == EventType::Invoke {
            open.insert(p, i);
        } else if let Some(call) = open.remove(&p) {
            completion.insert(call, i);
        }
    }
    let text = |v: &serde_json::Value| -> Result<String, String> {
        let s = match v {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            other => return Err(format!("value {other} has no Porcupine form")),
        };
        if s.contains('"') || s.contains('\n') {
            return Err(format!("value {s:?} cannot be written unquoted"));
        }
        Ok(s)
    };
    let mut out = String::new();
    let mut kept = vec![false; history.events.len()];
    for (i, e) in history.events.iter().enumerate() {
        let Process::Client(p) = e.process else { continue };
        let f = match e.f.as_str() {
            "read" => "get",
            "write" => "put",
            "append" => "append",
            other => return Err(format!("event {}: Porcupine's kv model has no `{other}`", e.index)),
        };
        let key = e.key.as_ref().map(|k| k.to_string()).unwrap_or_default();
        if key.contains('"') {
            return Err(format!("event {}: key {key:?} cannot be written unquoted", e.index));
        }
        if e.kind == EventType::Invoke {
            let done = completion.get(&i).map(|&c| history.events[c].kind);
            let keep = match done {
                Some(EventType::Fail) => false,
                Some(EventType::Info) | None => f != "get",
                _ => true,
            };
            if keep {
                kept[i] = true;
                let value = if f == "get" { "nil".to_string() } else { format!("\"{}\"", text(&e.value)?) };
                let _ = writeln!(out, "{{:process {p}, :type :invoke, :f :{f}, :key \"{key}\", :value {value}}}");
            }
        } else if e.kind == EventType::Ok {
            let _ =
                writeln!(out, "{{:process {p}, :type :ok, :f :{f}, :key \"{key}\", :value \"{}\"}}", text(&e.value)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_and_info_reads_are_left_out_and_info_writes_stay_open() {
        let text = r#"{"index":0,"type":"invoke","process":1,"f":"write","key":"a","value":3,"time":0}
{"index":1,"type":"ok","process":1,"f":"write","key":"a","value":3,"time":1}
{"index":2,"type":"invoke","process":2,"f":"read","key":"a","value":null,"time":2}
{"index":3,"type":"ok","process":2,"f":"read","key":"a","value":null,"time":3}
{"index":4,"type":"invoke","process":3,"f":"append","key":"a","value":"x,","time":4}
{"index":5,"type":"info","process":3,"f":"append","key":"a","value":"x,","time":5}
{"index":6,"type":"invoke","process":4,"f":"write","key":"a","value":9,"time":6}
{"index":7,"type":"fail","process":4,"f":"write","key":"a","value":9,"time":7}
{"index":8,"type":"invoke","process":5,"f":"read","key":"a","value":null,"time":8}
{"index":9,"type":"info","process":5,"f":"read","key":"a","value":null,"time":9}"#;
        let h = History::read_jsonl(text.as_bytes(), "t").unwrap();
        let log = kv_log(&h).unwrap();
        assert_eq!(
            log,
            "{:process 1, :type :invoke, :f :put, :key \"a\", :value \"3\"}\n\
             {:process 1, :type :ok, :f :put, :key \"a\", :value \"3\"}\n\
             {:process 2, :type :invoke, :f :get, :key \"a\", :value nil}\n\
             {:process 2, :type :ok, :f :get, :key \"a\", :value \"\"}\n\
             {:process 3, :type :invoke, :f :append, :key \"a\", :value \"x,\"}\n"
        );
        let cas = r#"{"index":0,"type":"invoke","process":1,"f":"cas","key":"a","value":[1,2],"time":0}"#;
        let h = History::read_jsonl(cas.as_bytes(), "t").unwrap();
        assert_eq!(kv_log(&h).unwrap_err(), "event 0: Porcupine's kv model has no `cas`");
    }
}
