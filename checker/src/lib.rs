//! Linearizability checking of recorded client histories.
//!
//! This crate knows nothing of CapuKV. It reads histories in the JSON Lines
//! format of `docs/history-format.md` (and Jepsen's `history.edn`), pairs
//! invocations with completions into [`Operation`]s, splits them by key
//! (linearizability is compositional) and searches each key for a
//! linearization against a sequential model, Porcupine-style: Wing & Gong /
//! Lowe's just-in-time search over a linked list of call and return entries,
//! memoizing (set of linearized operations, model state).
//!
//! - [`history`]: events and the JSON Lines reader; [`edn`]: Jepsen's format.
//! - [`operation`]: events paired into operations, per key.
//! - [`model`]: the sequential specifications (stateright `SequentialSpec`s).
//! - [`search`]: the linearizability search for one key;
//!   [`append_inference`]: append-only keys decided without one;
//!   [`version_inference`]: keys of writes, appends and compare-and-sets
//!   whose reads each name one write and the appends after it, likewise.
//! - [`revisions`]: the store's revisions checked across all keys.
//! - [`settlement`]: info writes settled from the store's log.
//! - [`check`]: the whole-history check: keys in parallel, a time and memory
//!   budget, verdicts and counterexamples.
//! - [`report`]: the HTML report of a run: plots, timeline, invalid keys.
//! - [`synth`]: random concurrent histories, for tests and benchmarks.
//! - [`txn`]: transactions checked for strict serializability (Elle's
//!   list-append inference, dependency cycles, Adya's anomalies).

pub mod append_inference;
pub mod check;
pub mod edn;
pub mod history;
pub mod key;
pub mod model;
pub mod operation;
pub mod porcupine;
pub mod report;
pub mod revisions;
pub mod search;
pub mod settlement;
pub mod summary;
pub mod synth;
pub mod txn;
pub mod value;
pub mod version_inference;

pub use check::{Budget, CheckReport, KeyReport, Verdict, check_history, check_settled};
pub use history::{Event, EventType, FaultMark, History, HistoryError, Process, Semantics, WriteId};
pub use key::Key;
pub use model::ModelKind;
pub use operation::{Input, Operation, Output};
pub use value::Value;
