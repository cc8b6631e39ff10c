//! The replicated state machine: an ordered map of byte keys to values with
//! etcd-style revisions (a global revision that every change advances, and
//! per key its create and mod revisions and version), plus the client
//! sessions that make retried writes exactly-once (Raft dissertation §6.3).
//!
//! Sessions are opened explicitly (a replicated `OpenSession`, whose id is
//! its log index) and bounded: past `max_sessions` the least recently
//! active is evicted, on every replica alike. A write naming a session that
//! is not open is refused ([`ApplyError::SessionExpired`]) and applies
//! nothing: it may be the retry of a write applied before the eviction, and
//! applying it again would break exactly-once. Since ids are never issued
//! twice, no write can be mistaken for the first of a new session.
//!
//! It lives in the node's RocksDB (`kv`, `sm_meta` and `sessions` column
//! families). The applied index is written in the same batch as the changes
//! it describes, so a crash never leaves one without the other. Reads come
//! from any thread straight from RocksDB; only the Raft loop applies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};
use prost::Message as _;
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};

use crate::proto::{self, command, command_response};
use crate::raft::{Entry, EntryKind, Index, Snapshot};
use crate::storage::{CF_HISTORY, CF_KV, CF_META, CF_MVCC, CF_SESSIONS, Storage, StorageError};

mod mvcc;
mod txn;

pub use mvcc::{
    MAX_SNAPSHOT_NAME_BYTES, ReadAt, ReadError, compaction_state, list as list_snapshots, validate_snapshot_name,
};
pub use txn::{MAX_TXN_BYTES, MAX_TXN_OPS, read_txn, reads_only, validate_txn};
pub(crate) use txn::{check_key, check_size};

const KEY_APPLIED: &[u8] = b"applied";
/// Present once entries were applied under the session rules of this
/// version (sessions opened by `OpenSession`); see [`StateMachine::open`].
const KEY_SESSION_RULES: &[u8] = b"session-rules-v2";
const KEY_REVISION: &[u8] = b"revision";
/// Version 2 carries the version history and named snapshots.
const SNAPSHOT_MAGIC: &[u8] = b"CAPUKV-SNAPSHOT-2";
/// The families a snapshot carries, in its order.
const SNAPSHOT_CFS: [&str; 4] = [CF_KV, CF_SESSIONS, CF_HISTORY, CF_MVCC];
/// Larger than any key (keys are at most 4 KiB), to delete a whole range.
const KEY_RANGE_END: [u8; 4097] = [0xff; 4097];

/// The largest value an append may leave, on every node alike (a
/// per-node `--max-value-bytes` could differ between replicas, and apply
/// must decide the same everywhere). Well under what a client decodes
/// (64 MiB), so that a value once stored can always be read back.
pub const MAX_APPENDED_VALUE_BYTES: usize = 16 << 20;

/// What applying a command produced for its client.
pub type CommandResult = Result<proto::CommandResponse, ApplyError>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("write {seq} of client {client} is older than its last write {last}: it was already answered")]
    StaleSequence { client: u64, seq: u64, last: u64 },
    #[error("the log entry is not a command: {0}")]
    BadCommand(String),
    #[error("the append would make the value {size} bytes; values grow to at most {limit} bytes")]
    ValueTooLarge { size: usize, limit: usize },
    #[error(
        "write {seq} names session {client}, which the cluster never opened or has evicted: nothing was applied; open a new session"
    )]
    SessionExpired { client: u64, seq: u64 },
    #[error("revision {requested} was compacted: the oldest readable revision is {compacted}")]
    Compacted { requested: u64, compacted: u64 },
    #[error("revision {requested} is in the future: the store is at revision {current}")]
    FutureRevision { requested: u64, current: u64 },
    #[error("a snapshot named {name:?} exists")]
    SnapshotExists { name: String },
}

/// A key's record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    create_revision: u64,
    mod_revision: u64,
    version: u64,
    value: Bytes,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.value.len());
        out.put_u64_le(self.create_revision);
        out.put_u64_le(self.mod_revision);
        out.put_u64_le(self.version);
        out.extend_from_slice(&self.value);
        out
    }

    fn decode(mut raw: &[u8]) -> Option<Record> {
        if raw.len() < 24 {
            return None;
        }
        let (create_revision, mod_revision, version) = (raw.get_u64_le(), raw.get_u64_le(), raw.get_u64_le());
        Some(Record { create_revision, mod_revision, version, value: Bytes::copy_from_slice(raw) })
    }

    fn to_kv(&self, key: &[u8]) -> proto::KeyValue {
        proto::KeyValue {
            key: Bytes::copy_from_slice(key),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }
}

/// A client's last write, remembered to answer its retry.
#[derive(Debug, Clone, Copy)]
struct Session {
    seq: u64,
    /// Log index of its last write: old sessions are evicted first.
    last_index: Index,
}

/// Sessions a node keeps by default; past it the least recently active is
/// evicted. Every replica of a cluster must keep the same number.
pub const MAX_SESSIONS: usize = 10_000;

pub struct StateMachine {
    storage: Arc<Storage>,
    applied: Index,
    revision: u64,
    sessions: HashMap<u64, Session>,
    by_age: BTreeSet<(Index, u64)>,
    max_sessions: usize,
    /// Versions below it are discarded (see [`mvcc`]).
    compacted: u64,
    snapshots: BTreeMap<String, proto::NamedSnapshot>,
}

/// Changes of one batch of entries, readable before they are written.
struct Batch<'a> {
    sm: &'a mut StateMachine,
    batch: WriteBatch,
    overlay: HashMap<Bytes, Option<Record>>,
    /// Responses saved to sessions in this batch, not yet on disk.
    responses: HashMap<u64, proto::CommandResponse>,
    /// While a transaction runs: its revision, and how to undo it.
    txn: Option<txn::Running>,
    /// Versions written in this batch, by version key (see [`mvcc`]).
    versions: BTreeMap<Vec<u8>, Option<Record>>,
}

impl StateMachine {
    pub fn open(storage: Arc<Storage>, max_sessions: usize) -> Result<StateMachine, StorageError> {
        let word = |key: &[u8]| -> Result<u64, StorageError> {
            match storage.get(CF_META, key)? {
                None => Ok(0),
                Some(raw) => raw.try_into().map(u64::from_le_bytes).map_err(|_| {
                    storage.corrupt(format!("state machine record {:?} is truncated", String::from_utf8_lossy(key)))
                }),
            }
        };
        let (applied, revision) = (word(KEY_APPLIED)?, word(KEY_REVISION)?);
        // Entries applied by an older CapuKV (whose first write of an
        // unknown client opened its session) and entries still to apply
        // would be judged by different rules, here and on the other
        // replicas: they could diverge. A cluster moves to this version by
        // starting afresh.
        if applied > 0 && storage.get(CF_META, KEY_SESSION_RULES)?.is_none() {
            return Err(storage.corrupt(
                "its state machine was written by an older CapuKV whose exactly-once sessions worked differently \
                 (applying the rest of its log under the new rules could make replicas diverge); \
                 start the cluster afresh with empty data directories",
            ));
        }
        let (compacted, snapshots) = mvcc::load(&storage)?;
        let mut sm = StateMachine {
            storage,
            applied,
            revision,
            sessions: HashMap::new(),
            by_age: BTreeSet::new(),
            max_sessions,
            compacted,
            snapshots,
        };
        let mut sessions = Vec::new();
        for item in sm.storage.db.iterator_cf(sm.storage.cf(CF_SESSIONS), IteratorMode::Start) {
            let (key, value) = item.map_err(|e| sm.storage.corrupt(e.to_string()))?;
            let client = key_u64(&key).ok_or_else(|| sm.storage.corrupt("a session key is not a client id"))?;
            let (seq, last_index) = session_header(&value)
                .ok_or_else(|| sm.storage.corrupt(format!("session of client {client} is truncated")))?;
            sessions.push((client, Session { seq, last_index }));
        }
        for (client, session) in sessions {
            sm.remember(client, session);
        }
        // Planted: the store revision is rebuilt from the keys on start (the
        // largest mod revision), forgetting the revisions deletes took.
        #[cfg(feature = "planted-bugs")]
        if crate::planted::active(crate::planted::Bug::RevisionFromKeys) {
            let mut newest = 0;
            for item in sm.storage.db.iterator_cf(sm.storage.cf(CF_KV), IteratorMode::Start) {
                let (_, raw) = item.map_err(|e| sm.storage.corrupt(e.to_string()))?;
                newest = newest.max(Record::decode(&raw).map_or(0, |r| r.mod_revision));
            }
            sm.revision = newest;
        }
        Ok(sm)
    }

    pub fn applied(&self) -> Index {
        self.applied
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Applies committed entries in order, in one batch. Returns, per entry
    /// that carried a command, its index and result.
    pub fn apply(&mut self, entries: &[Entry]) -> Result<Vec<(Index, CommandResult)>, StorageError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut b = Batch {
            sm: self,
            batch: WriteBatch::default(),
            overlay: HashMap::new(),
            responses: HashMap::new(),
            txn: None,
            versions: BTreeMap::new(),
        };
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries {
            debug_assert_eq!(entry.index, b.sm.applied + 1, "entries are applied in order");
            b.sm.applied = entry.index;
            if entry.kind == EntryKind::Command {
                let result = b.apply_command(entry)?;
                results.push((entry.index, result));
            }
        }
        let Batch { sm, mut batch, overlay, versions, .. } = b;
        let kv = sm.storage.cf(CF_KV);
        for (key, record) in overlay {
            match record {
                Some(r) => batch.put_cf(kv, &key, r.encode()),
                None => batch.delete_cf(kv, &key),
            }
        }
        let history = sm.storage.cf(CF_HISTORY);
        for (key, record) in versions {
            batch.put_cf(history, key, mvcc::encode_version(&record));
        }
        let meta = sm.storage.cf(CF_META);
        batch.put_cf(meta, KEY_APPLIED, sm.applied.to_le_bytes());
        batch.put_cf(meta, KEY_REVISION, sm.revision.to_le_bytes());
        batch.put_cf(meta, KEY_SESSION_RULES, []);
        sm.storage.write_state_machine(batch)?;
        Ok(results)
    }

    fn remember(&mut self, client: u64, session: Session) {
        if let Some(old) = self.sessions.insert(client, session) {
            self.by_age.remove(&(old.last_index, client));
        }
        self.by_age.insert((session.last_index, client));
    }

    // --- Snapshots -----------------------------------------------------------

    /// Replaces the whole state with a snapshot from the leader.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let bad = |what: &str| self.storage.corrupt(format!("snapshot at index {}: {what}", snapshot.meta.index));
        let mut raw = &snapshot.data[..];
        if raw.starts_with(b"CAPUKV-SNAPSHOT-1") {
            return Err(bad("a snapshot of an older CapuKV, without version history"));
        }
        if !raw.starts_with(SNAPSHOT_MAGIC) {
            return Err(bad("not a CapuKV snapshot"));
        }
        raw.advance(SNAPSHOT_MAGIC.len());
        let take_u64 = |raw: &mut &[u8]| (raw.len() >= 8).then(|| raw.get_u64_le());
        let take_bytes = |raw: &mut &[u8]| -> Option<Vec<u8>> {
            if raw.len() < 4 {
                return None;
            }
            let n = raw.get_u32_le() as usize;
            (raw.len() >= n).then(|| {
                let v = raw[..n].to_vec();
                raw.advance(n);
                v
            })
        };
        let applied = take_u64(&mut raw).ok_or_else(|| bad("truncated"))?;
        let revision = take_u64(&mut raw).ok_or_else(|| bad("truncated"))?;
        if applied != snapshot.meta.index {
            return Err(bad("its data is of another index"));
        }
        let mut batch = WriteBatch::default();
        let meta = self.storage.cf(CF_META);
        let mut restored_sessions = Vec::new();
        for name in SNAPSHOT_CFS {
            let cf = self.storage.cf(name);
            let is_sessions = name == CF_SESSIONS;
            batch.delete_range_cf(cf, &b""[..], &KEY_RANGE_END[..]);
            let n = take_u64(&mut raw).ok_or_else(|| bad("truncated"))?;
            #[allow(unused_mut)]
            let mut keep = true;
            // Planted: the history the snapshot carries is read and dropped.
            #[cfg(feature = "planted-bugs")]
            if name == CF_HISTORY && crate::planted::active(crate::planted::Bug::SnapshotWithoutHistory) {
                keep = false;
            }
            for _ in 0..n {
                let k = take_bytes(&mut raw).ok_or_else(|| bad("truncated"))?;
                let v = take_bytes(&mut raw).ok_or_else(|| bad("truncated"))?;
                if is_sessions {
                    let client = key_u64(&k).ok_or_else(|| bad("bad session key"))?;
                    let (seq, last_index) = session_header(&v).ok_or_else(|| bad("bad session"))?;
                    restored_sessions.push((client, Session { seq, last_index }));
                }
                if keep {
                    batch.put_cf(cf, k, v);
                }
            }
        }
        batch.put_cf(meta, KEY_APPLIED, applied.to_le_bytes());
        batch.put_cf(meta, KEY_REVISION, revision.to_le_bytes());
        batch.put_cf(meta, KEY_SESSION_RULES, []);
        self.storage.write_state_machine(batch)?;
        self.applied = applied;
        self.revision = revision;
        self.sessions.clear();
        self.by_age.clear();
        for (client, s) in restored_sessions {
            self.remember(client, s);
        }
        (self.compacted, self.snapshots) = mvcc::load(&self.storage)?;
        Ok(())
    }
}

impl Batch<'_> {
    fn read(&self, key: &Bytes) -> Result<Option<Record>, StorageError> {
        if let Some(r) = self.overlay.get(key) {
            return Ok(r.clone());
        }
        read_record(&self.sm.storage, key)
    }

    fn write(&mut self, key: Bytes, record: Option<Record>) {
        self.record_version(&key, record.clone());
        let before = self.overlay.insert(key.clone(), record);
        if let Some(t) = &mut self.txn {
            t.undo.entry(key).or_insert(before);
        }
    }

    /// The revision of a change: the next one, or inside a transaction the
    /// transaction's (all its changes share one).
    fn bump(&mut self) -> u64 {
        match &self.txn {
            Some(t) => t.revision,
            None => {
                self.sm.revision += 1;
                self.sm.revision
            }
        }
    }

    /// The record a write of `value` to `key` leaves, advancing the revision.
    fn written(&mut self, previous: &Option<Record>, value: Bytes) -> Record {
        let revision = self.bump();
        Record {
            create_revision: previous.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: previous.as_ref().map_or(1, |p| p.version + 1),
            value,
        }
    }

    fn apply_command(&mut self, entry: &Entry) -> Result<CommandResult, StorageError> {
        let cmd = match proto::Command::decode(&entry.data[..]) {
            Ok(cmd) => cmd,
            Err(e) => return Ok(Err(ApplyError::BadCommand(e.to_string()))),
        };
        let (client, seq) = (cmd.client_id, cmd.seq);
        #[allow(unused_mut)]
        let mut exactly_once = seq > 0;
        // Planted: retries are applied again.
        #[cfg(feature = "planted-bugs")]
        if crate::planted::active(crate::planted::Bug::NoSessions) {
            exactly_once = false;
        }
        let Some(op) = cmd.op else { return Ok(Err(ApplyError::BadCommand("no operation".into()))) };
        if exactly_once {
            match self.sm.sessions.get(&client).copied() {
                // Never opened, or evicted: this may be the retry of a write
                // applied before the eviction, which must not apply again.
                None => return Ok(Err(ApplyError::SessionExpired { client, seq })),
                // A retry of the last write: answer as the first time.
                Some(session) if seq == session.seq => return self.cached_response(client),
                Some(session) if seq < session.seq => {
                    return Ok(Err(ApplyError::StaleSequence { client, seq, last: session.seq }));
                }
                Some(_) => {}
            }
        }
        // A refused command changed nothing and is not remembered: its retry
        // is judged again.
        let result = match self.execute(op, entry.index)? {
            Ok(result) => result,
            Err(refused) => return Ok(Err(refused)),
        };
        if seq > 0 {
            self.save_session(client, seq, entry.index, &result);
        }
        Ok(Ok(result))
    }

    /// Runs `op`, the command of the entry at `index`.
    fn execute(&mut self, op: command::Op, index: Index) -> Result<CommandResult, StorageError> {
        use command_response::Result as R;
        let result = match op {
            // A session is not itself a write of one (it carries no id).
            command::Op::OpenSession(_) => return Ok(Ok(self.open_session(index))),
            command::Op::Txn(t) => match self.txn(t, index)? {
                Ok(response) => R::Txn(response),
                Err(refused) => return Ok(Err(refused)),
            },
            command::Op::Compact(c) => match self.compact(c)? {
                Ok(response) => R::Compact(response),
                Err(refused) => return Ok(Err(refused)),
            },
            command::Op::SnapshotCreate(c) => match self.snapshot_create(c) {
                Ok(response) => R::SnapshotCreate(response),
                Err(refused) => return Ok(Err(refused)),
            },
            command::Op::SnapshotDelete(d) => R::SnapshotDelete(self.snapshot_delete(d)),
            command::Op::SnapshotPurge(p) => R::SnapshotPurge(self.snapshot_purge(p)),
            command::Op::Put(p) => {
                let previous = self.read(&p.key)?;
                let record = self.written(&previous, p.value);
                self.write(p.key.clone(), Some(record));
                let previous = if p.omit_previous { None } else { previous.map(|r| r.to_kv(&p.key)) };
                R::Put(proto::PutResponse { previous, revision: self.sm.revision })
            }
            command::Op::Delete(d) => {
                let previous = self.read(&d.key)?;
                if previous.is_some() {
                    self.bump();
                    self.write(d.key.clone(), None);
                }
                R::Delete(proto::DeleteResponse {
                    previous: previous.map(|r| r.to_kv(&d.key)),
                    revision: self.sm.revision,
                })
            }
            command::Op::Cas(c) => {
                let current = self.read(&c.key)?;
                let matches = match (&c.expected_mod_revision, &c.expected_value) {
                    (Some(rev), _) => current.as_ref().map_or(0, |r| r.mod_revision) == *rev,
                    (None, Some(v)) => current.as_ref().is_some_and(|r| r.value == *v),
                    (None, None) => current.is_none(),
                };
                let shown = current.as_ref().map(|r| r.to_kv(&c.key));
                if matches {
                    let record = self.written(&current, c.new_value);
                    self.write(c.key.clone(), Some(record));
                }
                R::Cas(proto::CasResponse { succeeded: matches, current: shown, revision: self.sm.revision })
            }
            command::Op::Append(a) => {
                let previous = self.read(&a.key)?;
                let size = previous.as_ref().map_or(0, |r| r.value.len()) + a.suffix.len();
                if size > MAX_APPENDED_VALUE_BYTES {
                    return Ok(Err(ApplyError::ValueTooLarge { size, limit: MAX_APPENDED_VALUE_BYTES }));
                }
                let mut value = previous.as_ref().map(|r| r.value.to_vec()).unwrap_or_default();
                value.extend_from_slice(&a.suffix);
                let record = self.written(&previous, Bytes::from(value));
                let kv = record.to_kv(&a.key);
                self.write(a.key.clone(), Some(record));
                R::Append(proto::AppendValueResponse { kv: Some(kv), revision: self.sm.revision })
            }
            command::Op::DeleteRange(d) => {
                let keys = scan_keys(&self.sm.storage, &d.start, &d.end)?;
                // Keys written earlier in this batch count too.
                let mut doomed: BTreeSet<Bytes> = keys.into_iter().collect();
                for (k, r) in &self.overlay {
                    let in_range = *k >= d.start && (d.end.is_empty() || *k < d.end);
                    match r {
                        Some(_) if in_range => doomed.insert(k.clone()),
                        None => doomed.remove(k),
                        _ => false,
                    };
                }
                let deleted = doomed.len() as u64;
                if deleted > 0 {
                    self.bump();
                }
                for k in doomed {
                    self.write(k, None);
                }
                R::DeleteRange(proto::DeleteRangeResponse { deleted, revision: self.sm.revision })
            }
        };
        Ok(Ok(proto::CommandResponse { result: Some(result) }))
    }

    /// Opens a session whose id is the index of the entry that opened it:
    /// unique, and never issued again, so an unknown id is one that expired
    /// (or was never issued), never a session about to start.
    fn open_session(&mut self, index: Index) -> proto::CommandResponse {
        let response = proto::CommandResponse {
            result: Some(command_response::Result::OpenSession(proto::OpenSessionResponse { session_id: index })),
        };
        self.save_session(index, 0, index, &response);
        response
    }

    fn save_session(&mut self, client: u64, seq: u64, index: Index, response: &proto::CommandResponse) {
        let mut value = Vec::new();
        value.put_u64_le(seq);
        value.put_u64_le(index);
        value.extend_from_slice(&response.encode_to_vec());
        self.batch.put_cf(self.sm.storage.cf(CF_SESSIONS), client.to_be_bytes(), value);
        self.sm.remember(client, Session { seq, last_index: index });
        self.responses.insert(client, response.clone());
        // Bounded: the least recently active sessions go first. Every replica
        // evicts the same ones, since this depends on the log alone.
        while self.sm.sessions.len() > self.sm.max_sessions {
            let (_, oldest) = self.sm.by_age.pop_first().expect("non-empty");
            self.sm.sessions.remove(&oldest);
            self.responses.remove(&oldest);
            self.batch.delete_cf(self.sm.storage.cf(CF_SESSIONS), oldest.to_be_bytes());
        }
    }

    fn cached_response(&self, client: u64) -> Result<CommandResult, StorageError> {
        if let Some(response) = self.responses.get(&client) {
            return Ok(Ok(response.clone()));
        }
        let raw = match self.sm.storage.get(CF_SESSIONS, &client.to_be_bytes())? {
            Some(raw) => raw,
            None => return Ok(Err(ApplyError::BadCommand("session vanished".into()))),
        };
        let response = proto::CommandResponse::decode(&raw[16..])
            .map_err(|e| self.sm.storage.corrupt(format!("session of client {client}: {e}")))?;
        Ok(Ok(response))
    }
}

fn key_u64(raw: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(raw.try_into().ok()?))
}

fn session_header(raw: &[u8]) -> Option<(u64, Index)> {
    Some((u64::from_le_bytes(raw.get(0..8)?.try_into().ok()?), u64::from_le_bytes(raw.get(8..16)?.try_into().ok()?)))
}

fn read_record(storage: &Storage, key: &[u8]) -> Result<Option<Record>, StorageError> {
    decode_record(storage, key, storage.get(CF_KV, key)?)
}

/// A key's stored record, if any, decoded.
fn decode_record(storage: &Storage, key: &[u8], raw: Option<Vec<u8>>) -> Result<Option<Record>, StorageError> {
    match raw {
        None => Ok(None),
        Some(raw) => Record::decode(&raw).map(Some).ok_or_else(|| {
            storage.corrupt(format!("the record of key {:?} is truncated", String::from_utf8_lossy(key)))
        }),
    }
}

fn scan_keys(storage: &Storage, start: &[u8], end: &[u8]) -> Result<Vec<Bytes>, StorageError> {
    let mut keys = Vec::new();
    for item in storage.db.iterator_cf(storage.cf(CF_KV), IteratorMode::From(start, Direction::Forward)) {
        let (k, _) = item.map_err(|e| storage.corrupt(e.to_string()))?;
        if !end.is_empty() && &k[..] >= end {
            break;
        }
        keys.push(Bytes::copy_from_slice(&k));
    }
    Ok(keys)
}

// --- Reads (any thread) -------------------------------------------------------

/// The key's record as of `at`, and the store's revision.
pub fn get(storage: &Storage, key: &[u8], at: &ReadAt) -> Result<(Option<proto::KeyValue>, u64), ReadError> {
    let view = storage.db.snapshot();
    let revision = revision_at(storage, &view)?;
    let point = mvcc::resolve(storage, &view, at, revision)?;
    Ok((record_in(storage, &view, key, point)?.map(|r| r.to_kv(key)), revision))
}

/// The key's record in a point-in-time view, now (`None`) or as of a
/// revision.
fn record_in(
    storage: &Storage,
    view: &rocksdb::Snapshot<'_>,
    key: &[u8],
    point: Option<u64>,
) -> Result<Option<Record>, StorageError> {
    match point {
        None => record_at(storage, view, key),
        Some(revision) => mvcc::version_at(storage, view, key, revision),
    }
}

/// The key's record in a point-in-time view.
fn record_at(storage: &Storage, view: &rocksdb::Snapshot<'_>, key: &[u8]) -> Result<Option<Record>, StorageError> {
    decode_record(storage, key, view.get_cf(storage.cf(CF_KV), key).map_err(|e| storage.corrupt(e.to_string()))?)
}

/// Keys in `[start, end)` (`end` empty: to the end), at most `limit` (0: no
/// limit), as of `at`, read from one consistent snapshot. Returns whether
/// more remain, and the store's revision.
pub fn scan(
    storage: &Storage,
    (start, end): (&[u8], &[u8]),
    limit: u64,
    at: &ReadAt,
) -> Result<(Vec<proto::KeyValue>, bool, u64), ReadError> {
    let view = storage.db.snapshot();
    let revision = revision_at(storage, &view)?;
    let point = mvcc::resolve(storage, &view, at, revision)?;
    let (kvs, more) = scan_in(storage, &view, (start, end), limit, point)?;
    Ok((kvs, more, revision))
}

/// [`scan`] in a point-in-time view, now (`None`) or as of a revision.
fn scan_in(
    storage: &Storage,
    view: &rocksdb::Snapshot<'_>,
    (start, end): (&[u8], &[u8]),
    limit: u64,
    point: Option<u64>,
) -> Result<(Vec<proto::KeyValue>, bool), StorageError> {
    match point {
        None => scan_at(storage, view, start, end, limit),
        Some(revision) => mvcc::scan_versions_at(storage, view, (start, end), limit, revision),
    }
}

/// [`scan`] in a point-in-time view.
fn scan_at(
    storage: &Storage,
    view: &rocksdb::Snapshot<'_>,
    start: &[u8],
    end: &[u8],
    limit: u64,
) -> Result<(Vec<proto::KeyValue>, bool), StorageError> {
    let mut opts = ReadOptions::default();
    opts.set_snapshot(view);
    let mut kvs = Vec::new();
    let mut more = false;
    for item in storage.db.iterator_cf_opt(storage.cf(CF_KV), opts, IteratorMode::From(start, Direction::Forward)) {
        let (k, v) = item.map_err(|e| storage.corrupt(e.to_string()))?;
        if !end.is_empty() && &k[..] >= end {
            break;
        }
        if limit > 0 && kvs.len() as u64 == limit {
            more = true;
            break;
        }
        let record = Record::decode(&v).ok_or_else(|| storage.corrupt("a record is truncated"))?;
        kvs.push(record.to_kv(&k));
    }
    Ok((kvs, more))
}

fn revision_at(storage: &Storage, snapshot: &rocksdb::Snapshot<'_>) -> Result<u64, StorageError> {
    word_at(storage, snapshot, KEY_REVISION)
}

fn word_at(storage: &Storage, snapshot: &rocksdb::Snapshot<'_>, key: &[u8]) -> Result<u64, StorageError> {
    word_at_cf(storage, snapshot, CF_META, key)
}

/// A little-endian word of family `cf` in a view (absent: 0).
fn word_at_cf(storage: &Storage, view: &rocksdb::Snapshot<'_>, cf: &str, key: &[u8]) -> Result<u64, StorageError> {
    match view.get_cf(storage.cf(cf), key).map_err(|e| storage.corrupt(e.to_string()))? {
        None => Ok(0),
        Some(raw) => raw.try_into().map(u64::from_le_bytes).map_err(|_| {
            storage.corrupt(format!("state machine record {:?} is truncated", String::from_utf8_lossy(key)))
        }),
    }
}

/// The whole state as of now, with the index it was applied to, for log
/// compaction and lagging followers: read from
/// one RocksDB point-in-time view, in which the applied index is the one
/// written in the same batch as the data. So any thread may take it while
/// the apply thread goes on.
pub fn snapshot(storage: &Storage) -> Result<(Index, Bytes), StorageError> {
    let view = storage.db.snapshot();
    #[allow(unused_mut)]
    let mut encoded = encode_view(storage, &view)?;
    // Planted: the snapshot claims one entry more than its data holds.
    #[cfg(feature = "planted-bugs")]
    if crate::planted::active(crate::planted::Bug::SnapshotOneEntryShort) {
        encoded.applied += 1;
        encoded.data[SNAPSHOT_MAGIC.len()..SNAPSHOT_MAGIC.len() + 8].copy_from_slice(&encoded.applied.to_le_bytes());
    }
    Ok((encoded.applied, Bytes::from(encoded.data)))
}

/// The state of one point-in-time view in the snapshot encoding.
struct Encoded {
    applied: Index,
    revision: u64,
    data: Vec<u8>,
    /// Records of each of [`SNAPSHOT_CFS`].
    counts: [u64; 4],
}

fn encode_view(storage: &Storage, view: &rocksdb::Snapshot<'_>) -> Result<Encoded, StorageError> {
    let applied = word_at(storage, view, KEY_APPLIED)?;
    let revision = revision_at(storage, view)?;
    let mut out = Vec::new();
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.put_u64_le(applied);
    out.put_u64_le(revision);
    let mut counts = [0; 4];
    for (i, cf) in SNAPSHOT_CFS.into_iter().enumerate() {
        let mut items = Vec::new();
        for item in view.iterator_cf(storage.cf(cf), IteratorMode::Start) {
            items.push(item.map_err(|e| storage.corrupt(e.to_string()))?);
        }
        counts[i] = items.len() as u64;
        out.put_u64_le(items.len() as u64);
        for (k, v) in items {
            out.put_u32_le(k.len() as u32);
            out.extend_from_slice(&k);
            out.put_u32_le(v.len() as u32);
            out.extend_from_slice(&v);
        }
    }
    Ok(Encoded { applied, revision, data: out, counts })
}

/// A digest of the whole state at its applied index, equal on two replicas
/// exactly when their keys, values, revisions and sessions are: the FNV-1a
/// hash of the snapshot encoding, which is the same byte for byte for the
/// same state (RocksDB iterates in key order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateDigest {
    pub applied: Index,
    pub hash: u64,
    pub keys: u64,
    pub sessions: u64,
    pub revision: u64,
}

pub fn digest(storage: &Storage) -> Result<StateDigest, StorageError> {
    let view = storage.db.snapshot();
    let e = encode_view(storage, &view)?;
    let hash = e.data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    Ok(StateDigest { applied: e.applied, hash, keys: e.counts[0], sessions: e.counts[1], revision: e.revision })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Identity;

    /// A state machine on a fresh RocksDB in a directory removed on drop.
    pub(super) struct Fixture {
        dir: std::path::PathBuf,
        sm: Option<StateMachine>,
        pub(super) storage: Option<Arc<Storage>>,
        pub(super) next: Index,
    }

    impl Fixture {
        pub(super) fn new(name: &str) -> Fixture {
            let dir = std::env::temp_dir().join(format!("capukv-sm-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let identity = Identity { node_id: 1, cluster: "t".into(), voters: vec![1], cluster_id: 1 };
            let storage = Storage::open(&dir, &identity).unwrap();
            let sm = StateMachine::open(storage.clone(), 2).unwrap();
            Fixture { dir, sm: Some(sm), storage: Some(storage), next: 1 }
        }

        pub(super) fn sm(&mut self) -> &mut StateMachine {
            self.sm.as_mut().unwrap()
        }

        pub(super) fn apply(&mut self, client: u64, seq: u64, op: command::Op) -> CommandResult {
            self.apply_all(vec![(client, seq, op)]).pop().unwrap()
        }

        /// Applies the commands as consecutive entries, in one batch.
        pub(super) fn apply_all(&mut self, cmds: Vec<(u64, u64, command::Op)>) -> Vec<CommandResult> {
            let entries: Vec<Entry> = cmds
                .into_iter()
                .map(|(client_id, seq, op)| {
                    let cmd = proto::Command { client_id, seq, op: Some(op) };
                    self.next += 1;
                    Entry {
                        index: self.next - 1,
                        term: 1,
                        kind: EntryKind::Command,
                        data: Bytes::from(cmd.encode_to_vec()),
                    }
                })
                .collect();
            self.sm().apply(&entries).unwrap().into_iter().map(|(_, r)| r).collect()
        }

        /// Opens a session; its id is the index of the entry that opened it.
        pub(super) fn open_session(&mut self) -> u64 {
            let index = self.next;
            let answer = self.apply(0, 0, command::Op::OpenSession(proto::OpenSessionRequest {})).unwrap();
            let Some(command_response::Result::OpenSession(r)) = answer.result else { panic!("{answer:?}") };
            assert_eq!(r.session_id, index);
            r.session_id
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            self.sm.take();
            self.storage.take();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    pub(super) fn append(key: &str, suffix: &str) -> command::Op {
        command::Op::Append(proto::AppendRequest {
            key: Bytes::from(key.to_string()),
            suffix: Bytes::from(suffix.to_string()),
            id: None,
        })
    }

    pub(super) fn value_of(f: &Fixture, key: &str) -> Option<Bytes> {
        get(f.storage.as_ref().unwrap(), key.as_bytes(), &ReadAt::Head).unwrap().0.map(|kv| kv.value)
    }

    #[test]
    fn an_append_past_the_value_bound_is_refused_on_every_node_and_changes_nothing() {
        let mut f = Fixture::new("append-bound");
        let s = f.open_session();
        let big = "x".repeat(MAX_APPENDED_VALUE_BYTES - 1);
        f.apply(s, 1, append("k", &big)).unwrap();
        let revision = f.sm().revision();
        assert_eq!(
            f.apply(s, 2, append("k", "yz")),
            Err(ApplyError::ValueTooLarge { size: MAX_APPENDED_VALUE_BYTES + 1, limit: MAX_APPENDED_VALUE_BYTES })
        );
        assert_eq!(f.sm().revision(), revision, "a refused append changes nothing");
        assert_eq!(value_of(&f, "k").map(|v| v.len()), Some(MAX_APPENDED_VALUE_BYTES - 1));
        f.apply(s, 3, append("k", "y")).unwrap();
        assert_eq!(value_of(&f, "k").map(|v| v.len()), Some(MAX_APPENDED_VALUE_BYTES), "up to the bound is fine");
    }

    #[test]
    fn a_retried_write_gets_the_first_answer_and_applies_once() {
        let mut f = Fixture::new("retry");
        let s = f.open_session();
        let first = f.apply(s, 1, append("k", "a")).unwrap();
        let retry = f.apply(s, 1, append("k", "a")).unwrap();
        assert_eq!(first, retry);
        assert_eq!(value_of(&f, "k"), Some(Bytes::from("a")));
        f.apply(s, 2, append("k", "b")).unwrap();
        assert_eq!(value_of(&f, "k"), Some(Bytes::from("ab")));
        assert_eq!(f.apply(s, 1, append("k", "a")), Err(ApplyError::StaleSequence { client: s, seq: 1, last: 2 }));
    }

    #[test]
    fn a_retry_after_its_session_was_evicted_is_refused_and_applies_nothing() {
        let mut f = Fixture::new("evicted");
        let s = f.open_session();
        f.apply(s, 1, append("k", "a")).unwrap();
        // Sessions are bounded (2 here): the least recently active goes first.
        let (t, u) = (f.open_session(), f.open_session());
        assert_eq!(f.sm().sessions.len(), 2);
        assert!(!f.sm().sessions.contains_key(&s));
        // The retry of write 1 (its answer was lost), and the session's next write.
        let revision = f.sm().revision();
        for seq in [1, 2] {
            assert_eq!(f.apply(s, seq, append("k", "a")), Err(ApplyError::SessionExpired { client: s, seq }));
        }
        assert_eq!(value_of(&f, "k"), Some(Bytes::from("a")), "applied once");
        assert_eq!(f.sm().revision(), revision, "a refused write changes nothing");
        // A session that was never opened is refused alike, even at write 1:
        // an id the cluster did not issue cannot start a session.
        assert_eq!(f.apply(999, 1, append("k", "z")), Err(ApplyError::SessionExpired { client: 999, seq: 1 }));
        // Writes without an id are not deduplicated and need no session.
        f.apply(0, 0, append("k", "b")).unwrap();
        // The open sessions work as before, and survive a restart.
        f.apply(t, 1, append("k", "c")).unwrap();
        f.sm = None;
        f.sm = Some(StateMachine::open(f.storage.clone().unwrap(), 2).unwrap());
        f.apply(u, 1, append("k", "d")).unwrap();
        assert_eq!(f.apply(t, 1, append("k", "c")).unwrap().result, f.apply(t, 1, append("k", "c")).unwrap().result);
        assert_eq!(value_of(&f, "k"), Some(Bytes::from("abcd")));
    }

    #[test]
    fn revisions_and_versions_follow_etcd() {
        let mut f = Fixture::new("revisions");
        let put = |k: &str, v: &str, omit_previous: bool| {
            command::Op::Put(proto::PutRequest {
                key: Bytes::from(k.to_string()),
                value: Bytes::from(v.to_string()),
                id: None,
                omit_previous,
            })
        };
        let previous = |response: proto::CommandResponse| match response.result {
            Some(command_response::Result::Put(r)) => (r.previous.map(|kv| kv.value), r.revision),
            other => panic!("not a put answer: {other:?}"),
        };
        assert_eq!(previous(f.apply(0, 0, put("a", "1", false)).unwrap()), (None, 1));
        f.apply(0, 0, put("b", "1", false)).unwrap();
        // Without the previous pair in the answer, the write is the same.
        assert_eq!(previous(f.apply(0, 0, put("a", "2", true)).unwrap()), (None, 3));
        let (kv, revision) = get(f.storage.as_ref().unwrap(), b"a", &ReadAt::Head).unwrap();
        let kv = kv.unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version, revision), (1, 3, 2, 3));
        assert_eq!(previous(f.apply(0, 0, put("a", "2b", false)).unwrap()), (Some(Bytes::from("2")), 4));
        let cas = |expected: &str| {
            command::Op::Cas(proto::CasRequest {
                key: Bytes::from("a"),
                expected_value: Some(Bytes::from(expected.to_string())),
                expected_mod_revision: None,
                new_value: Bytes::from("3"),
                id: None,
            })
        };
        let failed = f.apply(0, 0, cas("1")).unwrap();
        let Some(command_response::Result::Cas(r)) = failed.result else { panic!() };
        assert!(!r.succeeded);
        assert_eq!(f.sm().revision(), 4, "a failed cas changes nothing");
        let range = command::Op::DeleteRange(proto::DeleteRangeRequest {
            start: Bytes::from("a"),
            end: Bytes::new(),
            id: None,
        });
        let Some(command_response::Result::DeleteRange(r)) = f.apply(0, 0, range).unwrap().result else { panic!() };
        assert_eq!(r.deleted, 2);
        assert_eq!(value_of(&f, "a"), None);
    }

    #[test]
    fn a_snapshot_restores_the_same_state() {
        let mut a = Fixture::new("snap-a");
        let s = a.open_session();
        a.apply(s, 1, append("x", "1")).unwrap();
        a.apply(s, 2, append("y", "2")).unwrap();
        let (_, data) = snapshot(a.sm().storage()).unwrap();
        let meta = crate::raft::SnapshotMeta { index: 3, term: 1 };
        let snapshot = Snapshot { meta, data, ..Default::default() };
        let mut b = Fixture::new("snap-b");
        let stale = b.open_session();
        b.apply(stale, 1, append("stale", "z")).unwrap();
        b.sm().restore(&snapshot).unwrap();
        assert_eq!((b.sm().applied(), b.sm().revision()), (3, 2));
        let (da, db) = (digest(a.sm().storage()).unwrap(), digest(b.sm().storage()).unwrap());
        assert_eq!(da, db, "a restored replica has the same digest");
        assert_eq!((da.applied, da.keys, da.sessions), (3, 2, 1));
        assert_eq!(value_of(&b, "x"), Some(Bytes::from("1")));
        assert_eq!(value_of(&b, "stale"), None, "the old state is gone");
        b.next = 4;
        // The session came along: a retry of its write 2 is answered, not applied.
        b.apply(s, 2, append("y", "2")).unwrap();
        assert_eq!(value_of(&b, "y"), Some(Bytes::from("2")));
        a.apply(s, 2, append("y", "2")).unwrap();
        assert_eq!(digest(a.sm().storage()).unwrap(), digest(b.sm().storage()).unwrap(), "the same retry on both");
        a.apply(s, 3, append("y", "3")).unwrap();
        b.apply(s, 3, append("y", "4")).unwrap();
        let (da, db) = (digest(a.sm().storage()).unwrap(), digest(b.sm().storage()).unwrap());
        assert_eq!(da.applied, db.applied);
        assert_ne!(da.hash, db.hash, "one differing value at the same index differs in the digest");
        let bad = Snapshot { data: Bytes::from_static(b"nonsense"), ..snapshot };
        assert!(b.sm().restore(&bad).unwrap_err().to_string().contains("not a CapuKV snapshot"));
    }
}
