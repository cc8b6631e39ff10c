//! Transactions read from a history: events with `"f": "txn"`, whose value
//! is a list of micro-operations in Elle's list-append form,
//! `["append", KEY, ELEMENT]` and `["r", KEY, LIST]` (the list `null` at
//! invoke; at `ok` the elements read, `null` for an absent key, which reads
//! as the empty list). An invocation is paired with its completion by
//! process; a completion must repeat its invocation's operations, with the
//! reads filled in.
//!
//! Keys and elements are interned (numbered in order of appearance), so
//! that a million transactions take a few hundred MiB, and a history file
//! can be read line by line without holding its events ([`read_file`]).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use crate::history::{Event, EventType, History, HistoryError, Process};
use crate::key::Key;
use crate::value::Value;

/// The `f` of a transaction event.
pub const TXN: &str = "txn";

pub type KeyId = u32;
pub type ElementId = u32;

/// One micro-operation, on interned keys and elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mop {
    Append {
        key: KeyId,
        element: ElementId,
    },
    /// `list`: what the read returned (`None`: not known, on an info or
    /// failed transaction).
    Read {
        key: KeyId,
        list: Option<Vec<ElementId>>,
    },
}

impl Mop {
    pub fn key(&self) -> KeyId {
        match self {
            Mop::Append { key, .. } | Mop::Read { key, .. } => *key,
        }
    }
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed, with the reads it returned.
    Ok,
    /// Certainly did not happen.
    Fail,
    /// May or may not have happened (also: never completed).
    Info,
}

/// One transaction of the history.
#[derive(Debug, Clone)]
pub struct Txn {
    /// Position among the history's transactions.
    pub id: usize,
    pub process: u64,
    pub outcome: Outcome,
    pub mops: Vec<Mop>,
    pub invoke_index: u64,
    pub complete_index: Option<u64>,
    pub invoke_time: u64,
    pub complete_time: Option<u64>,
}

/// A history's transactions, with the keys and elements they name.
#[derive(Debug, Default)]
pub struct Transactions {
    pub txns: Vec<Txn>,
    pub keys: Vec<Key>,
    pub elements: Vec<Value>,
    pub source: String,
    key_ids: HashMap<Key, KeyId>,
    element_ids: HashMap<Value, ElementId>,
    in_flight: HashMap<u64, usize>,
}

impl Transactions {
    pub fn new(source: &str) -> Transactions {
        Transactions { source: source.to_string(), ..Transactions::default() }
    }

    pub fn key(&self, k: KeyId) -> String {
        self.keys[k as usize].quoted()
    }

    pub fn element(&self, e: ElementId) -> &Value {
        &self.elements[e as usize]
    }

    pub fn list(&self, list: &[ElementId]) -> String {
        let items: Vec<String> = list.iter().map(|&e| self.element(e).to_string()).collect();
        format!("[{}]", items.join(" "))
    }

    pub fn describe_mop(&self, m: &Mop) -> String {
        match m {
            Mop::Append { key, element } => format!("append {} to {}", self.element(*element), self.key(*key)),
            Mop::Read { key, list: Some(l) } => format!("read {} = {}", self.key(*key), self.list(l)),
            Mop::Read { key, list: None } => format!("read {} = ?", self.key(*key)),
        }
    }

    pub fn describe(&self, t: usize) -> String {
        let t = &self.txns[t];
        let mops: Vec<String> = t.mops.iter().map(|m| self.describe_mop(m)).collect();
        let outcome = match t.outcome {
            Outcome::Ok => "",
            Outcome::Fail => " (failed)",
            Outcome::Info => " (info: may or may not have happened)",
        };
        format!("T{} (process {}): {}{outcome}", t.id, t.process, mops.join(", "))
    }

    fn intern_key(&mut self, k: Key) -> KeyId {
        intern(&mut self.key_ids, &mut self.keys, k)
    }

    fn intern_element(&mut self, v: Value) -> ElementId {
        intern(&mut self.element_ids, &mut self.elements, v)
    }

    fn parse_mops(&mut self, value: &serde_json::Value, completed: bool) -> Result<Vec<Mop>, String> {
        let items = value.as_array().ok_or("a txn's value must be a list of micro-operations")?;
        let mut mops = Vec::with_capacity(items.len());
        for (i, m) in items.iter().enumerate() {
            let at = |why: &str| format!("micro-operation {i} ({m}): {why}");
            let parts = m.as_array().filter(|p| p.len() == 3).ok_or_else(|| at("must be [f, key, value]"))?;
            let key = Key::from_json(&parts[1]).ok_or_else(|| at("the key must be a string or an integer"))?;
            let key = self.intern_key(key);
            let element =
                |v: &serde_json::Value| Value::from_json(v).ok_or_else(|| at("elements must be strings or integers"));
            mops.push(match parts[0].as_str() {
                Some("append") => Mop::Append { key, element: self.intern_element(element(&parts[2])?) },
                Some("r" | "read") => {
                    let list = match &parts[2] {
                        serde_json::Value::Null if completed => Some(Vec::new()),
                        serde_json::Value::Null => None,
                        serde_json::Value::Array(items) => {
                            let mut list = Vec::with_capacity(items.len());
                            for v in items {
                                let e = element(v)?;
                                list.push(self.intern_element(e));
                            }
                            Some(list)
                        }
                        _ => return Err(at("a read's value must be a list or null")),
                    };
                    Mop::Read { key, list }
                }
                _ => return Err(at("f must be \"append\" or \"r\"")),
            });
        }
        Ok(mops)
    }

    /// Takes one event (others than transactions are left out).
    pub fn push(&mut self, e: &Event, line: usize) -> Result<(), HistoryError> {
        let Process::Client(process) = e.process else { return Ok(()) };
        if e.f != TXN {
            return Ok(());
        }
        let err = |h: &Transactions, m: String| HistoryError::at(&h.source, line, m);
        match e.kind {
            EventType::Invoke => {
                if self.in_flight.contains_key(&process) {
                    return Err(err(
                        self,
                        format!("process {process} invokes a txn while its previous one is in flight"),
                    ));
                }
                let mops = self.parse_mops(&e.value, false).map_err(|m| err(self, m))?;
                let id = self.txns.len();
                self.in_flight.insert(process, id);
                self.txns.push(Txn {
                    id,
                    process,
                    outcome: Outcome::Info,
                    mops,
                    invoke_index: e.index,
                    complete_index: None,
                    invoke_time: e.time,
                    complete_time: None,
                });
            }
            kind => {
                let t = self
                    .in_flight
                    .remove(&process)
                    .ok_or_else(|| err(self, format!("process {process} completes a txn it never invoked")))?;
                match kind {
                    EventType::Ok => {
                        let mops = self.parse_mops(&e.value, true).map_err(|m| err(self, m))?;
                        if !same_shape(&self.txns[t].mops, &mops) {
                            return Err(err(
                                self,
                                "the completion's micro-operations differ from its invocation's".into(),
                            ));
                        }
                        let txn = &mut self.txns[t];
                        (txn.outcome, txn.mops) = (Outcome::Ok, mops);
                        (txn.complete_index, txn.complete_time) = (Some(e.index), Some(e.time));
                    }
                    EventType::Fail => {
                        let txn = &mut self.txns[t];
                        txn.outcome = Outcome::Fail;
                        (txn.complete_index, txn.complete_time) = (Some(e.index), Some(e.time));
                    }
                    // An info never completes: it may take effect any time later.
                    _ => self.txns[t].outcome = Outcome::Info,
                }
            }
        }
        Ok(())
    }
}

/// `v`'s number: its place in `items`, appended there the first time.
fn intern<T: std::hash::Hash + Eq + Clone>(ids: &mut HashMap<T, u32>, items: &mut Vec<T>, v: T) -> u32 {
    *ids.entry(v).or_insert_with_key(|v| {
        items.push(v.clone());
        items.len() as u32 - 1
    })
}

/// The completion must be the invocation with its reads filled in.
fn same_shape(invoked: &[Mop], done: &[Mop]) -> bool {
    invoked.len() == done.len()
        && invoked.iter().zip(done).all(|(a, b)| match (a, b) {
            (Mop::Append { key: k1, element: e1 }, Mop::Append { key: k2, element: e2 }) => k1 == k2 && e1 == e2,
            (Mop::Read { key: k1, .. }, Mop::Read { key: k2, .. }) => k1 == k2,
            _ => false,
        })
}

/// The history's transactions, in invocation order.
pub fn transactions(history: &History) -> Result<Transactions, HistoryError> {
    let mut t = Transactions::new(&history.source);
    for (pos, e) in history.events.iter().enumerate() {
        t.push(e, history.line_of(pos))?;
    }
    Ok(t)
}

/// The transactions of a JSON Lines history file, read line by line.
pub fn read_file(path: &Path) -> Result<Transactions, HistoryError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path)
        .map_err(|e| HistoryError::Io { source_name: name.clone(), message: e.to_string() })?;
    let mut t = Transactions::new(&name);
    History::each_jsonl(std::io::BufReader::with_capacity(1 << 20, file), &name, |e, line| t.push(&e, line))?;
    Ok(t)
}

/// [`read_file`] from any reader.
pub fn read_jsonl(reader: impl BufRead, source: &str) -> Result<Transactions, HistoryError> {
    let mut t = Transactions::new(source);
    History::each_jsonl(reader, source, |e, line| t.push(&e, line))?;
    Ok(t)
}
