//! A seeded, deterministic simulation of whole clusters of the real Raft core.
//!
//! One seed fixes everything: the cluster size, the faults, the message
//! delays, every election timeout and every client request. A run drives
//! 3 or 5 [`Raft`](crate::raft::Raft) nodes through a network that drops,
//! delays, duplicates and reorders messages and partitions nodes; crashes
//! nodes and restarts them from only what they persisted; compacts logs and
//! installs snapshots; transfers leadership; and has clients proposing and
//! reading; with `churn`, it also changes the membership under all of it.
//! After every tick it checks Raft's safety properties
//! ([`invariants`]) and, after the final heal, that the cluster recovers
//! within [`RECOVERY_BOUND_TICKS`].
//!
//! Every output of every node is hashed into a trace hash, so two runs of
//! one seed can be compared for identical behaviour.

mod cluster;
pub mod invariants;
mod network;
mod node;
mod scenario;

pub use cluster::{Outcome, Stats, run, run_with};
pub use invariants::Violation;
pub use scenario::{FaultKind, Faults, MAX_NODES, Scenario};

/// After the final heal (network whole, every node up) a leader must be
/// elected and commit a new proposal within this many ticks. Election
/// timeouts are 10–20 ticks, so this allows for several split votes.
pub const RECOVERY_BOUND_TICKS: u64 = 200;
