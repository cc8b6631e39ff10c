//! What the core hands to its caller: one batch of work to persist, send and
//! apply, drained with [`Raft::ready`](super::Raft::ready).

use super::message::Message;
use super::types::{Entry, HardState, Index, NodeId, Snapshot, Term};

/// A node's role in its current term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    /// Asking, without changing term, whether it could win an election.
    PreCandidate,
    Candidate,
    Leader,
}

/// The volatile facts a caller may want to show or act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SoftState {
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
}

/// A confirmed ReadIndex read: once the state machine has applied `index`,
/// serving `request` from it is linearizable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadState {
    pub request: u64,
    pub index: Index,
}

/// One batch of the core's output, handled as the module docs of
/// [`crate::raft`] say (the caller's contract is stated there once).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Ready {
    /// Set when role, term or known leader changed since the last batch.
    pub soft_state: Option<SoftState>,
    pub hard_state: Option<HardState>,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    /// The messages promise nothing this batch persists: the node leads and
    /// its term and vote are already durable. The caller may then send them
    /// before (or while) persisting, so that followers write their copies
    /// while the leader writes its own (Raft thesis §10.2.1). The leader's
    /// own entries count toward commit only once reported durable.
    pub send_first: bool,
    pub committed_entries: Vec<Entry>,
    /// The last entry the caller reported durable (0 when this batch
    /// installs a snapshot). Committed entries up to it need not wait for
    /// this batch's fsync: etcd's server likewise applies them in parallel
    /// with its WAL write. The others (entries committed by a quorum of
    /// followers before the leader's own write, a follower's entries that
    /// came with their commit index) must.
    pub persisted_index: Index,
    pub read_states: Vec<ReadState>,
    pub dropped_reads: Vec<u64>,
}

impl Ready {
    /// Takes the committed entries that may be applied before this batch is
    /// persisted: those at or below `persisted_index`.
    pub fn take_committed_persisted(&mut self) -> Vec<Entry> {
        let n = self.committed_entries.partition_point(|e| e.index <= self.persisted_index);
        self.committed_entries.drain(..n).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
            && self.dropped_reads.is_empty()
    }
}
