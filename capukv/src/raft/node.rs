//! The `Raft` state machine: its state, its public inputs (tick, step,
//! propose, read, transfer, compact) and its output batch. The rules
//! themselves live next door: `step.rs` (term rules and one step function
//! per role), `election.rs` and `replication.rs`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::config::Config;
use super::error::RaftError;
use super::log::RaftLog;
use super::membership::{Membership, MembershipChange};
use super::message::{Message, MessageBody};
use super::progress::Progress;
use super::read_index::ReadIndexRounds;
use super::ready::{ReadState, Ready, Role, SoftState};
use super::rng::SplitMix64;
use super::types::{Entry, EntryKind, HardState, Index, NodeId, PersistedState, Snapshot, SnapshotMeta, Term};

pub struct Raft {
    pub(super) id: NodeId,
    pub(super) cfg: Config,
    pub(super) term: Term,
    pub(super) vote: Option<NodeId>,
    pub(super) leader: Option<NodeId>,
    pub(super) role: Role,
    pub(super) log: RaftLog,
    /// The latest snapshot (made here or received), sent to followers whose
    /// next entry was compacted away.
    pub(super) snapshot: Option<Snapshot>,
    /// A snapshot received from the leader, not yet handed to the caller.
    pub(super) snapshot_to_install: Option<Snapshot>,
    /// The configuration in force: the last one in the log, else the
    /// snapshot's, else the bootstrap voters (see `membership.rs`).
    pub(super) conf: Membership,
    /// The index of the entry that set `conf` (0 when it came from the
    /// snapshot or the bootstrap voters).
    pub(super) conf_index: Index,
    /// Leader only: replication progress of every other member.
    pub(super) progress: BTreeMap<NodeId, Progress>,
    /// Leader only: members the latest change removed. They keep getting
    /// the log, and heartbeats with the commit index, until an election
    /// timeout after that change commits, so that they learn they were
    /// removed and that it is final (until then they may campaign to
    /// finish the change: `may_campaign`).
    pub(super) leaving: BTreeSet<NodeId>,
    /// Leader only: ticks since the change that removed `leaving` committed.
    pub(super) leaving_ticks: u32,
    /// Candidate only: answers to this campaign's vote requests.
    pub(super) votes: BTreeMap<NodeId, bool>,
    pub(super) election_elapsed: u32,
    pub(super) heartbeat_elapsed: u32,
    pub(super) randomized_election_timeout: u32,
    /// Leader only: the voter leadership is being handed to.
    pub(super) transfer_target: Option<NodeId>,
    /// Ticks since that transfer began: it is given up after an election
    /// timeout. Its own count, so that asking for transfers never postpones
    /// CheckQuorum (which `election_elapsed` times).
    pub(super) transfer_elapsed: u32,
    pub(super) reads: ReadIndexRounds,
    /// Leader only: new entries or a new commit index wait for the next flush.
    pub(super) replication_pending: bool,
    pub(super) rng: SplitMix64,
    /// A founder that started with an empty disk and has not yet made sure
    /// it never took part before: it neither votes nor campaigns.
    pub(super) probation: bool,
    pub(super) messages: Vec<Message>,
    pub(super) read_states: Vec<ReadState>,
    pub(super) dropped_reads: Vec<u64>,
    last_hard_state: HardState,
    last_soft_state: SoftState,
}

impl Raft {
    /// A node starting (or restarting) from what it persisted.
    pub fn new(cfg: Config, persisted: PersistedState) -> Result<Raft, RaftError> {
        cfg.validate()?;
        let PersistedState { hard_state, snapshot, entries } = persisted;
        let snap_meta = snapshot.as_ref().map(|s| s.meta).unwrap_or_default();
        check_persisted(&hard_state, snap_meta, &entries)?;
        let last_index = snap_meta.index + entries.len() as Index;
        let applied = cfg.applied.max(snap_meta.index);
        if applied > last_index {
            return Err(RaftError::CorruptState(format!(
                "the state machine has applied index {applied} but the log ends at {last_index}"
            )));
        }
        // Applied entries were committed, even if the commit index written
        // alongside them is older.
        let committed = hard_state.commit.max(applied);
        let log = RaftLog::restore(snap_meta, entries, committed, applied);
        let soft = SoftState { role: Role::Follower, term: hard_state.term, leader: None };
        let hard = HardState { commit: committed, ..hard_state };
        let mut raft = Raft {
            id: cfg.id,
            term: hard_state.term,
            vote: hard_state.vote,
            leader: None,
            role: Role::Follower,
            log,
            snapshot,
            snapshot_to_install: None,
            conf: Membership::default(),
            conf_index: 0,
            progress: BTreeMap::new(),
            leaving: BTreeSet::new(),
            leaving_ticks: 0,
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.election_ticks,
            transfer_target: None,
            transfer_elapsed: 0,
            reads: ReadIndexRounds::default(),
            replication_pending: false,
            rng: SplitMix64::new(cfg.seed),
            probation: false,
            messages: Vec::new(),
            read_states: Vec::new(),
            dropped_reads: Vec::new(),
            last_hard_state: hard,
            last_soft_state: soft,
            cfg,
        };
        raft.reset_election_timer();
        raft.refresh_conf();
        Ok(raft)
    }

    // --- Queries -----------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> Index {
        self.log.committed()
    }
    /// Highest index handed out to be applied.
    pub fn applied_index(&self) -> Index {
        self.log.applied()
    }
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }
    pub fn snapshot_meta(&self) -> SnapshotMeta {
        self.log.snapshot_meta()
    }
    /// Puts the node on probation, or lets it off: on probation it neither
    /// votes nor campaigns, but follows a leader as usual. For a node whose
    /// disk may have been wiped: its votes and acknowledgements before the
    /// wipe are forgotten, and voting again could elect a leader without a
    /// committed entry (the caller clears it once it knows better).
    pub fn set_probation(&mut self, on: bool) {
        if on != self.probation {
            tracing::info!(node = self.id, probation = on, "vote probation");
        }
        self.probation = on;
    }

    /// On the leader: how far `id`'s log is known to match (its own last
    /// index for itself); `None` elsewhere or for a node it does not track.
    pub fn match_index(&self, id: NodeId) -> Option<Index> {
        if self.role != Role::Leader {
            return None;
        }
        if id == self.id {
            return Some(self.log.last_index());
        }
        self.progress.get(&id).map(|pr| pr.match_index)
    }

    /// The latest snapshot this node made or received.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
    /// The configuration in force, and the index of the entry that set it
    /// (0 when it came from a snapshot or the bootstrap voters).
    pub fn membership(&self) -> (&Membership, Index) {
        (&self.conf, self.conf_index)
    }
    pub fn soft_state(&self) -> SoftState {
        SoftState { role: self.role, term: self.term, leader: self.leader }
    }
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.log.committed() }
    }
    /// The term of the entry at `index`, if the log still holds it.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.log.term(index)
    }

    // --- Inputs ------------------------------------------------------------

    /// Appends a command to the leader's log and returns its index. The
    /// command is committed when an entry at that index *with the current
    /// term* is applied; a different entry there means it was lost.
    pub fn propose(&mut self, data: Bytes) -> Result<Index, RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader });
        }
        if let Some(target) = self.transfer_target {
            return Err(RaftError::TransferInProgress(target));
        }
        let index = self.log.last_index() + 1;
        self.log.append([Entry { index, term: self.term, kind: EntryKind::Command, data }]);
        self.replication_pending = true;
        Ok(index)
    }

    /// Proposes the configuration `next` (the whole of it, not a delta; the
    /// members that leave are added to its retired ids here) with
    /// the caller's `context` (opaque here; CapuKV's server puts addresses in
    /// it). It is in force on the leader at once and on each node once the
    /// entry reaches its log; it succeeded once applied at the returned
    /// index with the current term, as any proposal. Refused unless it moves
    /// at most one voter, the previous change is committed, and this leader
    /// has committed an entry of its term (the rules: `membership.rs`).
    pub fn propose_membership(&mut self, next: Membership, context: Bytes) -> Result<Index, RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader });
        }
        if let Some(target) = self.transfer_target {
            return Err(RaftError::TransferInProgress(target));
        }
        if !self.committed_in_term() {
            return Err(RaftError::LeaderNotReady);
        }
        if self.conf_index > self.log.committed() {
            return Err(RaftError::ChangeInProgress(self.conf_index));
        }
        let next = self.conf.next(next.voters, next.learners);
        self.conf.check_change(&next)?;
        let index = self.log.last_index() + 1;
        let data = MembershipChange { membership: next, context }.encode();
        self.log.append([Entry { index, term: self.term, kind: EntryKind::Membership, data }]);
        self.replication_pending = true;
        self.refresh_conf();
        Ok(index)
    }

    /// Asks for a linearizable read. The answer comes as a [`ReadState`] with
    /// the same `request` id (or in `dropped_reads` if leadership is lost).
    pub fn read_index(&mut self, request: u64) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader });
        }
        self.reads.enqueue(request);
        Ok(())
    }

    /// Hands leadership to `target` once its log has caught up; proposals
    /// are refused meanwhile. Abandoned after an election timeout.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader });
        }
        if !self.conf.is_voter(target) {
            return Err(RaftError::UnknownNode(target));
        }
        if target == self.id || self.transfer_target == Some(target) {
            return Ok(());
        }
        tracing::info!(node = self.id, term = self.term, target, "transferring leadership");
        self.transfer_target = Some(target);
        self.transfer_elapsed = 0;
        if self.progress[&target].match_index == self.log.last_index() {
            self.send(target, MessageBody::TimeoutNow);
        } else {
            self.send_append(target, true);
        }
        Ok(())
    }

    /// The caller took a snapshot of its state machine at `index` (at most
    /// the applied index): drop the log up to it and keep the snapshot for
    /// followers that fall behind. The caller persists the snapshot (with
    /// the returned snapshot's membership, [`Raft::snapshot`]) before
    /// deleting the entries it covers.
    pub fn compact(&mut self, index: Index, data: Bytes) -> Result<SnapshotMeta, RaftError> {
        let bad = |why: &str| Err(RaftError::BadCompaction { index, why: why.to_string() });
        if index <= self.log.snapshot_meta().index {
            return bad("the log is already compacted to there");
        }
        if index > self.log.applied() {
            return bad("it is beyond the applied index");
        }
        let term = self.log.term(index).expect("applied entries are in the log");
        let (MembershipChange { membership, context }, _) = self.change_at(index);
        self.log.compact(index);
        let meta = SnapshotMeta { index, term };
        self.snapshot = Some(Snapshot { meta, membership, membership_context: context, data });
        Ok(meta)
    }

    /// The caller made everything it was handed up to the entry `index` of
    /// term `term` durable (with [`Ready::entries`] or [`Ready::snapshot`]).
    /// This is the only way the core learns what is on disk: the leader
    /// counts its own log toward commit only up to here, and committed
    /// entries up to here may be applied before a batch is persisted
    /// ([`Ready::persisted_index`]). A report for an entry replaced since is
    /// ignored.
    pub fn persisted(&mut self, index: Index, term: Term) {
        if self.log.persisted(index, term) && self.role == Role::Leader && self.maybe_commit() {
            // The new commit index goes out with the next batch.
            self.replication_pending = true;
        }
    }

    /// The transport's word on a snapshot sent to `to`: on failure the leader
    /// probes again (and resends the snapshot if still needed).
    pub fn report_snapshot(&mut self, to: NodeId, delivered: bool) {
        if let Some(pr) = self.progress.get_mut(&to)
            && matches!(pr.state, super::progress::ProgressState::Snapshot { .. })
            && !delivered
        {
            pr.become_probe();
        }
    }

    // --- Output ------------------------------------------------------------

    pub fn has_ready(&self) -> bool {
        self.replication_pending
            || (self.reads.has_waiting() && self.read_index_allowed())
            || !self.messages.is_empty()
            || self.log.has_unstable()
            || self.log.has_committed_to_apply()
            || self.snapshot_to_install.is_some()
            || !self.read_states.is_empty()
            || !self.dropped_reads.is_empty()
            || self.hard_state() != self.last_hard_state
            || self.soft_state() != self.last_soft_state
    }

    /// Drains everything the caller must now persist, send and apply (see
    /// [`Ready`] for the order). The core treats it as handed over.
    pub fn ready(&mut self) -> Ready {
        self.flush();
        let hard = self.hard_state();
        let soft = self.soft_state();
        let snapshot = self.snapshot_to_install.take();
        let durable_term_and_vote = (hard.term, hard.vote) == (self.last_hard_state.term, self.last_hard_state.vote);
        #[allow(unused_mut)]
        let mut persisted_index = if snapshot.is_some() { 0 } else { self.log.durable_index() };
        // Planted: this batch's own entries count as already on disk.
        #[cfg(feature = "planted-bugs")]
        if self.cfg.planted(crate::planted::Bug::ApplyBeforeDurable) {
            persisted_index = self.log.last_index();
        }
        let ready = Ready {
            persisted_index,
            send_first: self.role == Role::Leader && durable_term_and_vote && snapshot.is_none(),
            soft_state: (soft != self.last_soft_state).then_some(soft),
            hard_state: (hard != self.last_hard_state).then_some(hard),
            snapshot,
            entries: self.log.take_unstable(),
            messages: std::mem::take(&mut self.messages),
            committed_entries: self.log.take_committed(),
            read_states: std::mem::take(&mut self.read_states),
            dropped_reads: std::mem::take(&mut self.dropped_reads),
        };
        self.last_hard_state = hard;
        self.last_soft_state = soft;
        ready
    }

    /// Leader work deferred so that everything gathered since the last batch
    /// goes out together: new entries and commit index to followers, and one
    /// ReadIndex round for all reads that arrived.
    fn flush(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        if self.replication_pending {
            self.replication_pending = false;
            // Followers' acknowledgements since the last batch.
            self.maybe_commit();
            self.broadcast_append();
        }
        if self.conf_index <= self.log.committed() {
            // The last change is committed, and its commit index has gone
            // out to the removed members for an election timeout: they need
            // the log no more.
            if self.leaving_ticks >= self.cfg.election_ticks {
                for gone in std::mem::take(&mut self.leaving) {
                    self.progress.remove(&gone);
                }
            }
            if !self.conf.is_voter(self.id) {
                tracing::info!(
                    node = self.id,
                    term = self.term,
                    index = self.conf_index,
                    "stepping down: the change removing this node from the voters is committed"
                );
                self.become_follower(self.term, None);
                return;
            }
        }
        if self.reads.has_waiting() && self.read_index_allowed() {
            self.start_read_round();
        }
    }

    /// A leader may confirm reads only once it committed an entry of its
    /// own term: until then its commit index may miss writes the previous
    /// leader acknowledged (§6.4).
    fn read_index_allowed(&self) -> bool {
        // Planted: reads at whatever commit index the new leader has.
        #[cfg(feature = "planted-bugs")]
        if self.cfg.planted(crate::planted::Bug::ReadIndexBeforeTermCommit) {
            return true;
        }
        self.committed_in_term()
    }

    // --- Role changes --------------------------------------------------------

    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        if self.role != Role::Follower || self.leader != leader {
            tracing::info!(node = self.id, term, ?leader, "following");
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.reset_role_state();
    }

    pub(super) fn become_pre_candidate(&mut self) {
        // Neither term nor vote changes: that is the point of pre-voting.
        self.role = Role::PreCandidate;
        self.leader = None;
        self.reset_role_state();
    }

    pub(super) fn become_candidate(&mut self) {
        self.term += 1;
        self.vote = Some(self.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.reset_role_state();
    }

    pub(super) fn become_leader(&mut self) {
        tracing::info!(node = self.id, term = self.term, "became leader");
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.reset_role_state();
        let next = self.log.last_index() + 1;
        self.progress = self.conf.members().filter(|&v| v != self.id).map(|v| (v, Progress::new(next))).collect();
        // A leader may only count replicas of entries from its own term
        // (§5.4.2), so it appends one at once to learn its commit index.
        // While the log holds no configuration (it is still the bootstrap
        // voters'), that entry states it, so that the log and every
        // snapshot of it tell each node, a joining one too, who the voters
        // were before any change (etcd's bootstrap writes them likewise).
        let entry = if self.conf_index == 0 {
            let data = MembershipChange { membership: self.conf.clone(), context: Bytes::new() }.encode();
            Entry { index: next, term: self.term, kind: EntryKind::Membership, data }
        } else {
            Entry { index: next, term: self.term, kind: EntryKind::Noop, data: Bytes::new() }
        };
        self.log.append([entry]);
        self.refresh_conf();
        self.replication_pending = true;
    }

    fn reset_role_state(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_election_timer();
        self.votes.clear();
        self.progress.clear();
        self.leaving.clear();
        self.leaving_ticks = 0;
        self.transfer_target = None;
        self.replication_pending = false;
        self.dropped_reads.extend(self.reads.drop_all());
    }

    pub(super) fn reset_election_timer(&mut self) {
        let base = u64::from(self.cfg.election_ticks);
        self.randomized_election_timeout = self.rng.range(base, 2 * base) as u32;
    }

    // --- Helpers shared by the rule modules --------------------------------

    /// The configuration in force at `index`, and the index of the entry
    /// that set it.
    pub(super) fn conf_at(&self, index: Index) -> (Membership, Index) {
        let (change, at) = self.change_at(index);
        (change.membership, at)
    }

    /// The membership change in force at `index` (with the caller's context
    /// that came with it), and the index of its entry.
    fn change_at(&self, index: Index) -> (MembershipChange, Index) {
        if let Some(entry) = self.log.last_membership_entry(index) {
            match MembershipChange::decode(&entry.data) {
                // A restatement carries no context: the one before it holds.
                Ok(change) if change.context.is_empty() => {
                    let (before, _) = self.change_at(entry.index - 1);
                    return (MembershipChange { context: before.context, ..change }, entry.index);
                }
                Ok(change) => return (change, entry.index),
                // Every node holds the same entry, so every node skips it.
                Err(e) => {
                    tracing::error!(node = self.id, index = entry.index, %e, "ignoring an unreadable membership entry")
                }
            }
        }
        let base = match &self.snapshot {
            Some(s) if s.meta.index == self.log.snapshot_meta().index => {
                MembershipChange { membership: s.membership.clone(), context: s.membership_context.clone() }
            }
            _ => MembershipChange {
                membership: Membership::new(self.cfg.voters.iter().copied(), []),
                context: Bytes::new(),
            },
        };
        (base, 0)
    }

    /// Puts the configuration the log now ends with in force: after an
    /// append, a truncation, a snapshot, a restart.
    pub(super) fn refresh_conf(&mut self) {
        let (conf, index) = self.conf_at(self.log.last_index());
        self.conf_index = index;
        if conf == self.conf {
            return;
        }
        tracing::info!(node = self.id, index, voters = ?conf.voters, learners = ?conf.learners, "configuration in force");
        if !conf.is_voter(self.id) && self.conf.is_voter(self.id) {
            let learner = conf.learners.contains(&self.id);
            tracing::info!(node = self.id, learner, "no longer a voter: this node will not campaign");
        }
        if self.role == Role::Leader {
            let next = self.log.last_index() + 1;
            for id in conf.members().filter(|&id| id != self.id) {
                self.progress.entry(id).or_insert_with(|| Progress::new(next));
                self.leaving.remove(&id);
            }
            let gone: Vec<NodeId> = self.progress.keys().copied().filter(|&id| !conf.contains(id)).collect();
            self.leaving.extend(gone);
            self.leaving_ticks = 0;
        }
        self.conf = conf;
    }

    /// Whether this node may campaign: voters do, and not while on
    /// probation. So does a node that an entry not yet known committed
    /// removes from the voters: it may hold the only copy that can finish
    /// the change (a leader that removed itself and lost leadership before
    /// the entry committed, while the remaining voter lacks it and needs
    /// its vote). It then needs a majority of the new voters, not counting
    /// itself, and steps down once the change commits.
    pub(super) fn may_campaign(&self) -> bool {
        if self.probation {
            return false;
        }
        self.conf.is_voter(self.id)
            || (self.conf_index > self.log.committed() && self.conf_at(self.conf_index - 1).0.is_voter(self.id))
    }

    pub(super) fn send(&mut self, to: NodeId, body: MessageBody) {
        self.send_in_term(to, self.term, body);
    }

    /// Sends in another term than the node's own: a pre-vote asks in the
    /// term it would campaign in, and a granted vote answers in the
    /// requester's term.
    pub(super) fn send_in_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        self.messages.push(Message { from: self.id, to, term, body });
    }

    /// Whether the commit index covers an entry of this term, which a leader
    /// needs before it can serve ReadIndex reads (§6.4).
    pub(super) fn committed_in_term(&self) -> bool {
        self.log.term(self.log.committed()) == Some(self.term)
    }
}

/// Refuses persisted state that cannot be what this code wrote.
fn check_persisted(hard: &HardState, snap: SnapshotMeta, entries: &[Entry]) -> Result<(), RaftError> {
    let corrupt = |why: String| Err(RaftError::CorruptState(why));
    let mut prev = (snap.index, snap.term);
    for e in entries {
        if e.index != prev.0 + 1 {
            return corrupt(format!("log entry {} follows entry {}: the log has a gap", e.index, prev.0));
        }
        if e.term < prev.1 {
            return corrupt(format!("log entry {} has term {} after term {}", e.index, e.term, prev.1));
        }
        prev = (e.index, e.term);
    }
    if prev.1 > hard.term {
        return corrupt(format!("log holds term {} but the current term is {}", prev.1, hard.term));
    }
    if hard.commit > prev.0 {
        return corrupt(format!("commit index {} is beyond the last log entry {}", hard.commit, prev.0));
    }
    Ok(())
}
