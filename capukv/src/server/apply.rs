//! The apply thread: owns the state machine, applies committed entries,
//! answers the proposals and confirmed reads waiting on them, and starts the
//! snapshots (on a helper thread) that let the Raft loop compact its log.
//!
//! It runs beside the Raft loop, as etcd's apply loop does beside its Raft
//! node: while this thread writes batch N into the state machine, the loop
//! already persists and replicates batch N+1. Order is kept by one FIFO
//! channel: a proposal is registered before its entry can commit, a
//! snapshot to restore comes between the entries it replaces and the ones
//! after it, and a read is released only once everything committed before
//! its confirmation is applied.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender};

use super::raft_loop::{Event, Rejection, Reply};
// The failpoint macros are empty without the `failpoints` feature.
#[cfg_attr(not(feature = "failpoints"), allow(unused_imports))]
use crate::failpoints as fp;
use crate::proto;
use crate::raft::{Entry, Index, Snapshot, Term};
use crate::state_machine::{self, StateMachine};
use crate::storage::StorageError;

/// Work for the apply thread, handled in the order sent.
pub enum ApplyTask {
    /// Replies owed to proposals, keyed by the index and term they got.
    Proposals(Vec<(Index, Term, Reply<proto::CommandResponse>)>),
    /// A snapshot received from the leader, already persisted by the loop.
    Restore(Snapshot),
    /// Committed entries, in index order.
    Entries(Vec<Entry>),
    /// Confirmed ReadIndex reads: answered once the state machine reaches
    /// their index.
    Reads(Vec<(Index, Reply<()>)>),
}

/// Clears the snapshot thread's busy flag when dropped.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

pub struct Applier {
    sm: StateMachine,
    tasks: Receiver<ApplyTask>,
    /// Back to the Raft loop: snapshots to compact the log with, and this
    /// thread's end.
    events: Sender<Event>,
    applied: Arc<AtomicU64>,
    snapshot_every: u64,
    /// Index of the last snapshot taken or restored.
    snapshot_index: Index,
    proposals: HashMap<Index, (Term, Reply<proto::CommandResponse>)>,
    /// Reads waiting for the state machine to reach their index.
    reads: Vec<(Index, Reply<()>)>,
    /// A snapshot thread is running.
    snapshotting: Arc<AtomicBool>,
}

impl Applier {
    /// `snapshot_index` is where the log is compacted to now; `applied` is
    /// shared with whoever reports the node's status.
    pub fn new(
        sm: StateMachine,
        tasks: Receiver<ApplyTask>,
        events: Sender<Event>,
        applied: Arc<AtomicU64>,
        snapshot_every: u64,
        snapshot_index: Index,
    ) -> Applier {
        applied.store(sm.applied(), Ordering::Release);
        Applier {
            sm,
            tasks,
            events,
            applied,
            snapshot_every,
            snapshot_index,
            proposals: HashMap::new(),
            reads: Vec::new(),
            snapshotting: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs until the Raft loop drops its sender. A storage failure ends
    /// the thread with the error, after telling the loop to stop: a node
    /// that cannot apply must not go on acknowledging.
    pub fn run(mut self) -> Result<(), StorageError> {
        let result = self.serve();
        if result.is_err() {
            let _ = self.events.send(Event::ApplierStopped);
        }
        self.fail_everything();
        result
    }

    fn serve(&mut self) -> Result<(), StorageError> {
        while let Ok(first) = self.tasks.recv() {
            // Everything already waiting is handled together, so that
            // consecutive entry batches share one state machine write.
            let mut entries: Vec<Entry> = Vec::new();
            let waiting: Vec<ApplyTask> = std::iter::once(first).chain(self.tasks.try_iter()).collect();
            for task in waiting {
                match task {
                    ApplyTask::Entries(mut batch) => entries.append(&mut batch),
                    other => {
                        self.apply(&mut entries)?;
                        self.handle(other)?;
                    }
                }
            }
            self.apply(&mut entries)?;
            self.release_reads();
            self.maybe_snapshot();
        }
        Ok(())
    }

    fn handle(&mut self, task: ApplyTask) -> Result<(), StorageError> {
        match task {
            ApplyTask::Proposals(list) => {
                for (index, term, reply) in list {
                    self.proposals.insert(index, (term, reply));
                }
            }
            ApplyTask::Restore(snapshot) => {
                self.sm.restore(&snapshot)?;
                self.snapshot_index = snapshot.meta.index;
                self.applied.store(self.sm.applied(), Ordering::Release);
                self.fail_proposals_up_to(snapshot.meta.index);
            }
            ApplyTask::Reads(reads) => self.reads.extend(reads),
            ApplyTask::Entries(_) => unreachable!("entries are gathered by the caller"),
        }
        Ok(())
    }

    fn apply(&mut self, entries: &mut Vec<Entry>) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        fail::fail_point!(fp::APPLY_BEFORE_ENTRIES, |_| Err(StorageError::Injected(fp::APPLY_BEFORE_ENTRIES)));
        let results = self.sm.apply(entries)?;
        self.applied.store(self.sm.applied(), Ordering::Release);
        fail::fail_point!(fp::APPLY_AFTER_ENTRIES, |_| Err(StorageError::Injected(fp::APPLY_AFTER_ENTRIES)));
        let mut results = results.into_iter().peekable();
        for e in entries.drain(..) {
            let result = match results.peek() {
                Some((index, _)) if *index == e.index => results.next().map(|(_, r)| r),
                _ => None,
            };
            let Some((term, reply)) = self.proposals.remove(&e.index) else { continue };
            let answer = if e.term == term {
                match result {
                    Some(r) => r.map_err(Rejection::from),
                    // A membership change carries no command: applied is done.
                    None if e.kind == crate::raft::EntryKind::Membership => Ok(proto::CommandResponse::default()),
                    None => Err(Rejection::Unavailable("the proposal was replaced; retry".into())),
                }
            } else {
                Err(Rejection::Unavailable("leadership changed before the write committed; retry".into()))
            };
            let _ = reply.send(answer);
        }
        Ok(())
    }

    fn release_reads(&mut self) {
        let applied = self.sm.applied();
        if self.reads.iter().all(|(index, _)| *index > applied) {
            return;
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = self.reads.drain(..).partition(|(index, _)| *index <= applied);
        self.reads = waiting;
        for (_, reply) in ready {
            let _ = reply.send(Ok(()));
        }
    }

    /// Every `snapshot_every` applied entries, starts a snapshot on a helper
    /// thread (one at a time), so that applying does not stop for it.
    fn maybe_snapshot(&mut self) {
        let applied = self.sm.applied();
        if applied < self.snapshot_index + self.snapshot_every || self.snapshotting.swap(true, Ordering::AcqRel) {
            return;
        }
        self.snapshot_index = applied;
        let (storage, events, busy) = (self.sm.storage().clone(), self.events.clone(), self.snapshotting.clone());
        let spawned = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
            // Cleared however the thread ends, a panic included: a flag left
            // set would stop every later snapshot (and compaction).
            let _busy = ClearOnDrop(busy);
            let taken = (|| -> Result<(Index, bytes::Bytes), StorageError> {
                fail::fail_point!(fp::SNAPSHOT_BEFORE_SAVE, |_| Err(StorageError::Injected(fp::SNAPSHOT_BEFORE_SAVE)));
                let (index, data) = state_machine::snapshot(&storage)?;
                // The log may lose entries up to `index` only once the state
                // machine's writes up to there survive a crash without them.
                storage.flush_state_machine()?;
                fail::fail_point!(fp::SNAPSHOT_AFTER_SAVE, |_| Err(StorageError::Injected(fp::SNAPSHOT_AFTER_SAVE)));
                Ok((index, data))
            })();
            match taken {
                Ok((index, data)) => {
                    let _ = events.send(Event::Compact { index, data });
                }
                // Not fatal: the log stays uncompacted until the next try.
                Err(e) => tracing::error!(error = %e, "snapshot for log compaction failed"),
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the snapshot thread");
            self.snapshotting.store(false, Ordering::Release);
        }
    }

    /// A snapshot replaced the log up to `index`: proposals there will never
    /// be applied here.
    fn fail_proposals_up_to(&mut self, index: Index) {
        let doomed: Vec<Index> = self.proposals.keys().copied().filter(|&i| i <= index).collect();
        for i in doomed {
            if let Some((_, reply)) = self.proposals.remove(&i) {
                let _ = reply.send(Err(Rejection::Unavailable("the outcome of the write is unknown; retry".into())));
            }
        }
    }

    fn fail_everything(&mut self) {
        for (_, (_, reply)) in self.proposals.drain() {
            let why = "the node is stopping; the outcome of the write is unknown";
            let _ = reply.send(Err(Rejection::Unavailable(why.into())));
        }
        for (_, reply) in self.reads.drain(..) {
            let _ = reply.send(Err(Rejection::Unavailable("the node is stopping; retry".into())));
        }
    }
}

#[cfg(all(test, feature = "failpoints"))]
mod failpoints_tests {
    use bytes::Bytes;

    use super::*;
    use crate::failpoints as fp;
    use crate::raft::EntryKind;
    use crate::storage::{Identity, Storage};

    #[test]
    fn failpoints_a_panic_in_the_snapshot_thread_does_not_stop_later_snapshots() {
        let dir = std::env::temp_dir().join(format!("capukv-apply-snapshot-panic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let identity = Identity { node_id: 1, cluster: "t".into(), voters: vec![1], cluster_id: 1 };
        let storage = Storage::open(&dir, &identity).unwrap();
        let sm = StateMachine::open(storage.clone(), 2).unwrap();
        let (tasks, task_rx) = crossbeam_channel::unbounded();
        let (events_tx, events) = crossbeam_channel::unbounded();
        let applier = Applier::new(sm, task_rx, events_tx, Arc::new(AtomicU64::new(0)), 5, 0);
        fp::arm(fp::SNAPSHOT_BEFORE_SAVE, "1*panic").unwrap();
        let thread = std::thread::spawn(move || applier.run());
        let mut next = 1;
        let mut compacted = None;
        // The first snapshot thread panics; a later batch must start another.
        for _ in 0..50 {
            let batch: Vec<Entry> = (next..next + 5)
                .map(|index| Entry { index, term: 1, kind: EntryKind::Noop, data: Bytes::new() })
                .collect();
            next += 5;
            tasks.send(ApplyTask::Entries(batch)).unwrap();
            if let Ok(Event::Compact { index, .. }) = events.recv_timeout(std::time::Duration::from_millis(100)) {
                compacted = Some(index);
                break;
            }
        }
        drop(tasks);
        thread.join().unwrap().unwrap();
        fp::arm(fp::SNAPSHOT_BEFORE_SAVE, "off").unwrap();
        drop(storage);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(compacted.is_some_and(|i| i > 5), "no snapshot after the one that panicked: {compacted:?}");
    }
}
