//! The Raft loop: one thread that owns the core and the Raft log's storage.
//! Everything else talks to it through [`Event`]s.
//!
//! Each turn it takes every event waiting (so that concurrent proposals and
//! reads share one batch: one fsync, one heartbeat round; ticks arrive as
//! events too, from a ticker thread), then handles the core's `Ready` in the order the
//! core's contract demands: committed entries that earlier batches made
//! durable go to the apply thread ([`super::apply`]) at once; then persist
//! (one synced batch) and send; then the rest of what is committed goes to
//! the apply thread too, which applies it and answers while this loop goes
//! on with the next batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use super::apply::{Applier, ApplyTask};
use super::members::{Addresses, SharedDirectory, book_of, book_of_snapshot};
use super::transport::{ApiAddrs, Transport};
// The failpoint macros are empty without the `failpoints` feature.
#[cfg_attr(not(feature = "failpoints"), allow(unused_imports))]
use crate::failpoints as fp;
use crate::proto;
use crate::raft::{
    Entry, EntryKind, Index, Membership, MembershipChange, Message, NodeId, Raft, RaftError, Ready, Role, Snapshot,
    Term,
};
use crate::state_machine::{ApplyError, StateMachine};
use crate::storage::{Storage, StorageError};

/// Why the loop could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("not the leader")]
    NotLeader(Option<NodeId>),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Applied(#[from] ApplyError),
    #[error("{0}")]
    Invalid(String),
}

pub type Reply<T> = oneshot::Sender<Result<T, Rejection>>;

pub enum Event {
    /// A client command (an encoded `proto::Command`) to replicate.
    Propose {
        command: Bytes,
        reply: Reply<proto::CommandResponse>,
    },
    /// A linearizable read: answered once the state machine may serve it.
    Read {
        reply: Reply<()>,
    },
    /// A message from a peer.
    Message(Message),
    /// The transport's word on a snapshot sent to a peer.
    SnapshotSent {
        to: NodeId,
        delivered: bool,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    Transfer {
        target: NodeId,
        reply: Reply<()>,
    },
    /// A membership change; answered once its entry is applied.
    MemberChange {
        change: MemberChange,
        reply: Reply<proto::CommandResponse>,
    },
    /// The configuration in force here, with each member's progress.
    MemberList {
        reply: oneshot::Sender<MemberView>,
    },
    /// Every other founder answered the rejoin probe: this node never took
    /// part before, and may vote.
    ProbationCleared,
    /// From the peer service: a node this one did not know streamed to it
    /// (a member added by an entry not yet here), and where it listens.
    LearnPeer {
        id: NodeId,
        addrs: Addresses,
    },
    /// From the apply thread: the state machine's snapshot at `index`, to
    /// compact the log to.
    Compact {
        index: Index,
        data: Bytes,
    },
    /// One tick of the Raft clock, from the ticker thread.
    Tick,
    /// The apply thread failed; the loop stops with its error.
    ApplierStopped,
    Shutdown,
}

/// One membership change, as asked through the Cluster API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Add a voter, or a learner, listening at these addresses.
    Add {
        id: NodeId,
        addrs: Addresses,
        learner: bool,
    },
    Promote(NodeId),
    Demote(NodeId),
    Remove(NodeId),
}

impl MemberChange {
    /// The configuration after this change, or why it cannot follow `conf`.
    pub fn apply_to(&self, conf: &Membership) -> Result<Membership, String> {
        let mut next = conf.clone();
        match self {
            MemberChange::Add { id, learner, .. } => {
                if conf.contains(*id) {
                    return Err(format!("node {id} is already a member"));
                }
                if *learner {
                    next.learners.insert(*id)
                } else {
                    next.voters.insert(*id)
                };
            }
            MemberChange::Promote(id) => {
                if !next.learners.remove(id) {
                    return Err(format!("node {id} is not a learner"));
                }
                next.voters.insert(*id);
            }
            MemberChange::Demote(id) => {
                if !next.voters.remove(id) {
                    return Err(format!("node {id} is not a voter"));
                }
                next.learners.insert(*id);
            }
            MemberChange::Remove(id) => {
                if !next.voters.remove(id) && !next.learners.remove(id) {
                    return Err(format!("node {id} is not a member"));
                }
            }
        }
        Ok(next)
    }
}

/// What [`Event::MemberList`] answers.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub leader: Option<NodeId>,
    pub membership: Membership,
    pub config_index: Index,
    /// On the leader: each member's replicated index (its own last index).
    pub progress: HashMap<NodeId, Index>,
}

#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub commit: Index,
    pub applied: Index,
    pub snapshot_index: Index,
    pub ticks: u64,
}

/// How far behind the leader's log a learner may be to be promoted.
const PROMOTE_LAG: Index = 1_000;

/// Who has been seen taking part (see `Probe`), shared with the peer
/// service that answers for it.
pub type Participants = Arc<std::sync::RwLock<std::collections::BTreeSet<NodeId>>>;

/// What the loop shares with the API and the peer service.
pub struct Shared {
    pub directory: SharedDirectory,
    pub api_addrs: ApiAddrs,
    pub participants: Participants,
}

pub struct LoopConfig {
    pub tick: Duration,
    /// Compact the log once this many entries were applied past the last
    /// snapshot.
    pub snapshot_every: u64,
}

pub struct RaftLoop {
    raft: Raft,
    storage: Arc<Storage>,
    transport: Transport,
    /// The membership and addresses the API and the peer gate read.
    directory: SharedDirectory,
    /// The configuration (its entry's index, and whether committed) last
    /// put in `directory`.
    directory_synced: Option<(Index, bool)>,
    api_addrs: ApiAddrs,
    participants: Participants,
    events: Receiver<Event>,
    /// To the apply thread, and its handle (joined when the loop ends).
    apply: Sender<ApplyTask>,
    applier: JoinHandle<Result<(), StorageError>>,
    /// The state machine's applied index, kept by the apply thread.
    applied: Arc<AtomicU64>,
    /// Proposals made this turn, registered with the apply thread before
    /// the turn's batch is handed over.
    proposed: Vec<(Index, Term, Reply<proto::CommandResponse>)>,
    next_read: u64,
    reads_requested: HashMap<u64, Reply<()>>,
    /// Ticks since start, for the status (clock faults show in it).
    ticks: u64,
}

impl RaftLoop {
    /// Starts the apply thread (named `apply-ID`) with the state machine.
    pub fn new(
        raft: Raft,
        storage: Arc<Storage>,
        sm: StateMachine,
        transport: Transport,
        Shared { directory, api_addrs, participants }: Shared,
        events: (Sender<Event>, Receiver<Event>),
        cfg: LoopConfig,
    ) -> std::io::Result<RaftLoop> {
        let (apply_tx, apply_rx) = crossbeam_channel::unbounded();
        let applied = Arc::new(AtomicU64::new(0));
        Self::start_ticker(raft.id(), cfg.tick, events.0.clone())?;
        let applier =
            Applier::new(sm, apply_rx, events.0, applied.clone(), cfg.snapshot_every, raft.snapshot_meta().index);
        let applier = std::thread::Builder::new().name(format!("apply-{}", raft.id())).spawn(move || applier.run())?;
        let mut raft_loop = RaftLoop {
            raft,
            storage,
            transport,
            directory,
            directory_synced: None,
            api_addrs,
            participants,
            events: events.1,
            apply: apply_tx,
            applier,
            applied,
            proposed: Vec::new(),
            next_read: 0,
            reads_requested: HashMap::new(),
            ticks: 0,
        };
        raft_loop.sync_directory(None, &[]);
        Ok(raft_loop)
    }

    /// Brings the directory up to the core's configuration (and the
    /// removed ids up to its committed one), taking the addresses that the
    /// `snapshot` and `entries` just persisted carry, and keeps the address
    /// book in storage when it changed.
    fn sync_directory(&mut self, snapshot: Option<&Snapshot>, entries: &[Entry]) {
        // Called after every batch that persisted something: most carry no
        // configuration and change nothing here, and must not take the lock.
        let mut changes = entries.iter().filter(|e| e.kind == EntryKind::Membership).peekable();
        let carries = snapshot.is_some() || changes.peek().is_some();
        let (_, index) = self.raft.membership();
        let synced = (index, index <= self.raft.commit_index());
        if !carries && self.directory_synced == Some(synced) {
            return;
        }
        self.directory_synced = Some(synced);
        let mut directory = self.directory.write().expect("not poisoned");
        let mut book_changed = false;
        let changes = changes
            .map(|e| (e.index, MembershipChange::decode(&e.data).map_err(|e| e.to_string()).map(|c| book_of(&c))));
        let books = snapshot.map(|s| (s.meta.index, Ok(book_of_snapshot(s)))).into_iter().chain(changes);
        for (index, book) in books {
            match book {
                // A leader restating the founders (see `Raft::become_leader`).
                Ok(None) => {}
                Ok(Some(Ok(book))) => {
                    for (id, addrs) in book {
                        if directory.book.get(&id) != Some(&addrs) {
                            directory.book.insert(id, addrs);
                            book_changed = true;
                        }
                    }
                }
                Ok(Some(Err(why))) | Err(why) => {
                    tracing::warn!(node = self.raft.id(), index, %why, "a membership change without readable addresses")
                }
            }
        }
        let (membership, _) = self.raft.membership();
        let (index, committed) = synced;
        let retired_now = committed && directory.removed != membership.retired;
        if *membership != directory.membership || index != directory.config_index || book_changed || retired_now {
            directory.set_membership(membership.clone(), index, committed);
            for id in membership.members() {
                if let Some(addrs) = directory.book.get(&id) {
                    self.transport.set_peer(id, &addrs.raft);
                    if !addrs.api.is_empty() {
                        self.api_addrs.write().expect("not poisoned").insert(id, addrs.api.clone());
                    }
                }
            }
            if book_changed && let Err(e) = self.storage.save_members(&directory.book) {
                tracing::warn!(node = self.raft.id(), error = %e, "could not keep the address book");
            }
        }
    }

    /// Runs until shut down. A storage failure (here or in the apply thread)
    /// ends the loop with the error: a node that cannot persist must not go
    /// on voting or acknowledging.
    pub fn run(mut self) -> Result<(), StorageError> {
        let result = self.serve();
        let RaftLoop { apply, applier, .. } = self;
        // Dropping the sender ends the apply thread once it has drained.
        drop(apply);
        // A panic there is this thread's panic too (the server reports it).
        let applied = applier.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        result.and(applied)
    }

    fn serve(&mut self) -> Result<(), StorageError> {
        loop {
            match self.events.recv() {
                Ok(Event::Shutdown) | Err(_) => return Ok(()),
                Ok(event) => {
                    // Everything already waiting joins this batch.
                    let waiting: Vec<Event> = std::iter::once(event).chain(self.events.try_iter()).collect();
                    for event in waiting {
                        if !self.handle(event)? {
                            return Ok(());
                        }
                    }
                }
            }
            // Registered before any batch that could commit them.
            if !self.proposed.is_empty() {
                let proposed = std::mem::take(&mut self.proposed);
                self.to_applier(ApplyTask::Proposals(proposed));
            }
            // Again while there is more: reporting a batch durable may
            // commit (a one-node leader's own write) without any event.
            while self.raft.has_ready() {
                let ready = self.raft.ready();
                self.handle_ready(ready)?;
            }
        }
    }

    /// Starts the thread that sends a tick every `cfg.tick`. It sleeps rather
    /// than this loop waiting with a deadline, so that ticks follow the
    /// process's clock when libfaketime skews it (the clock nemesis): a
    /// sleep is scaled by the faked rate, while a wait with a deadline mixes
    /// the faked clock with the kernel's. It ends when the loop is gone.
    fn start_ticker(id: NodeId, tick: Duration, events: Sender<Event>) -> std::io::Result<()> {
        let spawned = std::thread::Builder::new().name(format!("tick-{id}")).spawn(move || {
            loop {
                std::thread::sleep(tick);
                if events.send(Event::Tick).is_err() {
                    return;
                }
            }
        });
        spawned.map(drop)
    }

    /// Returns false when the loop is to stop: shut down, or the apply
    /// thread failed (its error is what `run` returns).
    fn handle(&mut self, event: Event) -> Result<bool, StorageError> {
        match event {
            Event::Propose { command, reply } => match self.raft.propose(command) {
                Ok(index) => {
                    self.proposed.push((index, self.raft.term(), reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(rejection(e)));
                }
            },
            Event::Read { reply } => {
                self.next_read += 1;
                match self.raft.read_index(self.next_read) {
                    Ok(()) => {
                        self.reads_requested.insert(self.next_read, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(rejection(e)));
                    }
                }
            }
            Event::Message(m) => {
                self.note_participation(&m)?;
                self.raft.step(m);
            }
            Event::ProbationCleared => {
                self.storage.set_probation(false)?;
                self.raft.set_probation(false);
            }
            Event::SnapshotSent { to, delivered } => self.raft.report_snapshot(to, delivered),
            Event::Status { reply } => {
                let _ = reply.send(NodeStatus {
                    id: self.raft.id(),
                    role: self.raft.role(),
                    term: self.raft.term(),
                    leader: self.raft.leader(),
                    commit: self.raft.commit_index(),
                    applied: self.applied.load(Ordering::Acquire),
                    snapshot_index: self.raft.snapshot_meta().index,
                    ticks: self.ticks,
                });
            }
            Event::Transfer { target, reply } => {
                let _ = reply.send(self.raft.transfer_leader(target).map_err(rejection));
            }
            Event::MemberChange { change, reply } => self.change_membership(change, reply),
            Event::MemberList { reply } => {
                let (membership, config_index) = self.raft.membership();
                let progress =
                    membership.members().filter_map(|id| self.raft.match_index(id).map(|m| (id, m))).collect();
                let _ = reply.send(MemberView {
                    leader: self.raft.leader(),
                    membership: membership.clone(),
                    config_index,
                    progress,
                });
            }
            Event::LearnPeer { id, addrs } => {
                let mut directory = self.directory.write().expect("not poisoned");
                if !directory.book.contains_key(&id) && !directory.removed.contains(&id) {
                    tracing::info!(node = self.raft.id(), peer = id, raft = %addrs.raft, "learnt a peer from its stream");
                    self.transport.set_peer(id, &addrs.raft);
                    directory.book.insert(id, addrs);
                }
            }
            Event::Compact { index, data } => self.compact(index, data)?,
            Event::Tick => {
                self.raft.tick();
                self.ticks += 1;
            }
            Event::ApplierStopped | Event::Shutdown => return Ok(false),
        }
        Ok(true)
    }

    /// Records, durably and before the core counts it, that the sender of
    /// an acknowledgement or a granted vote took part: should it ever come
    /// back with an empty disk, its `Probe` learns that it must not vote.
    fn note_participation(&mut self, m: &Message) -> Result<(), StorageError> {
        use crate::raft::{AppendResponse, MessageBody};
        let promise = matches!(
            m.body,
            MessageBody::AppendResponse(AppendResponse::Accepted { match_index }) if match_index > 0
        ) || matches!(m.body, MessageBody::VoteResponse { pre_vote: false, granted: true });
        if !promise {
            return Ok(());
        }
        // This loop is the only writer: what it reads stays true until it writes.
        let mut participants = {
            let known = self.participants.read().expect("not poisoned");
            if known.contains(&m.from) {
                return Ok(());
            }
            known.clone()
        };
        participants.insert(m.from);
        self.storage.save_participants(&participants)?;
        *self.participants.write().expect("not poisoned") = participants;
        Ok(())
    }

    /// Proposes a membership change with the addresses of every member of
    /// the new configuration in its entry.
    fn change_membership(&mut self, change: MemberChange, reply: Reply<proto::CommandResponse>) {
        let (conf, _) = self.raft.membership();
        let next = match change.apply_to(conf) {
            Ok(next) => next,
            Err(why) => {
                let _ = reply.send(Err(Rejection::Invalid(why)));
                return;
            }
        };
        if let MemberChange::Promote(id) = change {
            // A voter far behind would stall every commit that needs it.
            let (matched, last) = (self.raft.match_index(id).unwrap_or(0), self.raft.last_index());
            if matched == 0 || matched + PROMOTE_LAG < last {
                let why = format!(
                    "learner {id} has not caught up (its log matches to {matched}, the leader's ends at {last}; a learner that never answered matches to 0); retry once `member list` shows it within {PROMOTE_LAG}"
                );
                let _ = reply.send(Err(if self.raft.role() == Role::Leader {
                    Rejection::Unavailable(why)
                } else {
                    Rejection::NotLeader(self.raft.leader())
                }));
                return;
            }
        }
        let extra = match &change {
            MemberChange::Add { id, addrs, .. } => Some((*id, addrs.clone())),
            _ => None,
        };
        let book = self.directory.read().expect("not poisoned").book_for(&next, extra.clone());
        if let Some(missing) = next.members().find(|id| !book.contains_key(id)) {
            let _ = reply.send(Err(Rejection::Invalid(format!("no address is known for node {missing}"))));
            return;
        }
        tracing::info!(node = self.raft.id(), ?change, voters = ?next.voters, learners = ?next.learners, "proposing a membership change");
        match self.raft.propose_membership(next, super::members::encode_book(&book)) {
            Ok(index) => {
                if let Some((id, addrs)) = extra {
                    // The leader streams to the new member at once.
                    self.transport.set_peer(id, &addrs.raft);
                }
                self.proposed.push((index, self.raft.term(), reply));
            }
            Err(e) => {
                let _ = reply.send(Err(rejection(e)));
            }
        }
    }

    fn to_applier(&self, task: ApplyTask) {
        // The apply thread only goes away after a failure, which the loop
        // learns of through `Event::ApplierStopped`.
        let _ = self.apply.send(task);
    }

    fn handle_ready(&mut self, mut ready: Ready) -> Result<(), StorageError> {
        // Committed entries that earlier batches made durable go to the
        // apply thread now, to be applied (and answered) while this batch
        // is written: on a leader, that is every write acknowledged by the
        // followers since the last turn.
        let persisted = ready.take_committed_persisted();
        if !persisted.is_empty() {
            self.to_applier(ApplyTask::Entries(persisted));
        }
        let Ready {
            soft_state,
            hard_state,
            snapshot,
            entries,
            messages,
            send_first,
            committed_entries,
            persisted_index: _,
            read_states,
            dropped_reads,
        } = ready;
        if let Some(ss) = soft_state {
            tracing::info!(node = self.raft.id(), role = ?ss.role, term = ss.term, leader = ?ss.leader, "raft role");
        }
        // 1. Persist, in one synced batch (group commit), and 2. send. A
        // leader sends first, so that its followers write while it does;
        // this thread steps no reply until the batch is durable.
        let (before, after) = if send_first { (messages, Vec::new()) } else { (Vec::new(), messages) };
        #[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
        let sent_first = !before.is_empty() && !entries.is_empty();
        for m in before {
            self.transport.send(m);
        }
        #[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
        let writes = snapshot.is_some() || !entries.is_empty() || hard_state.is_some();
        fail::fail_point!(fp::RAFT_AFTER_SEND_BEFORE_PERSIST, sent_first, |_| Err(StorageError::Injected(
            fp::RAFT_AFTER_SEND_BEFORE_PERSIST
        )));
        fail::fail_point!(fp::SNAPSHOT_BEFORE_INSTALL, snapshot.is_some(), |_| Err(StorageError::Injected(
            fp::SNAPSHOT_BEFORE_INSTALL
        )));
        fail::fail_point!(fp::RAFT_BEFORE_PERSIST, writes, |_| Err(StorageError::Injected(fp::RAFT_BEFORE_PERSIST)));
        self.storage.persist(snapshot.as_ref(), &entries, hard_state.as_ref())?;
        if snapshot.is_some() || !entries.is_empty() || hard_state.is_some() {
            self.sync_directory(snapshot.as_ref(), &entries);
        }
        let durable =
            entries.last().map(|e| (e.index, e.term)).or(snapshot.as_ref().map(|s| (s.meta.index, s.meta.term)));
        if let Some((index, term)) = durable {
            self.raft.persisted(index, term);
        }
        fail::fail_point!(fp::RAFT_AFTER_PERSIST, writes, |_| Err(StorageError::Injected(fp::RAFT_AFTER_PERSIST)));
        fail::fail_point!(fp::SNAPSHOT_AFTER_INSTALL, snapshot.is_some(), |_| Err(StorageError::Injected(
            fp::SNAPSHOT_AFTER_INSTALL
        )));
        for m in after {
            self.transport.send(m);
        }
        // 3. Apply the rest and 4. answer reads, on the apply thread, in
        // this order.
        if let Some(snap) = snapshot {
            self.to_applier(ApplyTask::Restore(snap));
        }
        if !committed_entries.is_empty() {
            self.to_applier(ApplyTask::Entries(committed_entries));
        }
        // A read whose index the state machine has reached is answered here;
        // the rest wait on the apply thread, behind the entries they need.
        let applied = self.applied.load(Ordering::Acquire);
        let mut confirmed: Vec<(Index, Reply<()>)> = Vec::new();
        for rs in read_states {
            let Some(reply) = self.reads_requested.remove(&rs.request) else { continue };
            if rs.index <= applied {
                let _ = reply.send(Ok(()));
            } else {
                confirmed.push((rs.index, reply));
            }
        }
        if !confirmed.is_empty() {
            self.to_applier(ApplyTask::Reads(confirmed));
        }
        for request in dropped_reads {
            if let Some(reply) = self.reads_requested.remove(&request) {
                let _ = reply
                    .send(Err(Rejection::Unavailable("leadership lost before the read was confirmed; retry".into())));
            }
        }
        Ok(())
    }

    /// Compacts the log to the apply thread's snapshot, unless the log moved
    /// past it meanwhile (a snapshot from the leader was installed).
    fn compact(&mut self, index: Index, data: Bytes) -> Result<(), StorageError> {
        match self.raft.compact(index, data) {
            Ok(meta) => {
                fail::fail_point!(fp::RAFT_BEFORE_COMPACT, |_| Err(StorageError::Injected(fp::RAFT_BEFORE_COMPACT)));
                self.storage.compact(self.raft.snapshot().expect("compaction keeps the snapshot"))?;
                tracing::info!(node = self.raft.id(), index = meta.index, "compacted the log");
            }
            Err(e) => tracing::debug!(node = self.raft.id(), error = %e, "compaction skipped"),
        }
        Ok(())
    }
}
fn rejection(e: RaftError) -> Rejection {
    match e {
        RaftError::NotLeader { leader } => Rejection::NotLeader(leader),
        RaftError::TransferInProgress(target) => {
            Rejection::Unavailable(format!("leadership is moving to node {target}; retry"))
        }
        RaftError::UnknownNode(id) => Rejection::Invalid(format!("node {id} is not a voter of this cluster")),
        e @ RaftError::BadMembershipChange(_) => Rejection::Invalid(e.to_string()),
        other => Rejection::Unavailable(other.to_string()),
    }
}
