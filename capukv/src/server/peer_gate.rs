//! Which peer messages a node lets through to its Raft core.
//!
//! The peer port is open to anyone who can reach it, and the core trusts
//! what it steps: one message claiming a huge term moves a whole cluster to
//! it. So every message on the `Raft` service passes this gate first, and a
//! refused one is logged and never stepped. A message must carry this
//! cluster's id (fixed at bootstrap, [`crate::storage::Identity`]), be
//! addressed to this node, come from another node, the one that the stream
//! comes from, and not from a node a configuration this node holds removed.
//! A sender this node has not heard of is let through: it may be a member
//! added by an entry this node does not hold yet (a new leader, for a node
//! that lags), which it must follow to catch up.
//!
//! Without TLS the sender is what the stream says, and against a deliberate
//! forger none of this proves anything (the cluster id is no secret); with
//! mutual TLS it is the node the sender's certificate names
//! ([`crate::tls::node_of`]), which only the CA can make it say.

use std::collections::BTreeSet;

use super::members::SharedDirectory;
use crate::raft::NodeId;

/// Why a peer message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "it carries cluster id {found:#018x}, this is cluster {expected:#018x} (a node of another cluster, or too old to send one)"
    )]
    ForeignCluster { found: u64, expected: u64 },
    #[error("it is addressed to node {to}, this is node {me}")]
    WrongNode { to: NodeId, me: NodeId },
    #[error("it claims to come from node {from}, which was removed from the cluster (members: {members:?})")]
    Removed { from: NodeId, members: Vec<NodeId> },
    #[error("it claims to come from node 0, which no node is")]
    NoSender,
    #[error("it claims to come from this node itself")]
    FromItself,
    #[error("its TLS certificate names no node (a client's certificate, or a node's without the name node-N.capukv)")]
    Uncertified,
    #[error("it claims to come from node {from} on a stream opened by node {stream}")]
    SenderMismatch { from: NodeId, stream: NodeId },
}

/// What this node admits: its cluster id, its own id, and the membership
/// as this node knows it.
#[derive(Debug, Clone)]
pub struct PeerGate {
    pub cluster_id: u64,
    pub me: NodeId,
    directory: SharedDirectory,
}

impl PeerGate {
    pub fn new(cluster_id: u64, me: NodeId, directory: SharedDirectory) -> PeerGate {
        PeerGate { cluster_id, me, directory }
    }

    /// Every node this node knows of.
    pub fn known(&self) -> BTreeSet<NodeId> {
        self.directory.read().expect("not poisoned").known()
    }

    pub fn knows(&self, id: NodeId) -> bool {
        self.directory.read().expect("not poisoned").book.contains_key(&id)
    }

    /// Admits a message of `cluster_id` from `from` to `to`; `stream` is the
    /// sender the stream named when it opened, if it named one.
    pub fn admit(&self, cluster_id: u64, from: NodeId, to: NodeId, stream: Option<NodeId>) -> Result<(), Refusal> {
        if cluster_id != self.cluster_id {
            return Err(Refusal::ForeignCluster { found: cluster_id, expected: self.cluster_id });
        }
        if to != self.me {
            return Err(Refusal::WrongNode { to, me: self.me });
        }
        if from == self.me {
            return Err(Refusal::FromItself);
        }
        if from == 0 {
            return Err(Refusal::NoSender);
        }
        let directory = self.directory.read().expect("not poisoned");
        if directory.removed.contains(&from) {
            return Err(Refusal::Removed { from, members: directory.membership.members().collect() });
        }
        if let Some(stream) = stream
            && stream != from
        {
            return Err(Refusal::SenderMismatch { from, stream });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::raft::Membership;

    fn gate() -> PeerGate {
        let mut directory = super::super::members::Directory::default();
        let four = Membership::new([1, 2, 3, 4], []);
        directory.set_membership(four.next([1, 2, 3].into(), [].into()), 7, true);
        PeerGate::new(0xc1, 3, std::sync::Arc::new(std::sync::RwLock::new(directory)))
    }

    #[test]
    fn only_nodes_of_this_cluster_writing_to_this_node_pass() {
        let gate = gate();
        // (cluster id, from, to, the stream's sender, the refusal expected)
        type Case = (u64, NodeId, NodeId, Option<NodeId>, Option<Refusal>);
        let cases: [Case; 10] = [
            (0xc1, 2, 3, Some(2), None),
            (0xc1, 1, 3, None, None),
            // No cluster id at all: what a forged or an old sender sends.
            (0, 2, 3, Some(2), Some(Refusal::ForeignCluster { found: 0, expected: 0xc1 })),
            (0xc2, 2, 3, Some(2), Some(Refusal::ForeignCluster { found: 0xc2, expected: 0xc1 })),
            (0xc1, 2, 1, Some(2), Some(Refusal::WrongNode { to: 1, me: 3 })),
            // A node this one has not heard of: perhaps a member it lags behind on.
            (0xc1, 9, 3, Some(9), None),
            (0xc1, 4, 3, Some(4), Some(Refusal::Removed { from: 4, members: vec![1, 2, 3] })),
            (0xc1, 0, 3, None, Some(Refusal::NoSender)),
            (0xc1, 3, 3, Some(3), Some(Refusal::FromItself)),
            (0xc1, 2, 3, Some(1), Some(Refusal::SenderMismatch { from: 2, stream: 1 })),
        ];
        for (cluster, from, to, stream, want) in cases {
            assert_eq!(gate.admit(cluster, from, to, stream).err(), want, "{cluster:#x} {from}->{to} on {stream:?}");
        }
    }

    #[test]
    fn a_refusal_says_what_was_wrong() {
        let gate = gate();
        let text = gate.admit(0, 2, 3, None).unwrap_err().to_string();
        assert!(text.contains("cluster id 0x0000000000000000") && text.contains("another cluster"), "{text}");
    }
}
