//! The Raft loop: one thread that owns the core, the storage and the state
//! machine. Everything else talks to it through [`Event`]s.
//!
//! Each turn it takes every event waiting (so that concurrent proposals and
//! reads share one batch: one fsync, one heartbeat round), ticks the core
//! when a tick is due, then handles the core's `Ready` in the order the
//! core's contract demands: persist (one synced batch), send, apply, answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;

use super::transport::Transport;
use crate::proto;
use crate::raft::{Index, Message, NodeId, Raft, RaftError, Ready, Role, Snapshot, Term};
use crate::state_machine::{ApplyError, CommandResult, StateMachine};
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
    sm: StateMachine,
    transport: Transport,
    events: Receiver<Event>,
    cfg: LoopConfig,
    proposals: HashMap<Index, (Term, Reply<proto::CommandResponse>)>,
    next_read: u64,
    reads_requested: HashMap<u64, Reply<()>>,
    /// Confirmed reads waiting for the state machine to reach their index.
    reads_confirmed: Vec<(Index, Reply<()>)>,
}

impl RaftLoop {
    pub fn new(
        raft: Raft,
        storage: Arc<Storage>,
        sm: StateMachine,
        transport: Transport,
        events: Receiver<Event>,
        cfg: LoopConfig,
    ) -> RaftLoop {
        RaftLoop {
            raft,
            storage,
            sm,
            transport,
            events,
            cfg,
            proposals: HashMap::new(),
            next_read: 0,
            reads_requested: HashMap::new(),
            reads_confirmed: Vec::new(),
        }
    }

    /// Runs until shut down. A storage failure ends the loop with the error:
    /// a node that cannot persist must not go on voting or acknowledging.
    pub fn run(mut self) -> Result<(), StorageError> {
        let mut next_tick = Instant::now() + self.cfg.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(wait) {
                Ok(Event::Shutdown) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Ok(event) => {
                    // Everything already waiting joins this batch.
                    let waiting: Vec<Event> = std::iter::once(event).chain(self.events.try_iter()).collect();
                    for event in waiting {
                        if !self.handle(event) {
                            return Ok(());
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_tick {
                self.raft.tick();
                next_tick += self.cfg.tick;
                // After a long stall (a paused process), do not tick in a burst.
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.cfg.tick;
                }
            }
            if self.raft.has_ready() {
                let ready = self.raft.ready();
                self.handle_ready(ready)?;
            }
        }
    }

    /// Returns false on shutdown.
    fn handle(&mut self, event: Event) -> bool {
        match event {
            Event::Propose { command, reply } => match self.raft.propose(command) {
                Ok(index) => {
                    self.proposals.insert(index, (self.raft.term(), reply));
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
                    applied: self.sm.applied(),
                    snapshot_index: self.raft.snapshot_meta().index,
                });
            }
            Event::Transfer { target, reply } => {
                let _ = reply.send(self.raft.transfer_leader(target).map_err(rejection));
            }
            Event::Shutdown => return false,
        }
        true
    }

    fn handle_ready(&mut self, ready: Ready) -> Result<(), StorageError> {
        let Ready {
            soft_state,
            hard_state,
            snapshot,
            entries,
            messages,
            committed_entries,
            read_states,
            dropped_reads,
        } = ready;
        if let Some(ss) = soft_state {
            tracing::info!(node = self.raft.id(), role = ?ss.role, term = ss.term, leader = ?ss.leader, "raft role");
        }
        // 1. Persist, in one synced batch (group commit).
        self.storage.persist(snapshot.as_ref(), &entries, hard_state.as_ref())?;
        // 2. Send.
        for m in messages {
            self.transport.send(m);
        }
        // 3. Apply.
        if let Some(snap) = &snapshot {
            self.sm.restore(snap)?;
            self.fail_proposals_up_to(snap.meta.index);
        }
        if !committed_entries.is_empty() {
            let results = self.sm.apply(&committed_entries)?;
            let mut results: HashMap<Index, CommandResult> = results.into_iter().collect();
            for e in &committed_entries {
                if let Some((term, reply)) = self.proposals.remove(&e.index) {
                    let answer = if e.term == term {
                        match results.remove(&e.index) {
                            Some(r) => r.map_err(Rejection::from),
                            None => Err(Rejection::Unavailable("the proposal was replaced; retry".into())),
                        }
                    } else {
                        Err(Rejection::Unavailable("leadership changed before the write committed; retry".into()))
                    };
                    let _ = reply.send(answer);
                }
            }
        }
        // 4. Reads.
        for rs in read_states {
            if let Some(reply) = self.reads_requested.remove(&rs.request) {
                self.reads_confirmed.push((rs.index, reply));
            }
        }
        for request in dropped_reads {
            if let Some(reply) = self.reads_requested.remove(&request) {
                let _ = reply
                    .send(Err(Rejection::Unavailable("leadership lost before the read was confirmed; retry".into())));
            }
        }
        let applied = self.sm.applied();
        let (ready, waiting): (Vec<_>, Vec<_>) =
            self.reads_confirmed.drain(..).partition(|(index, _)| *index <= applied);
        self.reads_confirmed = waiting;
        for (_, reply) in ready {
            let _ = reply.send(Ok(()));
        }
        self.maybe_compact()
    }

    /// A snapshot from the leader replaced the log up to `index`: proposals
    /// there will never be applied here.
    fn fail_proposals_up_to(&mut self, index: Index) {
        let doomed: Vec<Index> = self.proposals.keys().copied().filter(|&i| i <= index).collect();
        for i in doomed {
            if let Some((_, reply)) = self.proposals.remove(&i) {
                let _ = reply.send(Err(Rejection::Unavailable("the outcome of the write is unknown; retry".into())));
            }
        }
    }

    fn maybe_compact(&mut self) -> Result<(), StorageError> {
        let applied = self.sm.applied();
        if applied < self.raft.snapshot_meta().index + self.cfg.snapshot_every || applied > self.raft.applied_index() {
            return Ok(());
        }
        let data = self.sm.snapshot()?;
        let meta = self.raft.compact(applied, data.clone()).expect("compacting at the applied index");
        self.storage.compact(&Snapshot { meta, data })?;
        tracing::info!(node = self.raft.id(), index = meta.index, "compacted the log");
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
