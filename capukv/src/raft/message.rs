//! Messages between Raft nodes. The transport may drop, delay, duplicate and
//! reorder them; the core tolerates all of it.

use super::types::{Entry, Index, NodeId, Snapshot, Term};

/// One message from `from` to `to`, sent in `term`.
///
/// For a pre-vote request `term` is the term the sender *would* campaign in
/// (its term + 1); the sender has not moved to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: MessageBody,
}

/// The Raft RPCs and their responses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageBody {
    /// Replicate `entries` following (`prev_index`, `prev_term`).
    Append {
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    },
    /// Answer to `Append` or `Snapshot`.
    AppendResponse(AppendResponse),
    /// Leader liveness and ReadIndex confirmation. `commit` is capped at what
    /// the follower is known to hold; `read_round` is the ReadIndex round it
    /// confirms (0 for none).
    Heartbeat {
        commit: Index,
        read_round: u64,
    },
    HeartbeatResponse {
        read_round: u64,
    },
    /// A vote request. With `pre_vote` the receiver only says whether it would
    /// vote; nobody changes term. `transfer` marks an election started by a
    /// leadership transfer, which followers must not ignore even while they
    /// still hear from the old leader.
    Vote {
        pre_vote: bool,
        transfer: bool,
        last_index: Index,
        last_term: Term,
    },
    VoteResponse {
        pre_vote: bool,
        granted: bool,
    },
    /// The leader's log no longer holds what the follower needs.
    Snapshot(Snapshot),
    /// Leadership transfer: the receiver should campaign at once.
    TimeoutNow,
}

/// How a follower answered an `Append` or `Snapshot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppendResponse {
    /// The follower's log matches the leader's up to `match_index`.
    Accepted { match_index: Index },
    /// The follower has no entry at `rejected_index` with the sent term.
    /// `hint_index`/`hint_term` name the last entry the follower has whose
    /// term is at most the sent one, so the leader can skip a whole term of
    /// mismatched entries in one round trip instead of one entry per trip.
    Rejected { rejected_index: Index, hint_index: Index, hint_term: Term },
}

impl MessageBody {
    /// Short name, for logs and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::Append { .. } => "append",
            MessageBody::AppendResponse(_) => "append-response",
            MessageBody::Heartbeat { .. } => "heartbeat",
            MessageBody::HeartbeatResponse { .. } => "heartbeat-response",
            MessageBody::Vote { pre_vote: true, .. } => "pre-vote",
            MessageBody::Vote { .. } => "vote",
            MessageBody::VoteResponse { pre_vote: true, .. } => "pre-vote-response",
            MessageBody::VoteResponse { .. } => "vote-response",
            MessageBody::Snapshot(_) => "snapshot",
            MessageBody::TimeoutNow => "timeout-now",
        }
    }
}
