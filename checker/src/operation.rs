//! Events paired into operations: each invocation with its completion, by
//! process. The history format's rules are applied here: `fail` operations
//! are removed (except a `cas` that failed with `"mismatch"`, which observed
//! the value), an `info` may take effect at any time after its invocation or
//! never, an invocation with no completion counts as `info`, and an `info`
//! read is dropped (it observed nothing anyone saw). A Jepsen history is
//! read by Knossos's rules instead ([`Semantics::Knossos`]): an `:ok` read
//! of nil is dropped too, and so is every `:fail`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::history::{Event, EventType, History, HistoryError, Process, Semantics};
use crate::key::Key;
use crate::value::Value;

/// What an operation asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "f", content = "value", rename_all = "lowercase")]
pub enum Input {
    Read,
    Write(Value),
    Cas(Value, Value),
    Delete,
    Append(String),
}

/// How it completed, as far as the model is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Output {
    /// The value read (`None`: absent).
    Read(Option<Value>),
    Write,
    Cas,
    /// The cas found a value other than the expected one.
    CasMismatch,
    Delete,
    Append,
    /// `info`: unknown whether, or when, it happened.
    Unknown,
}

/// One operation of one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Operation {
    /// Position among the operations of its key.
    pub id: usize,
    pub process: u64,
    pub key: Option<Key>,
    pub input: Input,
    pub output: Output,
    /// History index of the invocation.
    pub invoke_index: u64,
    /// History index of the completion; `None` for an operation that may
    /// take effect at any later time.
    pub complete_index: Option<u64>,
    pub invoke_time: u64,
    pub complete_time: Option<u64>,
    /// Position of the invocation and completion in the history, the real-time
    /// order the search respects.
    #[serde(skip)]
    pub call: u64,
    #[serde(skip)]
    pub ret: Option<u64>,
    /// The completion's store revision and the mod revision it found, when
    /// the history gives them ([`crate::revisions`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<u64>,
}

impl Operation {
    /// What kind of operation it is: `read`, `write`, `cas`, `delete`, `append`.
    pub fn kind(&self) -> &'static str {
        match self.input {
            Input::Read => "read",
            Input::Write(_) => "write",
            Input::Cas(..) => "cas",
            Input::Delete => "delete",
            Input::Append(_) => "append",
        }
    }

    pub fn describe(&self) -> String {
        let input = match &self.input {
            Input::Read => "read".to_string(),
            Input::Write(v) => format!("write {v}"),
            Input::Cas(e, n) => format!("cas {e} -> {n}"),
            Input::Delete => "delete".to_string(),
            Input::Append(s) => format!("append {s:?}"),
        };
        let output = match &self.output {
            Output::Read(v) => format!(" = {}", crate::value::show(v)),
            Output::CasMismatch => " (mismatch)".to_string(),
            Output::Unknown => " (info: may or may not have happened)".to_string(),
            _ => String::new(),
        };
        format!("process {}: {input}{output}", self.process)
    }
}

/// The operations of a history, by key (`None` for a single register).
#[derive(Debug, Default)]
pub struct Operations {
    pub by_key: BTreeMap<Option<Key>, Vec<Operation>>,
    /// Events read, and client operations kept after the format's rules.
    pub events: usize,
    pub kept: usize,
    /// Operations removed as certainly not having happened, or info reads.
    pub removed: usize,
}

struct Pending {
    event: usize,
    input: Input,
}

/// Pairs the history's events into operations per key.
pub fn pair(history: &History) -> Result<Operations, HistoryError> {
    let mut ops = Operations { events: history.events.len(), ..Operations::default() };
    let mut in_flight: HashMap<u64, Pending> = HashMap::new();
    let mut retired: HashMap<u64, usize> = HashMap::new();
    let fail = |event: usize, message: String| HistoryError::at(&history.source, history.line_of(event), message);
    for (pos, e) in history.events.iter().enumerate() {
        let Process::Client(process) = e.process else { continue };
        // Transactions are checked as a whole, by `crate::txn`.
        if e.f == crate::txn::TXN {
            continue;
        }
        if let Some(&info_at) = retired.get(&process) {
            let message = format!(
                "process {process} acts again after its info on line {}: a process that got an info never completes again (use a new process id)",
                history.line_of(info_at)
            );
            return Err(fail(pos, message));
        }
        match e.kind {
            EventType::Invoke => {
                if let Some(p) = in_flight.get(&process) {
                    let message = format!(
                        "process {process} invokes while its call on line {} is in flight",
                        history.line_of(p.event)
                    );
                    return Err(fail(pos, message));
                }
                let input = input_of(e).map_err(|m| fail(pos, m))?;
                in_flight.insert(process, Pending { event: pos, input });
            }
            _ => {
                let Some(p) = in_flight.remove(&process) else {
                    return Err(fail(pos, format!("{:?} for process {process}, which has no call in flight", e.kind)));
                };
                let inv = &history.events[p.event];
                if inv.f != e.f || inv.key != e.key {
                    let message = format!(
                        "completion ({} of key {:?}) does not match its invocation on line {} ({} of key {:?})",
                        e.f,
                        e.key,
                        history.line_of(p.event),
                        inv.f,
                        inv.key
                    );
                    return Err(fail(pos, message));
                }
                if e.kind == EventType::Info {
                    retired.insert(process, pos);
                }
                let output = output_of(e, &p.input, history.semantics).map_err(|m| fail(pos, m))?;
                let completed = e.kind != EventType::Info;
                match output {
                    None => ops.removed += 1,
                    Some(output) => add(&mut ops, inv, p.event as u64, p.input, output, completed.then_some((e, pos))),
                }
            }
        }
    }
    // Calls the run ended before completing count as info.
    let mut unfinished: Vec<Pending> = in_flight.into_values().collect();
    unfinished.sort_by_key(|p| p.event);
    for p in unfinished {
        let inv = &history.events[p.event];
        if p.input == Input::Read {
            ops.removed += 1;
        } else {
            add(&mut ops, inv, p.event as u64, p.input, Output::Unknown, None);
        }
    }
    for list in ops.by_key.values_mut() {
        list.sort_by_key(|o| o.call);
        for (id, op) in list.iter_mut().enumerate() {
            op.id = id;
        }
    }
    Ok(ops)
}

fn add(
    ops: &mut Operations,
    inv: &Event,
    call: u64,
    input: Input,
    output: Output,
    completion: Option<(&Event, usize)>,
) {
    let Process::Client(process) = inv.process else { unreachable!("only client events are paired") };
    let op = Operation {
        id: 0,
        process,
        key: inv.key.clone(),
        input,
        output,
        invoke_index: inv.index,
        complete_index: completion.map(|(e, _)| e.index),
        invoke_time: inv.time,
        complete_time: completion.map(|(e, _)| e.time),
        call,
        ret: completion.map(|(_, pos)| pos as u64),
        revision: completion.and_then(|(e, _)| e.revision),
        mod_revision: completion.and_then(|(e, _)| e.mod_revision),
    };
    ops.kept += 1;
    ops.by_key.entry(inv.key.clone()).or_default().push(op);
}

fn value_field(e: &Event, what: &str) -> Result<Value, String> {
    Value::from_json(&e.value).ok_or_else(|| format!("{what}: `value` must be an integer or a string, not {}", e.value))
}

fn input_of(e: &Event) -> Result<Input, String> {
    Ok(match e.f.as_str() {
        "read" => Input::Read,
        "write" => Input::Write(value_field(e, "write")?),
        "cas" => {
            let pair = e.value.as_array().filter(|a| a.len() == 2);
            let parsed = pair.and_then(|a| Some((Value::from_json(&a[0])?, Value::from_json(&a[1])?)));
            let (expected, new) =
                parsed.ok_or_else(|| format!("cas: `value` must be [expected, new], not {}", e.value))?;
            Input::Cas(expected, new)
        }
        "delete" => Input::Delete,
        "append" => match &e.value {
            serde_json::Value::String(s) => Input::Append(s.clone()),
            other => return Err(format!("append: `value` must be a string, not {other}")),
        },
        other => return Err(format!("unknown operation `{other}`")),
    })
}

/// The model's view of a completion; `None` when the operation is dropped.
fn output_of(e: &Event, input: &Input, semantics: Semantics) -> Result<Option<Output>, String> {
    let knossos = semantics == Semantics::Knossos;
    Ok(match e.kind {
        EventType::Invoke => unreachable!("completions only"),
        EventType::Fail => match input {
            Input::Cas(..) if !knossos && e.error.as_deref() == Some("mismatch") => Some(Output::CasMismatch),
            _ => None,
        },
        EventType::Info if *input == Input::Read => None,
        EventType::Info => Some(Output::Unknown),
        // Knossos: the client did not learn the value; any value matches.
        EventType::Ok if knossos && *input == Input::Read && e.value.is_null() => None,
        EventType::Ok => Some(match input {
            Input::Read => match &e.value {
                serde_json::Value::Null => Output::Read(None),
                v => Output::Read(Some(
                    Value::from_json(v)
                        .ok_or_else(|| format!("read: `value` must be an integer, a string or null, not {v}"))?,
                )),
            },
            Input::Write(_) => Output::Write,
            Input::Cas(..) => Output::Cas,
            Input::Delete => Output::Delete,
            Input::Append(_) => Output::Append,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(text: &str) -> Result<Operations, HistoryError> {
        pair(&History::read_jsonl(text.as_bytes(), "h")?)
    }

    #[test]
    fn pairs_by_process_and_applies_the_format_rules() {
        let text = r#"{"index":0,"type":"invoke","process":1,"f":"write","key":"a","value":1,"time":0}
{"index":1,"type":"invoke","process":2,"f":"cas","key":"a","value":[1,2],"time":1}
{"index":2,"type":"invoke","process":3,"f":"cas","key":"a","value":[7,8],"time":1}
{"index":3,"type":"invoke","process":4,"f":"read","key":"b","value":null,"time":1}
{"index":4,"type":"ok","process":1,"f":"write","key":"a","value":1,"time":2}
{"index":5,"type":"fail","process":2,"f":"cas","key":"a","value":[1,2],"time":3,"error":"mismatch"}
{"index":6,"type":"fail","process":3,"f":"cas","key":"a","value":[7,8],"time":3,"error":"unavailable"}
{"index":7,"type":"info","process":4,"f":"read","key":"b","value":null,"time":3}
{"index":8,"type":"invoke","process":5,"f":"append","key":"b","value":"x","time":4}"#;
        let ops = ops(text).unwrap();
        let a = &ops.by_key[&Some(Key::from("a"))];
        assert_eq!(a.len(), 2, "the failed cas that was not a mismatch is removed");
        assert_eq!(a[1].output, Output::CasMismatch);
        let b = &ops.by_key[&Some(Key::from("b"))];
        assert_eq!(b.len(), 1, "the info read is dropped");
        assert_eq!((b[0].output.clone(), b[0].ret), (Output::Unknown, None), "an unfinished call counts as info");
        assert_eq!(ops.removed, 2);
    }

    #[test]
    fn contract_breaches_are_errors_with_lines() {
        let text = r#"{"index":0,"type":"invoke","process":1,"f":"write","value":1,"time":0}
{"index":1,"type":"invoke","process":1,"f":"write","value":2,"time":1}"#;
        assert!(ops(text).unwrap_err().to_string().starts_with("h:2: process 1 invokes while its call on line 1"));

        let text = r#"{"index":0,"type":"ok","process":1,"f":"write","value":1,"time":0}"#;
        assert!(ops(text).unwrap_err().to_string().contains("has no call in flight"));

        let text = r#"{"index":0,"type":"invoke","process":1,"f":"write","value":1,"time":0}
{"index":1,"type":"info","process":1,"f":"write","value":1,"time":1}
{"index":2,"type":"invoke","process":1,"f":"read","value":null,"time":2}"#;
        assert!(ops(text).unwrap_err().to_string().contains("acts again after its info on line 2"));

        let text = r#"{"index":0,"type":"invoke","process":1,"f":"cas","value":[1],"time":0}"#;
        assert!(ops(text).unwrap_err().to_string().contains("cas: `value` must be [expected, new]"));

        let text = r#"{"index":0,"type":"invoke","process":1,"f":"write","value":1,"time":0}
{"index":1,"type":"ok","process":1,"f":"read","value":1,"time":1}"#;
        assert!(ops(text).unwrap_err().to_string().contains("does not match its invocation"));
    }
}
