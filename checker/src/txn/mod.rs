//! Transactional checking of list-append histories (Elle's list-append
//! inference, Kingsbury & Alvaro, VLDB 2020): infer each key's version
//! order from the reads, build the dependency graph of the committed
//! transactions, find its cycles, and name every anomaly as Adya and Elle
//! do. The verdict is the strongest consistency model no anomaly rules out;
//! the history is valid when that is strict serializability.
//!
//! - [`history`]: transactions read from `"f": "txn"` events.
//! - [`infer`]: version orders, and the anomalies single reads show.
//! - [`graph`]: the dependency graph, its components and cycles.
//! - [`explain`]: each edge of a cycle in words, and a diagram.
//! - [`synth`]: strictly serializable histories, for tests and benchmarks.
//!
//! Everything is linear in the history (plus a sort), except the cycle
//! searches, which run inside strongly connected components only and are
//! bounded there.

pub mod explain;
pub mod graph;
pub mod history;
mod infer;
pub mod synth;

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use history::{Mop, Outcome, TXN, Transactions, Txn, read_file, read_jsonl, transactions};

use crate::history::{History, HistoryError};

/// An anomaly's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AnomalyKind {
    #[serde(rename = "G0")]
    G0,
    #[serde(rename = "G1a")]
    G1a,
    #[serde(rename = "G1b")]
    G1b,
    #[serde(rename = "G1c")]
    G1c,
    #[serde(rename = "G-single")]
    GSingle,
    #[serde(rename = "G2")]
    G2,
    #[serde(rename = "G0-realtime")]
    G0Realtime,
    #[serde(rename = "G1c-realtime")]
    G1cRealtime,
    #[serde(rename = "G-single-realtime")]
    GSingleRealtime,
    #[serde(rename = "G2-realtime")]
    G2Realtime,
    #[serde(rename = "internal")]
    Internal,
    #[serde(rename = "duplicate-elements")]
    DuplicateElements,
    #[serde(rename = "phantom-element")]
    PhantomElement,
    #[serde(rename = "incompatible-order")]
    IncompatibleOrder,
    #[serde(rename = "lost-append")]
    LostAppend,
}

impl AnomalyKind {
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::G0 => "G0",
            AnomalyKind::G1a => "G1a",
            AnomalyKind::G1b => "G1b",
            AnomalyKind::G1c => "G1c",
            AnomalyKind::GSingle => "G-single",
            AnomalyKind::G2 => "G2",
            AnomalyKind::G0Realtime => "G0-realtime",
            AnomalyKind::G1cRealtime => "G1c-realtime",
            AnomalyKind::GSingleRealtime => "G-single-realtime",
            AnomalyKind::G2Realtime => "G2-realtime",
            AnomalyKind::Internal => "internal",
            AnomalyKind::DuplicateElements => "duplicate-elements",
            AnomalyKind::PhantomElement => "phantom-element",
            AnomalyKind::IncompatibleOrder => "incompatible-order",
            AnomalyKind::LostAppend => "lost-append",
        }
    }

    /// What it means, in a sentence.
    pub fn meaning(self) -> &'static str {
        match self {
            AnomalyKind::G0 => "write cycle: transactions overwrote each other in a circle (dirty write)",
            AnomalyKind::G1a => "aborted read: a transaction saw a write of one that failed",
            AnomalyKind::G1b => "intermediate read: a transaction saw a state another was only half-way through",
            AnomalyKind::G1c => {
                "circular information flow: each transaction saw or overwrote the next's writes, round a circle"
            }
            AnomalyKind::GSingle => {
                "read skew: one anti-dependency closes a cycle (a transaction missed a write that the rest of the cycle says came first)"
            }
            AnomalyKind::G2 => {
                "anti-dependency cycle: transactions each missed another's write, round a circle (write skew)"
            }
            AnomalyKind::G0Realtime
            | AnomalyKind::G1cRealtime
            | AnomalyKind::GSingleRealtime
            | AnomalyKind::G2Realtime => {
                "a cycle only with real-time order: serializable, but not in the order the transactions happened"
            }
            AnomalyKind::Internal => "a transaction's read contradicts its own earlier operations",
            AnomalyKind::DuplicateElements => "a list holds one appended element twice",
            AnomalyKind::PhantomElement => "a read holds an element nobody appended",
            AnomalyKind::IncompatibleOrder => "two reads of a key disagree on the order of its elements",
            AnomalyKind::LostAppend => "an acknowledged append is missing from a read that began after it completed",
        }
    }

    /// The strongest model this anomaly leaves standing ([`MODELS`] order).
    fn strongest_allowed(self) -> Option<Model> {
        match self {
            AnomalyKind::G0Realtime
            | AnomalyKind::G1cRealtime
            | AnomalyKind::GSingleRealtime
            | AnomalyKind::G2Realtime
            | AnomalyKind::LostAppend => Some(Model::Serializable),
            AnomalyKind::G2 => Some(Model::SnapshotIsolation),
            AnomalyKind::GSingle => Some(Model::ReadCommitted),
            AnomalyKind::G1a | AnomalyKind::G1b | AnomalyKind::G1c => Some(Model::ReadUncommitted),
            AnomalyKind::G0
            | AnomalyKind::Internal
            | AnomalyKind::DuplicateElements
            | AnomalyKind::PhantomElement
            | AnomalyKind::IncompatibleOrder => None,
        }
    }
}

/// Consistency models, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    StrictSerializable,
    Serializable,
    SnapshotIsolation,
    ReadCommitted,
    ReadUncommitted,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::StrictSerializable => "strict-serializable",
            Model::Serializable => "serializable",
            Model::SnapshotIsolation => "snapshot-isolation",
            Model::ReadCommitted => "read-committed",
            Model::ReadUncommitted => "read-uncommitted",
        }
    }
}

/// One step of a cycle: a transaction, and why it comes before the next.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub txn: usize,
    pub describe: String,
    /// `ww`, `wr`, `rw` or `rt`: the edge to the next step's transaction
    /// (the last step's, to the first).
    pub edge: String,
    pub why: String,
}

/// One anomaly found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub txns: Vec<usize>,
    /// What happened, in words.
    pub explanation: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cycle: Vec<Step>,
    /// The cycle drawn (SVG), for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svg: Option<String>,
}

impl Anomaly {
    fn new(kind: AnomalyKind, txns: Vec<usize>, explanation: String) -> Anomaly {
        Anomaly { kind, txns, explanation, cycle: Vec::new(), svg: None }
    }
}

/// Anomalies kept per kind with their explanation (all are counted).
pub const EXAMPLES_PER_KIND: usize = 8;

/// The transactional check of a history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxnReport {
    /// Strict serializable: no anomaly at all.
    pub valid: bool,
    /// The strongest model no anomaly rules out (`null`: not even read
    /// uncommitted).
    pub strongest: Option<Model>,
    /// Models the anomalies rule out, strongest first.
    pub violated: Vec<Model>,
    pub txns: TxnCounts,
    pub keys: usize,
    pub edges: usize,
    /// Every anomaly found, by kind.
    pub counts: BTreeMap<AnomalyKind, usize>,
    /// Up to [`EXAMPLES_PER_KIND`] of each kind, explained.
    pub anomalies: Vec<Anomaly>,
    /// When the first anomaly became visible: the latest invocation among
    /// its transactions, earliest over all anomalies (history time, ns).
    pub first_anomaly_time: Option<u64>,
    pub elapsed_s: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct TxnCounts {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

/// Checks the history's transactions for strict serializability.
pub fn check(history: &History) -> Result<TxnReport, HistoryError> {
    let started = Instant::now();
    let h = transactions(history)?;
    check_transactions(&h, started)
}

/// [`check`] of transactions already read (`started`: when reading began,
/// for the time the report gives).
pub fn check_transactions(h: &Transactions, started: Instant) -> Result<TxnReport, HistoryError> {
    let invalid = |m: String| HistoryError::Unusable { source_name: h.source.clone(), message: m };
    let txns = &h.txns;
    let mut found = Vec::new();
    let facts = infer::infer(h, &mut found).map_err(invalid)?;
    let graph = graph::build(txns, &facts);
    let mut explained: BTreeMap<AnomalyKind, usize> = BTreeMap::new();
    for scc in graph::components(&graph, graph::DATA | graph::RT, None) {
        if let Some((kind, cycle)) = graph::worst_cycle(&graph, &scc) {
            let txns: Vec<usize> = cycle.iter().map(|s| s.0).collect();
            let explanation = format!(
                "{}: {} transactions in a cycle ({} of them in this strongly connected component)",
                kind.meaning(),
                cycle.len(),
                scc.len()
            );
            let mut a = Anomaly::new(kind, txns, explanation);
            // Only the examples kept are explained edge by edge.
            let n = explained.entry(kind).or_default();
            *n += 1;
            if *n <= EXAMPLES_PER_KIND {
                a.cycle = explain::steps(h, &facts, &cycle);
                a.svg = Some(explain::diagram(&a.cycle));
            }
            found.push(a);
        }
    }
    let first_anomaly_time = found.iter().filter_map(|a| a.txns.iter().map(|&t| txns[t].invoke_time).max()).min();
    let mut counts: BTreeMap<AnomalyKind, usize> = BTreeMap::new();
    let mut anomalies = Vec::new();
    for a in found {
        let n = counts.entry(a.kind).or_default();
        *n += 1;
        if *n <= EXAMPLES_PER_KIND {
            anomalies.push(a);
        }
    }
    anomalies.sort_by_key(|a| a.kind);
    let models = [
        Model::StrictSerializable,
        Model::Serializable,
        Model::SnapshotIsolation,
        Model::ReadCommitted,
        Model::ReadUncommitted,
    ];
    let ceiling = counts.keys().map(|k| k.strongest_allowed()).max_by_key(|m| m.map_or(usize::MAX, |m| m as usize));
    let strongest = match ceiling {
        None => Some(Model::StrictSerializable),
        Some(m) => m,
    };
    let violated = models.into_iter().filter(|m| strongest.is_none_or(|s| *m < s)).collect();
    let mut tc = TxnCounts::default();
    for t in txns {
        match t.outcome {
            Outcome::Ok => tc.ok += 1,
            Outcome::Fail => tc.fail += 1,
            Outcome::Info => tc.info += 1,
        }
    }
    Ok(TxnReport {
        valid: counts.is_empty(),
        strongest,
        violated,
        txns: tc,
        keys: h.keys.len(),
        edges: graph.edges(),
        counts,
        anomalies,
        first_anomaly_time,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

impl TxnReport {
    /// One line: the verdict and what broke it.
    pub fn summary(&self) -> String {
        if self.valid {
            return format!(
                "strict-serializable: {} committed transactions, {} keys, no anomaly",
                self.txns.ok, self.keys
            );
        }
        let found: Vec<String> = self.counts.iter().map(|(k, n)| format!("{n} × {}", k.name())).collect();
        let strongest = self.strongest.map_or("none of the models checked", Model::name);
        format!("not strict-serializable ({}); the strongest model left: {strongest}", found.join(", "))
    }
}
