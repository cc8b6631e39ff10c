//! Stepping a message: first the term rules every role shares (§5.1, plus
//! PreVote and CheckQuorum), then one step function per role.

use super::message::{Message, MessageBody};
use super::node::Raft;
use super::ready::Role;

impl Raft {
    /// Feeds one message from a peer into the core. Messages for another
    /// node or from this one are ignored; nothing a peer sends can make the
    /// core fail. Senders outside this node's configuration are heard: a
    /// node that lags (or is joining) must follow a leader it has not yet
    /// learnt of, and their votes count only where they are voters. Who may
    /// speak at all is the transport's business (CapuKV's peer gate).
    pub fn step(&mut self, m: Message) {
        if m.to != self.id || m.from == self.id || m.from == 0 {
            tracing::warn!(node = self.id, from = m.from, to = m.to, "ignoring message not meant for this node");
            return;
        }
        if m.term > self.term {
            if !self.accept_higher_term(&m) {
                return;
            }
        } else if m.term < self.term {
            self.answer_stale_term(&m);
            return;
        }
        match m.body {
            MessageBody::Vote { pre_vote, last_index, last_term, .. } => {
                self.handle_vote_request(m.from, m.term, pre_vote, last_index, last_term)
            }
            _ => match self.role {
                Role::Leader => self.step_leader(m),
                Role::Candidate | Role::PreCandidate => self.step_candidate(m),
                Role::Follower => self.step_follower(m),
            },
        }
    }

    /// A message from a higher term. Returns whether to go on handling it.
    fn accept_higher_term(&mut self, m: &Message) -> bool {
        match m.body {
            MessageBody::Vote { pre_vote, transfer, .. } => {
                // CheckQuorum's lease: while this node hears from a leader it
                // ignores campaigns, so a node that was cut off (or a stale
                // one) cannot depose a healthy leader. A leadership transfer
                // is the leader's own wish and passes.
                if self.cfg.check_quorum
                    && !transfer
                    && self.leader.is_some()
                    && self.election_elapsed < self.cfg.election_ticks
                {
                    tracing::debug!(node = self.id, from = m.from, term = m.term, "ignoring campaign: leader lease");
                    return false;
                }
                if !pre_vote {
                    self.become_follower(m.term, None);
                }
                true
            }
            // A granted pre-vote carries the term the candidate *would* use.
            MessageBody::VoteResponse { pre_vote: true, granted: true } => true,
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::Snapshot(_) => {
                self.become_follower(m.term, Some(m.from));
                true
            }
            _ => {
                self.become_follower(m.term, None);
                true
            }
        }
    }

    /// A message from an older term is ignored, but some senders must learn
    /// of the newer term or they stay stuck.
    fn answer_stale_term(&mut self, m: &Message) {
        match m.body {
            // A deposed leader cut off from the cluster: with PreVote and
            // CheckQuorum nobody else raises its term, so tell it.
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::Snapshot(_)
                if self.cfg.check_quorum || self.cfg.pre_vote =>
            {
                self.send(m.from, MessageBody::HeartbeatResponse { read_round: 0 })
            }
            // A pre-candidate at a lower term must learn ours, or a node with
            // the freshest log but an old term could never win.
            MessageBody::Vote { pre_vote: true, .. } => {
                self.send(m.from, MessageBody::VoteResponse { pre_vote: true, granted: false })
            }
            _ => {}
        }
    }

    fn step_follower(&mut self, m: Message) {
        match m.body {
            MessageBody::Append { prev_index, prev_term, entries, commit } => {
                self.heard_from_leader(m.from);
                self.handle_append(m.from, prev_index, prev_term, &entries, commit);
            }
            MessageBody::Heartbeat { commit, read_round } => {
                self.heard_from_leader(m.from);
                self.handle_heartbeat(m.from, commit, read_round);
            }
            MessageBody::Snapshot(snapshot) => {
                self.heard_from_leader(m.from);
                self.handle_snapshot(m.from, snapshot);
            }
            MessageBody::TimeoutNow if self.may_campaign() => {
                tracing::info!(
                    node = self.id,
                    term = self.term,
                    from = m.from,
                    "leadership handed over: campaigning now"
                );
                self.campaign(false, true);
            }
            _ => {}
        }
    }

    fn step_candidate(&mut self, m: Message) {
        match m.body {
            // Someone won this term: follow it.
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::Snapshot(_) => {
                self.become_follower(m.term, Some(m.from));
                self.step_follower(m);
            }
            MessageBody::VoteResponse { pre_vote, granted } => self.handle_vote_response(m.from, pre_vote, granted),
            _ => {}
        }
    }

    fn step_leader(&mut self, m: Message) {
        match m.body {
            MessageBody::AppendResponse(response) => self.handle_append_response(m.from, response),
            MessageBody::HeartbeatResponse { read_round } => self.handle_heartbeat_response(m.from, read_round),
            _ => {}
        }
    }

    fn heard_from_leader(&mut self, leader: u64) {
        self.election_elapsed = 0;
        self.leader = Some(leader);
    }
}
