//! Log replication: the leader's side (sending batched, pipelined appends
//! and snapshots, acting on answers, advancing the commit index, heartbeats
//! and ReadIndex rounds) and the follower's side (accepting or rejecting).

use super::message::{AppendResponse, MessageBody};
use super::node::Raft;
use super::progress::ProgressState;
use super::types::{Entry, Index, NodeId, Snapshot, Term};

impl Raft {
    // --- Leader ------------------------------------------------------------

    /// Sends `to` the entries it needs next, a snapshot if the log no longer
    /// holds them, or (with `allow_empty`) an empty append that carries the
    /// commit index and probes the follower's log. Returns whether anything
    /// was sent.
    pub(super) fn send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let max_inflight = self.cfg.max_inflight_messages;
        let pr = self.progress.get(&to).expect("leader tracks every voter");
        if pr.is_paused(max_inflight) {
            return false;
        }
        let prev_index = pr.next_index - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            return self.send_snapshot(to);
        };
        let entries =
            self.log.entries_from(prev_index + 1, self.cfg.max_entries_per_message, self.cfg.max_bytes_per_message);
        if entries.is_empty() && !allow_empty {
            return false;
        }
        let last = prev_index + entries.len() as Index;
        let commit = self.log.committed();
        self.progress.get_mut(&to).expect("checked above").sent_append(last);
        // Planted: what was sent is counted as held by the follower.
        #[cfg(feature = "planted-bugs")]
        if self.cfg.planted(crate::planted::Bug::AckOnSend) {
            self.progress.get_mut(&to).expect("checked above").ack(last);
            if self.maybe_commit() {
                self.replication_pending = true;
            }
        }
        self.send(to, MessageBody::Append { prev_index, prev_term, entries, commit });
        true
    }

    fn send_snapshot(&mut self, to: NodeId) -> bool {
        let Some(snapshot) = self.snapshot.clone() else {
            // Only compaction removes entries, and it always keeps a snapshot.
            unreachable!("node {}: log compacted without a snapshot", self.id);
        };
        tracing::info!(node = self.id, to, index = snapshot.meta.index, "sending snapshot");
        self.progress.get_mut(&to).expect("leader tracks every voter").become_snapshot(snapshot.meta.index);
        self.send(to, MessageBody::Snapshot(snapshot));
        true
    }

    /// New entries to every follower that can take them; followers with
    /// nothing new get an empty append if the commit index moved.
    pub(super) fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for to in peers {
            let behind = self.progress[&to].next_index <= self.log.last_index();
            self.send_append(to, !behind);
            // Fill the pipeline: more batches while the window allows.
            while self.send_append(to, false) {}
        }
    }

    pub(super) fn broadcast_heartbeat(&mut self) {
        let round = self.reads.last_round();
        let commit = self.log.committed();
        let peers: Vec<(NodeId, Index)> = self.progress.iter().map(|(&id, pr)| (id, pr.match_index)).collect();
        for (to, match_index) in peers {
            // Never tell a follower to commit beyond what it is known to hold.
            let commit = commit.min(match_index);
            self.send(to, MessageBody::Heartbeat { commit, read_round: round });
        }
    }

    /// One heartbeat round confirms every read gathered since the last.
    pub(super) fn start_read_round(&mut self) {
        let round = self.reads.start_round(self.log.committed(), self.id);
        let confirmed = self.acknowledge_read(self.id, round);
        self.read_states.extend(confirmed);
        if !self.progress.is_empty() {
            self.broadcast_heartbeat();
            self.heartbeat_elapsed = 0;
        }
    }

    pub(super) fn handle_append_response(&mut self, from: NodeId, response: AppendResponse) {
        // An answer from a node this leader no longer tracks (removed).
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.recent_active = true;
        match response {
            AppendResponse::Accepted { match_index } => {
                if !pr.ack(match_index) {
                    return;
                }
                match pr.state {
                    ProgressState::Probe => pr.become_replicate(),
                    ProgressState::Snapshot { index } if pr.match_index >= index => pr.become_replicate(),
                    _ => {}
                }
                let caught_up = pr.match_index == self.log.last_index();
                if self.maybe_commit() {
                    self.replication_pending = true;
                }
                while self.send_append(from, false) {}
                if caught_up && self.transfer_target == Some(from) {
                    tracing::info!(node = self.id, target = from, "transfer target caught up: sending timeout-now");
                    self.send(from, MessageBody::TimeoutNow);
                }
            }
            AppendResponse::Rejected { rejected_index, hint_index, hint_term } => {
                let (probe_at, _) = self.log.find_conflict_by_term(hint_index, hint_term);
                let pr = self.progress.get_mut(&from).expect("leader tracks every voter");
                if pr.reject(rejected_index, probe_at) {
                    tracing::debug!(
                        node = self.id,
                        to = from,
                        rejected_index,
                        next = pr.next_index,
                        "append rejected: backing off"
                    );
                    self.send_append(from, true);
                }
            }
        }
    }

    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, read_round: u64) {
        let max_inflight = self.cfg.max_inflight_messages;
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.recent_active = true;
        pr.probe_sent = false;
        // A full window whose appends were all lost would never drain.
        if pr.state == ProgressState::Replicate && pr.inflight.len() >= max_inflight {
            pr.inflight.pop_front();
        }
        if pr.match_index < self.log.last_index() {
            self.send_append(from, true);
        }
        let confirmed = self.acknowledge_read(from, read_round);
        self.read_states.extend(confirmed);
    }

    /// `from`'s acknowledgement of read round `round`: the reads whose rounds
    /// now have a quorum of voters behind them.
    fn acknowledge_read(&mut self, from: NodeId, round: u64) -> Vec<super::ready::ReadState> {
        // Planted: the leader's own acknowledgement confirms the round.
        #[cfg(feature = "planted-bugs")]
        let anyone = self.cfg.planted(crate::planted::Bug::ReadIndexNoQuorum);
        #[cfg(not(feature = "planted-bugs"))]
        let anyone = false;
        let conf = &self.conf;
        self.reads.acknowledge(from, round, |acks| anyone || conf.has_quorum(|id| acks.contains(&id)))
    }

    /// Commits the highest index a quorum holds, if it is from this term
    /// (§5.4.2: entries of earlier terms are committed only indirectly). The
    /// leader's own log counts only as far as it is durable
    /// ([`Raft::persisted`]); a follower's, as far as it acknowledged it,
    /// which it does only once it is durable.
    pub(super) fn maybe_commit(&mut self) -> bool {
        let durable = self.log.durable_index();
        #[allow(unused_mut)]
        let mut quorum_index = self.conf.committed_index(|id| {
            if id == self.id { durable } else { self.progress.get(&id).map_or(0, |pr| pr.match_index) }
        });
        #[allow(unused_mut)]
        let mut own_term = self.log.term(quorum_index) == Some(self.term);
        #[cfg(feature = "planted-bugs")]
        {
            use crate::planted::Bug;
            // Planted: the leader's own log is its quorum.
            if self.cfg.planted(Bug::CommitAlone) {
                quorum_index = self.log.last_index();
            }
            // Planted: entries of earlier terms are committed by counting (Figure 8).
            if self.cfg.planted(Bug::CommitOldTerm) {
                own_term = true;
            }
        }
        if quorum_index > self.log.committed() && own_term {
            self.log.commit_to(quorum_index);
            return true;
        }
        false
    }

    // --- Follower ----------------------------------------------------------

    pub(super) fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: Index,
        prev_term: Term,
        entries: &[Entry],
        commit: Index,
    ) {
        let committed = self.log.committed();
        if prev_index < committed {
            // Everything up to our commit index already matches the leader.
            let response = AppendResponse::Accepted { match_index: committed };
            self.send(from, MessageBody::AppendResponse(response));
            return;
        }
        #[allow(unused_mut)]
        let mut prev_term = prev_term;
        // Planted: any entry at prev_index is taken to match the leader's.
        #[cfg(feature = "planted-bugs")]
        if self.cfg.planted(crate::planted::Bug::AppendWithoutLogMatching)
            && let Some(t) = self.log.term(prev_index)
        {
            prev_term = t;
        }
        let response = match self.log.maybe_append(prev_index, prev_term, entries) {
            Some(last_new) => {
                if !entries.is_empty() {
                    // New entries may bring a configuration, or a truncation
                    // may take one away.
                    self.refresh_conf();
                }
                self.log.commit_to(commit.min(last_new));
                AppendResponse::Accepted { match_index: last_new }
            }
            None => {
                let (hint_index, hint_term) =
                    self.log.find_conflict_by_term(prev_index.min(self.log.last_index()), prev_term);
                AppendResponse::Rejected { rejected_index: prev_index, hint_index, hint_term }
            }
        };
        self.send(from, MessageBody::AppendResponse(response));
    }

    pub(super) fn handle_heartbeat(&mut self, from: NodeId, commit: Index, read_round: u64) {
        self.log.commit_to(commit.min(self.log.last_index()));
        self.send(from, MessageBody::HeartbeatResponse { read_round });
    }

    pub(super) fn handle_snapshot(&mut self, from: NodeId, snapshot: Snapshot) {
        let meta = snapshot.meta;
        let match_index = if meta.index <= self.log.committed() {
            self.log.committed()
        } else if self.log.matches(meta.index, meta.term) {
            // We hold the entry the snapshot ends at: it is committed, and the
            // rest of our log may still be useful.
            self.log.commit_to(meta.index);
            meta.index
        } else {
            tracing::info!(node = self.id, index = meta.index, term = meta.term, "installing snapshot from leader");
            self.log.install_snapshot(meta);
            self.snapshot = Some(snapshot.clone());
            self.snapshot_to_install = Some(snapshot);
            self.refresh_conf();
            meta.index
        };
        self.send(from, MessageBody::AppendResponse(AppendResponse::Accepted { match_index }));
    }
}
