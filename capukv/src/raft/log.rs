//! The core's view of the replicated log: a snapshot point, the entries after
//! it, and four cursors (committed, applied, the first entry not yet handed
//! to the caller for persistence, and the last one the caller said is
//! durable).
//!
//! Entries live in memory from the last snapshot on; the caller compacts the
//! log with snapshots, which keeps this bounded.

use super::types::{Entry, Index, SnapshotMeta, Term};

#[derive(Debug, Clone)]
pub struct RaftLog {
    /// The last entry covered by the snapshot (index 0, term 0 for none).
    snapshot: SnapshotMeta,
    /// `entries[i]` has index `snapshot.index + 1 + i`.
    entries: Vec<Entry>,
    committed: Index,
    /// Highest index handed out to be applied.
    applied: Index,
    /// Lowest index not yet handed out for persistence.
    unstable_from: Index,
    /// The last entry the caller reported durable ([`RaftLog::persisted`])
    /// and not replaced since.
    durable: Index,
}

impl RaftLog {
    /// A log restored from what was persisted: everything in it is stable.
    pub fn restore(snapshot: SnapshotMeta, entries: Vec<Entry>, committed: Index, applied: Index) -> RaftLog {
        let unstable_from = snapshot.index + entries.len() as Index + 1;
        RaftLog { snapshot, entries, committed, applied, unstable_from, durable: unstable_from - 1 }
    }

    pub fn snapshot_meta(&self) -> SnapshotMeta {
        self.snapshot
    }

    pub fn first_index(&self) -> Index {
        self.snapshot.index + 1
    }

    pub fn last_index(&self) -> Index {
        self.snapshot.index + self.entries.len() as Index
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot.term, |e| e.term)
    }

    pub fn committed(&self) -> Index {
        self.committed
    }

    pub fn applied(&self) -> Index {
        self.applied
    }

    /// The term of the entry at `index`: `None` when it is past the end or
    /// compacted away (the snapshot's own index still has a known term).
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        if index < self.snapshot.index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.snapshot.index - 1) as usize].term)
    }

    pub fn matches(&self, index: Index, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Whether a candidate whose log ends at (`last_index`, `last_term`) is at
    /// least as up to date as this log (§5.4.1).
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries from `lo` on, at most `max_count` and about `max_bytes`, but
    /// always at least one if there is one. `lo` must not be compacted.
    pub fn entries_from(&self, lo: Index, max_count: usize, max_bytes: usize) -> Vec<Entry> {
        debug_assert!(lo >= self.first_index(), "entries_from({lo}) below first index");
        if lo > self.last_index() {
            return Vec::new();
        }
        let start = (lo - self.snapshot.index - 1) as usize;
        let mut bytes = 0;
        let mut out = Vec::new();
        for entry in self.entries[start..].iter().take(max_count) {
            bytes += entry.size();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
        }
        out
    }

    /// The last membership entry at or before `index` that the log still
    /// holds (compacted ones are in the snapshot's configuration instead).
    pub fn last_membership_entry(&self, index: Index) -> Option<&Entry> {
        let end = index.min(self.last_index());
        if end <= self.snapshot.index {
            return None;
        }
        let upto = (end - self.snapshot.index) as usize;
        self.entries[..upto].iter().rev().find(|e| e.kind == super::types::EntryKind::Membership)
    }

    /// Appends entries the leader created; their indexes must follow on.
    pub fn append(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for entry in entries {
            debug_assert_eq!(entry.index, self.last_index() + 1);
            self.entries.push(entry);
        }
    }

    /// A follower's handling of the leader's entries after (`prev_index`,
    /// `prev_term`): if the log matches there, drop any conflicting suffix,
    /// append what is new and return the index of the last entry the leader
    /// sent. `None` when the log does not match at `prev_index`.
    pub fn maybe_append(&mut self, prev_index: Index, prev_term: Term, entries: &[Entry]) -> Option<Index> {
        if !self.matches(prev_index, prev_term) {
            return None;
        }
        let last_new = prev_index + entries.len() as Index;
        // The first entry that is new or conflicts; entries that match are kept
        // so a delayed or duplicated message can never shorten the log.
        let first_new = entries.iter().position(|e| !self.matches(e.index, e.term));
        if let Some(pos) = first_new {
            let from = entries[pos].index;
            assert!(
                from > self.committed,
                "raft invariant broken: truncating committed entry {from} (commit {})",
                self.committed
            );
            self.entries.truncate((from - self.snapshot.index - 1) as usize);
            self.unstable_from = self.unstable_from.min(from);
            self.durable = self.durable.min(from - 1);
            self.entries.extend_from_slice(&entries[pos..]);
        }
        Some(last_new)
    }

    /// The last entry at or before `index` whose term is at most `term`, as
    /// (index, term). Used both by a follower to build a rejection hint and
    /// by the leader to act on one. Stops at the snapshot point.
    pub fn find_conflict_by_term(&self, index: Index, term: Term) -> (Index, Term) {
        let mut i = index.min(self.last_index());
        while i > self.snapshot.index {
            let t = self.term(i).expect("index within the log");
            if t <= term {
                return (i, t);
            }
            i -= 1;
        }
        (self.snapshot.index, self.snapshot.term)
    }

    pub fn commit_to(&mut self, index: Index) -> bool {
        if index <= self.committed {
            return false;
        }
        assert!(index <= self.last_index(), "commit {index} beyond last index {}", self.last_index());
        self.committed = index;
        true
    }

    /// The entries the caller must persist (new or rewritten since the last
    /// call), marking them handed out.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let last = self.last_index();
        if self.unstable_from > last {
            return Vec::new();
        }
        let start = (self.unstable_from - self.snapshot.index - 1) as usize;
        self.unstable_from = last + 1;
        self.entries[start..].to_vec()
    }

    /// The last entry handed out for persistence by an earlier call of
    /// [`RaftLog::take_unstable`] and not replaced since.
    pub fn stable_index(&self) -> Index {
        (self.unstable_from - 1).min(self.last_index())
    }

    /// The caller made the entries it was handed up to `index` (of term
    /// `term`) durable. Ignored when that entry was replaced since (its term
    /// differs) or never handed out. Returns whether the durable index rose.
    pub fn persisted(&mut self, index: Index, term: Term) -> bool {
        if index <= self.durable || index > self.stable_index() || self.term(index) != Some(term) {
            return false;
        }
        self.durable = index;
        true
    }

    /// The last entry known to be durable on this node.
    pub fn durable_index(&self) -> Index {
        self.durable
    }

    pub fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index()
    }

    /// Committed entries not yet handed out to be applied, marking them
    /// handed out.
    pub fn take_committed(&mut self) -> Vec<Entry> {
        if self.applied >= self.committed {
            return Vec::new();
        }
        let out = self.entries_from(self.applied + 1, usize::MAX, usize::MAX);
        let out: Vec<Entry> = out.into_iter().take((self.committed - self.applied) as usize).collect();
        self.applied = self.committed;
        out
    }

    pub fn has_committed_to_apply(&self) -> bool {
        self.applied < self.committed
    }

    /// Drops entries up to `index`, which the caller's snapshot now covers.
    pub fn compact(&mut self, index: Index) {
        let term = self.term(index).expect("compaction point within the log");
        let drop = (index - self.snapshot.index) as usize;
        self.entries.drain(..drop);
        self.snapshot = SnapshotMeta { index, term };
    }

    /// Replaces the whole log with a snapshot received from the leader.
    pub fn install_snapshot(&mut self, meta: SnapshotMeta) {
        self.entries.clear();
        self.snapshot = meta;
        self.committed = meta.index;
        self.applied = meta.index;
        self.unstable_from = meta.index + 1;
        // Durable again once the caller says it wrote the snapshot.
        self.durable = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::EntryKind;
    use bytes::Bytes;

    fn entry(index: Index, term: Term) -> Entry {
        Entry { index, term, kind: EntryKind::Command, data: Bytes::from(format!("{index}@{term}")) }
    }

    fn log_of(terms: &[Term]) -> RaftLog {
        let entries = terms.iter().enumerate().map(|(i, &t)| entry(i as Index + 1, t)).collect();
        RaftLog::restore(SnapshotMeta::default(), entries, 0, 0)
    }

    #[test]
    fn append_truncates_only_the_conflicting_suffix() {
        let mut log = log_of(&[1, 1, 2, 2]);
        // A stale, shorter message must not shorten the log.
        assert_eq!(log.maybe_append(1, 1, &[entry(2, 1)]), Some(2));
        assert_eq!(log.last_index(), 4);
        // A conflicting entry at 3 replaces everything from 3 on.
        assert_eq!(log.maybe_append(2, 1, &[entry(3, 3)]), Some(3));
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.term(3), Some(3));
        assert_eq!(log.take_unstable(), vec![entry(3, 3)]);
        // Mismatch at prev is a rejection.
        assert_eq!(log.maybe_append(3, 2, &[entry(4, 3)]), None);
    }

    #[test]
    fn only_what_the_caller_reported_durable_and_was_not_replaced_since_is_durable() {
        let mut log = log_of(&[1, 1]);
        assert_eq!(log.durable_index(), 2, "a restored log is on disk");
        log.append([entry(3, 2), entry(4, 2)]);
        assert_eq!(log.durable_index(), 2, "appended is not durable");
        assert!(!log.persisted(4, 2), "not even handed out yet");
        assert_eq!(log.take_unstable().len(), 2);
        assert!(!log.persisted(4, 1), "another term: not this entry");
        assert!(log.persisted(4, 2));
        assert_eq!(log.durable_index(), 4);
        // A conflicting append replaces 4: it is durable no more.
        assert_eq!(log.maybe_append(3, 2, &[entry(4, 3)]), Some(4));
        assert_eq!(log.durable_index(), 3);
        log.take_unstable();
        assert!(!log.persisted(4, 2), "a late report of the replaced entry counts for nothing");
        assert!(log.persisted(4, 3));
        log.install_snapshot(SnapshotMeta { index: 9, term: 3 });
        assert_eq!(log.durable_index(), 0, "a snapshot is durable once written");
        assert!(log.persisted(9, 3));
        assert_eq!(log.durable_index(), 9);
    }

    #[test]
    fn conflict_hint_skips_a_whole_term() {
        let log = log_of(&[1, 1, 2, 2, 2, 2]);
        assert_eq!(log.find_conflict_by_term(6, 1), (2, 1));
        assert_eq!(log.find_conflict_by_term(9, 5), (6, 2));
        assert_eq!(log.find_conflict_by_term(6, 0), (0, 0));
    }

    #[test]
    fn compaction_keeps_terms_at_the_snapshot_point() {
        let mut log = log_of(&[1, 1, 2, 3]);
        log.commit_to(3);
        assert_eq!(log.take_committed().len(), 3);
        log.compact(2);
        assert_eq!(log.first_index(), 3);
        assert_eq!(log.term(2), Some(1));
        assert_eq!(log.term(1), None);
        assert_eq!(log.entries_from(3, 10, 1 << 20).len(), 2);
        assert!(log.is_up_to_date(4, 3) && !log.is_up_to_date(9, 2));
    }

    #[test]
    #[should_panic(expected = "truncating committed entry")]
    fn truncating_a_committed_entry_is_refused() {
        let mut log = log_of(&[1, 1, 1]);
        log.commit_to(3);
        log.maybe_append(1, 1, &[entry(2, 2)]);
    }
}
