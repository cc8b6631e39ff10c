//! How a node is set up: who it is, who its peers are, and its timing and
//! flow-control limits, all counted in ticks and entries, never in time.

use super::error::RaftError;
use super::types::{Index, NodeId};

#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// The voters the cluster was bootstrapped with, this node's included;
    /// empty for a node that joins a running cluster (it learns the
    /// configuration from the leader). Once the log or a snapshot holds a
    /// configuration, that one is in force instead.
    pub voters: Vec<NodeId>,
    /// A follower campaigns after a random timeout in
    /// `[election_ticks, 2 * election_ticks)` without hearing from a leader.
    pub election_ticks: u32,
    /// A leader sends heartbeats every `heartbeat_ticks`.
    pub heartbeat_ticks: u32,
    /// Most entries in one `Append`.
    pub max_entries_per_message: usize,
    /// Most payload bytes in one `Append` (at least one entry is always sent).
    pub max_bytes_per_message: usize,
    /// Most unacknowledged `Append`s in flight to one follower.
    pub max_inflight_messages: usize,
    /// Campaign with a pre-vote round first (thesis §9.6), so a node that was
    /// cut off cannot disrupt a healthy cluster by raising the term.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum for an election timeout
    /// steps down, and followers that hear from a leader ignore vote requests.
    pub check_quorum: bool,
    /// The state machine's applied index at start (what the caller restored).
    pub applied: Index,
    /// Seed of the election-timeout randomness.
    pub seed: u64,
    /// A bug planted on purpose in the core (see [`crate::planted`]).
    #[cfg(feature = "planted-bugs")]
    pub planted: Option<crate::planted::Bug>,
}

impl Config {
    /// A configuration with the defaults the server uses.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_entries_per_message: 256,
            max_bytes_per_message: 1 << 20,
            max_inflight_messages: 64,
            pre_vote: true,
            check_quorum: true,
            applied: 0,
            seed: id,
            #[cfg(feature = "planted-bugs")]
            planted: None,
        }
    }

    /// Whether the planted bug `bug` is switched on (never without the
    /// `planted-bugs` feature, where the call sites are not compiled).
    #[cfg(feature = "planted-bugs")]
    pub fn planted(&self, bug: crate::planted::Bug) -> bool {
        self.planted == Some(bug)
    }

    pub fn validate(&self) -> Result<(), RaftError> {
        let bad = |why: String| Err(RaftError::InvalidConfig(why));
        if self.id == 0 {
            return bad("node id 0 is reserved; ids start at 1".into());
        }
        if !self.voters.is_empty() && !self.voters.contains(&self.id) {
            return bad(format!("node {} is not among the voters {:?}", self.id, self.voters));
        }
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.voters.len() || sorted.contains(&0) {
            return bad(format!("voters {:?} must be distinct non-zero ids", self.voters));
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return bad(format!(
                "election_ticks ({}) must exceed heartbeat_ticks ({}), which must be at least 1",
                self.election_ticks, self.heartbeat_ticks
            ));
        }
        if self.max_entries_per_message == 0 || self.max_inflight_messages == 0 {
            return bad("max_entries_per_message and max_inflight_messages must be at least 1".into());
        }
        Ok(())
    }
}
