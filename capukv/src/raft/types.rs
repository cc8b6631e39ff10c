//! The values the core reasons about: ids, terms, indexes, log entries, the
//! hard state that must survive a crash, and snapshots.

use bytes::Bytes;

use super::membership::Membership;

/// A node's id within the cluster. Ids are non-zero.
pub type NodeId = u64;
/// A Raft term. Term 0 precedes every election.
pub type Term = u64;
/// A log index. Index 0 is the empty log's sentinel; the first entry is 1.
pub type Index = u64;

/// What an entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A client command for the state machine.
    Command,
    /// The empty entry a new leader appends so it can commit in its own term.
    Noop,
    /// A new configuration ([`MembershipChange`](super::MembershipChange)
    /// in `data`), in force from the moment the entry is in the log.
    Membership,
}

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    pub index: Index,
    pub term: Term,
    pub kind: EntryKind,
    pub data: Bytes,
}

impl Entry {
    /// Approximate wire size, used to bound message and batch sizes.
    pub fn size(&self) -> usize {
        self.data.len() + 24
    }
}

/// What a node must persist before it sends any message that depends on it:
/// its current term, whom it voted for in that term, and its commit index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    pub commit: Index,
}

/// Where a snapshot sits in the log: it replaces every entry up to `index`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    pub index: Index,
    pub term: Term,
}

/// A state-machine snapshot. The core never looks inside `data`; it stores
/// the latest one so it can send it to followers that fell behind the log.
/// `membership` is the configuration in force at `meta.index`, which the
/// entries the snapshot replaces no longer tell, and `membership_context`
/// the caller's context that came with it (CapuKV: the members' addresses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub membership: Membership,
    pub membership_context: Bytes,
    pub data: Bytes,
}

/// Everything a node persisted, handed back to the core when it restarts.
#[derive(Debug, Clone, Default)]
pub struct PersistedState {
    pub hard_state: HardState,
    /// The latest snapshot, if the log was ever compacted.
    pub snapshot: Option<Snapshot>,
    /// The log entries after the snapshot, contiguous and in order.
    pub entries: Vec<Entry>,
}
