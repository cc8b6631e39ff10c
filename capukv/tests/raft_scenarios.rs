//! Targeted scenarios for the Raft core's rules, on a tiny in-memory network
//! that delivers every message at once unless a node is cut off (in the
//! style of etcd-io/raft's `network` tests).

use std::collections::BTreeSet;

use bytes::Bytes;
use capukv::raft::{Config, EntryKind, Message, NodeId, PersistedState, Raft, RaftError, ReadState, Role};

struct Net {
    nodes: Vec<Raft>,
    /// Nodes whose messages, in and out, are dropped.
    isolated: BTreeSet<NodeId>,
    applied: Vec<Vec<Bytes>>,
    reads: Vec<Vec<ReadState>>,
}

impl Net {
    fn new(n: u64) -> Net {
        let voters: Vec<NodeId> = (1..=n).collect();
        let nodes = voters
            .iter()
            .map(|&id| Raft::new(Config::new(id, voters.clone()), PersistedState::default()).unwrap())
            .collect();
        Net {
            nodes,
            isolated: BTreeSet::new(),
            applied: vec![Vec::new(); n as usize],
            reads: vec![Vec::new(); n as usize],
        }
    }

    fn node(&mut self, id: NodeId) -> &mut Raft {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Drains every node's output (reporting its entries durable at once) and
    /// delivers messages until none is left.
    fn settle(&mut self) {
        loop {
            let mut msgs: Vec<Message> = Vec::new();
            for (i, node) in self.nodes.iter_mut().enumerate() {
                if node.has_ready() {
                    let ready = node.ready();
                    // "Persisted" at once.
                    if let Some(e) = ready.entries.last() {
                        node.persisted(e.index, e.term);
                    }
                    msgs.extend(ready.messages);
                    self.applied[i].extend(
                        ready.committed_entries.into_iter().filter(|e| e.kind == EntryKind::Command).map(|e| e.data),
                    );
                    self.reads[i].extend(ready.read_states);
                }
            }
            // Done when nothing is in flight and no node has more to say (a
            // report of durability may have committed something).
            if msgs.is_empty() && !self.nodes.iter().any(Raft::has_ready) {
                return;
            }
            for m in msgs {
                // A member not started here (added, but never run) hears nothing.
                let exists = (m.to as usize) <= self.nodes.len();
                if exists && !self.isolated.contains(&m.from) && !self.isolated.contains(&m.to) {
                    self.node(m.to).step(m);
                }
            }
        }
    }

    /// Ticks every node `ticks` times, settling after each.
    fn run(&mut self, ticks: u32) {
        for _ in 0..ticks {
            for node in &mut self.nodes {
                node.tick();
            }
            self.settle();
        }
    }

    fn leaders(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|n| n.role() == Role::Leader).map(|n| n.id()).collect()
    }

    /// Ticks until exactly one node leads, and returns it.
    fn elect(&mut self) -> NodeId {
        for _ in 0..200 {
            self.run(1);
            let leaders: Vec<NodeId> = self.leaders().into_iter().filter(|id| !self.isolated.contains(id)).collect();
            if leaders.len() == 1 && self.node(leaders[0]).commit_index() > 0 {
                return leaders[0];
            }
        }
        panic!("no leader elected in 200 ticks");
    }
}

#[test]
fn a_leader_is_elected_and_replicates_a_proposal_to_all() {
    let mut net = Net::new(3);
    let leader = net.elect();
    net.node(leader).propose(Bytes::from_static(b"x")).unwrap();
    net.settle();
    net.run(3); // heartbeats carry the commit index to followers
    for applied in &net.applied {
        assert_eq!(applied, &vec![Bytes::from_static(b"x")]);
    }
}

#[test]
fn only_entries_persisted_by_earlier_batches_may_be_applied_before_persisting() {
    // A one-node leader commits a proposal in the very batch that must
    // persist it: it may not be applied first.
    let mut solo = Net::new(1);
    let id = solo.elect();
    let index = solo.node(id).propose(Bytes::from_static(b"solo")).unwrap();
    let ready = solo.node(id).ready();
    assert_eq!(ready.entries.len(), 1);
    assert!(ready.committed_entries.is_empty(), "a one-node leader commits once its own write is durable");
    let term = ready.entries[0].term;
    solo.node(id).persisted(index, term);
    let mut ready = solo.node(id).ready();
    assert_eq!(ready.persisted_index, index);
    assert_eq!(ready.take_committed_persisted().len(), 1);

    // In a cluster, the leader learns of the commit in a later batch than
    // the one that persisted the entry: that one may go first.
    let mut net = Net::new(3);
    let leader = net.elect();
    let index = net.node(leader).propose(Bytes::from_static(b"x")).unwrap();
    let first = net.node(leader).ready();
    assert_eq!(first.entries.last().map(|e| e.index), Some(index));
    assert!(first.committed_entries.is_empty());
    let term = net.node(leader).term();
    net.node(leader).persisted(index, term);
    for m in first.messages {
        let to = m.to;
        net.node(to).step(m);
        for reply in net.node(to).ready().messages {
            net.node(leader).step(reply);
        }
    }
    let mut second = net.node(leader).ready();
    assert_eq!(second.persisted_index, index);
    let early: Vec<Bytes> = second.take_committed_persisted().into_iter().map(|e| e.data).collect();
    assert_eq!(early, vec![Bytes::from_static(b"x")]);
    assert!(second.committed_entries.is_empty());
}

#[test]
fn the_leader_counts_its_own_log_toward_commit_only_once_told_it_is_durable() {
    let mut net = Net::new(3);
    let leader = net.elect();
    let index = net.node(leader).propose(Bytes::from_static(b"x")).unwrap();
    let first = net.node(leader).ready();
    assert!(first.send_first, "the leader may send before it writes");
    // One follower writes and acknowledges; the leader's own write is not
    // done (or lost in a crash): one durable copy of three is no quorum.
    let to = first.messages.iter().find(|m| m.body.kind() == "append").unwrap().to;
    let append = first.messages.into_iter().find(|m| m.to == to).unwrap();
    net.node(to).step(append);
    let reply = net.node(to).ready();
    let e = reply.entries.last().unwrap();
    let (i, t) = (e.index, e.term);
    net.node(to).persisted(i, t);
    for m in reply.messages {
        net.node(leader).step(m);
    }
    assert!(net.node(leader).commit_index() < index, "not committed on one durable copy");
    // Its own write done: two of three.
    let term = net.node(leader).term();
    net.node(leader).persisted(index, term);
    assert_eq!(net.node(leader).commit_index(), index);
    let ready = net.node(leader).ready();
    assert!(ready.messages.iter().any(|m| m.body.kind() == "append"), "the new commit index goes out");
}

#[test]
fn followers_refuse_proposals_and_name_the_leader() {
    let mut net = Net::new(3);
    let leader = net.elect();
    let follower = if leader == 1 { 2 } else { 1 };
    assert_eq!(net.node(follower).propose(Bytes::new()), Err(RaftError::NotLeader { leader: Some(leader) }));
    assert_eq!(net.node(follower).read_index(1), Err(RaftError::NotLeader { leader: Some(leader) }));
}

#[test]
fn prevote_keeps_a_rejoining_node_from_disrupting_the_leader() {
    let mut net = Net::new(3);
    let leader = net.elect();
    let term = net.node(leader).term();
    let loner = if leader == 3 { 2 } else { 3 };
    net.isolated.insert(loner);
    net.run(100); // the loner times out again and again
    assert_eq!(net.node(loner).term(), term, "pre-votes must not raise the term");
    net.isolated.clear();
    net.run(30);
    assert_eq!(net.node(leader).role(), Role::Leader);
    assert_eq!(net.node(leader).term(), term, "the healthy leader kept its term");
}

#[test]
fn check_quorum_makes_a_cut_off_leader_step_down() {
    let mut net = Net::new(3);
    let leader = net.elect();
    net.isolated.insert(leader);
    net.run(25);
    assert_ne!(net.node(leader).role(), Role::Leader, "a leader that hears from no quorum steps down");
}

#[test]
fn repeated_transfer_requests_do_not_keep_a_cut_off_leader_leading() {
    let mut net = Net::new(3);
    let leader = net.elect();
    let followers: Vec<NodeId> = (1..=3).filter(|&id| id != leader).collect();
    net.isolated.insert(leader);
    // An operator (or a script) asking for a transfer again and again, to
    // one follower and then the other: each ask is a new transfer.
    for round in 0..20 {
        if net.node(leader).role() != Role::Leader {
            break;
        }
        net.node(leader).transfer_leader(followers[round % 2]).unwrap();
        net.run(3);
    }
    assert_ne!(net.node(leader).role(), Role::Leader, "CheckQuorum retires it all the same");
}

#[test]
fn read_index_waits_for_a_heartbeat_quorum() {
    let mut net = Net::new(3);
    let leader = net.elect();
    let commit = net.node(leader).commit_index();
    // Cut off from both followers, the leader cannot confirm a read.
    let others: Vec<NodeId> = (1..=3).filter(|&id| id != leader).collect();
    net.isolated.extend(others.iter().copied());
    net.node(leader).read_index(7).unwrap();
    net.settle();
    assert!(net.reads[(leader - 1) as usize].is_empty(), "no quorum, no read");
    // With one follower back, the round completes.
    net.isolated.remove(&others[0]);
    net.run(3);
    assert_eq!(net.reads[(leader - 1) as usize], vec![ReadState { request: 7, index: commit }]);
}

#[test]
fn concurrent_reads_share_one_heartbeat_round() {
    let mut net = Net::new(3);
    let leader = net.elect();
    for request in 1..=5 {
        net.node(leader).read_index(request).unwrap();
    }
    let ready = net.node(leader).ready();
    let heartbeats = ready.messages.iter().filter(|m| m.body.kind() == "heartbeat").count();
    assert_eq!(heartbeats, 2, "one round: one heartbeat per follower for five reads");
    for m in ready.messages {
        net.node(m.to).step(m);
    }
    net.settle();
    assert_eq!(net.reads[(leader - 1) as usize].len(), 5);
}

#[test]
fn leadership_transfer_hands_over_to_the_target() {
    let mut net = Net::new(3);
    let leader = net.elect();
    let target = if leader == 1 { 2 } else { 1 };
    net.node(leader).transfer_leader(target).unwrap();
    net.settle();
    assert_eq!(net.node(target).role(), Role::Leader);
    assert_eq!(net.node(leader).role(), Role::Follower);
    assert!(matches!(net.node(leader).transfer_leader(99), Err(RaftError::NotLeader { .. })));
}

#[test]
fn a_lagging_follower_catches_up_from_a_snapshot() {
    let mut net = Net::new(3);
    let leader = net.elect();
    let lagger = if leader == 3 { 2 } else { 3 };
    net.isolated.insert(lagger);
    for i in 0..20u8 {
        net.node(leader).propose(Bytes::from(vec![i])).unwrap();
        net.settle();
    }
    let applied = net.node(leader).applied_index();
    net.node(leader).compact(applied, Bytes::from_static(b"state")).unwrap();
    net.isolated.clear();
    net.run(5);
    let ready_had_snapshot = net.node(lagger).snapshot_meta().index;
    assert_eq!(ready_had_snapshot, applied, "the follower installed the leader's snapshot");
    net.node(leader).propose(Bytes::from_static(b"after")).unwrap();
    net.run(3);
    assert_eq!(net.applied[(lagger - 1) as usize].last(), Some(&Bytes::from_static(b"after")));
}

#[test]
fn corrupt_persisted_state_is_refused_with_a_reason() {
    use capukv::raft::{Entry, HardState};
    let entry = |index, term| Entry { index, term, kind: EntryKind::Command, data: Bytes::new() };
    let cfg = Config::new(1, vec![1, 2, 3]);
    let gap = PersistedState {
        hard_state: HardState { term: 2, vote: None, commit: 0 },
        snapshot: None,
        entries: vec![entry(1, 1), entry(3, 1)],
    };
    let err = Raft::new(cfg.clone(), gap).err().unwrap();
    assert_eq!(err.to_string(), "persisted raft state is inconsistent: log entry 3 follows entry 1: the log has a gap");
    let future = PersistedState {
        hard_state: HardState { term: 1, vote: None, commit: 0 },
        snapshot: None,
        entries: vec![entry(1, 2)],
    };
    assert!(Raft::new(cfg.clone(), future).err().unwrap().to_string().contains("current term is 1"));
    let ahead = PersistedState { hard_state: HardState { term: 2, vote: None, commit: 5 }, ..Default::default() };
    assert!(Raft::new(cfg.clone(), ahead).err().unwrap().to_string().contains("commit index 5 is beyond"));
    // A vote for a node outside today's configuration is no corruption: it
    // may have been removed since it was voted for.
    let removed = PersistedState { hard_state: HardState { term: 1, vote: Some(9), commit: 0 }, ..Default::default() };
    assert!(Raft::new(cfg, removed).is_ok());
}

// --- Membership -------------------------------------------------------------

use capukv::raft::Membership;

impl Net {
    /// A new, empty node joining: it knows no configuration yet.
    fn add_node(&mut self) -> NodeId {
        let id = self.nodes.len() as NodeId + 1;
        self.nodes.push(Raft::new(Config::new(id, Vec::new()), PersistedState::default()).unwrap());
        self.applied.push(Vec::new());
        self.reads.push(Vec::new());
        id
    }

    fn membership(&mut self, id: NodeId) -> Membership {
        self.node(id).membership().0.clone()
    }

    /// Proposes `next` at the leader and settles; returns its index.
    fn change(&mut self, leader: NodeId, next: Membership) -> u64 {
        let index = self.node(leader).propose_membership(next, Bytes::new()).unwrap();
        self.settle();
        self.run(3);
        index
    }
}

#[test]
fn a_learner_gets_the_log_but_neither_votes_nor_counts_until_promoted() {
    let mut net = Net::new(3);
    let leader = net.elect();
    let learner = net.add_node();
    net.change(leader, Membership::new([1, 2, 3], [learner]));
    net.node(leader).propose(Bytes::from_static(b"x")).unwrap();
    net.run(3);
    assert!(net.applied[(learner - 1) as usize].contains(&Bytes::from_static(b"x")), "the learner has the log");
    assert_eq!(net.membership(learner), Membership::new([1, 2, 3], [learner]), "and the configuration");
    // A learner never campaigns, however long it hears nothing.
    net.isolated.insert(leader);
    for _ in 0..60 {
        net.node(learner).tick();
    }
    assert_ne!(net.node(learner).role(), Role::Candidate);
    assert_ne!(net.node(learner).role(), Role::PreCandidate);
    net.isolated.clear();
    let leader = net.elect();
    // Its acknowledgement does not count: with two voters cut off, the
    // leader and the learner are no majority.
    let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&v| v != leader).collect();
    net.isolated.extend(&others);
    let commit = net.node(leader).commit_index();
    net.node(leader).propose(Bytes::from_static(b"y")).unwrap();
    net.run(3);
    assert_eq!(net.node(leader).commit_index(), commit, "a learner made a quorum");
    net.isolated.clear();
    net.run(3);
    // Promoted, it is a voter: a majority of four is three.
    let leader = net.elect();
    net.change(leader, Membership::new([1, 2, 3, learner], []));
    assert!(net.node(learner).membership().0.is_voter(learner));
    let other = others.iter().copied().find(|&v| v != leader).unwrap();
    net.isolated.insert(other);
    let commit = net.node(leader).commit_index();
    net.node(leader).propose(Bytes::from_static(b"z")).unwrap();
    net.run(3);
    assert!(net.node(leader).commit_index() > commit, "three of four voters commit");
}

#[test]
fn one_voter_at_a_time_one_change_in_flight_and_only_after_a_commit_in_the_term() {
    let mut net = Net::new(3);
    let leader = net.elect();
    let err = net.node(leader).propose_membership(Membership::new([1, 2, 3, 4, 5], []), Bytes::new()).unwrap_err();
    assert!(matches!(err, RaftError::BadMembershipChange(_)), "{err}");
    let err = net.node(leader).propose_membership(Membership::new([1, 4, 5], []), Bytes::new()).unwrap_err();
    assert!(matches!(err, RaftError::BadMembershipChange(_)), "{err}");
    // The first change is in flight (not yet replicated): a second waits.
    let index = net.node(leader).propose_membership(Membership::new([1, 2, 3], [4]), Bytes::new()).unwrap();
    let err = net.node(leader).propose_membership(Membership::new([1, 2, 3], [4, 5]), Bytes::new()).unwrap_err();
    assert_eq!(err, RaftError::ChangeInProgress(index));
    net.settle();
    net.node(leader).propose_membership(Membership::new([1, 2, 3], [4, 5]), Bytes::new()).unwrap();

    // A new leader whose own entry is not yet committed takes no change.
    let mut solo = Net::new(1);
    for _ in 0..40 {
        solo.node(1).tick();
        if solo.node(1).role() == Role::Leader {
            break;
        }
    }
    assert_eq!(solo.node(1).role(), Role::Leader);
    let err = solo.node(1).propose_membership(Membership::new([1, 2], []), Bytes::new()).unwrap_err();
    assert_eq!(err, RaftError::LeaderNotReady);
    solo.settle();
    solo.node(1).propose_membership(Membership::new([1, 2], []), Bytes::new()).unwrap();
}

#[test]
fn a_removed_leader_steps_down_once_the_change_commits_and_never_campaigns_again() {
    let mut net = Net::new(3);
    let leader = net.elect();
    let rest: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&v| v != leader).collect();
    net.change(leader, Membership::new(rest.clone(), []));
    assert_ne!(net.node(leader).role(), Role::Leader, "the removed leader stepped down");
    for _ in 0..60 {
        net.run(1);
        assert_ne!(net.node(leader).role(), Role::Candidate, "a removed node campaigned");
        assert_ne!(net.node(leader).role(), Role::PreCandidate, "a removed node campaigned");
    }
    let next = net.elect();
    assert!(rest.contains(&next), "the remaining voters elect one of themselves");
    net.node(next).propose(Bytes::from_static(b"after")).unwrap();
    net.run(3);
    for &v in &rest {
        assert_eq!(net.applied[(v - 1) as usize].last(), Some(&Bytes::from_static(b"after")));
    }
}

#[test]
fn a_node_whose_log_loses_a_configuration_goes_back_to_the_one_before() {
    let mut net = Net::new(5);
    let leader = net.elect();
    let follower = if leader == 1 { 2 } else { 1 };
    // Only the follower hears of the change: it is never committed.
    let cut: Vec<NodeId> = (1..=5).filter(|&v| v != leader && v != follower).collect();
    net.isolated.extend(&cut);
    net.node(leader).propose_membership(Membership::new([1, 2, 3, 4, 5], [6]), Bytes::new()).unwrap();
    net.settle();
    assert_eq!(net.membership(follower), Membership::new([1, 2, 3, 4, 5], [6]), "in force once in the log");
    // The other three elect a leader of their own, whose entry replaces it.
    net.isolated.clear();
    net.isolated.extend([leader, follower]);
    let new_leader = net.elect();
    assert!(cut.contains(&new_leader));
    net.isolated.clear();
    net.run(5);
    assert_eq!(net.membership(follower), Membership::new([1, 2, 3, 4, 5], []), "back to the configuration before");
    assert_eq!(net.membership(leader), Membership::new([1, 2, 3, 4, 5], []));
}

#[test]
fn a_node_on_probation_neither_votes_nor_campaigns() {
    let mut net = Net::new(2);
    net.node(2).set_probation(true);
    for _ in 0..80 {
        net.run(1);
        assert!(net.leaders().is_empty(), "a leader was elected with a vote from a node on probation");
        assert_ne!(net.node(2).role(), Role::Candidate);
    }
    net.node(2).set_probation(false);
    net.elect();
}
