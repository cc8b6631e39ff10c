//! A history as the report draws it: every client operation as a span from
//! invocation to completion (fail and info included, unlike the checker's
//! pairing), and the nemesis's fault windows.

use std::collections::HashMap;

use crate::history::{EventType, History, Process};

/// How an operation ended, for colouring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    Fail,
    /// Unknown: may have happened; drawn to the end of the history.
    Info,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// One client operation.
#[derive(Clone, Debug)]
pub struct Span {
    pub process: u64,
    pub f: String,
    pub key: Option<crate::key::Key>,
    pub invoke_value: serde_json::Value,
    pub result: serde_json::Value,
    pub error: Option<String>,
    /// Nanoseconds since the start of the run.
    pub start: u64,
    /// `None` for an info or unfinished operation.
    pub end: Option<u64>,
    pub outcome: Outcome,
    pub invoke_index: u64,
}

impl Span {
    /// Latency in nanoseconds of a completed operation (info included: the
    /// time until the client gave up).
    pub fn latency(&self, completed_at: Option<u64>) -> Option<u64> {
        self.end.or(completed_at).map(|e| e.saturating_sub(self.start))
    }

    pub fn describe(&self) -> String {
        let key = self.key.as_ref().map(|k| format!(" {k}")).unwrap_or_default();
        let mut text = format!("p{} {}{key} {}", self.process, self.f, self.invoke_value);
        if self.outcome == Outcome::Ok && self.f == "read" {
            text.push_str(&format!(" → {}", self.result));
        }
        text.push_str(&format!(" [{}]", self.outcome.name()));
        if let Some(e) = &self.error {
            text.push_str(&format!(" {e}"));
        }
        text
    }
}

/// A fault in force from `start` to `end` (ns), by kind, drawn in `colour`
/// (`#rrggbb`).
#[derive(Clone, Debug, PartialEq)]
pub struct FaultWindow {
    pub kind: String,
    pub start: u64,
    pub end: u64,
    pub detail: String,
    pub colour: String,
}

#[derive(Debug, Default)]
pub struct Spans {
    pub ops: Vec<Span>,
    /// When each info operation gave up (its info event), by invoke index.
    pub gave_up: HashMap<u64, u64>,
    pub faults: Vec<FaultWindow>,
    /// Time of the last event.
    pub end: u64,
}

/// Lane numbers for processes, in process order.
pub fn lanes(processes: impl IntoIterator<Item = u64>) -> std::collections::BTreeMap<u64, usize> {
    let sorted: std::collections::BTreeSet<u64> = processes.into_iter().collect();
    sorted.into_iter().enumerate().map(|(lane, p)| (p, lane)).collect()
}

/// Colours of the fault kinds Jepsen's names imply, for histories whose
/// nemesis events do not bring their own ([`crate::FaultMark`]).
fn default_colour(kind: &str) -> &'static str {
    match kind {
        "partition" => "#e67828",
        "kill" => "#c82828",
        "pause" => "#7850c8",
        "netem" => "#288cc8",
        _ => "#787878",
    }
}

/// The fault a nemesis event starts or ends (`false`), with its colour: as
/// the event marks it, else by Jepsen's `f` names.
fn fault_of(e: &crate::Event) -> Option<(String, bool, String)> {
    if let Some(m) = &e.fault {
        let colour = m.colour.clone().unwrap_or_else(|| default_colour(&m.kind).to_string());
        return Some((m.kind.clone(), m.starts, colour));
    }
    fault_event(&e.f).map(|(kind, starts)| (kind.to_string(), starts, default_colour(kind).to_string()))
}

/// The fault kind a nemesis event starts, or ends (`false`), by Jepsen's names.
fn fault_event(f: &str) -> Option<(&'static str, bool)> {
    Some(match f {
        "start-partition" => ("partition", true),
        "stop-partition" => ("partition", false),
        "kill" => ("kill", true),
        "start" => ("kill", false),
        "pause" => ("pause", true),
        "resume" => ("pause", false),
        "start-netem" => ("netem", true),
        "stop-netem" => ("netem", false),
        _ => return None,
    })
}

/// A fault struck and not yet healed, and the `f` that struck it.
struct OpenFault {
    kind: String,
    start: u64,
    detail: String,
    colour: String,
    f: String,
}

impl OpenFault {
    fn closed(self, end: u64) -> FaultWindow {
        FaultWindow { kind: self.kind, start: self.start, end, detail: self.detail, colour: self.colour }
    }
}

pub fn from_history(history: &History) -> Spans {
    let mut spans = Spans::default();
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut open_faults: Vec<OpenFault> = Vec::new();
    for e in &history.events {
        spans.end = spans.end.max(e.time);
        match e.process {
            Process::Client(p) => match e.kind {
                EventType::Invoke => {
                    open.insert(p, spans.ops.len());
                    spans.ops.push(Span {
                        process: p,
                        f: e.f.clone(),
                        key: e.key.clone(),
                        invoke_value: e.value.clone(),
                        result: serde_json::Value::Null,
                        error: None,
                        start: e.time,
                        end: None,
                        outcome: Outcome::Info,
                        invoke_index: e.index,
                    });
                }
                kind => {
                    let Some(i) = open.remove(&p) else { continue };
                    let span = &mut spans.ops[i];
                    span.result = e.value.clone();
                    span.error = e.error.clone();
                    match kind {
                        EventType::Ok => (span.outcome, span.end) = (Outcome::Ok, Some(e.time)),
                        EventType::Fail => (span.outcome, span.end) = (Outcome::Fail, Some(e.time)),
                        _ => {
                            spans.gave_up.insert(span.invoke_index, e.time);
                        }
                    }
                }
            },
            Process::Nemesis => {
                // Only invocations mark when a fault strikes or heals; the
                // info after a strike says what it did.
                if e.kind != EventType::Invoke {
                    if let Some(last) = open_faults.last_mut()
                        && e.kind == EventType::Info
                        && e.error.is_none()
                        && e.f == last.f
                    {
                        last.detail = e.value.to_string();
                    }
                    continue;
                }
                if e.f == "heal-all" {
                    for o in open_faults.drain(..) {
                        spans.faults.push(o.closed(e.time));
                    }
                    continue;
                }
                match fault_of(e) {
                    Some((kind, true, colour)) => open_faults.push(OpenFault {
                        kind,
                        start: e.time,
                        detail: e.value.to_string(),
                        colour,
                        f: e.f.clone(),
                    }),
                    Some((kind, false, _)) => {
                        if let Some(pos) = open_faults.iter().position(|o| o.kind == kind) {
                            spans.faults.push(open_faults.remove(pos).closed(e.time));
                        }
                    }
                    None => {}
                }
            }
        }
    }
    let end = spans.end;
    for o in open_faults {
        spans.faults.push(o.closed(end));
    }
    spans.faults.sort_by_key(|w| w.start);
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_pair_by_process_and_faults_become_windows() {
        let text = r#"{"index":0,"type":"invoke","process":1,"f":"write","key":"a","value":1,"time":10}
{"index":1,"type":"invoke","process":"nemesis","f":"start-partition","value":{"shape":"x"},"time":15}
{"index":2,"type":"info","process":"nemesis","f":"start-partition","value":{"cuts":1},"time":16}
{"index":3,"type":"invoke","process":2,"f":"read","key":"a","value":null,"time":20}
{"index":4,"type":"ok","process":1,"f":"write","key":"a","value":1,"time":30}
{"index":5,"type":"info","process":2,"f":"read","key":"a","value":null,"time":40,"error":"timeout"}
{"index":6,"type":"invoke","process":"nemesis","f":"stop-partition","value":null,"time":50}
{"index":7,"type":"invoke","process":3,"f":"cas","key":"a","value":[1,2],"time":60}
{"index":8,"type":"fail","process":3,"f":"cas","key":"a","value":[1,2],"time":70,"error":"mismatch"}
"#;
        let history = History::read_jsonl(text.as_bytes(), "t").unwrap();
        let spans = from_history(&history);
        assert_eq!(spans.ops.len(), 3);
        assert_eq!((spans.ops[0].outcome, spans.ops[0].end), (Outcome::Ok, Some(30)));
        assert_eq!((spans.ops[1].outcome, spans.ops[1].end), (Outcome::Info, None));
        assert_eq!(spans.gave_up[&3], 40);
        assert_eq!(spans.ops[2].outcome, Outcome::Fail);
        assert_eq!(spans.faults.len(), 1);
        assert_eq!((spans.faults[0].start, spans.faults[0].end), (15, 50));
        assert!(spans.faults[0].detail.contains("cuts"));
        assert_eq!(spans.end, 70);
    }
}
