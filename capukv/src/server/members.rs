//! Who the members are and where they listen: the address book a node keeps
//! beside its Raft core's configuration.
//!
//! Addresses travel inside membership entries (their context is the whole
//! book of the new configuration), so every node that holds the entry can
//! reach every member, and the book is kept in the node's storage so that a
//! restart knows members its flags do not name. A node also learns a
//! sender it has not heard of from the headers of its stream: a member
//! added by an entry this node does not hold yet (a new leader, for a node
//! that lags) must still be answered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::raft::{EntryKind, Index, Membership, MembershipChange, NodeId, PersistedState, Snapshot};

/// Where one member listens.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Addresses {
    /// Its Raft (peer) address.
    pub raft: String,
    /// Its client address (empty until known).
    #[serde(default)]
    pub api: String,
}

/// Addresses by node id.
pub type Book = BTreeMap<NodeId, Addresses>;

/// The context of a membership entry: the new configuration's book.
pub fn encode_book(book: &Book) -> Bytes {
    Bytes::from(serde_json::to_vec(book).expect("an address book serializes"))
}

pub fn decode_book(data: &[u8]) -> Result<Book, String> {
    serde_json::from_slice(data).map_err(|e| format!("unreadable address book: {e}"))
}

/// The book a membership change's context holds (`None` for a change
/// without one: a leader restating the founders).
pub fn book_of(change: &MembershipChange) -> Option<Result<Book, String>> {
    (!change.context.is_empty()).then(|| decode_book(&change.context))
}

/// The book a snapshot's configuration came with, if any.
pub fn book_of_snapshot(snapshot: &Snapshot) -> Option<Result<Book, String>> {
    book_of(&MembershipChange { membership: snapshot.membership.clone(), context: snapshot.membership_context.clone() })
}

/// Every address the persisted snapshot and log entries carry, the later
/// ones winning.
pub fn books_in(persisted: &PersistedState) -> Book {
    let mut book = Book::new();
    if let Some(Some(Ok(b))) = persisted.snapshot.as_ref().map(book_of_snapshot) {
        book.extend(b);
    }
    for e in persisted.entries.iter().filter(|e| e.kind == EntryKind::Membership) {
        if let Some(Ok(b)) = MembershipChange::decode(&e.data).ok().as_ref().and_then(book_of) {
            book.extend(b);
        }
    }
    book
}

/// What the API and the peer gate see of the membership: the configuration
/// in force on this node, the index of the entry that set it, and the
/// addresses of every node it knows of (members, and former ones until the
/// book is rewritten).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub membership: Membership,
    pub config_index: Index,
    pub book: Book,
    /// The ids retired by the last configuration this node knows is
    /// committed: the peer gate refuses them. (Not those of a change still
    /// uncommitted: a leader removing itself still leads until it commits.)
    pub removed: BTreeSet<NodeId>,
}

pub type SharedDirectory = Arc<RwLock<Directory>>;

impl Directory {
    /// Puts `membership` (set at `index`, `committed` or not yet) in force.
    pub fn set_membership(&mut self, membership: Membership, index: Index, committed: bool) {
        if committed {
            self.removed = membership.retired.clone();
        }
        self.membership = membership;
        self.config_index = index;
    }

    /// Every node id this node knows an address or a role for.
    pub fn known(&self) -> BTreeSet<NodeId> {
        self.book.keys().copied().chain(self.membership.members()).collect()
    }

    /// The book restricted to the members of `membership`, with `extra`
    /// (a member being added) on top: the context of a change.
    pub fn book_for(&self, membership: &Membership, extra: Option<(NodeId, Addresses)>) -> Book {
        let mut book: Book =
            self.book.iter().filter(|(id, _)| membership.contains(**id)).map(|(&id, a)| (id, a.clone())).collect();
        if let Some((id, addrs)) = extra {
            book.insert(id, addrs);
        }
        book
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_book_round_trips_and_a_broken_one_is_an_error() {
        let mut book = Book::new();
        book.insert(4, Addresses { raft: "10.0.0.4:7000".into(), api: "10.0.0.4:8000".into() });
        assert_eq!(decode_book(&encode_book(&book)).unwrap(), book);
        assert!(decode_book(b"{not json").unwrap_err().contains("unreadable"));
    }

    #[test]
    fn a_restart_finds_the_addresses_its_snapshot_and_log_carry() {
        use crate::raft::{Entry, Snapshot};
        let book =
            |id: NodeId, raft: &str| -> Book { [(id, Addresses { raft: raft.into(), api: String::new() })].into() };
        let change = |b: &Book| MembershipChange { membership: Membership::new([1], []), context: encode_book(b) };
        let snapshot = Snapshot { membership_context: encode_book(&book(4, "old")), ..Default::default() };
        let entry = |index, data| Entry { index, term: 1, kind: EntryKind::Membership, data };
        let persisted = PersistedState {
            snapshot: Some(snapshot),
            entries: vec![
                entry(1, change(&book(5, "r5")).encode()),
                // A leader restating the founders: no addresses, none lost.
                entry(2, MembershipChange { membership: Membership::new([1], []), context: Bytes::new() }.encode()),
                entry(3, change(&book(4, "new")).encode()),
            ],
            ..Default::default()
        };
        let found = books_in(&persisted);
        assert_eq!(found[&4].raft, "new", "the later entry wins");
        assert_eq!(found[&5].raft, "r5");
    }

    #[test]
    fn the_book_of_a_change_names_only_its_members() {
        let mut dir = Directory::default();
        for id in 1..=3 {
            dir.book.insert(id, Addresses { raft: format!("r{id}"), api: format!("a{id}") });
        }
        let next = Membership::new([1, 2], [4]);
        let book = dir.book_for(&next, Some((4, Addresses { raft: "r4".into(), api: "a4".into() })));
        assert_eq!(book.keys().copied().collect::<Vec<_>>(), vec![1, 2, 4]);
    }
}
