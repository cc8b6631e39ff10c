//! History events, as in `docs/history-format.md`, and the JSON Lines
//! reader. Every malformed line is an error naming the file, the line and
//! what is wrong; nothing is guessed.

use std::fmt;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::key::Key;

/// What an event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// Who issued an event: a logical client, or the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    Client(u64),
    Nemesis,
}

impl Serialize for Process {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(p) => s.serialize_u64(*p),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Nemesis => f.write_str("nemesis"),
        }
    }
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub index: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub process: Process,
    pub f: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Key>,
    pub value: serde_json::Value,
    pub time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A nemesis event's own word on the fault band it opens or closes in
    /// the report (an extension; without it the report reads the band from
    /// Jepsen's `f` names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultMark>,
    /// On a completion, the store revision of the answer: a change's own,
    /// else the revision the operation was served at (an extension for
    /// stores with etcd-style revisions; see [`crate::revisions`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// On a completion, the key's mod revision as the operation found it
    /// (before any change it made; 0: absent), where the answer says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<u64>,
    /// On a write's invocation, the id the store's log knows it by, so that
    /// a write whose outcome the client never learned can be settled from
    /// the log after the run ([`crate::settlement`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_id: Option<WriteId>,
}

impl Event {
    /// An event with none of the optional fields (error, fault band,
    /// revisions, write id) set.
    pub fn new(
        index: u64,
        kind: EventType,
        process: Process,
        f: impl Into<String>,
        key: Option<Key>,
        value: serde_json::Value,
        time: u64,
    ) -> Event {
        Event {
            index,
            kind,
            process,
            f: f.into(),
            key,
            value,
            time,
            error: None,
            fault: None,
            revision: None,
            mod_revision: None,
            write_id: None,
        }
    }
}

/// A write's identity in the store: its client and that client's sequence
/// number (an exactly-once session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteId {
    pub client: u64,
    pub seq: u64,
}

/// The fault a nemesis event starts or ends, named by the nemesis itself,
/// with the colour its band is drawn in (`#rrggbb`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultMark {
    pub kind: String,
    pub starts: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<String>,
}

/// How a history's completions are read: they differ between the
/// project's format and Jepsen's, and a history is checked by the rules
/// of the tool that wrote it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Semantics {
    /// JSON Lines (docs/history-format.md): a read of `null` saw the key
    /// absent; a `cas` that failed with error `"mismatch"` saw a value
    /// other than the expected one.
    #[default]
    Capukv,
    /// Jepsen's `history.edn`, as knossos.model reads it: a read that
    /// completed `:ok` with `:value nil` did not learn the value and matches
    /// any (so it constrains nothing and is removed), and every `:fail`
    /// did not happen, whatever its `:error`.
    Knossos,
}

/// A whole history, in recorded order.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub events: Vec<Event>,
    /// Where it came from, for error messages ("-" for standard input).
    pub source: String,
    /// The line each event was read from (1-based), parallel to `events`.
    pub lines: Vec<usize>,
    pub semantics: Semantics,
}

/// A history that cannot be read, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("{source_name}:{line}: {message}")]
    Malformed { source_name: String, line: usize, message: String },
    #[error("{source_name}: {message}")]
    Io { source_name: String, message: String },
    /// Well-formed line by line, but not checkable as a whole (e.g. an
    /// element appended twice to a key).
    #[error("{source_name}: {message}")]
    Unusable { source_name: String, message: String },
}

impl HistoryError {
    pub fn at(source_name: &str, line: usize, message: impl Into<String>) -> HistoryError {
        HistoryError::Malformed { source_name: source_name.to_string(), line, message: message.into() }
    }
}

/// The key-value operations the checker understands.
pub const OPERATIONS: [&str; 6] = ["read", "write", "cas", "delete", "append", "txn"];

impl History {
    /// Reads a history file: Jepsen EDN if it ends in `.edn`, else JSON Lines.
    pub fn read_file(path: &Path) -> Result<History, HistoryError> {
        let name = path.display().to_string();
        let io_err = |e: std::io::Error| HistoryError::Io { source_name: name.clone(), message: e.to_string() };
        if path.extension().is_some_and(|e| e == "edn") {
            let text = std::fs::read_to_string(path).map_err(io_err)?;
            return crate::edn::read_history(&text, &name);
        }
        let file = std::fs::File::open(path).map_err(io_err)?;
        History::read_jsonl(std::io::BufReader::with_capacity(1 << 20, file), &name)
    }

    /// Writes the events as JSON Lines, one event a line, in the form
    /// [`History::read_jsonl`] reads back.
    pub fn write_jsonl(&self, mut out: impl std::io::Write) -> std::io::Result<()> {
        for e in &self.events {
            serde_json::to_writer(&mut out, e)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    /// Reads JSON Lines. Blank lines are allowed; anything else must be an
    /// event.
    pub fn read_jsonl(reader: impl BufRead, source: &str) -> Result<History, HistoryError> {
        let mut history = History { source: source.to_string(), ..History::default() };
        History::each_jsonl(reader, source, |event, line| history.push(event, line))?;
        Ok(history)
    }

    /// Reads JSON Lines one event at a time, without keeping them: `each`
    /// gets every event with its line number, indexes checked to strictly
    /// increase.
    pub fn each_jsonl(
        reader: impl BufRead,
        source: &str,
        mut each: impl FnMut(Event, usize) -> Result<(), HistoryError>,
    ) -> Result<(), HistoryError> {
        let mut last: Option<u64> = None;
        for (n, line) in reader.lines().enumerate() {
            let line_no = n + 1;
            let line = line.map_err(|e| HistoryError::at(source, line_no, format!("cannot read: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let event = parse_event(&line).map_err(|m| HistoryError::at(source, line_no, m))?;
            if let Some(last) = last
                && event.index <= last
            {
                let message =
                    format!("index {} does not follow index {last}: indexes must strictly increase", event.index);
                return Err(HistoryError::at(source, line_no, message));
            }
            last = Some(event.index);
            each(event, line_no)?;
        }
        Ok(())
    }

    /// Appends an event, checking that indexes strictly increase.
    pub fn push(&mut self, event: Event, line: usize) -> Result<(), HistoryError> {
        if let Some(last) = self.events.last()
            && event.index <= last.index
        {
            let message =
                format!("index {} does not follow index {}: indexes must strictly increase", event.index, last.index);
            return Err(HistoryError::at(&self.source, line, message));
        }
        self.events.push(event);
        self.lines.push(line);
        Ok(())
    }

    pub fn line_of(&self, event: usize) -> usize {
        self.lines.get(event).copied().unwrap_or(event + 1)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    index: Option<u64>,
    #[serde(rename = "type")]
    kind: Option<EventType>,
    process: Option<serde_json::Value>,
    f: Option<String>,
    #[serde(default)]
    key: Option<serde_json::Value>,
    #[serde(default)]
    value: serde_json::Value,
    time: Option<u64>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    fault: Option<FaultMark>,
    #[serde(default)]
    revision: Option<u64>,
    #[serde(default)]
    mod_revision: Option<u64>,
    #[serde(default)]
    write_id: Option<WriteId>,
}

fn parse_event(line: &str) -> Result<Event, String> {
    let raw: RawEvent = serde_json::from_str(line).map_err(|e| format!("not a history event: {e}"))?;
    let missing = |field: &str| format!("missing field `{field}`");
    let process = match raw.process.ok_or_else(|| missing("process"))? {
        serde_json::Value::Number(n) => Process::Client(n.as_u64().ok_or("`process` must be a non-negative integer")?),
        serde_json::Value::String(s) if s == "nemesis" => Process::Nemesis,
        other => return Err(format!("`process` must be an integer or \"nemesis\", not {other}")),
    };
    let key = match raw.key {
        None | Some(serde_json::Value::Null) => None,
        Some(k) => Some(Key::from_json(&k).ok_or_else(|| format!("`key` must be a string or an integer, not {k}"))?),
    };
    let error = match raw.error {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    };
    let event = Event {
        index: raw.index.ok_or_else(|| missing("index"))?,
        kind: raw.kind.ok_or_else(|| missing("type"))?,
        process,
        f: raw.f.ok_or_else(|| missing("f"))?,
        key,
        value: raw.value,
        time: raw.time.ok_or_else(|| missing("time"))?,
        error,
        fault: raw.fault,
        revision: raw.revision,
        mod_revision: raw.mod_revision,
        write_id: raw.write_id,
    };
    if event.process != Process::Nemesis && !OPERATIONS.contains(&event.f.as_str()) {
        return Err(format!("unknown operation `{}` (expected one of {})", event.f, OPERATIONS.join(", ")));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<History, HistoryError> {
        History::read_jsonl(text.as_bytes(), "h.jsonl")
    }

    #[test]
    fn written_json_lines_read_back_as_the_same_events() {
        let cfg = crate::synth::Synth {
            operations: 200,
            info: 0.2,
            revisions: true,
            ..crate::synth::Synth::new(4, crate::ModelKind::Kv)
        };
        let history = crate::synth::generate(&cfg);
        let mut out = Vec::new();
        history.write_jsonl(&mut out).unwrap();
        let back = read(std::str::from_utf8(&out).unwrap()).unwrap();
        assert_eq!(back.events, history.events);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), history.events.len());
    }

    #[test]
    fn reads_the_documented_example() {
        let text = r#"{"index":0,"type":"invoke","process":3,"f":"write","key":"k7","value":5,"time":1200345}
{"index":1,"type":"invoke","process":1,"f":"read","key":"k7","value":null,"time":1200390}

{"index":2,"type":"ok","process":3,"f":"write","key":"k7","value":5,"time":1450001}
{"index":5,"type":"info","process":2,"f":"cas","key":"k7","value":[5,9],"time":2500000,"error":"deadline exceeded"}
{"index":6,"type":"invoke","process":"nemesis","f":"start-partition","value":{"groups":[["n1","n2"],["n3"]]},"time":3000000}"#;
        let h = read(text).unwrap();
        assert_eq!(h.events.len(), 5);
        assert_eq!(h.events[3].error.as_deref(), Some("deadline exceeded"));
        assert_eq!(h.events[4].process, Process::Nemesis);
        assert_eq!(h.line_of(2), 4);
    }

    #[test]
    fn a_broken_line_names_file_line_and_problem() {
        let text = "{\"index\":0,\"type\":\"invoke\",\"process\":1,\"f\":\"read\",\"value\":null,\"time\":1}\n{\"index\":1,\"type\":\"ok\"";
        let err = read(text).unwrap_err().to_string();
        assert!(err.starts_with("h.jsonl:2: not a history event"), "{err}");

        let err = read(r#"{"index":0,"type":"done","process":1,"f":"read","time":1}"#).unwrap_err().to_string();
        assert!(err.starts_with("h.jsonl:1:") && err.contains("unknown variant `done`"), "{err}");

        let err = read(r#"{"index":0,"type":"ok","process":1,"f":"incr","time":1}"#).unwrap_err().to_string();
        assert!(err.contains("unknown operation `incr`"), "{err}");

        let err = read(r#"{"index":0,"type":"ok","process":-1,"f":"read","time":1}"#).unwrap_err().to_string();
        assert!(err.contains("`process` must be a non-negative integer"), "{err}");

        let text = "{\"index\":3,\"type\":\"invoke\",\"process\":1,\"f\":\"read\",\"time\":1}\n{\"index\":3,\"type\":\"ok\",\"process\":1,\"f\":\"read\",\"time\":2}";
        let err = read(text).unwrap_err().to_string();
        assert!(err.starts_with("h.jsonl:2: index 3 does not follow index 3"), "{err}");

        let err = read(r#"{"type":"ok","process":1,"f":"read","time":1}"#).unwrap_err().to_string();
        assert!(err.contains("missing field `index`"), "{err}");
    }
}
