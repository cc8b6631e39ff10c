//! Time and elections: ticking, campaigning (with an optional pre-vote
//! round), granting votes, counting them, and CheckQuorum.

use super::membership::VoteResult;
use super::message::MessageBody;
use super::node::Raft;
use super::progress::ProgressState;
use super::ready::Role;
use super::types::{Index, NodeId, Term};

impl Raft {
    /// Advances the node's logical clock by one tick.
    pub fn tick(&mut self) {
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        }
    }

    fn tick_election(&mut self) {
        // Counted by every node, so that CheckQuorum's lease on a learner
        // lapses too: else it would refuse every campaign once it heard a
        // leader, and a learner promoted in a config of two could never
        // help elect anyone.
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.randomized_election_timeout {
            if !self.may_campaign() {
                // Learners, removed nodes, nodes still joining or on
                // probation wait for a leader; none may start an election.
                return;
            }
            self.election_elapsed = 0;
            tracing::debug!(node = self.id, term = self.term, "election timeout");
            self.campaign(self.cfg.pre_vote, false);
        }
    }

    fn tick_leader(&mut self) {
        self.election_elapsed += 1;
        self.heartbeat_elapsed += 1;
        if !self.leaving.is_empty() && self.conf_index <= self.log.committed() {
            self.leaving_ticks += 1;
        }
        if self.election_elapsed >= self.cfg.election_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum && !self.quorum_active() {
                tracing::warn!(
                    node = self.id,
                    term = self.term,
                    "stepping down: no quorum heard from in an election timeout"
                );
                self.become_follower(self.term, None);
                return;
            }
        }
        if let Some(target) = self.transfer_target {
            self.transfer_elapsed += 1;
            if self.transfer_elapsed >= self.cfg.election_ticks {
                self.transfer_target = None;
                tracing::warn!(node = self.id, target, "leadership transfer timed out: leading on");
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        // A snapshot lost on the way would stall a follower forever: resend.
        let timeout = self.cfg.election_ticks;
        for pr in self.progress.values_mut() {
            if matches!(pr.state, ProgressState::Snapshot { .. }) {
                pr.snapshot_ticks += 1;
                if pr.snapshot_ticks >= timeout {
                    pr.become_probe();
                }
            }
        }
    }

    /// Whether a quorum was heard from since the last check; resets the marks.
    fn quorum_active(&mut self) -> bool {
        let active =
            self.conf.has_quorum(|id| id == self.id || self.progress.get(&id).is_some_and(|pr| pr.recent_active));
        for pr in self.progress.values_mut() {
            pr.recent_active = false;
        }
        active
    }

    /// Starts a pre-vote round or a real election. `transfer` marks an
    /// election the old leader asked for (TimeoutNow).
    pub(super) fn campaign(&mut self, pre_vote: bool, transfer: bool) {
        if !self.may_campaign() {
            tracing::info!(node = self.id, term = self.term, "not a voter: declining to campaign");
            return;
        }
        let term = if pre_vote {
            self.become_pre_candidate();
            self.term + 1
        } else {
            self.become_candidate();
            self.term
        };
        self.votes.insert(self.id, true);
        if self.conf.vote_result(&self.votes) == VoteResult::Won {
            self.won_votes();
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let peers: Vec<NodeId> = self.conf.voters.iter().copied().filter(|&v| v != self.id).collect();
        for to in peers {
            let body = MessageBody::Vote { pre_vote, transfer, last_index, last_term };
            self.send_in_term(to, term, body);
        }
    }

    /// A vote or pre-vote request at this node's term, or a pre-vote from
    /// a higher one (§5.2, §5.4.1, thesis §9.6).
    pub(super) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_index: Index,
        last_term: Term,
    ) {
        let can_vote = !self.probation
            && (self.vote == Some(from)
                || (self.vote.is_none() && self.leader.is_none())
                || (pre_vote && term > self.term));
        let granted = can_vote && self.log.is_up_to_date(last_index, last_term);
        // A grant is sent in the requester's term; a refusal in ours, so a
        // requester that is behind learns the newer term.
        let reply_term = if granted { term } else { self.term };
        if granted && !pre_vote {
            self.election_elapsed = 0;
            self.vote = Some(from);
        }
        tracing::debug!(node = self.id, from, term, pre_vote, granted, "vote request");
        let body = MessageBody::VoteResponse { pre_vote, granted };
        self.send_in_term(from, reply_term, body);
    }

    pub(super) fn handle_vote_response(&mut self, from: NodeId, pre_vote: bool, granted: bool) {
        let expected = match self.role {
            Role::PreCandidate => pre_vote,
            Role::Candidate => !pre_vote,
            _ => false,
        };
        if !expected {
            return;
        }
        self.votes.entry(from).or_insert(granted);
        match self.conf.vote_result(&self.votes) {
            VoteResult::Won => self.won_votes(),
            VoteResult::Lost => {
                tracing::debug!(node = self.id, term = self.term, pre_vote, "lost the election");
                self.become_follower(self.term, None);
            }
            VoteResult::Pending => {}
        }
    }

    fn won_votes(&mut self) {
        if self.role == Role::PreCandidate {
            self.campaign(false, false);
        } else {
            self.become_leader();
        }
    }
}
