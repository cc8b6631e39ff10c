//! End-of-run checks: what the history alone misses. Each check looks at
//! something other than the client operations (the replicas' states, the
//! servers' logs, the operations' success counts) and gives a [`Finding`];
//! the run's verdict combines them with the checker's.
//!
//! - [`replicas`]: every node's state machine digest at one applied index
//!   (a leader that commits alone leaves replicas that differ).
//! - [`logs`]: panics, corruption and `ERROR` lines the run did not cause on
//!   purpose (Jepsen's log-file-pattern checker).
//! - [`raft_log`]: the nodes' committed Raft logs agree and hold every
//!   acknowledged write; they also settle the info writes for the checker.
//! - [`versions`]: what the history says held at a revision still reads
//!   so there (the store's version history against its own past).
//! - [`stats`]: a run in which an operation kind never succeeded, or too few
//!   operations did, proves nothing: it is vacuous, not valid.

pub mod logs;
pub mod raft_log;
pub mod replicas;
pub mod stats;
pub mod versions;

use serde::Serialize;

/// What a check concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    /// The run is invalid for this check's reason.
    Failed,
    /// The run proves nothing (too little succeeded).
    Vacuous,
    /// The check could not be made (the reason says why); never a pass.
    Skipped,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// `replica-convergence`, `log-scan`, `operation-stats`.
    pub check: &'static str,
    pub outcome: Outcome,
    /// One line: what was found.
    pub summary: String,
    /// The evidence: one line each (nodes and their digests, log lines...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl Finding {
    pub fn new(check: &'static str, outcome: Outcome, summary: impl Into<String>, details: Vec<String>) -> Finding {
        Finding { check, outcome, summary: summary.into(), details }
    }
}
