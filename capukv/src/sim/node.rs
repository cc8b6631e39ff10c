//! A simulated node: the real core, what it has persisted (its "disk", which
//! survives crashes), and a state machine (which does not).

use std::hash::{DefaultHasher, Hash, Hasher};

use bytes::Bytes;

use crate::raft::{
    Entry, EntryKind, HardState, Index, Membership, MembershipChange, NodeId, PersistedState, Raft, ReadState,
    Snapshot, Term,
};

/// Everything the node made durable. It also keeps, for the checks, a
/// prefix hash of each entry: a hash of the whole log up to it, so two logs
/// agree up to an index exactly when their prefix hashes there are equal.
#[derive(Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    /// Prefix hash at the snapshot point.
    pub snapshot_prefix: u64,
    pub entries: Vec<Entry>,
    pub prefixes: Vec<u64>,
}

impl Disk {
    pub fn snapshot_index(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    pub fn last_index(&self) -> Index {
        self.snapshot_index() + self.entries.len() as Index
    }

    /// The prefix hash at `index`, if the disk still holds that entry.
    pub fn prefix_at(&self, index: Index) -> Option<u64> {
        let snap = self.snapshot_index();
        if index == snap {
            return Some(self.snapshot_prefix);
        }
        if index < snap || index > self.last_index() {
            return None;
        }
        Some(self.prefixes[(index - snap - 1) as usize])
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        let snap = self.snapshot_index();
        if index <= snap || index > self.last_index() {
            return None;
        }
        Some(&self.entries[(index - snap - 1) as usize])
    }

    /// Writes entries (replacing any from the first one on) and returns the
    /// (index, term, prefix hash) of each written.
    pub fn write_entries(&mut self, entries: Vec<Entry>) -> Vec<(Index, Term, u64)> {
        let Some(first) = entries.first() else { return Vec::new() };
        let keep = (first.index - self.snapshot_index() - 1) as usize;
        self.entries.truncate(keep);
        self.prefixes.truncate(keep);
        let mut prev = self.prefixes.last().copied().unwrap_or(self.snapshot_prefix);
        let mut written = Vec::with_capacity(entries.len());
        for e in entries {
            prev = chain(prev, entry_hash(&e));
            written.push((e.index, e.term, prev));
            self.entries.push(e);
            self.prefixes.push(prev);
        }
        written
    }

    /// A snapshot replaces the log up to its index (all of it, when received
    /// from the leader: `keep_tail` false).
    pub fn write_snapshot(&mut self, snapshot: Snapshot, prefix: u64, keep_tail: bool) {
        let drop = if keep_tail {
            ((snapshot.meta.index - self.snapshot_index()) as usize).min(self.entries.len())
        } else {
            self.entries.len()
        };
        self.entries.drain(..drop);
        self.prefixes.drain(..drop);
        self.snapshot = Some(snapshot);
        self.snapshot_prefix = prefix;
    }

    /// The configuration in force just before `index` on this disk, and
    /// the index of the entry that set it (0: the snapshot's or the
    /// bootstrap one).
    pub fn membership_before(&self, index: Index, bootstrap: &[NodeId]) -> (Membership, Index) {
        let snap = self.snapshot_index();
        let upto = (index.saturating_sub(1).min(self.last_index()).saturating_sub(snap)) as usize;
        let found = self.entries[..upto].iter().rev().find(|e| e.kind == EntryKind::Membership);
        match (found, &self.snapshot) {
            (Some(e), _) => {
                let change = MembershipChange::decode(&e.data).expect("the simulation writes readable changes");
                (change.membership, e.index)
            }
            (None, Some(s)) => (s.membership.clone(), 0),
            (None, None) => (Membership::new(bootstrap.iter().copied(), []), 0),
        }
    }

    pub fn persisted(&self) -> PersistedState {
        PersistedState { hard_state: self.hard_state, snapshot: self.snapshot.clone(), entries: self.entries.clone() }
    }
}

/// The replicated state machine: it folds every applied entry into a digest,
/// so two replicas at one applied index hold the same state exactly when
/// their digests are equal.
#[derive(Default, Clone, Copy)]
pub struct StateMachine {
    pub applied: Index,
    pub digest: u64,
}

impl StateMachine {
    pub fn apply(&mut self, entry: &Entry) {
        self.applied = entry.index;
        self.digest = chain(self.digest, entry_hash(entry));
    }

    pub fn encode(&self) -> Bytes {
        let mut buf = Vec::with_capacity(16);
        buf.extend_from_slice(&self.applied.to_le_bytes());
        buf.extend_from_slice(&self.digest.to_le_bytes());
        Bytes::from(buf)
    }

    pub fn decode(data: &[u8]) -> StateMachine {
        let word = |i: usize| u64::from_le_bytes(data[i..i + 8].try_into().expect("16-byte snapshot"));
        StateMachine { applied: word(0), digest: word(8) }
    }
}

pub struct SimNode {
    pub id: NodeId,
    /// `None` while crashed.
    pub raft: Option<Raft>,
    pub disk: Disk,
    pub sm: StateMachine,
    /// Confirmed reads waiting for the state machine to catch up.
    pub reads: Vec<ReadState>,
    /// Times this node has started, to vary its seed across restarts.
    pub boots: u64,
    /// While crashed: the tick it comes back.
    pub restart_at: Option<u64>,
    /// While paused: the tick it resumes. A paused node neither ticks nor
    /// receives; messages for it wait.
    pub paused_until: Option<u64>,
    /// A durability report held back to its next batch (the write is on
    /// disk, the core not told yet), as an asynchronous storage would.
    pub late_report: Option<(Index, Term)>,
    /// Whether the node exists: churn runs start with free slots, and a
    /// replaced node is wiped and gone until it is added back.
    pub present: bool,
    /// The voters it starts its core with: the founding voters, or none for
    /// a node that joined later and learns the configuration from the leader.
    pub bootstrap: Vec<NodeId>,
}

impl SimNode {
    /// A node with an empty disk, not started: a founder (`bootstrap` the
    /// founding voters) or one joining (`bootstrap` empty).
    pub fn new(id: NodeId, bootstrap: Vec<NodeId>) -> SimNode {
        SimNode {
            id,
            raft: None,
            disk: Disk::default(),
            sm: StateMachine::default(),
            reads: Vec::new(),
            boots: 0,
            restart_at: None,
            paused_until: None,
            late_report: None,
            present: true,
            bootstrap,
        }
    }

    /// Up and not paused: it can act.
    pub fn is_running(&self, now: u64) -> bool {
        self.raft.is_some() && self.paused_until.is_none_or(|until| until <= now)
    }
}

pub fn entry_hash(e: &Entry) -> u64 {
    let mut h = DefaultHasher::new();
    (e.index, e.term, e.kind, &e.data).hash(&mut h);
    h.finish()
}

pub fn chain(prev: u64, next: u64) -> u64 {
    let mut h = DefaultHasher::new();
    (prev, next).hash(&mut h);
    h.finish()
}
