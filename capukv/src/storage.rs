//! A node's data directory: one RocksDB database holding the Raft log, the
//! hard state, the latest snapshot, the node's identity, and the state
//! machine (see [`crate::state_machine`]), each in its own column family.
//!
//! Log keys are big-endian indexes, so they sort numerically. Everything the
//! Raft core says must be durable is written in one batch and the WAL then
//! synced: one fsync covers every entry and hard-state change gathered since
//! the last (group commit).
//!
//! The state machine's writes skip the WAL (they are the log's entries,
//! applied): after a crash the node reapplies the log from the state
//! machine's last flush, and the log is compacted only up to a flushed point.

mod mark;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use prost::Message as _;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, DBRecoveryMode, Direction, FlushOptions, IteratorMode, Options,
    WriteBatch, WriteOptions,
};

use crate::proto;
use crate::raft::{
    Entry, HardState, Index, Membership, MembershipChange, NodeId, PersistedState, Snapshot, SnapshotMeta,
};

pub const CF_LOG: &str = "raft_log";
pub const CF_RAFT: &str = "raft_state";
pub const CF_KV: &str = "kv";
pub const CF_META: &str = "sm_meta";
pub const CF_SESSIONS: &str = "sessions";
/// Every version of every key, ordered by key then revision (see
/// `state_machine::mvcc`).
pub const CF_HISTORY: &str = "kv_history";
/// The compacted revision and the named snapshots.
pub const CF_MVCC: &str = "mvcc";
const CFS: [&str; 7] = [CF_LOG, CF_RAFT, CF_KV, CF_META, CF_SESSIONS, CF_HISTORY, CF_MVCC];
/// The state machine's families, flushed together.
pub const STATE_MACHINE_CFS: [&str; 5] = [CF_KV, CF_META, CF_SESSIONS, CF_HISTORY, CF_MVCC];

const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_SNAPSHOT: &[u8] = b"snapshot";
/// The configuration at the snapshot point (a `MembershipChange`: with the
/// members' addresses), written with the snapshot. A snapshot without one
/// predates membership changes: its configuration is the bootstrap voters.
const KEY_SNAPSHOT_MEMBERSHIP: &[u8] = b"snapshot_membership";
const KEY_IDENTITY: &[u8] = b"identity";
/// The address book of the members this node knows (JSON, see
/// `server::members`): what a restart knows beyond its flags.
const KEY_MEMBERS: &[u8] = b"members";
/// The nodes this node has seen take part (acknowledge entries, grant a
/// vote), for a founder that asks after losing its disk (`Probe`).
const KEY_PARTICIPANTS: &[u8] = b"participants";
/// Present from a directory's first write until every member asked has
/// said the node never took part before (`server::join`).
const KEY_PROBATION: &[u8] = b"probation";

/// Why a data directory cannot be used. Each names the directory and what
/// to do; none is ever answered by starting empty.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open the data directory {}: {reason}", .dir.display())]
    Open { dir: PathBuf, reason: String },
    #[error(
        "the data directory {} belongs to node {found}, not node {expected}: point --dir at node {expected}'s own directory",
        .dir.display()
    )]
    WrongNode { dir: PathBuf, found: NodeId, expected: NodeId },
    #[error(
        "the data directory {} belongs to cluster {found}, not {expected}: point --dir at this cluster's directory",
        .dir.display()
    )]
    WrongCluster { dir: PathBuf, found: String, expected: String },
    #[error(
        "the data directory {} is corrupt: {what} ({file}). It must not vote again under this id: move it aside, remove the node from the cluster (capukv member remove ID), add the machine back under a new id (capukv member add-learner NEW_ID --raft-addr .. --api-addr ..; removed ids are never reused), start it with --id NEW_ID, an empty --dir and --join, then promote it (capukv member promote NEW_ID)",
        .dir.display()
    )]
    Corrupt { dir: PathBuf, file: String, what: String },
    #[error("cannot write the durability mark {}: {source}", .path.display())]
    Mark {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// What a failpoint's `return` action stands for (a disk that failed).
    #[error("failpoint {0}: an injected storage failure")]
    Injected(&'static str),
    #[error("storage I/O failed in {}: {source}", .dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
}

/// Who a data directory belongs to, written when it is first used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub node_id: NodeId,
    pub cluster: String,
    pub voters: Vec<NodeId>,
    /// The id every peer message carries (see [`Identity::bootstrap`]). The
    /// stored one wins over what this start's flags would derive, so a
    /// cluster keeps its id when addresses change. 0 in a directory written
    /// before the id existed: the next start records the derived one.
    #[serde(default)]
    pub cluster_id: u64,
}

impl Identity {
    /// The identity a node bootstraps with: the voters are `peers`' ids, and
    /// the cluster id a hash of the cluster's name and every voter's id and
    /// Raft address. Every node of one cluster is started with the same
    /// `--cluster` and `--peers`, so all derive the same id without talking;
    /// two clusters differ in their addresses (or names), so a node wired to
    /// the wrong cluster by mistake is refused by it. Like etcd's cluster id
    /// (initial cluster and token), it tells clusters apart; it is no secret
    /// and authenticates no one (that is TLS's job).
    pub fn bootstrap(node_id: NodeId, cluster: &str, peers: &std::collections::HashMap<NodeId, String>) -> Identity {
        let mut members: Vec<(&NodeId, &String)> = peers.iter().collect();
        members.sort();
        let mut canonical = format!("capukv-cluster\0{cluster}");
        for (id, addr) in &members {
            canonical.push_str(&format!("\0{id}={addr}"));
        }
        let hash = mark::fnv(canonical.as_bytes());
        Identity {
            node_id,
            cluster: cluster.to_string(),
            voters: members.iter().map(|(id, _)| **id).collect(),
            // 0 is what a message without the field carries.
            cluster_id: hash.max(1),
        }
    }
}

/// The RocksDB database of one node, shared by the Raft loop (which writes)
/// and the API handlers (which read the state machine).
pub struct Storage {
    pub db: DB,
    pub dir: PathBuf,
    /// Syncs of the log, and entries made durable by them: their ratio is
    /// the group-commit factor.
    pub syncs: AtomicU64,
    pub entries_synced: AtomicU64,
    /// Keep the log entries a snapshot covers (`--keep-compacted-log`):
    /// the `Log` RPC then still lists them after the run, for audits.
    pub keep_compacted_log: AtomicBool,
    /// Index of the last log entry on disk: entries written at or below it
    /// replace a conflicting suffix, which must be deleted first.
    last_index: AtomicU64,
    /// The hard state last written.
    last_hard_state: std::sync::Mutex<HardState>,
    /// Term of the entry at `last_index` (0: not known).
    last_term: AtomicU64,
    /// How far the log was made durable ([`mark`]), and what the mark said
    /// at open, checked against the log by [`Storage::load_raft_state`].
    mark: std::sync::Mutex<mark::MarkFile>,
    mark_at_open: Option<mark::Mark>,
    /// Whose directory this is, as recorded in it.
    identity: Identity,
}

impl Storage {
    /// Opens (or creates) the data directory of `identity.node_id`.
    pub fn open(dir: &Path, identity: &Identity) -> Result<Arc<Storage>, StorageError> {
        let fresh = !dir.join("CURRENT").exists();
        if fresh && has_database_files(dir) {
            return Err(StorageError::Corrupt {
                dir: dir.into(),
                file: "CURRENT".into(),
                what: "database files are present but CURRENT is missing".into(),
            });
        }
        let mut opts = Options::default();
        opts.create_if_missing(fresh);
        opts.create_missing_column_families(fresh);
        opts.set_paranoid_checks(true);
        // Every write CapuKV acknowledges was synced: only an incomplete
        // record at the WAL's end (a write a crash cut short) may be
        // dropped; a damaged record before it is corruption, not the end of
        // the log (RocksDB's default would silently stop replaying there).
        opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        #[cfg(feature = "planted-bugs")]
        let trust_damaged_log = crate::planted::active(crate::planted::Bug::TrustDamagedLog);
        #[cfg(not(feature = "planted-bugs"))]
        let trust_damaged_log = false;
        // Planted: RocksDB's default recovery, which stops at a bad record.
        if trust_damaged_log {
            opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        }
        // The state machine's column families are written without the WAL;
        // flushing all families together keeps what a crash leaves of them
        // (applied index, keys, sessions) at one consistent point.
        opts.set_atomic_flush(true);
        let cfs = CFS.iter().map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| open_error(dir, &e))?;
        let (mark, mark_at_open) =
            mark::MarkFile::open(dir).map_err(|source| StorageError::Mark { path: dir.join(mark::FILE), source })?;
        let mut storage = Storage {
            db,
            dir: dir.into(),
            syncs: AtomicU64::new(0),
            entries_synced: AtomicU64::new(0),
            keep_compacted_log: AtomicBool::new(false),
            last_index: AtomicU64::new(0),
            last_hard_state: std::sync::Mutex::new(HardState::default()),
            last_term: AtomicU64::new(0),
            mark: std::sync::Mutex::new(mark),
            // Planted: the mark is kept but never checked.
            mark_at_open: if fresh || trust_damaged_log { None } else { mark_at_open },
            identity: identity.clone(),
        };
        storage.identity = storage.check_identity(identity, fresh)?;
        Ok(Arc::new(storage))
    }

    /// Whose directory this is: node, cluster, voters and cluster id, as
    /// recorded at bootstrap.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn cf(&self, name: &str) -> &ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    fn io(&self, source: rocksdb::Error) -> StorageError {
        StorageError::Io { dir: self.dir.clone(), source }
    }

    pub fn corrupt(&self, what: impl Into<String>) -> StorageError {
        StorageError::Corrupt { dir: self.dir.clone(), file: "RocksDB column families".into(), what: what.into() }
    }

    /// Checks the recorded identity against `identity` (recording it in a
    /// fresh directory) and returns the one recorded.
    fn check_identity(&self, identity: &Identity, fresh: bool) -> Result<Identity, StorageError> {
        let raw = self.db.get_cf(self.cf(CF_RAFT), KEY_IDENTITY).map_err(|e| self.io(e))?;
        let Some(raw) = raw else {
            if !fresh {
                return Err(self.corrupt("it has a database but no identity record"));
            }
            // A node that starts empty may be one that lost its disk: on
            // vote probation from the very write that makes the directory
            // its own, so that no crash can skip it (`server::join`).
            let mut batch = WriteBatch::default();
            batch.put_cf(self.cf(CF_RAFT), KEY_IDENTITY, serde_json::to_vec(identity).expect("identity serializes"));
            batch.put_cf(self.cf(CF_RAFT), KEY_PROBATION, []);
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            self.db.write_opt(batch, &wo).map_err(|e| self.io(e))?;
            return Ok(identity.clone());
        };
        let found: Identity =
            serde_json::from_slice(&raw).map_err(|e| self.corrupt(format!("unreadable identity record: {e}")))?;
        if found.node_id != identity.node_id {
            return Err(StorageError::WrongNode {
                dir: self.dir.clone(),
                found: found.node_id,
                expected: identity.node_id,
            });
        }
        if found.cluster != identity.cluster || found.voters != identity.voters {
            return Err(StorageError::WrongCluster {
                dir: self.dir.clone(),
                found: format!("{} {:?}", found.cluster, found.voters),
                expected: format!("{} {:?}", identity.cluster, identity.voters),
            });
        }
        if found.cluster_id == 0 {
            tracing::info!(cluster_id = identity.cluster_id, "recording the cluster id in a directory older than it");
            self.record_identity(identity)?;
            return Ok(identity.clone());
        }
        if found.cluster_id != identity.cluster_id {
            tracing::info!(
                recorded = found.cluster_id,
                derived = identity.cluster_id,
                "keeping the cluster id recorded at bootstrap; --peers has changed since"
            );
        }
        Ok(found)
    }

    fn record_identity(&self, identity: &Identity) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(identity).expect("identity serializes");
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(self.cf(CF_RAFT), KEY_IDENTITY, bytes, &wo).map_err(|e| self.io(e))
    }

    /// Keeps the members' address book (synced: it is rarely written).
    pub fn save_members(&self, book: &crate::server::members::Book) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let bytes = serde_json::to_vec(book).expect("an address book serializes");
        self.db.put_cf_opt(self.cf(CF_RAFT), KEY_MEMBERS, bytes, &wo).map_err(|e| self.io(e))
    }

    /// Records (synced) that these nodes took part.
    pub fn save_participants(&self, ids: &std::collections::BTreeSet<NodeId>) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let bytes = serde_json::to_vec(ids).expect("ids serialize");
        self.db.put_cf_opt(self.cf(CF_RAFT), KEY_PARTICIPANTS, bytes, &wo).map_err(|e| self.io(e))
    }

    pub fn load_participants(&self) -> Result<std::collections::BTreeSet<NodeId>, StorageError> {
        match self.db.get_cf(self.cf(CF_RAFT), KEY_PARTICIPANTS).map_err(|e| self.io(e))? {
            None => Ok(Default::default()),
            Some(raw) => {
                serde_json::from_slice(&raw).map_err(|e| self.corrupt(format!("unreadable participants: {e}")))
            }
        }
    }

    /// Whether the node is on vote probation ([`crate::raft::Raft::set_probation`]).
    pub fn on_probation(&self) -> Result<bool, StorageError> {
        Ok(self.db.get_cf(self.cf(CF_RAFT), KEY_PROBATION).map_err(|e| self.io(e))?.is_some())
    }

    pub fn set_probation(&self, on: bool) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let result = if on {
            self.db.put_cf_opt(self.cf(CF_RAFT), KEY_PROBATION, [], &wo)
        } else {
            self.db.delete_cf_opt(self.cf(CF_RAFT), KEY_PROBATION, &wo)
        };
        result.map_err(|e| self.io(e))
    }

    /// The address book [`Storage::save_members`] kept (empty if none).
    pub fn load_members(&self) -> Result<crate::server::members::Book, StorageError> {
        match self.db.get_cf(self.cf(CF_RAFT), KEY_MEMBERS).map_err(|e| self.io(e))? {
            None => Ok(Default::default()),
            Some(raw) => crate::server::members::decode_book(&raw).map_err(|e| self.corrupt(e)),
        }
    }

    fn put_snapshot(&self, batch: &mut WriteBatch, snapshot: &Snapshot) {
        batch.put_cf(self.cf(CF_RAFT), KEY_SNAPSHOT, encode_snapshot(snapshot));
        let change =
            MembershipChange { membership: snapshot.membership.clone(), context: snapshot.membership_context.clone() };
        batch.put_cf(self.cf(CF_RAFT), KEY_SNAPSHOT_MEMBERSHIP, change.encode());
    }

    /// What the Raft core persisted, for a restart.
    pub fn load_raft_state(&self) -> Result<PersistedState, StorageError> {
        let hard_state = match self.db.get_cf(self.cf(CF_RAFT), KEY_HARD_STATE).map_err(|e| self.io(e))? {
            None => HardState::default(),
            Some(raw) => decode_hard_state(&raw).ok_or_else(|| self.corrupt("the hard state record is truncated"))?,
        };
        let snapshot = match self.db.get_cf(self.cf(CF_RAFT), KEY_SNAPSHOT).map_err(|e| self.io(e))? {
            None => None,
            Some(raw) => {
                let mut snap = decode_snapshot(&raw).ok_or_else(|| self.corrupt("the snapshot record is truncated"))?;
                match self.db.get_cf(self.cf(CF_RAFT), KEY_SNAPSHOT_MEMBERSHIP).map_err(|e| self.io(e))? {
                    None => snap.membership = Membership::new(self.identity().voters.iter().copied(), []),
                    Some(raw) => {
                        let change = MembershipChange::decode(&Bytes::from(raw))
                            .map_err(|_| self.corrupt("the snapshot's membership record is truncated"))?;
                        snap.membership = change.membership;
                        snap.membership_context = change.context;
                    }
                }
                Some(snap)
            }
        };
        let first = snapshot.as_ref().map_or(0, |s: &Snapshot| s.meta.index) + 1;
        let mut entries = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_LOG), IteratorMode::From(&first.to_be_bytes(), Direction::Forward)) {
            let (key, value) = item.map_err(|e| self.io(e))?;
            let index = decode_index(&key).ok_or_else(|| self.corrupt("a log key is not an index"))?;
            let entry = decode_entry(&value).ok_or_else(|| self.corrupt(format!("log entry {index} is unreadable")))?;
            if entry.index != index {
                return Err(self.corrupt(format!("log key {index} holds entry {}", entry.index)));
            }
            entries.push(entry);
        }
        let last = entries.last().map_or(first - 1, |e| e.index);
        let last_term = entries.last().map(|e| e.term).or(snapshot.as_ref().map(|s| s.meta.term)).unwrap_or(0);
        self.check_mark(last, first - 1, &entries, &hard_state)?;
        self.last_index.store(last, Ordering::Relaxed);
        self.last_term.store(last_term, Ordering::Relaxed);
        *self.last_hard_state.lock().expect("not poisoned") = hard_state;
        Ok(PersistedState { hard_state, snapshot, entries })
    }

    /// The index of the last entry on disk.
    pub fn last_index(&self) -> Index {
        self.last_index.load(Ordering::Relaxed)
    }

    /// The commit index last written with the log. The Raft core may know a
    /// higher one whose entries are not on disk yet (a follower that just
    /// replaced a conflicting tail): on disk, entries up to this one are
    /// committed.
    pub fn written_commit(&self) -> Index {
        self.last_hard_state.lock().expect("not poisoned").commit
    }

    /// Up to `max` log entries from index `from` on (fewer where the log
    /// ends), and the first index the log holds. Entries are immutable
    /// once written except by a later `persist` replacing an uncommitted
    /// tail, so this may run beside the Raft thread.
    pub fn read_log(&self, from: Index, max: usize) -> Result<(Index, Vec<Entry>), StorageError> {
        let log = self.cf(CF_LOG);
        let first = match self.db.iterator_cf(log, IteratorMode::Start).next() {
            Some(item) => {
                let (key, _) = item.map_err(|e| self.io(e))?;
                decode_index(&key).ok_or_else(|| self.corrupt("a log key is not an index"))?
            }
            None => self.last_index() + 1,
        };
        let mut entries = Vec::new();
        let start = from.max(first);
        for item in self.db.iterator_cf(log, IteratorMode::From(&start.to_be_bytes(), Direction::Forward)).take(max) {
            let (key, value) = item.map_err(|e| self.io(e))?;
            let index = decode_index(&key).ok_or_else(|| self.corrupt("a log key is not an index"))?;
            let entry = decode_entry(&value).ok_or_else(|| self.corrupt(format!("log entry {index} is unreadable")))?;
            entries.push(entry);
        }
        Ok((first, entries))
    }

    /// Refuses a log or hard state that ends below what the durability mark
    /// says was durable: synced data is gone (a file truncated, rolled back
    /// or lost), and this node must not vote or serve on what is left.
    fn check_mark(
        &self,
        last: Index,
        snapshot_index: Index,
        entries: &[Entry],
        hard_state: &HardState,
    ) -> Result<(), StorageError> {
        let Some(m) = self.mark_at_open else { return Ok(()) };
        let gone = |what: String| StorageError::Corrupt {
            dir: self.dir.clone(),
            file: "the Raft log (RocksDB's WAL, tables and MANIFEST)".into(),
            what,
        };
        if last < m.last_index {
            return Err(gone(format!(
                "the log ends at index {last}, but entries up to {} were made durable before: synced entries are gone",
                m.last_index
            )));
        }
        if m.last_term != 0 && m.last_index > snapshot_index {
            let at = entries.get((m.last_index - snapshot_index - 1) as usize).map(|e| e.term);
            if at != Some(m.last_term) {
                return Err(gone(format!(
                    "entry {} has term {at:?}, but an entry of term {} was made durable there",
                    m.last_index, m.last_term
                )));
            }
        }
        if hard_state.term < m.term || (hard_state.term == m.term && m.vote.is_some() && hard_state.vote != m.vote) {
            return Err(gone(format!(
                "the hard state is at term {} (vote {:?}), but term {} (vote {:?}) was made durable: a vote would be forgotten",
                hard_state.term, hard_state.vote, m.term, m.vote
            )));
        }
        Ok(())
    }

    /// Makes what a Ready asks durable, in one synced batch: a received
    /// snapshot (which replaces the whole log), entries (replacing any from
    /// the first one on) and the hard state.
    pub fn persist(
        &self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StorageError> {
        if snapshot.is_none() && entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        let log = self.cf(CF_LOG);
        let mut last = self.last_index.load(Ordering::Relaxed);
        let mut last_term = self.last_term.load(Ordering::Relaxed);
        // The log may end lower after this batch: the mark goes down first.
        let shortest = match (snapshot, entries.first()) {
            (Some(snap), _) => Some(snap.meta.index.min(last)),
            (None, Some(first)) if first.index <= last => Some(first.index - 1),
            _ => None,
        };
        if let Some(to) = shortest {
            let mut mark = self.mark.lock().expect("not poisoned");
            mark.lower_to(to).map_err(|source| StorageError::Mark { path: mark.path().into(), source })?;
        }
        if let Some(snap) = snapshot {
            batch.delete_range_cf(log, 0u64.to_be_bytes(), u64::MAX.to_be_bytes());
            self.put_snapshot(&mut batch, snap);
            last = snap.meta.index;
            last_term = snap.meta.term;
        }
        if let Some(first) = entries.first() {
            if first.index <= last {
                // A conflicting suffix from an earlier leader goes.
                batch.delete_range_cf(log, first.index.to_be_bytes(), (last + 1).to_be_bytes());
            }
            for e in entries {
                batch.put_cf(log, e.index.to_be_bytes(), encode_entry(e));
            }
            last = entries.last().expect("non-empty").index;
            last_term = entries.last().expect("non-empty").term;
        }
        if let Some(hs) = hard_state {
            batch.put_cf(self.cf(CF_RAFT), KEY_HARD_STATE, encode_hard_state(hs));
        }
        // Entries, a snapshot, a term or a vote must survive a crash before
        // anything depends on them. A change of the commit index alone need
        // not: a node that forgets it learns it again from the leader.
        #[allow(unused_mut)]
        let mut commit_only = snapshot.is_none()
            && entries.is_empty()
            && hard_state.is_some_and(|hs| {
                let last = self.last_hard_state.lock().expect("not poisoned");
                hs.term == last.term && hs.vote == last.vote
            });
        #[cfg(feature = "planted-bugs")]
        {
            use crate::planted::{Bug, active};
            // Planted: a new term or vote alone is written but not synced.
            if active(Bug::VoteNotDurable) && snapshot.is_none() && entries.is_empty() {
                commit_only = true;
            }
            // Planted: nothing is ever synced.
            if active(Bug::NoFsync) {
                commit_only = true;
            }
        }
        // Written unsynced, then the WAL synced on its own: a write with
        // `sync` holds RocksDB's write queue through the fsync, and the
        // apply thread's state machine writes would wait behind it.
        self.db.write(batch).map_err(|e| self.io(e))?;
        if !commit_only {
            self.db.flush_wal(true).map_err(|e| self.io(e))?;
        }
        self.last_index.store(last, Ordering::Relaxed);
        self.last_term.store(last_term, Ordering::Relaxed);
        let durable = {
            let mut hs = self.last_hard_state.lock().expect("not poisoned");
            if let Some(new) = hard_state {
                *hs = *new;
            }
            *hs
        };
        if !commit_only {
            self.syncs.fetch_add(1, Ordering::Relaxed);
            self.entries_synced.fetch_add(entries.len() as u64, Ordering::Relaxed);
            // Only now is it durable; the mark may say so (unsynced: it
            // never claims more than the WAL holds).
            let mut mark = self.mark.lock().expect("not poisoned");
            let now = mark::Mark { last_index: last, last_term, term: durable.term, vote: durable.vote };
            mark.raise(now).map_err(|source| StorageError::Mark { path: mark.path().into(), source })?;
        }
        Ok(())
    }

    /// Keeps a snapshot the node took itself and drops the log it covers
    /// (unless told to keep it: a restart reads the log from the snapshot
    /// on, so entries below stay unread but for the `Log` RPC).
    pub fn compact(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        self.put_snapshot(&mut batch, snapshot);
        if !self.keep_compacted_log.load(Ordering::Relaxed) {
            batch.delete_range_cf(self.cf(CF_LOG), 0u64.to_be_bytes(), (snapshot.meta.index + 1).to_be_bytes());
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo).map_err(|e| self.io(e))
    }

    /// Writes a state machine batch without the WAL: the state machine is
    /// rebuilt from the Raft log after a crash (from the last flush on), so
    /// logging its writes a second time buys nothing. The log is compacted
    /// only past what [`Storage::flush_state_machine`] made durable.
    pub fn write_state_machine(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(batch, &wo).map_err(|e| self.io(e))
    }

    /// Makes every state machine write so far durable (one atomic flush of
    /// its column families).
    pub fn flush_state_machine(&self) -> Result<(), StorageError> {
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        let cfs: Vec<&ColumnFamily> = STATE_MACHINE_CFS.iter().map(|name| self.cf(name)).collect();
        self.db.flush_cfs_opt(&cfs, &fo).map_err(|e| self.io(e))
    }

    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db.get_cf(self.cf(cf), key).map_err(|e| self.io(e))
    }
}

/// Whether `dir` holds RocksDB files (a MANIFEST, tables or a WAL).
fn has_database_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with("MANIFEST-") || name.ends_with(".sst") || name.ends_with(".log")
    })
}

fn open_error(dir: &Path, e: &rocksdb::Error) -> StorageError {
    let reason = e.to_string();
    if reason.contains("Column family not found") {
        return StorageError::Open {
            dir: dir.into(),
            reason: format!(
                "{reason}: the directory was written by an older CapuKV (without version history); \
                 start the node afresh with an empty data directory (it catches up from the cluster)"
            ),
        };
    }
    if reason.contains("Corruption") || reason.contains("corrupt") {
        return StorageError::Corrupt { dir: dir.into(), file: "RocksDB files".into(), what: reason };
    }
    StorageError::Open { dir: dir.into(), reason }
}

pub fn decode_index(key: &[u8]) -> Option<Index> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

pub fn encode_entry(e: &Entry) -> Vec<u8> {
    crate::convert::entry_to_proto(e).encode_to_vec()
}

pub fn decode_entry(raw: &[u8]) -> Option<Entry> {
    Some(crate::convert::entry_from_proto(proto::Entry::decode(raw).ok()?))
}

fn encode_hard_state(hs: &HardState) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&hs.term.to_le_bytes());
    out.extend_from_slice(&hs.vote.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&hs.commit.to_le_bytes());
    out
}

fn decode_hard_state(raw: &[u8]) -> Option<HardState> {
    let word = |i: usize| Some(u64::from_le_bytes(raw.get(i * 8..i * 8 + 8)?.try_into().ok()?));
    let vote = word(1)?;
    Some(HardState { term: word(0)?, vote: (vote != 0).then_some(vote), commit: word(2)? })
}

fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + s.data.len());
    out.extend_from_slice(&s.meta.index.to_le_bytes());
    out.extend_from_slice(&s.meta.term.to_le_bytes());
    out.extend_from_slice(&s.data);
    out
}

fn decode_snapshot(raw: &[u8]) -> Option<Snapshot> {
    let word = |i: usize| Some(u64::from_le_bytes(raw.get(i * 8..i * 8 + 8)?.try_into().ok()?));
    let meta = SnapshotMeta { index: word(0)?, term: word(1)? };
    Some(Snapshot { meta, data: Bytes::copy_from_slice(&raw[16..]), ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory removed when the test ends.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("capukv-storage-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn identity() -> Identity {
        Identity { node_id: 1, cluster: "test".into(), voters: vec![1, 2, 3], cluster_id: 77 }
    }

    fn entry(index: Index, term: u64) -> Entry {
        Entry { index, term, kind: crate::raft::EntryKind::Command, data: Bytes::from(vec![7u8; 200]) }
    }

    /// Opens `dir` and syncs entries 1..=n of term 1, one batch each, as a
    /// follower would; closed again on return (the WAL keeps them).
    fn write_log(dir: &Path, n: u64) {
        let s = Storage::open(dir, &identity()).unwrap();
        s.load_raft_state().unwrap();
        for i in 1..=n {
            let hs = HardState { term: 1, vote: Some(2), commit: i - 1 };
            s.persist(None, &[entry(i, 1)], Some(&hs)).unwrap();
        }
    }

    /// The largest WAL file of `dir`.
    fn wal(dir: &Path) -> PathBuf {
        let mut logs: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| (e.metadata().unwrap().len(), e.path()))
            .collect();
        logs.sort();
        logs.pop().expect("a WAL file").1
    }

    fn reopen(dir: &Path) -> Result<PersistedState, StorageError> {
        Storage::open(dir, &identity())?.load_raft_state()
    }

    #[test]
    fn a_directory_of_a_capukv_without_version_history_is_refused_with_what_to_do() {
        let dir = TempDir::new("old-families");
        {
            // The families of the CapuKV before version history.
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let old = [CF_LOG, CF_RAFT, CF_KV, CF_META, CF_SESSIONS];
            DB::open_cf(&opts, &dir.0, old).unwrap();
        }
        let err = Storage::open(&dir.0, &identity()).err().expect("refused").to_string();
        assert!(err.contains("older CapuKV") && err.contains(CF_HISTORY), "{err}");
    }

    #[test]
    fn a_damaged_record_inside_the_wal_is_corruption_not_the_end_of_the_log() {
        let dir = TempDir::new("wal-flip");
        write_log(&dir.0, 60);
        let wal = wal(&dir.0);
        let mut bytes = std::fs::read(&wal).unwrap();
        let middle = bytes.len() / 3;
        bytes[middle] ^= 0x10;
        std::fs::write(&wal, bytes).unwrap();
        // Without the mark only RocksDB's own recovery can tell.
        std::fs::remove_file(dir.0.join(mark::FILE)).unwrap();
        match reopen(&dir.0) {
            Err(StorageError::Corrupt { what, .. }) => assert!(what.contains("Corruption"), "{what}"),
            Err(e) => panic!("expected a corruption error, got {e}"),
            Ok(state) => panic!("opened with {} of 60 entries: the rest were dropped silently", state.entries.len()),
        }
    }

    #[test]
    fn a_wal_cut_short_below_what_was_synced_refuses_to_start() {
        let dir = TempDir::new("wal-cut");
        write_log(&dir.0, 60);
        let wal = wal(&dir.0);
        let len = std::fs::metadata(&wal).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&wal).unwrap().set_len(len / 2).unwrap();
        match reopen(&dir.0) {
            Err(StorageError::Corrupt { what, .. }) => assert!(what.contains("synced entries are gone"), "{what}"),
            Err(e) => panic!("expected a corruption error, got {e}"),
            Ok(state) => panic!("opened with {} of 60 synced entries", state.entries.len()),
        }
    }

    #[test]
    fn a_log_shortened_by_a_new_leader_and_a_missing_or_torn_mark_start_normally() {
        let dir = TempDir::new("wal-conflict");
        write_log(&dir.0, 10);
        {
            let s = Storage::open(&dir.0, &identity()).unwrap();
            s.load_raft_state().unwrap();
            // A new leader of term 2 replaces entries 6..=10 with 6..=7.
            let hs = HardState { term: 2, vote: Some(3), commit: 5 };
            s.persist(None, &[entry(6, 2), entry(7, 2)], Some(&hs)).unwrap();
        }
        let state = reopen(&dir.0).unwrap();
        assert_eq!(state.entries.last().map(|e| (e.index, e.term)), Some((7, 2)));
        assert_eq!(state.hard_state.term, 2);
        std::fs::write(dir.0.join(mark::FILE), b"torn").unwrap();
        assert_eq!(reopen(&dir.0).unwrap().entries.len(), 7, "an unreadable mark checks nothing");
        std::fs::remove_file(dir.0.join(mark::FILE)).unwrap();
        assert_eq!(reopen(&dir.0).unwrap().entries.len(), 7, "a directory from before the mark opens");
    }

    #[test]
    fn every_node_of_a_cluster_derives_its_id_and_other_clusters_differ() {
        let peers = |port: u16| -> std::collections::HashMap<NodeId, String> {
            (1..=3).map(|id| (id, format!("127.0.0.1:{}", port + id as u16))).collect()
        };
        let one = Identity::bootstrap(1, "capukv", &peers(7000));
        assert_eq!(one.voters, vec![1, 2, 3]);
        // Another node of the same cluster: the same id, whatever the map's order.
        assert_eq!(Identity::bootstrap(3, "capukv", &peers(7000)).cluster_id, one.cluster_id);
        // Another cluster: other addresses, or another name.
        assert_ne!(Identity::bootstrap(1, "capukv", &peers(8000)).cluster_id, one.cluster_id);
        assert_ne!(Identity::bootstrap(1, "other", &peers(7000)).cluster_id, one.cluster_id);
        assert_ne!(one.cluster_id, 0, "0 is what a message without an id carries");
    }

    #[test]
    fn the_cluster_id_recorded_at_bootstrap_wins_and_an_old_directory_gets_one() {
        let dir = TempDir::new("cluster-id");
        let s = Storage::open(&dir.0, &identity()).unwrap();
        assert_eq!(s.identity().cluster_id, 77);
        drop(s);
        // Started again with flags that derive another id (an address changed).
        let moved = Identity { cluster_id: 99, ..identity() };
        assert_eq!(Storage::open(&dir.0, &moved).unwrap().identity().cluster_id, 77);
        // A directory written before the id existed: the record lacks it.
        let s = Storage::open(&dir.0, &identity()).unwrap();
        let old = serde_json::json!({ "node_id": 1, "cluster": "test", "voters": [1, 2, 3] });
        s.db.put_cf(s.cf(CF_RAFT), KEY_IDENTITY, serde_json::to_vec(&old).unwrap()).unwrap();
        drop(s);
        assert_eq!(Storage::open(&dir.0, &moved).unwrap().identity().cluster_id, 99, "recorded at the next start");
        assert_eq!(Storage::open(&dir.0, &identity()).unwrap().identity().cluster_id, 99, "and kept from then on");
    }
}
