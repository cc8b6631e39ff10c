//! How a node with an empty data directory comes into a cluster.
//!
//! - **Joining** (`--join`): a new member, added first with `capukv member
//!   add-learner`. It asks a running member for the cluster id and the
//!   members' addresses, starts knowing no configuration, and learns it
//!   from the leader's log or snapshot. Only a learner may start empty this
//!   way: it never votes, and it is promoted only once it has caught up. A
//!   voter that starts empty may be one that lost its disk, and the nodes
//!   that saw it vote or acknowledge (the leaders of its time) may be gone
//!   or removed, so there is no asking it through: it is refused, and told
//!   to come back as a learner (`member demote`, if it never ran) or under a
//!   new id.
//! - **Founding** (`--peers`): one of the voters a cluster is bootstrapped
//!   with. An empty directory is what every founder has at the very first
//!   start, but also what a founder has after losing its disk, and such a
//!   node must not vote: it has forgotten its votes and the entries it
//!   acknowledged, so with one more failure its vote can elect a leader
//!   that lacks a committed write. Every node records durably whom it saw
//!   take part (acknowledge an entry, grant a vote) before it counts that,
//!   so a founder that starts empty asks every other founder (`Probe`). If
//!   any saw it take part, it refuses to start and says how to come back
//!   (remove it, add the machine back under a new id, start that with
//!   `--join`); until every other founder has said no, it follows but
//!   neither votes nor campaigns (probation: written with the directory's
//!   identity, kept across restarts). The first start of a cluster
//!   therefore needs every founder up once.
//!
//!   A founder asks only the founders: one that lost its disk after only a
//!   later member, then leading, saw it take part is not caught.

use std::collections::BTreeSet;
use std::time::Duration;

use tonic::transport::ClientTlsConfig;

use super::members::{Addresses, Book};
use super::raft_loop::Event;
use super::{ServerConfig, ServerError};
use crate::client::Client;
use crate::proto;
use crate::raft::NodeId;
use crate::tls::NodeTls;

/// Asks the members named by `--join` for the cluster id and every member's
/// addresses; fails unless this node was added first.
pub async fn ask_members(cfg: &ServerConfig, tls: Option<&NodeTls>) -> Result<(u64, Book), ServerError> {
    let mut client = Client::new(cfg.join.iter().cloned()).map_err(|e| ServerError::Join(e.to_string()))?;
    if let Some(tls) = tls {
        client = client.with_tls(tls.peer_client()).map_err(|e| ServerError::Join(e.to_string()))?;
    }
    // The leader's view first (it knows of every change it made); then each
    // member's own, which may lag behind a change that just committed.
    let mut failures = Vec::new();
    let mut not_member = None;
    // Asked one at a time, and only until one answers for this node.
    for source in std::iter::once(None).chain(cfg.join.iter().map(Some)) {
        let (addr, answer) = match source {
            None => ("the leader".to_string(), client.member_list().await),
            Some(addr) => (addr.clone(), client.member_list_of(addr).await),
        };
        let list = match answer {
            Ok(list) => list,
            Err(e) => {
                failures.push(format!("{addr}: {e}"));
                continue;
            }
        };
        let Some(me) = list.members.iter().find(|m| m.id == cfg.id) else {
            not_member.get_or_insert(format!(
                "node {} is not a member of the cluster at {addr} (members {:?}); add it first: capukv --endpoints {} member add-learner {} --raft-addr {} --api-addr {}",
                cfg.id,
                list.members.iter().map(|m| m.id).collect::<Vec<_>>(),
                cfg.join[0],
                cfg.id,
                cfg.raft_addr,
                cfg.api_addr
            ));
            continue;
        };
        if me.role == "voter" {
            return Err(ServerError::Join(format!(
                "node {} is a voter of the cluster at {addr}, and a voter never starts with an empty data directory: \
                 it may have voted and acknowledged entries before, and would forget it. If it never ran (added with \
                 `member add`), make it a learner first (capukv --endpoints {addr} member demote {}), start it, and \
                 promote it once caught up; if it lost its disk, remove it (member remove {}) and add the machine back \
                 under a new id (member add-learner NEW_ID ...; removed ids are never reused)",
                cfg.id, cfg.id, cfg.id
            )));
        }
        if me.raft_addr != cfg.raft_addr.to_string() {
            return Err(ServerError::Join(format!(
                "the cluster knows node {} at {}, but this node listens on --raft-addr {}",
                cfg.id, me.raft_addr, cfg.raft_addr
            )));
        }
        let book = list
            .members
            .iter()
            .map(|m| (m.id, Addresses { raft: m.raft_addr.clone(), api: m.api_addr.clone() }))
            .collect();
        tracing::info!(node = cfg.id, %addr, cluster_id = format!("{:#018x}", list.cluster_id), "joining");
        return Ok((list.cluster_id, book));
    }
    Err(ServerError::Join(not_member.unwrap_or_else(|| format!("no member answered: {}", failures.join("; ")))))
}

/// The members to ask (every other founder, for a founder; every member it
/// was told of, for a node that joins), and how.
pub struct Prober {
    pub id: NodeId,
    pub cluster_id: u64,
    pub peers: Vec<(NodeId, String)>,
    pub tls: Option<ClientTlsConfig>,
}

/// What the founders said so far.
#[derive(Debug, Default)]
pub struct Answers {
    pub cleared: BTreeSet<NodeId>,
    /// A founder that saw this node take part.
    pub participated: Option<NodeId>,
}

impl Prober {
    pub fn new(id: NodeId, cluster_id: u64, peers: &Book, tls: Option<&NodeTls>) -> Prober {
        let peers =
            peers.iter().filter(|(p, a)| **p != id && !a.raft.is_empty()).map(|(&p, a)| (p, a.raft.clone())).collect();
        Prober { id, cluster_id, peers, tls: tls.map(NodeTls::peer_client) }
    }

    /// One round: asks every founder not yet heard from.
    pub async fn round(&self, answers: &mut Answers) {
        for (peer, addr) in &self.peers {
            if answers.cleared.contains(peer) {
                continue;
            }
            let request = proto::ProbeRequest { cluster_id: self.cluster_id, from: self.id, to: *peer };
            match super::transport::probe(self.tls.clone(), addr, request).await {
                Ok(r) if r.participated => answers.participated = Some(*peer),
                Ok(_) => {
                    answers.cleared.insert(*peer);
                }
                Err(e) => tracing::debug!(node = self.id, peer, error = %e, "rejoin probe not answered yet"),
            }
        }
    }

    pub fn all_cleared(&self, answers: &Answers) -> bool {
        self.peers.iter().all(|(id, _)| answers.cleared.contains(id))
    }

    /// The refusal for a founder that took part before.
    pub fn refusal(&self, by: NodeId) -> ServerError {
        ServerError::Join(format!(
            "node {} took part in this cluster before (node {by} saw it acknowledge entries or vote), and its data directory is empty now: \
             it must not vote again under this id. Remove it (capukv member remove {}), add the machine back under a new id \
             (capukv member add-learner NEW_ID --raft-addr .. --api-addr ..; removed ids are never reused), and start it \
             with --id NEW_ID and --join; or restore its data directory",
            self.id, self.id
        ))
    }

    /// Asks until every founder has answered, then lets the Raft loop off
    /// probation; stops asking (and keeps the node on probation, saying
    /// why) if one saw it take part.
    pub async fn clear_in_background(self, mut answers: Answers, events: crossbeam_channel::Sender<Event>) {
        let mut rounds = 0u64;
        loop {
            if let Some(by) = answers.participated {
                tracing::error!(node = self.id, error = %self.refusal(by), "staying on vote probation");
                return;
            }
            if self.all_cleared(&answers) {
                tracing::info!(node = self.id, "every founder says this node never took part: it may vote");
                let _ = events.send(Event::ProbationCleared);
                return;
            }
            if rounds.is_multiple_of(20) {
                let waiting: Vec<NodeId> =
                    self.peers.iter().map(|(id, _)| *id).filter(|id| !answers.cleared.contains(id)).collect();
                tracing::info!(node = self.id, ?waiting, "on vote probation until these founders answer");
            }
            rounds += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.round(&mut answers).await;
        }
    }
}
