//! What the core refuses, and why.

use super::types::{Index, NodeId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    /// Proposals and reads go to the leader; `leader` is the one this node
    /// knows of, if any.
    #[error("not the leader (leader: {})", fmt_leader(*.leader))]
    NotLeader { leader: Option<NodeId> },
    /// The leader is handing over to another node and takes no proposals.
    #[error("leadership is being transferred to node {0}")]
    TransferInProgress(NodeId),
    #[error("node {0} is not a voter in this cluster")]
    UnknownNode(NodeId),
    /// The membership change asked for breaks a rule of
    /// [`membership`](super::membership).
    #[error("membership change refused: {0}")]
    BadMembershipChange(String),
    /// The previous change (at this index) is not committed yet.
    #[error("the membership change at index {0} is not committed yet; one change at a time")]
    ChangeInProgress(Index),
    /// A new leader takes membership changes only after it has committed an
    /// entry of its own term.
    #[error("the leader has not yet committed an entry of its term; retry shortly")]
    LeaderNotReady,
    #[error("invalid raft configuration: {0}")]
    InvalidConfig(String),
    /// The persisted state handed back at restart does not hold together.
    #[error("persisted raft state is inconsistent: {0}")]
    CorruptState(String),
    #[error("cannot compact to index {index}: {why}")]
    BadCompaction { index: Index, why: String },
}

fn fmt_leader(leader: Option<NodeId>) -> String {
    leader.map_or_else(|| "unknown".to_string(), |id| id.to_string())
}
