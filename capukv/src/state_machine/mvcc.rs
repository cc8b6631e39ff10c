//! Version history: every version of every key, reads at a past revision or
//! a named snapshot, compaction, and named snapshots that pin a revision.
//!
//! Layout. The `kv` family keeps each key's current record (reads at the
//! head cost what they did before). Every change also writes a version to
//! the `kv_history` family under `escape(key) 00 00 !revision` (the
//! revision's complement, big-endian): versions sort by key, then newest
//! first, so the version a read at revision R sees is the first at or after
//! `escape(key) 00 00 !R`, one forward seek (RocksDB's backward seeks cost
//! several times more). `escape` doubles each
//! 0x00 as 00 FF, which keeps byte order and makes `00 00` end the key. A
//! version's value is the key's record as of that revision; a delete writes
//! an empty value (a tombstone).
//!
//! Compaction at revision C keeps, per key, the newest version at or below
//! C (unless it is a tombstone) and every newer one: reads at C or later
//! see what they saw before, reads below C are refused with the compacted
//! revision, as etcd does. It never goes past the oldest named snapshot.
//! Compaction, and creating and deleting named snapshots, are replicated
//! commands: every replica keeps the same history, which the state digest
//! and Raft snapshots cover (both encode these families).

use std::collections::BTreeMap;

use rocksdb::{DBRawIteratorWithThreadMode, ReadOptions};

use super::{ApplyError, Batch, Record, StateMachine};
use crate::proto;
use crate::storage::{CF_HISTORY, CF_MVCC, Storage, StorageError};

/// Longest snapshot name, in bytes.
pub const MAX_SNAPSHOT_NAME_BYTES: usize = 255;
const KEY_COMPACTED: &[u8] = b"compacted";
const SNAPSHOT_PREFIX: &[u8] = b"snapshot/";

/// Where a read looks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ReadAt {
    /// The current state.
    #[default]
    Head,
    /// The state as of this revision.
    Revision(u64),
    /// The state at this named snapshot's revision.
    Snapshot(String),
}

impl ReadAt {
    /// From a request's `revision` (0: none) and `snapshot` (empty: none).
    pub fn of(revision: u64, snapshot: &str) -> Result<ReadAt, String> {
        match (revision, snapshot.is_empty()) {
            (0, true) => Ok(ReadAt::Head),
            (revision, true) => Ok(ReadAt::Revision(revision)),
            (0, false) => Ok(ReadAt::Snapshot(snapshot.to_string())),
            _ => Err("a read names a revision or a snapshot, not both".into()),
        }
    }
}

/// Why a read cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("revision {requested} was compacted: the oldest readable revision is {compacted}")]
    Compacted { requested: u64, compacted: u64 },
    #[error("revision {requested} is in the future: the store is at revision {current}")]
    Future { requested: u64, current: u64 },
    #[error("there is no snapshot named {0:?}")]
    NoSnapshot(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Whether `name` may name a snapshot.
pub fn validate_snapshot_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the snapshot name is empty".into());
    }
    if name.len() > MAX_SNAPSHOT_NAME_BYTES {
        return Err(format!("the snapshot name is {} bytes; the limit is {MAX_SNAPSHOT_NAME_BYTES}", name.len()));
    }
    Ok(())
}

// --- Encoding -----------------------------------------------------------------

/// `escape(key) 00 00`: what every version of `key` starts with.
fn key_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 10);
    escape_into(key, &mut out);
    out.extend_from_slice(&[0, 0]);
    out
}

fn escape_into(key: &[u8], out: &mut Vec<u8>) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
}

pub(super) fn version_key(key: &[u8], revision: u64) -> Vec<u8> {
    let mut out = key_prefix(key);
    out.extend_from_slice(&(!revision).to_be_bytes());
    out
}

/// A version key's prefix (`escape(key) 00 00`) and revision.
fn split_version_key(raw: &[u8]) -> Option<(&[u8], u64)> {
    if raw.len() < 10 {
        return None;
    }
    let (prefix, revision) = raw.split_at(raw.len() - 8);
    prefix.ends_with(&[0, 0]).then_some(())?;
    Some((prefix, !u64::from_be_bytes(revision.try_into().ok()?)))
}

fn unescape(prefix: &[u8]) -> Option<Vec<u8>> {
    let body = prefix.strip_suffix(&[0, 0])?;
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        out.push(body[i]);
        if body[i] == 0 {
            (body.get(i + 1) == Some(&0xff)).then_some(())?;
            i += 1;
        }
        i += 1;
    }
    Some(out)
}

pub(super) fn encode_version(record: &Option<Record>) -> Vec<u8> {
    record.as_ref().map_or_else(Vec::new, Record::encode)
}

fn decode_version(storage: &Storage, raw: &[u8]) -> Result<Option<Record>, StorageError> {
    if raw.is_empty() {
        return Ok(None);
    }
    Record::decode(raw).map(Some).ok_or_else(|| storage.corrupt("a version record is truncated"))
}

fn encode_snapshot(s: &proto::NamedSnapshot) -> Vec<u8> {
    [s.revision.to_le_bytes(), s.created_unix_ms.to_le_bytes()].concat()
}

// --- State kept in memory by the applying thread -------------------------------

/// The compacted revision and the named snapshots, as stored.
pub(super) fn load(storage: &Storage) -> Result<(u64, BTreeMap<String, proto::NamedSnapshot>), StorageError> {
    load_at(storage, &storage.db.snapshot())
}

fn load_at(
    storage: &Storage,
    view: &rocksdb::Snapshot<'_>,
) -> Result<(u64, BTreeMap<String, proto::NamedSnapshot>), StorageError> {
    let compacted = super::word_at_cf(storage, view, CF_MVCC, KEY_COMPACTED)?;
    let mut snapshots = BTreeMap::new();
    let mode = rocksdb::IteratorMode::From(SNAPSHOT_PREFIX, rocksdb::Direction::Forward);
    for item in view.iterator_cf(storage.cf(CF_MVCC), mode) {
        let (k, v) = item.map_err(|e| storage.corrupt(e.to_string()))?;
        let Some(name) = k.strip_prefix(SNAPSHOT_PREFIX) else { break };
        let s = decode_snapshot(storage, name, &v)?;
        snapshots.insert(s.name.clone(), s);
    }
    Ok((compacted, snapshots))
}

fn decode_snapshot(storage: &Storage, name: &[u8], raw: &[u8]) -> Result<proto::NamedSnapshot, StorageError> {
    let bad = || storage.corrupt(format!("named snapshot {:?} is malformed", String::from_utf8_lossy(name)));
    let name = String::from_utf8(name.to_vec()).map_err(|_| bad())?;
    let word = |i: usize| raw.get(i * 8..i * 8 + 8).and_then(|w| w.try_into().ok()).map(u64::from_le_bytes);
    let (revision, created_unix_ms) = (word(0).ok_or_else(bad)?, word(1).ok_or_else(bad)?);
    Ok(proto::NamedSnapshot { name, revision, created_unix_ms })
}

// --- Reads (any thread) -------------------------------------------------------

fn raw_iterator<'a>(
    storage: &'a Storage,
    view: &rocksdb::Snapshot<'a>,
) -> DBRawIteratorWithThreadMode<'a, rocksdb::DB> {
    let mut opts = ReadOptions::default();
    opts.set_snapshot(view);
    storage.db.raw_iterator_cf_opt(storage.cf(CF_HISTORY), opts)
}

/// The revision a read at `at` sees in `view`, or `None` for the head (the
/// state now, which a read at the current revision is too).
pub(super) fn resolve(
    storage: &Storage,
    view: &rocksdb::Snapshot<'_>,
    at: &ReadAt,
    current: u64,
) -> Result<Option<u64>, ReadError> {
    let requested = match at {
        ReadAt::Head => return Ok(None),
        ReadAt::Revision(r) => *r,
        ReadAt::Snapshot(name) => {
            let mut key = SNAPSHOT_PREFIX.to_vec();
            key.extend_from_slice(name.as_bytes());
            let raw = view.get_cf(storage.cf(CF_MVCC), &key).map_err(|e| storage.corrupt(e.to_string()))?;
            let raw = raw.ok_or_else(|| ReadError::NoSnapshot(name.clone()))?;
            decode_snapshot(storage, name.as_bytes(), &raw)?.revision
        }
    };
    if requested > current {
        return Err(ReadError::Future { requested, current });
    }
    let compacted = super::word_at_cf(storage, view, CF_MVCC, KEY_COMPACTED)?;
    if requested < compacted {
        return Err(ReadError::Compacted { requested, compacted });
    }
    Ok((requested < current).then_some(requested))
}

/// The key's record as of `revision`.
pub(super) fn version_at(
    storage: &Storage,
    view: &rocksdb::Snapshot<'_>,
    key: &[u8],
    revision: u64,
) -> Result<Option<Record>, StorageError> {
    let prefix = key_prefix(key);
    let mut it = raw_iterator(storage, view);
    newest_at(storage, &mut it, &prefix, revision)
}

/// The newest version of the key `prefix` names at or below `revision`.
fn newest_at(
    storage: &Storage,
    it: &mut DBRawIteratorWithThreadMode<'_, rocksdb::DB>,
    prefix: &[u8],
    revision: u64,
) -> Result<Option<Record>, StorageError> {
    let mut target = prefix.to_vec();
    target.extend_from_slice(&(!revision).to_be_bytes());
    it.seek(&target);
    it.status().map_err(|e| storage.corrupt(e.to_string()))?;
    match (it.key(), it.value()) {
        (Some(k), Some(v)) if k.len() == prefix.len() + 8 && k.starts_with(prefix) => decode_version(storage, v),
        _ => Ok(None),
    }
}

/// Keys in `[start, end)` as of `revision`, at most `limit` (0: no limit),
/// and whether more remain: two seeks per key that has versions.
pub(super) fn scan_versions_at(
    storage: &Storage,
    view: &rocksdb::Snapshot<'_>,
    (start, end): (&[u8], &[u8]),
    limit: u64,
    revision: u64,
) -> Result<(Vec<proto::KeyValue>, bool), StorageError> {
    let mut it = raw_iterator(storage, view);
    let mut first = Vec::new();
    escape_into(start, &mut first);
    it.seek(&first);
    let (mut kvs, mut more) = (Vec::new(), false);
    loop {
        if !it.valid() {
            it.status().map_err(|e| storage.corrupt(e.to_string()))?;
            break;
        }
        let raw = it.key().expect("valid").to_vec();
        let bad = || storage.corrupt("a version key is malformed");
        let (prefix, _) = split_version_key(&raw).ok_or_else(bad)?;
        let key = unescape(prefix).ok_or_else(bad)?;
        if !end.is_empty() && &key[..] >= end {
            break;
        }
        if let Some(record) = newest_at(storage, &mut it, prefix, revision)? {
            if limit > 0 && kvs.len() as u64 == limit {
                more = true;
                break;
            }
            kvs.push(record.to_kv(&key));
        }
        // Past every version of this key: `prefix FF*9` sorts after them
        // (they are `prefix` and 8 bytes) and before the next key's.
        let mut next = prefix.to_vec();
        next.extend_from_slice(&[0xff; 9]);
        it.seek(&next);
    }
    Ok((kvs, more))
}

/// The named snapshots, the compacted revision and the store's revision,
/// from one view.
pub fn list(storage: &Storage) -> Result<(Vec<proto::NamedSnapshot>, u64, u64), StorageError> {
    let view = storage.db.snapshot();
    let (compacted, snapshots) = load_at(storage, &view)?;
    Ok((snapshots.into_values().collect(), compacted, super::revision_at(storage, &view)?))
}

/// The compacted revision and the store's revision, from one view (what
/// the automatic compactor looks at, without decoding the snapshots).
pub fn compaction_state(storage: &Storage) -> Result<(u64, u64), StorageError> {
    let view = storage.db.snapshot();
    Ok((super::word_at_cf(storage, &view, CF_MVCC, KEY_COMPACTED)?, super::revision_at(storage, &view)?))
}

// --- Commands (the applying thread) -------------------------------------------

impl StateMachine {
    pub fn compacted(&self) -> u64 {
        self.compacted
    }
}

impl Batch<'_> {
    /// Keeps the version `record` (`None`: deleted) of `key` at the revision
    /// of the change under way.
    pub(super) fn record_version(&mut self, key: &[u8], record: Option<Record>) {
        let revision = match &self.txn {
            Some(t) => t.revision,
            None => self.sm.revision,
        };
        self.versions.insert(version_key(key, revision), record);
    }

    pub(super) fn compact(
        &mut self,
        c: proto::CompactRequest,
    ) -> Result<Result<proto::CompactResponse, ApplyError>, StorageError> {
        let current = self.sm.revision;
        if c.revision > current {
            return Ok(Err(ApplyError::FutureRevision { requested: c.revision, current }));
        }
        let pinned = self.sm.snapshots.values().map(|s| s.revision).min();
        let target = pinned.map_or(c.revision, |p| p.min(c.revision));
        if target > self.sm.compacted {
            let discarded = self.discard_versions_below(target)?;
            tracing::info!(compacted = target, requested = c.revision, discarded, "compacted the version history");
            self.sm.compacted = target;
            self.batch.put_cf(self.sm.storage.cf(CF_MVCC), KEY_COMPACTED, target.to_le_bytes());
        }
        Ok(Ok(proto::CompactResponse { compacted: self.sm.compacted, revision: current }))
    }

    /// Deletes every version no read at `c` or later can see: per key, all
    /// at or below `c` but the newest, and that one too if it is a
    /// tombstone. Walks the stored versions and this batch's in one merge
    /// (both in key order, each key's newest first).
    /// Returns how many it deleted.
    fn discard_versions_below(&mut self, c: u64) -> Result<u64, StorageError> {
        let storage = self.sm.storage.clone();
        let mut disk = storage.db.raw_iterator_cf(storage.cf(CF_HISTORY));
        disk.seek_to_first();
        let pending: Vec<(Vec<u8>, bool)> = self.versions.iter().map(|(k, r)| (k.clone(), r.is_none())).collect();
        let mut pending = pending.into_iter().peekable();
        // The key in hand (its prefix), and whether its newest version at or
        // below `c` went by (versions come newest first).
        let mut key: Option<(Vec<u8>, bool)> = None;
        let mut doomed: Vec<(Vec<u8>, bool)> = Vec::new();
        loop {
            disk.status().map_err(|e| storage.corrupt(e.to_string()))?;
            let on_disk = disk.key().map(|k| (k.to_vec(), disk.value().is_some_and(<[u8]>::is_empty)));
            let next = match (on_disk, pending.peek()) {
                (None, None) => break,
                (Some(d), Some(p)) if p.0 <= d.0 => {
                    if p.0 == d.0 {
                        disk.next();
                    }
                    let (k, tomb) = pending.next().expect("peeked");
                    (k, tomb, true)
                }
                (Some((k, tomb)), _) => {
                    disk.next();
                    (k, tomb, false)
                }
                (None, Some(_)) => {
                    let (k, tomb) = pending.next().expect("peeked");
                    (k, tomb, true)
                }
            };
            let (prefix, revision) =
                split_version_key(&next.0).ok_or_else(|| storage.corrupt("a version key is malformed"))?;
            if key.as_ref().is_none_or(|(p, _)| p[..] != *prefix) {
                key = Some((prefix.to_vec(), false));
            }
            let (_, seen_newest) = key.as_mut().expect("set above");
            let (k, tombstone, mine) = next;
            if revision > c {
                continue;
            }
            // The newest at or below `c` is what reads at `c` see: kept,
            // unless it says the key is absent. Everything older goes.
            #[allow(unused_mut)]
            let mut keep_visible = true;
            // Planted: the version reads at `c` still see goes too.
            #[cfg(feature = "planted-bugs")]
            if crate::planted::active(crate::planted::Bug::CompactionDropsVisible) {
                keep_visible = false;
            }
            if !*seen_newest {
                *seen_newest = true;
                if !tombstone && keep_visible {
                    continue;
                }
            }
            doomed.push((k, mine));
        }
        let history = storage.cf(CF_HISTORY);
        let count = doomed.len() as u64;
        for (k, mine) in doomed {
            if mine {
                self.versions.remove(&k);
            } else {
                self.batch.delete_cf(history, k);
            }
        }
        Ok(count)
    }

    pub(super) fn snapshot_create(
        &mut self,
        r: proto::SnapshotCreateRequest,
    ) -> Result<proto::SnapshotCreateResponse, ApplyError> {
        let current = self.sm.revision;
        let revision = if r.revision == 0 { current } else { r.revision };
        if revision > current {
            return Err(ApplyError::FutureRevision { requested: revision, current });
        }
        if revision < self.sm.compacted {
            return Err(ApplyError::Compacted { requested: revision, compacted: self.sm.compacted });
        }
        if self.sm.snapshots.contains_key(&r.name) {
            return Err(ApplyError::SnapshotExists { name: r.name });
        }
        let snapshot = proto::NamedSnapshot { name: r.name, revision, created_unix_ms: r.created_unix_ms };
        self.batch.put_cf(self.sm.storage.cf(CF_MVCC), snapshot_key(&snapshot.name), encode_snapshot(&snapshot));
        self.sm.snapshots.insert(snapshot.name.clone(), snapshot.clone());
        Ok(proto::SnapshotCreateResponse { snapshot: Some(snapshot), revision: current })
    }

    pub(super) fn snapshot_delete(&mut self, r: proto::SnapshotDeleteRequest) -> proto::SnapshotDeleteResponse {
        let deleted = self.sm.snapshots.remove(&r.name).is_some();
        if deleted {
            self.batch.delete_cf(self.sm.storage.cf(CF_MVCC), snapshot_key(&r.name));
        }
        proto::SnapshotDeleteResponse { deleted, revision: self.sm.revision }
    }

    pub(super) fn snapshot_purge(&mut self, r: proto::SnapshotPurgeRequest) -> proto::SnapshotPurgeResponse {
        let doomed: Vec<String> = self
            .sm
            .snapshots
            .values()
            .filter(|s| r.below == 0 || s.revision < r.below)
            .map(|s| s.name.clone())
            .collect();
        for name in &doomed {
            self.sm.snapshots.remove(name);
            self.batch.delete_cf(self.sm.storage.cf(CF_MVCC), snapshot_key(name));
        }
        proto::SnapshotPurgeResponse { deleted: doomed, revision: self.sm.revision }
    }
}

fn snapshot_key(name: &str) -> Vec<u8> {
    [SNAPSHOT_PREFIX, name.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap as Model;

    use bytes::Bytes;

    use super::super::tests::Fixture;
    use super::super::{CommandResult, digest, get, scan, snapshot};
    use super::*;
    use crate::proto::{command, command_response};

    fn put(k: &str, v: &str) -> command::Op {
        command::Op::Put(proto::PutRequest {
            key: k.to_string().into(),
            value: v.to_string().into(),
            ..Default::default()
        })
    }

    fn del(k: &str) -> command::Op {
        command::Op::Delete(proto::DeleteRequest { key: k.to_string().into(), id: None })
    }

    fn del_range(start: &str, end: &str) -> command::Op {
        command::Op::DeleteRange(proto::DeleteRangeRequest {
            start: start.to_string().into(),
            end: end.to_string().into(),
            id: None,
        })
    }

    fn compact(revision: u64) -> command::Op {
        command::Op::Compact(proto::CompactRequest { revision })
    }

    fn compacted_to(r: CommandResult) -> u64 {
        match r.expect("applied").result {
            Some(command_response::Result::Compact(c)) => c.compacted,
            other => panic!("not a compaction's answer: {other:?}"),
        }
    }

    fn create(name: &str, revision: u64) -> command::Op {
        command::Op::SnapshotCreate(proto::SnapshotCreateRequest { name: name.into(), revision, ..Default::default() })
    }

    /// Every key's value as of revision `r`, read through the store.
    fn state_at(f: &Fixture, at: &ReadAt) -> Result<Model<String, String>, ReadError> {
        let (kvs, more, _) = scan(f.storage.as_ref().unwrap(), (b"", b""), 0, at)?;
        assert!(!more);
        Ok(kvs.into_iter().map(|kv| (lossy(&kv.key), lossy(&kv.value))).collect())
    }

    fn lossy(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// A small deterministic generator (xorshift), so a failure replays.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn every_past_revision_reads_as_it_was_until_compacted() {
        let mut f = Fixture::new("mvcc-model");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // The expected state after each revision (index: revision).
        let mut states: Vec<Model<String, String>> = vec![Model::new()];
        let mut now: Model<String, String> = Model::new();
        let keys = ["a", "a\0", "ab", "b", "c\0\0", "d"];
        for round in 0..120 {
            // One batch of 1-4 commands; the model follows the store's
            // rule: a change advances the revision, a no-op does not.
            let mut ops = Vec::new();
            for _ in 0..=rng.below(4) {
                let k = keys[rng.below(keys.len() as u64) as usize];
                let op = match rng.below(10) {
                    0..=5 => {
                        let v = format!("{k}-{round}-{}", rng.below(1000));
                        now.insert(k.to_string(), v.clone());
                        states.push(now.clone());
                        put(k, &v)
                    }
                    6 | 7 => {
                        if now.remove(k).is_some() {
                            states.push(now.clone());
                        }
                        del(k)
                    }
                    _ => {
                        let end = keys[rng.below(keys.len() as u64) as usize];
                        let doomed: Vec<String> =
                            now.keys().filter(|x| x.as_str() >= k && x.as_str() < end).cloned().collect();
                        for x in &doomed {
                            now.remove(x);
                        }
                        if !doomed.is_empty() {
                            states.push(now.clone());
                        }
                        del_range(k, end)
                    }
                };
                ops.push((0, 0, op));
            }
            f.apply_all(ops).into_iter().for_each(|r| drop(r.expect("applied")));
            assert_eq!(f.sm().revision(), states.len() as u64 - 1, "the model counts revisions as the store does");
        }
        let head = states.len() as u64 - 1;
        for (r, expected) in states.iter().enumerate().skip(1) {
            assert_eq!(&state_at(&f, &ReadAt::Revision(r as u64)).unwrap(), expected, "the state at revision {r}");
        }
        assert_eq!(state_at(&f, &ReadAt::Head).unwrap(), now);
        assert!(matches!(state_at(&f, &ReadAt::Revision(head + 1)), Err(ReadError::Future { .. })));
        // Gets agree with ranges, also at keys a range never lists.
        let storage = f.storage.clone().unwrap();
        for r in [1, head / 2, head] {
            for k in keys.iter().chain(&["zz", "a\0\0"]) {
                let (kv, _) = get(&storage, k.as_bytes(), &ReadAt::Revision(r)).unwrap();
                assert_eq!(kv.map(|kv| lossy(&kv.value)), states[r as usize].get(*k).cloned(), "{k:?} at {r}");
            }
        }

        // Compact in the middle, in one batch with writes before and after
        // it (the merge of stored and pending versions).
        let c = head / 2;
        let results = f.apply_all(vec![(0, 0, put("a", "late")), (0, 0, compact(c)), (0, 0, put("b", "later"))]);
        let mut results = results.into_iter();
        results.next().unwrap().unwrap();
        assert_eq!(compacted_to(results.next().unwrap()), c);
        now.insert("a".into(), "late".into());
        states.push(now.clone());
        now.insert("b".into(), "later".into());
        states.push(now.clone());
        for r in 1..c {
            match state_at(&f, &ReadAt::Revision(r)) {
                Err(ReadError::Compacted { requested, compacted }) => assert_eq!((requested, compacted), (r, c)),
                other => panic!("revision {r} below the compaction read {other:?}"),
            }
        }
        for (r, expected) in states.iter().enumerate().skip(c as usize) {
            assert_eq!(&state_at(&f, &ReadAt::Revision(r as u64)).unwrap(), expected, "after compaction, at {r}");
        }
        // Compacting again at or below changes nothing.
        assert_eq!(compacted_to(f.apply(0, 0, compact(c - 1))), c);
        // Compacting at the head keeps exactly one version of each live key.
        let head = f.sm().revision();
        assert_eq!(compacted_to(f.apply(0, 0, compact(head))), head);
        let versions = storage.db.iterator_cf(storage.cf(CF_HISTORY), rocksdb::IteratorMode::Start).count();
        assert_eq!(versions, now.len(), "one version per live key, no tombstones");
        assert_eq!(state_at(&f, &ReadAt::Revision(head)).unwrap(), now);
        assert!(matches!(f.apply(0, 0, compact(head + 1)), Err(ApplyError::FutureRevision { .. })));
    }

    #[test]
    fn named_snapshots_pin_their_revision_against_compaction() {
        let mut f = Fixture::new("mvcc-snapshots");
        let s = f.open_session();
        f.apply(0, 0, put("k", "1")).unwrap();
        f.apply(0, 0, put("k", "2")).unwrap();
        let pinned = f.sm().revision();
        f.apply(s, 1, create("before", 0)).unwrap();
        assert_eq!(
            f.apply(s, 2, create("before", 1)),
            Err(ApplyError::SnapshotExists { name: "before".into() }),
            "a name is taken once"
        );
        f.apply(0, 0, put("k", "3")).unwrap();
        f.apply(0, 0, del("k")).unwrap();
        let head = f.sm().revision();
        assert_eq!(compacted_to(f.apply(0, 0, compact(head))), pinned, "compaction stops at the snapshot");
        let storage = f.storage.clone().unwrap();
        let at = ReadAt::Snapshot("before".into());
        assert_eq!(get(&storage, b"k", &at).unwrap().0.map(|kv| kv.value), Some(Bytes::from("2")));
        assert_eq!(get(&storage, b"k", &ReadAt::Head).unwrap().0, None);
        assert!(matches!(get(&storage, b"k", &ReadAt::Snapshot("none".into())), Err(ReadError::NoSnapshot(_))));
        assert_eq!(
            f.apply(s, 3, create("too-old", 1)),
            Err(ApplyError::Compacted { requested: 1, compacted: pinned }),
            "a snapshot cannot pin what is gone"
        );
        f.apply(s, 4, create("later", head)).unwrap();
        let (listed, compacted, _) = list(&storage).unwrap();
        assert_eq!(
            listed.iter().map(|s| (s.name.as_str(), s.revision)).collect::<Vec<_>>(),
            [("before", pinned), ("later", head)]
        );
        assert_eq!(compacted, pinned);

        // Purge below `head` drops "before" only; then compaction goes on,
        // up to "later".
        let purged = f.apply(s, 5, command::Op::SnapshotPurge(proto::SnapshotPurgeRequest { below: head, id: None }));
        match purged.unwrap().result {
            Some(command_response::Result::SnapshotPurge(p)) => assert_eq!(p.deleted, ["before"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(compacted_to(f.apply(0, 0, compact(head))), head);
        assert!(matches!(get(&storage, b"k", &ReadAt::Revision(pinned)), Err(ReadError::Compacted { .. })));
        let deleted =
            f.apply(s, 6, command::Op::SnapshotDelete(proto::SnapshotDeleteRequest { name: "later".into(), id: None }));
        assert!(matches!(
            deleted.unwrap().result,
            Some(command_response::Result::SnapshotDelete(proto::SnapshotDeleteResponse { deleted: true, .. }))
        ));
        assert!(list(&storage).unwrap().0.is_empty());
    }

    #[test]
    fn a_raft_snapshot_carries_the_history_and_the_named_snapshots() {
        let mut a = Fixture::new("mvcc-raft-a");
        for i in 0..5 {
            a.apply(0, 0, put("k", &i.to_string())).unwrap();
        }
        a.apply(0, 0, create("three", 3)).unwrap();
        a.apply(0, 0, compact(2)).unwrap();
        let (index, data) = snapshot(a.sm().storage()).unwrap();
        let meta = crate::raft::SnapshotMeta { index, term: 1 };
        let mut b = Fixture::new("mvcc-raft-b");
        b.apply(0, 0, put("other", "x")).unwrap();
        b.sm().restore(&crate::raft::Snapshot { meta, data, ..Default::default() }).unwrap();
        assert_eq!(digest(a.sm().storage()).unwrap(), digest(b.sm().storage()).unwrap());
        assert_eq!(b.sm().compacted(), 2);
        for f in [&a, &b] {
            let storage = f.storage.as_ref().unwrap();
            let value = |at: ReadAt| get(storage, b"k", &at).unwrap().0.map(|kv| lossy(&kv.value));
            assert_eq!(value(ReadAt::Revision(2)).as_deref(), Some("1"));
            assert_eq!(value(ReadAt::Snapshot("three".into())).as_deref(), Some("2"));
            assert!(matches!(get(storage, b"k", &ReadAt::Revision(1)), Err(ReadError::Compacted { .. })));
        }
        // The restored node goes on with the same rules: a compaction
        // stops at the snapshot it received.
        b.next = index + 1;
        assert_eq!(compacted_to(b.apply(0, 0, compact(5))), 3);
    }

    #[test]
    fn an_undone_transaction_leaves_no_version() {
        let mut f = Fixture::new("mvcc-undo");
        f.apply(0, 0, put("k", "1")).unwrap();
        let big = "x".repeat(super::super::MAX_APPENDED_VALUE_BYTES);
        let t = proto::TxnRequest {
            success: vec![crate::txn::put("k", "2"), crate::txn::append("k", big)],
            ..Default::default()
        };
        assert!(matches!(f.apply(0, 0, command::Op::Txn(t)), Err(ApplyError::ValueTooLarge { .. })));
        f.apply(0, 0, put("j", "1")).unwrap();
        let storage = f.storage.clone().unwrap();
        assert_eq!(get(&storage, b"k", &ReadAt::Revision(2)).unwrap().0.map(|kv| kv.value), Some(Bytes::from("1")));
        assert_eq!(storage.db.iterator_cf(storage.cf(CF_HISTORY), rocksdb::IteratorMode::Start).count(), 2);
    }

    #[test]
    fn version_keys_sort_by_key_then_revision() {
        let keys: Vec<&[u8]> =
            vec![b"", b"\0", b"\0\0", b"\0\x01", b"a", b"a\0", b"a\0b", b"a\x01", b"ab", b"\xff\xff"];
        let mut encoded = Vec::new();
        for k in &keys {
            for r in [u64::MAX, 300, 2, 1, 0] {
                encoded.push((version_key(k, r), k.to_vec(), r));
            }
        }
        let mut sorted = encoded.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(sorted, encoded, "byte order of the encoding is key order, then newest first");
        for (raw, key, revision) in &encoded {
            let (prefix, r) = split_version_key(raw).unwrap();
            assert_eq!((unescape(prefix).unwrap(), r), (key.clone(), *revision));
        }
        // Past every version of a key, before the next key's first.
        for pair in keys.windows(2) {
            let mut next = key_prefix(pair[0]);
            next.extend_from_slice(&[0xff; 9]);
            assert!(next > version_key(pair[0], 0) && next < version_key(pair[1], u64::MAX), "{pair:?}");
        }
    }

    #[test]
    fn read_at_names_a_revision_or_a_snapshot_not_both() {
        assert_eq!(ReadAt::of(0, ""), Ok(ReadAt::Head));
        assert_eq!(ReadAt::of(7, ""), Ok(ReadAt::Revision(7)));
        assert_eq!(ReadAt::of(0, "s"), Ok(ReadAt::Snapshot("s".into())));
        assert!(ReadAt::of(7, "s").is_err());
    }
}
