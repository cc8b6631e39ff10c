//! Transactions (etcd's `Txn`): compares on keys' current records, then one
//! branch of operations, run in order, each seeing the ones before it, as
//! one replicated command. So a transaction is atomic and isolated by
//! construction: the log orders it whole against every other command.
//!
//! Every change it makes carries one revision (the store's plus one), as in
//! etcd, so that "the state at revision r" never shows half a transaction.
//! A branch that refuses (an append past the value bound) undoes what the
//! branch did before it: a transaction applies whole or not at all.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use rocksdb::{Direction, IteratorMode};

use super::{ApplyError, Batch, ReadAt, ReadError, Record};
use crate::proto::{self, command, command_response, compare, txn_op, txn_op_response};
use crate::raft::Index;
use crate::storage::{CF_KV, StorageError};

/// Compares, and operations per branch, a transaction may hold (etcd's
/// default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;
/// The largest transaction, encoded (etcd's default request bound).
pub const MAX_TXN_BYTES: usize = 3 << 19;

/// A transaction being applied: its revision, and each key's overlay entry
/// from before its first change (to undo; empty: it changed nothing yet).
pub(super) struct Running {
    pub revision: u64,
    pub undo: HashMap<Bytes, Option<Option<Record>>>,
}

/// Why a key is refused: empty, or over `max` bytes. The one wording for a
/// single operation's key and a transaction's.
pub(crate) fn check_key(key: &[u8], max: usize) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    check_size("key", key, max)
}

/// Why a key or value (`what`) is refused: over `limit` bytes.
pub(crate) fn check_size(what: &str, bytes: &[u8], limit: usize) -> Result<(), String> {
    if bytes.len() > limit {
        return Err(format!("the {what} is {} bytes; the limit is {limit} bytes", bytes.len()));
    }
    Ok(())
}

/// Why a transaction is malformed, checked before it is proposed (the state
/// machine never sees one that fails here from the API).
pub fn validate_txn(t: &proto::TxnRequest, max_key: usize, max_value: usize) -> Result<(), String> {
    use prost::Message as _;
    if t.encoded_len() > MAX_TXN_BYTES {
        return Err(format!("the transaction is {} bytes; the limit is {MAX_TXN_BYTES} bytes", t.encoded_len()));
    }
    for (what, n) in [
        ("compares", t.compares.len()),
        ("success operations", t.success.len()),
        ("failure operations", t.failure.len()),
    ] {
        if n > MAX_TXN_OPS {
            return Err(format!("the transaction has {n} {what}; the limit is {MAX_TXN_OPS}"));
        }
    }
    let key = |k: &[u8], at: &str| check_key(k, max_key).map_err(|e| format!("{at}: {e}"));
    let value = |v: &[u8], at: &str| check_size("value", v, max_value).map_err(|e| format!("{at}: {e}"));
    for (i, c) in t.compares.iter().enumerate() {
        let at = format!("compare {i}");
        key(&c.key, &at)?;
        let target = compare::Target::try_from(c.target).map_err(|_| format!("{at}: unknown target {}", c.target))?;
        compare::Op::try_from(c.op).map_err(|_| format!("{at}: unknown comparison {}", c.op))?;
        match (&c.against, target) {
            (Some(compare::Against::Value(v)), compare::Target::Value) => value(v, &at)?,
            (Some(compare::Against::Number(_)), t) if t != compare::Target::Value => {}
            (_, compare::Target::Value) => return Err(format!("{at}: a VALUE compare needs a value")),
            _ => return Err(format!("{at}: a {} compare needs a number", target.as_str_name())),
        }
    }
    if ReadAt::of(t.revision, &t.snapshot)? != ReadAt::Head && !reads_only(t) {
        return Err("only a transaction of reads may read at a past revision or a snapshot".into());
    }
    let read_at_given = |revision: u64, snapshot: &str, at: &str| -> Result<(), String> {
        if revision != 0 || !snapshot.is_empty() {
            return Err(format!(
                "{at}: an operation in a transaction reads where the transaction does (give the revision or snapshot on the transaction)"
            ));
        }
        Ok(())
    };
    for (branch, ops) in [("success", &t.success), ("failure", &t.failure)] {
        for (i, op) in ops.iter().enumerate() {
            let at = format!("{branch} operation {i}");
            let id_given = |id: &Option<proto::WriteId>| -> Result<(), String> {
                match id {
                    Some(_) => Err(format!(
                        "{at}: an operation in a transaction carries no write id (give it on the transaction)"
                    )),
                    None => Ok(()),
                }
            };
            match &op.op {
                None => return Err(format!("{at}: no operation")),
                Some(txn_op::Op::Put(p)) => {
                    key(&p.key, &at)?;
                    value(&p.value, &at)?;
                    id_given(&p.id)?;
                }
                Some(txn_op::Op::Delete(d)) => {
                    key(&d.key, &at)?;
                    id_given(&d.id)?;
                }
                Some(txn_op::Op::DeleteRange(d)) => id_given(&d.id)?,
                Some(txn_op::Op::Get(g)) => {
                    key(&g.key, &at)?;
                    read_at_given(g.revision, &g.snapshot, &at)?;
                }
                Some(txn_op::Op::Range(r)) => read_at_given(r.revision, &r.snapshot, &at)?,
                Some(txn_op::Op::Append(a)) => {
                    key(&a.key, &at)?;
                    value(&a.suffix, &at)?;
                    id_given(&a.id)?;
                }
            }
        }
    }
    Ok(())
}

/// Whether a transaction only reads (gets and ranges in both branches):
/// then it is served from one point-in-time view after a ReadIndex round,
/// as etcd serves one, without a log entry.
pub fn reads_only(t: &proto::TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| matches!(op.op, Some(txn_op::Op::Get(_) | txn_op::Op::Range(_))))
}

/// A [`reads_only`] transaction on one point-in-time view of the state
/// machine: every compare and read at the same revision, the current one or
/// the past one the request names.
pub fn read_txn(storage: &crate::storage::Storage, t: &proto::TxnRequest) -> Result<proto::TxnResponse, ReadError> {
    use txn_op_response::Result as T;
    let at = ReadAt::of(t.revision, &t.snapshot).map_err(ReadError::Invalid)?;
    let view = storage.db.snapshot();
    let revision = super::revision_at(storage, &view)?;
    let point = super::mvcc::resolve(storage, &view, &at, revision)?;
    let mut succeeded = true;
    for c in &t.compares {
        if !holds(c, super::record_in(storage, &view, &c.key, point)?.as_ref()) {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { &t.success } else { &t.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let result = match &op.op {
            Some(txn_op::Op::Get(g)) => {
                let kv = super::record_in(storage, &view, &g.key, point)?.map(|r| r.to_kv(&g.key));
                T::Get(proto::GetResponse { kv, revision })
            }
            Some(txn_op::Op::Range(r)) => {
                let (kvs, more) = super::scan_in(storage, &view, (&r.start, &r.end), r.limit, point)?;
                T::Range(proto::ScanResponse { kvs, more, revision })
            }
            _ => unreachable!("callers serve only transactions that pass reads_only"),
        };
        responses.push(proto::TxnOpResponse { result: Some(result) });
    }
    Ok(proto::TxnResponse { succeeded, responses, revision })
}

/// Whether compare `c` holds for the key's record (`None`: absent).
fn holds(c: &proto::Compare, record: Option<&Record>) -> bool {
    use std::cmp::Ordering;
    let ordering = match (compare::Target::try_from(c.target), &c.against) {
        (Ok(compare::Target::Value), Some(compare::Against::Value(v))) => match record {
            // An absent key has no value to compare.
            None => return false,
            Some(r) => r.value[..].cmp(&v[..]),
        },
        (Ok(target), Some(compare::Against::Number(n))) if target != compare::Target::Value => {
            let mine = record.map_or(0, |r| match target {
                compare::Target::ModRevision => r.mod_revision,
                compare::Target::CreateRevision => r.create_revision,
                compare::Target::Version => r.version,
                compare::Target::Value => unreachable!("guarded"),
            });
            mine.cmp(n)
        }
        // Malformed (the API refuses these): holds for no record.
        _ => return false,
    };
    match compare::Op::try_from(c.op) {
        Ok(compare::Op::Equal) => ordering == Ordering::Equal,
        Ok(compare::Op::NotEqual) => ordering != Ordering::Equal,
        Ok(compare::Op::Less) => ordering == Ordering::Less,
        Ok(compare::Op::Greater) => ordering == Ordering::Greater,
        Err(_) => false,
    }
}

impl Batch<'_> {
    /// Applies transaction `t`, the command of the entry at `index`.
    pub(super) fn txn(
        &mut self,
        t: proto::TxnRequest,
        index: Index,
    ) -> Result<Result<proto::TxnResponse, ApplyError>, StorageError> {
        let mut succeeded = true;
        for c in &t.compares {
            if !holds(c, self.read(&c.key)?.as_ref()) {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { t.success } else { t.failure };
        self.txn = Some(Running { revision: self.sm.revision + 1, undo: HashMap::new() });
        let mut responses = Vec::with_capacity(ops.len());
        let mut refused = None;
        for op in ops {
            match self.txn_op(op, index) {
                Ok(Ok(r)) => responses.push(r),
                Ok(Err(e)) => {
                    refused = Some(e);
                    break;
                }
                Err(e) => {
                    self.txn = None;
                    return Err(e);
                }
            }
        }
        let running = self.txn.take().expect("set above");
        if let Some(refused) = refused {
            for key in running.undo.keys() {
                self.versions.remove(&super::mvcc::version_key(key, running.revision));
            }
            for (key, before) in running.undo {
                match before {
                    Some(record) => self.overlay.insert(key, record),
                    None => self.overlay.remove(&key),
                };
            }
            return Ok(Err(refused));
        }
        if !running.undo.is_empty() {
            self.sm.revision = running.revision;
        }
        let revision = self.sm.revision;
        for r in &mut responses {
            set_revision(r, revision);
        }
        Ok(Ok(proto::TxnResponse { succeeded, responses, revision }))
    }

    fn txn_op(&mut self, op: proto::TxnOp, index: Index) -> Result<OpResult, StorageError> {
        use txn_op_response::Result as T;
        let single = match op.op {
            None => return Ok(Err(ApplyError::BadCommand("a transaction operation is empty".into()))),
            Some(txn_op::Op::Get(g)) => {
                let kv = self.read(&g.key)?.map(|r| r.to_kv(&g.key));
                return Ok(Ok(proto::TxnOpResponse { result: Some(T::Get(proto::GetResponse { kv, revision: 0 })) }));
            }
            Some(txn_op::Op::Range(r)) => {
                let (kvs, more) = self.range(&r.start, &r.end, r.limit)?;
                let range = proto::ScanResponse { kvs, more, revision: 0 };
                return Ok(Ok(proto::TxnOpResponse { result: Some(T::Range(range)) }));
            }
            Some(txn_op::Op::Put(p)) => command::Op::Put(p),
            Some(txn_op::Op::Delete(d)) => command::Op::Delete(d),
            Some(txn_op::Op::DeleteRange(d)) => command::Op::DeleteRange(d),
            Some(txn_op::Op::Append(a)) => command::Op::Append(a),
        };
        use command_response::Result as R;
        let result = match self.execute(single, index)? {
            Err(e) => return Ok(Err(e)),
            Ok(proto::CommandResponse { result: Some(R::Put(r)) }) => T::Put(r),
            Ok(proto::CommandResponse { result: Some(R::Delete(r)) }) => T::Delete(r),
            Ok(proto::CommandResponse { result: Some(R::DeleteRange(r)) }) => T::DeleteRange(r),
            Ok(proto::CommandResponse { result: Some(R::Append(r)) }) => T::Append(r),
            Ok(_) => unreachable!("a single write answers with its own kind"),
        };
        Ok(Ok(proto::TxnOpResponse { result: Some(result) }))
    }

    /// Keys in `[start, end)` as this batch left them, at most `limit` (0:
    /// no limit), and whether more remain.
    fn range(&self, start: &[u8], end: &[u8], limit: u64) -> Result<(Vec<proto::KeyValue>, bool), StorageError> {
        let in_range = |k: &[u8]| k >= start && (end.is_empty() || k < end);
        let mut overlay: BTreeMap<&[u8], &Option<Record>> =
            self.overlay.iter().filter(|(k, _)| in_range(k)).map(|(k, r)| (&k[..], r)).collect();
        let storage = &self.sm.storage;
        let mut kvs = Vec::new();
        let mut more = false;
        let full = |kvs: &Vec<proto::KeyValue>| limit > 0 && kvs.len() as u64 == limit;
        'scan: for item in storage.db.iterator_cf(storage.cf(CF_KV), IteratorMode::From(start, Direction::Forward)) {
            let (k, v) = item.map_err(|e| storage.corrupt(e.to_string()))?;
            if !in_range(&k) {
                break;
            }
            // Keys only this batch wrote, before this one.
            while let Some((&first, _)) = overlay.first_key_value() {
                if first >= &k[..] {
                    break;
                }
                let (first, r) = overlay.pop_first().expect("non-empty");
                if let Some(r) = r {
                    if full(&kvs) {
                        more = true;
                        break 'scan;
                    }
                    kvs.push(r.to_kv(first));
                }
            }
            let record = match overlay.remove(&k[..]) {
                Some(Some(r)) => r.clone(),
                Some(None) => continue,
                None => Record::decode(&v).ok_or_else(|| storage.corrupt("a record is truncated"))?,
            };
            if full(&kvs) {
                more = true;
                break;
            }
            kvs.push(record.to_kv(&k));
        }
        if !more {
            for (k, r) in overlay {
                if let Some(r) = r {
                    if full(&kvs) {
                        more = true;
                        break;
                    }
                    kvs.push(r.to_kv(k));
                }
            }
        }
        Ok((kvs, more))
    }
}

type OpResult = Result<proto::TxnOpResponse, ApplyError>;

/// Every answer inside a transaction names the revision after it.
fn set_revision(r: &mut proto::TxnOpResponse, revision: u64) {
    use txn_op_response::Result as T;
    match &mut r.result {
        Some(T::Put(x)) => x.revision = revision,
        Some(T::Delete(x)) => x.revision = revision,
        Some(T::DeleteRange(x)) => x.revision = revision,
        Some(T::Get(x)) => x.revision = revision,
        Some(T::Range(x)) => x.revision = revision,
        Some(T::Append(x)) => x.revision = revision,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Fixture, append, value_of};
    use super::*;
    use crate::txn as build;

    fn txn(compares: Vec<proto::Compare>, success: Vec<proto::TxnOp>, failure: Vec<proto::TxnOp>) -> command::Op {
        command::Op::Txn(proto::TxnRequest { compares, success, failure, ..Default::default() })
    }

    fn answer(r: super::super::CommandResult) -> proto::TxnResponse {
        match r.expect("applied").result {
            Some(command_response::Result::Txn(t)) => t,
            other => panic!("not a transaction's answer: {other:?}"),
        }
    }

    fn got(r: &proto::TxnOpResponse) -> Option<String> {
        build::got(r.clone()).map(|kv| String::from_utf8(kv.value.to_vec()).unwrap())
    }

    #[test]
    fn a_transaction_runs_one_branch_in_order_at_one_revision() {
        let mut f = Fixture::new("txn-branch");
        let s = f.open_session();
        f.apply(s, 1, append("a", "1,")).unwrap();
        let before = f.sm().revision();
        let ok = answer(f.apply(
            s,
            2,
            txn(
                vec![build::compare_value("a", compare::Op::Equal, "1,"), build::absent("b")],
                vec![
                    build::append("a", "2,"),
                    build::get("a"),
                    build::put("b", "x"),
                    build::put("b", "y"),
                    build::get("b"),
                ],
                vec![build::get("a")],
            ),
        ));
        assert!(ok.succeeded);
        assert_eq!(ok.revision, before + 1, "every change of a transaction carries one revision");
        assert_eq!(ok.responses.len(), 5);
        assert_eq!(got(&ok.responses[1]).as_deref(), Some("1,2,"), "a read sees the writes before it");
        assert_eq!(got(&ok.responses[4]).as_deref(), Some("y"));
        let b = build::got(ok.responses[4].clone()).unwrap();
        assert_eq!((b.create_revision, b.mod_revision, b.version), (before + 1, before + 1, 2));
        assert!(ok.responses.iter().all(|r| match &r.result {
            Some(txn_op_response::Result::Get(g)) => g.revision == before + 1,
            Some(txn_op_response::Result::Put(p)) => p.revision == before + 1,
            Some(txn_op_response::Result::Append(a)) => a.revision == before + 1,
            _ => false,
        }));

        // A retry gets the first answer and applies nothing again.
        let again = answer(f.apply(s, 2, txn(vec![], vec![build::append("a", "9,")], vec![])));
        assert_eq!(again, ok);
        assert_eq!(value_of(&f, "a").unwrap(), "1,2,");

        // The compares fail now: the other branch runs and changes nothing.
        let no =
            answer(f.apply(s, 3, txn(vec![build::absent("b")], vec![build::put("c", "1")], vec![build::get("a")])));
        assert!(!no.succeeded);
        assert_eq!(no.revision, before + 1, "a transaction that changes nothing leaves the revision");
        assert_eq!(got(&no.responses[0]).as_deref(), Some("1,2,"));
        assert_eq!(value_of(&f, "c"), None);
    }

    #[test]
    fn compares_follow_etcd_on_present_and_absent_keys() {
        let mut f = Fixture::new("txn-compares");
        f.apply(0, 0, txn(vec![], vec![build::put("k", "m")], vec![])).unwrap();
        let rev = f.sm().revision();
        let holds = |f: &mut Fixture, c: proto::Compare| answer(f.apply(0, 0, txn(vec![c], vec![], vec![]))).succeeded;
        use compare::{Op::*, Target::*};
        let cases = [
            (build::compare_value("k", Equal, "m"), true),
            (build::compare_value("k", Less, "n"), true),
            (build::compare_value("k", Greater, "n"), false),
            (build::compare_value("k", NotEqual, "m"), false),
            // No value on an absent key: every value comparison is false.
            (build::compare_value("none", NotEqual, "m"), false),
            (build::compare_value("none", Less, "m"), false),
            (build::compare_number("k", ModRevision, Equal, rev), true),
            (build::compare_number("k", CreateRevision, Less, rev + 1), true),
            (build::compare_number("k", Version, Greater, 1), false),
            (build::compare_number("none", Version, Equal, 0), true),
            (build::absent("none"), true),
            (build::absent("k"), false),
            (build::unchanged_since("k", rev), true),
            (build::unchanged_since("k", rev - 1), false),
        ];
        for (c, expected) in cases {
            assert_eq!(holds(&mut f, c.clone()), expected, "{c:?}");
        }
    }

    #[test]
    fn a_refused_operation_undoes_its_whole_transaction() {
        let mut f = Fixture::new("txn-undo");
        let s = f.open_session();
        let big = "x".repeat(super::super::MAX_APPENDED_VALUE_BYTES);
        f.apply(s, 1, append("big", &big)).unwrap();
        f.apply(s, 2, append("d", "x")).unwrap();
        let rev = f.sm().revision();
        // In one batch: a write before, the refused transaction, a write after.
        let results = f.apply_all(vec![
            (s, 3, append("a", "1,")),
            (
                s,
                4,
                txn(
                    vec![],
                    vec![build::append("a", "2,"), build::delete("d"), build::put("n", "1"), build::append("big", "!")],
                    vec![],
                ),
            ),
            (s, 5, append("a", "3,")),
        ]);
        assert!(matches!(results[1], Err(ApplyError::ValueTooLarge { .. })), "refused: {}", results[1].is_err());
        assert_eq!(value_of(&f, "a").unwrap(), "1,3,", "the transaction's append is undone, the neighbours kept");
        assert_eq!(value_of(&f, "d").unwrap(), "x", "its delete is undone");
        assert_eq!(value_of(&f, "big").unwrap().len(), big.len());
        assert_eq!(value_of(&f, "n"), None);
        assert_eq!(f.sm().revision(), rev + 2, "only the two neighbours took revisions");
    }

    #[test]
    fn a_range_in_a_transaction_sees_the_batch_and_its_own_writes() {
        let mut f = Fixture::new("txn-range");
        f.apply_all(vec![(
            0,
            0,
            txn(vec![], vec![build::put("a", "1"), build::put("c", "3"), build::put("e", "5")], vec![]),
        )]);
        let keys = |r: &proto::TxnOpResponse| match &r.result {
            Some(txn_op_response::Result::Range(s)) => {
                (s.kvs.iter().map(|kv| String::from_utf8(kv.key.to_vec()).unwrap()).collect::<Vec<_>>(), s.more)
            }
            other => panic!("{other:?}"),
        };
        let results = f.apply_all(vec![
            (0, 0, txn(vec![], vec![build::put("b", "2"), build::delete("c")], vec![])),
            (
                0,
                0,
                txn(
                    vec![],
                    vec![
                        build::put("d", "4"),
                        build::range("a", "", 0),
                        build::range("b", "e", 0),
                        build::range("a", "", 2),
                        build::delete_range("a", "c"),
                        build::range("", "", 0),
                    ],
                    vec![],
                ),
            ),
        ]);
        let r = answer(results[1].clone());
        assert_eq!(keys(&r.responses[1]), (vec!["a".into(), "b".into(), "d".into(), "e".into()], false));
        assert_eq!(keys(&r.responses[2]), (vec!["b".into(), "d".into()], false));
        assert_eq!(keys(&r.responses[3]), (vec!["a".into(), "b".into()], true));
        assert_eq!(keys(&r.responses[5]), (vec!["d".into(), "e".into()], false));
    }

    #[test]
    fn a_transaction_of_reads_is_served_from_one_view_without_the_log() {
        let mut f = Fixture::new("txn-read");
        f.apply(0, 0, txn(vec![], vec![build::put("a", "1"), build::put("b", "2")], vec![])).unwrap();
        let rev = f.sm().revision();
        let applied = f.sm().applied();
        let t = proto::TxnRequest {
            compares: vec![build::compare_value("a", compare::Op::Equal, "1")],
            success: vec![build::get("b"), build::range("a", "", 0), build::get("none")],
            failure: vec![build::get("a")],
            ..Default::default()
        };
        assert!(reads_only(&t));
        assert!(!reads_only(&proto::TxnRequest { failure: vec![build::put("x", "y")], ..t.clone() }));
        let r = read_txn(f.storage.as_ref().unwrap(), &t).unwrap();
        assert!(r.succeeded);
        assert_eq!(r.revision, rev);
        assert_eq!(got(&r.responses[0]).as_deref(), Some("2"));
        assert!(
            matches!(&r.responses[1].result, Some(txn_op_response::Result::Range(s)) if s.kvs.len() == 2 && s.revision == rev)
        );
        assert_eq!(got(&r.responses[2]), None);
        assert_eq!(f.sm().applied(), applied, "nothing was applied");
        let no = proto::TxnRequest { compares: vec![build::absent("a")], ..t };
        let r = read_txn(f.storage.as_ref().unwrap(), &no).unwrap();
        assert!(!r.succeeded);
        assert_eq!(got(&r.responses[0]).as_deref(), Some("1"));
    }

    #[test]
    fn malformed_transactions_are_refused_before_they_are_proposed() {
        let ok = proto::TxnRequest { success: vec![build::put("k", "v")], ..Default::default() };
        assert_eq!(validate_txn(&ok, 16, 16), Ok(()));
        let too_many = proto::TxnRequest { success: vec![build::get("k"); MAX_TXN_OPS + 1], ..Default::default() };
        assert!(validate_txn(&too_many, 16, 16).unwrap_err().contains("129 success operations"));
        let huge = proto::TxnRequest { success: vec![build::put("k", vec![0u8; 1 << 20]); 2], ..Default::default() };
        assert!(validate_txn(&huge, 16, 2 << 20).unwrap_err().contains("limit is 1572864 bytes"));
        let mut with_id = build::put("k", "v");
        if let Some(txn_op::Op::Put(p)) = &mut with_id.op {
            p.id = Some(proto::WriteId { client_id: 1, seq: 1 });
        }
        let t = proto::TxnRequest { failure: vec![with_id], ..Default::default() };
        assert!(
            validate_txn(&t, 16, 16)
                .unwrap_err()
                .contains("failure operation 0: an operation in a transaction carries no write id")
        );
        let t = proto::TxnRequest { success: vec![build::get("")], ..Default::default() };
        assert!(validate_txn(&t, 16, 16).unwrap_err().contains("the key is empty"));
        let mut c = build::absent("k");
        c.against = Some(compare::Against::Value(Bytes::from("0")));
        let t = proto::TxnRequest { compares: vec![c], ..Default::default() };
        assert!(validate_txn(&t, 16, 16).unwrap_err().contains("needs a number"));
        let t = proto::TxnRequest { success: vec![proto::TxnOp { op: None }], ..Default::default() };
        assert!(validate_txn(&t, 16, 16).unwrap_err().contains("no operation"));
    }
}
