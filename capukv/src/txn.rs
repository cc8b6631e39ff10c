//! Building transactions: one constructor per operation and compare, and
//! the text form `capukv txn` reads (from arguments or a JSON file):
//!
//! - a compare is `TARGET OP OPERAND`: the target `KEY` (its value),
//!   `value(KEY)`, `mod(KEY)`, `create(KEY)` or `version(KEY)`; the
//!   comparison `=`, `!=`, `<` or `>`; the operand a value (for a key's
//!   value) or a number. `absent(KEY)` says the key does not exist
//!   (`create(KEY) = 0`, as in etcd).
//! - an operation is `put KEY VALUE`, `append KEY VALUE`, `get KEY`,
//!   `del KEY`, `range START [END [LIMIT]]` or `delrange START [END]`
//!   (`END` empty or absent: to the end of the keys).
//!
//! The JSON file is `{"if": [...], "then": [...], "else": [...]}` of the
//! same texts.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::proto::{self, compare, txn_op, txn_op_response};

pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> proto::TxnOp {
    let put = proto::PutRequest { key: key.into(), value: value.into(), id: None, omit_previous: true };
    proto::TxnOp { op: Some(txn_op::Op::Put(put)) }
}

pub fn append(key: impl Into<Bytes>, suffix: impl Into<Bytes>) -> proto::TxnOp {
    let append = proto::AppendRequest { key: key.into(), suffix: suffix.into(), id: None };
    proto::TxnOp { op: Some(txn_op::Op::Append(append)) }
}

pub fn get(key: impl Into<Bytes>) -> proto::TxnOp {
    proto::TxnOp { op: Some(txn_op::Op::Get(proto::GetRequest { key: key.into(), ..Default::default() })) }
}

pub fn delete(key: impl Into<Bytes>) -> proto::TxnOp {
    proto::TxnOp { op: Some(txn_op::Op::Delete(proto::DeleteRequest { key: key.into(), id: None })) }
}

pub fn range(start: impl Into<Bytes>, end: impl Into<Bytes>, limit: u64) -> proto::TxnOp {
    let range = proto::ScanRequest { start: start.into(), end: end.into(), limit, ..Default::default() };
    proto::TxnOp { op: Some(txn_op::Op::Range(range)) }
}

pub fn delete_range(start: impl Into<Bytes>, end: impl Into<Bytes>) -> proto::TxnOp {
    let d = proto::DeleteRangeRequest { start: start.into(), end: end.into(), id: None };
    proto::TxnOp { op: Some(txn_op::Op::DeleteRange(d)) }
}

/// A compare of a number the key's record holds (an absent key's are 0).
pub fn compare_number(key: impl Into<Bytes>, target: compare::Target, op: compare::Op, n: u64) -> proto::Compare {
    proto::Compare { key: key.into(), target: target as i32, op: op as i32, against: Some(compare::Against::Number(n)) }
}

/// A compare of the key's value (false on an absent key, whatever `op`).
pub fn compare_value(key: impl Into<Bytes>, op: compare::Op, value: impl Into<Bytes>) -> proto::Compare {
    proto::Compare {
        key: key.into(),
        target: compare::Target::Value as i32,
        op: op as i32,
        against: Some(compare::Against::Value(value.into())),
    }
}

/// The key does not exist.
pub fn absent(key: impl Into<Bytes>) -> proto::Compare {
    compare_number(key, compare::Target::CreateRevision, compare::Op::Equal, 0)
}

/// The key has not changed after revision `since` (an absent key has not).
pub fn unchanged_since(key: impl Into<Bytes>, since: u64) -> proto::Compare {
    compare_number(key, compare::Target::ModRevision, compare::Op::Less, since.saturating_add(1))
}

/// The pair a `get` in a transaction found.
pub fn got(r: proto::TxnOpResponse) -> Option<proto::KeyValue> {
    match r.result {
        Some(txn_op_response::Result::Get(g)) => g.kv,
        _ => None,
    }
}

/// Whether a `del` in a transaction found its key.
pub fn deleted_one(r: &proto::TxnOpResponse) -> bool {
    matches!(&r.result, Some(txn_op_response::Result::Delete(d)) if d.previous.is_some())
}

/// Reads a compare's text form (see the module docs).
pub fn parse_compare(text: &str) -> Result<proto::Compare, String> {
    let bad = |why: &str| format!("compare {text:?}: {why} (e.g. `k = v`, `mod(k) < 7`, `absent(k)`)");
    let text = text.trim();
    if let Some(key) = text.strip_prefix("absent(").and_then(|t| t.strip_suffix(')')) {
        return Ok(absent(key.to_string()));
    }
    let mut words = text.splitn(3, ' ').filter(|w| !w.is_empty());
    let (Some(target), Some(op), Some(operand)) = (words.next(), words.next(), words.next()) else {
        return Err(bad("needs a target, a comparison and an operand"));
    };
    let op = match op {
        "=" | "==" => compare::Op::Equal,
        "!=" => compare::Op::NotEqual,
        "<" => compare::Op::Less,
        ">" => compare::Op::Greater,
        other => return Err(bad(&format!("unknown comparison {other:?}"))),
    };
    let of = |name: &str| target.strip_prefix(name).and_then(|t| t.strip_prefix('(')).and_then(|t| t.strip_suffix(')'));
    let numbered = [
        ("mod", compare::Target::ModRevision),
        ("create", compare::Target::CreateRevision),
        ("version", compare::Target::Version),
    ];
    for (name, target) in numbered {
        if let Some(key) = of(name) {
            let n = operand.parse().map_err(|_| bad(&format!("{operand:?} is not a number")))?;
            return Ok(compare_number(key.to_string(), target, op, n));
        }
    }
    let key = of("value").unwrap_or(target);
    Ok(compare_value(key.to_string(), op, operand.to_string()))
}

/// Reads an operation's text form (see the module docs).
pub fn parse_op(text: &str) -> Result<proto::TxnOp, String> {
    let bad = |why: &str| {
        format!("operation {text:?}: {why} (put K V, append K V, get K, del K, range S [E [N]], delrange S [E])")
    };
    let mut words = text.trim().splitn(3, ' ');
    let verb = words.next().unwrap_or_default();
    let rest: Vec<String> = words.map(str::to_string).collect();
    match (verb, rest.as_slice()) {
        ("put", [k, v]) => Ok(put(k.clone(), v.clone())),
        ("append", [k, v]) => Ok(append(k.clone(), v.clone())),
        ("get", [k]) => Ok(get(k.clone())),
        ("del", [k]) => Ok(delete(k.clone())),
        ("range" | "delrange", _) => {
            let all: Vec<&str> = rest.iter().flat_map(|r| r.split(' ')).filter(|w| !w.is_empty()).collect();
            let (start, end) = match all.as_slice() {
                [s] => (s.to_string(), String::new()),
                [s, e] | [s, e, _] => (s.to_string(), e.to_string()),
                _ => return Err(bad("needs a start key")),
            };
            if verb == "delrange" {
                return if all.len() <= 2 { Ok(delete_range(start, end)) } else { Err(bad("delrange takes no limit")) };
            }
            let limit = match all.get(2) {
                Some(n) => n.parse().map_err(|_| bad(&format!("{n:?} is not a number")))?,
                None => 0,
            };
            Ok(range(start, end, limit))
        }
        _ => Err(bad("unknown verb or wrong number of words")),
    }
}

/// A transaction from its text parts.
pub fn parse(compares: &[String], success: &[String], failure: &[String]) -> Result<proto::TxnRequest, String> {
    Ok(proto::TxnRequest {
        compares: compares.iter().map(|c| parse_compare(c)).collect::<Result<_, _>>()?,
        success: success.iter().map(|o| parse_op(o)).collect::<Result<_, _>>()?,
        failure: failure.iter().map(|o| parse_op(o)).collect::<Result<_, _>>()?,
        ..Default::default()
    })
}

/// A transaction from its JSON form, `{"if": [...], "then": [...], "else": [...]}`.
pub fn parse_json(text: &str) -> Result<proto::TxnRequest, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Spec {
        #[serde(default, rename = "if")]
        compares: Vec<String>,
        #[serde(default, rename = "then")]
        success: Vec<String>,
        #[serde(default, rename = "else")]
        failure: Vec<String>,
    }
    let spec: Spec = serde_json::from_str(text).map_err(|e| format!("not a transaction: {e}"))?;
    parse(&spec.compares, &spec.success, &spec.failure)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn pair(kv: &Option<proto::KeyValue>) -> Value {
    match kv {
        None => Value::Null,
        Some(kv) => json!({
            "key": text(&kv.key), "value": text(&kv.value), "create_revision": kv.create_revision,
            "mod_revision": kv.mod_revision, "version": kv.version,
        }),
    }
}

/// The answer as JSON, one object per operation, for `capukv txn`.
pub fn response_json(r: &proto::TxnResponse) -> Value {
    use txn_op_response::Result as T;
    let answers: Vec<Value> = r
        .responses
        .iter()
        .map(|a| match &a.result {
            Some(T::Put(p)) => json!({"put": {"revision": p.revision}}),
            Some(T::Append(p)) => json!({"append": pair(&p.kv)}),
            Some(T::Get(g)) => json!({"get": pair(&g.kv)}),
            Some(T::Delete(d)) => json!({"del": {"previous": pair(&d.previous)}}),
            Some(T::DeleteRange(d)) => json!({"delrange": {"deleted": d.deleted}}),
            Some(T::Range(s)) => {
                let kvs: Vec<Value> = s.kvs.iter().map(|kv| pair(&Some(kv.clone()))).collect();
                json!({"range": {"kvs": kvs, "more": s.more}})
            }
            None => Value::Null,
        })
        .collect();
    json!({"succeeded": r.succeeded, "revision": r.revision, "responses": answers})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_become_compares_and_operations() {
        let c = parse_compare("mod(k1) < 7").unwrap();
        assert_eq!((c.target, c.op, c.against), (1, 2, Some(compare::Against::Number(7))));
        let c = parse_compare("k2 != hello world").unwrap();
        assert_eq!(c.key, "k2");
        assert_eq!(c.against, Some(compare::Against::Value(Bytes::from("hello world"))));
        assert_eq!(parse_compare("absent(k3)").unwrap(), absent("k3"));
        assert!(parse_compare("mod(k) < seven").unwrap_err().contains("not a number"));
        assert!(parse_compare("k ~ v").unwrap_err().contains("unknown comparison"));
        assert_eq!(parse_op("put k a b").unwrap(), put("k", "a b"));
        assert_eq!(parse_op("range a z 5").unwrap(), range("a", "z", 5));
        assert_eq!(parse_op("range a").unwrap(), range("a", "", 0));
        assert!(parse_op("get").is_err() && parse_op("frob k").is_err() && parse_op("delrange a b 3").is_err());
        let t = parse_json(r#"{"if": ["absent(x)"], "then": ["put x 1"], "else": ["get x"]}"#).unwrap();
        assert_eq!((t.compares.len(), t.success.len(), t.failure.len()), (1, 1, 1));
        assert!(parse_json(r#"{"when": []}"#).unwrap_err().contains("unknown field"));
    }
}
