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
use super::transport::Transport;
// The failpoint macros are empty without the `failpoints` feature.
#[cfg_attr(not(feature = "failpoints"), allow(unused_imports))]
use crate::failpoints as fp;
use crate::proto;
use crate::raft::{Index, Message, NodeId, Raft, RaftError, Ready, Role, Snapshot, Term};
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
        events: (Sender<Event>, Receiver<Event>),
        cfg: LoopConfig,
    ) -> std::io::Result<RaftLoop> {
        let (apply_tx, apply_rx) = crossbeam_channel::unbounded();
        let applied = Arc::new(AtomicU64::new(0));
        Self::start_ticker(raft.id(), cfg.tick, events.0.clone())?;
        let applier =
            Applier::new(sm, apply_rx, events.0, applied.clone(), cfg.snapshot_every, raft.snapshot_meta().index);
        let applier = std::thread::Builder::new().name(format!("apply-{}", raft.id())).spawn(move || applier.run())?;
        Ok(RaftLoop {
            raft,
            storage,
            transport,
            events: events.1,
            apply: apply_tx,
            applier,
            applied,
            proposed: Vec::new(),
            next_read: 0,
            reads_requested: HashMap::new(),
            ticks: 0,
        })
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
            Event::Message(m) => self.raft.step(m),
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
            Event::Compact { index, data } => self.compact(index, data)?,
            Event::Tick => {
                self.raft.tick();
                self.ticks += 1;
            }
            Event::ApplierStopped | Event::Shutdown => return Ok(false),
        }
        Ok(true)
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
        match self.raft.compact(index, data.clone()) {
            Ok(meta) => {
                fail::fail_point!(fp::RAFT_BEFORE_COMPACT, |_| Err(StorageError::Injected(fp::RAFT_BEFORE_COMPACT)));
                self.storage.compact(&Snapshot { meta, data })?;
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
        RaftError::UnknownNode(id) => Rejection::Invalid(format!("node {id} is not a member of this cluster")),
        other => Rejection::Unavailable(other.to_string()),
    }
}
