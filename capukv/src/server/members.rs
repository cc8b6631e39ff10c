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

use crate::raft::{Index, Membership, NodeId};

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

/// What the API and the peer gate see of the membership: the configuration
/// in force on this node, the index of the entry that set it, and the
/// addresses of every node it knows of (members, and former ones until the
/// book is rewritten).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub membership: Membership,
    pub config_index: Index,
    pub book: Book,
    /// Members a configuration this node holds removed (and none since
    /// added back): the peer gate refuses them.
    pub removed: BTreeSet<NodeId>,
}

pub type SharedDirectory = Arc<RwLock<Directory>>;

impl Directory {
    /// Puts `membership` (set at `index`) in force, remembering whom it
    /// removed.
    pub fn set_membership(&mut self, membership: Membership, index: Index) {
        for gone in self.membership.members().filter(|&id| !membership.contains(id)) {
            self.removed.insert(gone);
        }
        for id in membership.members() {
            self.removed.remove(&id);
        }
        self.membership = membership;
        self.config_index = index;
    }

    /// Every node id this node knows an address or a role for.
    pub fn known(&self) -> BTreeSet<NodeId> {
        self.book.keys().copied().chain(self.membership.members()).collect()
    }

    /// The role of `id` in the configuration in force, for display.
    pub fn role(&self, id: NodeId) -> &'static str {
        if self.membership.is_voter(id) {
            "voter"
        } else if self.membership.learners.contains(&id) {
            "learner"
        } else {
            "none"
        }
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
