//! Append-only keys decided without a search: Elle's list-append inference,
//! for one key at a time.
//!
//! It applies when every operation on the key is a read or an append, the
//! appended texts are distinct and none is a prefix of another (a prefix
//! code, as the workload's `N,` elements are), and the key starts absent.
//! Then every value a read can return spells, in exactly one way, the
//! appends that made it, in their order. So:
//!
//! 1. The longest read holds the order of every append any read saw; every
//!    other read must be a prefix of it, ending where one of its appends
//!    ends. A read that no sequence of appends spells, an append seen twice,
//!    or two reads neither of which is the other's prefix: not linearizable.
//! 2. Each operation then has its place in a chain of groups that must
//!    follow one another: the reads of the absent key, the append that made
//!    state 1, the reads of state 1, ..., the reads of the longest state, and
//!    last the acknowledged appends no read saw (each would be in every read
//!    linearized after it). Info appends no read saw may never have happened
//!    and are left out; info appends a read saw did happen and have no end.
//! 3. Whether points in real time can be chosen in that order is decided by
//!    placing each group's operations as early as their invocations and the
//!    group before allow: an earlier point never hurts a later group, so if
//!    this placement fails, every placement does. An operation that returned
//!    before the one it must follow was invoked is the contradiction shown.
//!
//! Time and memory linear in the size of the key's history, but for sorting
//! the appended texts once (and trying each distinct text length where a
//! read is spelled out). Anything else
//! (writes, cas, deletes, texts that repeat or share a prefix, an initial
//! value, a read of a value that is not text) is left to the search.

use std::collections::HashMap;

use crate::operation::{Input, Operation, Output};
use crate::value::Value;

/// What the inference says of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inference {
    Valid,
    /// Not linearizable: why, and the operation (its index in the key's
    /// operations) that has no place in any order.
    Invalid {
        why: String,
        op: usize,
    },
    /// The key is not of the shape the inference needs: search it.
    Undecided,
}

/// A completed read's result as text (`None` for the absent key), or
/// `Err` for a result the inference does not handle.
fn read_text(op: &Operation) -> Result<Option<&str>, ()> {
    match &op.output {
        Output::Read(None) => Ok(None),
        Output::Read(Some(Value::Str(s))) => Ok(Some(s.as_str())),
        _ => Err(()),
    }
}

fn describe(op: &Operation) -> String {
    format!("[{}]", op.describe())
}

fn text_len(op: &Operation) -> usize {
    match &op.input {
        Input::Append(text) => text.len(),
        _ => 0,
    }
}

/// Decides the key whose operations are `ops` (in the order of their ids),
/// starting from `initial`.
pub fn decide(ops: &[Operation], initial: &Option<Value>) -> Inference {
    if initial.is_some() {
        return Inference::Undecided;
    }
    let mut appends: HashMap<&str, usize> = HashMap::new();
    let mut reads: Vec<(usize, Option<&str>)> = Vec::new();
    // As in the search, an operation without a return may take effect at
    // any later time or never; one with a return happened within its span.
    for (i, op) in ops.iter().enumerate() {
        match &op.input {
            Input::Append(text) if !text.is_empty() => {
                let expected = if op.ret.is_some() { Output::Append } else { Output::Unknown };
                if op.output != expected || appends.insert(text.as_str(), i).is_some() {
                    return Inference::Undecided;
                }
            }
            // A read that may happen any time, seeing anything, constrains nothing.
            Input::Read if op.ret.is_none() => {}
            Input::Read => match read_text(op) {
                Ok(text) => reads.push((i, text)),
                Err(()) => return Inference::Undecided,
            },
            _ => return Inference::Undecided,
        }
    }
    // A prefix code: in sorted order, a text that is a prefix of another is
    // a prefix of the one right after it.
    let mut texts: Vec<&str> = appends.keys().copied().collect();
    texts.sort_unstable();
    if texts.windows(2).any(|w| w[1].starts_with(w[0])) {
        return Inference::Undecided;
    }
    let mut lengths: Vec<usize> = texts.iter().map(|t| t.len()).collect();
    lengths.sort_unstable();
    lengths.dedup();

    // 1. The order the longest read spells.
    let longest = reads.iter().filter_map(|&(i, text)| Some((i, text?))).max_by_key(|(_, text)| text.len());
    let (longest_op, longest) = longest.unwrap_or((usize::MAX, ""));
    let mut order: Vec<usize> = Vec::new(); // append ops, in the order the longest read holds them
    let mut ends: Vec<usize> = Vec::new(); // byte offset after each of them
    let mut seen = vec![false; ops.len()];
    let mut at = 0;
    while at < longest.len() {
        let found = lengths.iter().find_map(|&len| appends.get(longest.get(at..at + len)?).copied());
        let Some(append) = found else {
            let why = format!(
                "{} read {longest:?}, which no sequence of appends spells (nothing appended {:?})",
                describe(&ops[longest_op]),
                &longest[at..]
            );
            return Inference::Invalid { why, op: longest_op };
        };
        if std::mem::replace(&mut seen[append], true) {
            let why = format!(
                "{} read {longest:?}, which holds {} twice",
                describe(&ops[longest_op]),
                describe(&ops[append])
            );
            return Inference::Invalid { why, op: longest_op };
        }
        order.push(append);
        at += text_len(&ops[append]);
        ends.push(at);
    }

    // Each read's state: how many of `order` it holds.
    let mut state_of_read: Vec<(usize, usize)> = Vec::with_capacity(reads.len());
    for &(read, text) in &reads {
        let Some(text) = text else {
            state_of_read.push((0, read));
            continue;
        };
        let why = match (longest.starts_with(text), ends.binary_search(&text.len())) {
            (true, Ok(place)) => {
                state_of_read.push((place + 1, read));
                continue;
            }
            (true, Err(_)) if text.is_empty() => {
                format!("{} read the empty text, which no append leaves (the key starts absent)", describe(&ops[read]))
            }
            (true, Err(_)) => format!(
                "{} read {text:?}, which ends inside an append that {} read whole ({longest:?})",
                describe(&ops[read]),
                describe(&ops[longest_op])
            ),
            (false, _) => format!(
                "{} read {text:?} and {} read {longest:?}: appends only ever extend a value, so one must be a prefix of the other",
                describe(&ops[read]),
                describe(&ops[longest_op])
            ),
        };
        return Inference::Invalid { why, op: read };
    }
    state_of_read.sort_unstable();

    // 2 and 3. Groups in order, each placed as early as it can be.
    let mut groups: Vec<Vec<usize>> = Vec::with_capacity(2 * order.len() + 2);
    let mut reads_by_state = state_of_read.iter().peekable();
    for state in 0..=order.len() {
        if state > 0 {
            groups.push(vec![order[state - 1]]);
        }
        let mut group = Vec::new();
        while let Some(&&(s, read)) = reads_by_state.peek() {
            if s != state {
                break;
            }
            group.push(read);
            reads_by_state.next();
        }
        if !group.is_empty() {
            groups.push(group);
        }
    }
    let unseen: Vec<usize> =
        appends.values().copied().filter(|&a| !seen[a] && ops[a].output != Output::Unknown).collect();
    if !unseen.is_empty() {
        groups.push(unseen);
    }
    // A point "just after history position p"; every group's points come
    // after the latest point of the group before it.
    let mut floor: Option<(u64, usize)> = None;
    for group in &groups {
        let mut latest = floor;
        for &op in group {
            let point = match floor {
                Some((p, _)) if p > ops[op].call => p,
                _ => ops[op].call,
            };
            if ops[op].ret.is_some_and(|ret| ret <= point) {
                let (_, after) = floor.expect("an op's own call precedes its return");
                let why = format!(
                    "{} must come after {} ({}), but returned before that was invoked",
                    describe(&ops[op]),
                    describe(&ops[after]),
                    why_after(&ops[op], &ops[after], seen[op]),
                );
                return Inference::Invalid { why, op };
            }
            if latest.is_none_or(|(p, _)| point > p) {
                latest = Some((point, op));
            }
        }
        floor = latest;
    }
    Inference::Valid
}

/// Why `op` must follow `before` in the order the reads fix.
fn why_after(op: &Operation, before: &Operation, op_seen: bool) -> &'static str {
    match (&op.input, &before.input) {
        (Input::Read, Input::Append(_)) => "its read holds that append",
        (Input::Append(_), Input::Read) if op_seen => "that read lacks this append",
        (Input::Append(_), Input::Read) => "no read holds this acknowledged append",
        (Input::Append(_), Input::Append(_)) if op_seen => "the reads hold them in that order",
        (Input::Append(_), Input::Append(_)) => "no read holds this acknowledged append",
        _ => "the order the reads fix puts it later",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::History;
    use crate::operation::pair;

    /// One key's operations from compact lines: `TYPE PROCESS F [VALUE]`.
    fn ops(lines: &[&str]) -> Vec<Operation> {
        let mut text = String::new();
        for (i, line) in lines.iter().enumerate() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let value = parts.get(3).copied().unwrap_or("null");
            text += &format!(
                "{{\"index\":{i},\"type\":\"{}\",\"process\":{},\"f\":\"{}\",\"key\":\"k\",\"value\":{value},\"time\":{i}}}\n",
                parts[0], parts[1], parts[2]
            );
        }
        let history = History::read_jsonl(text.as_bytes(), "case").unwrap();
        pair(&history).unwrap().by_key.into_values().next().unwrap()
    }

    fn invalid(lines: &[&str]) -> String {
        match decide(&ops(lines), &None) {
            Inference::Invalid { why, .. } => why,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn reads_that_spell_one_order_real_time_can_follow_are_valid() {
        let h = [
            "invoke 1 append \"1,\"",
            "invoke 2 append \"2,\"",
            "invoke 3 read",
            "ok 2 append \"2,\"",
            "ok 3 read \"2,\"",
            "ok 1 append \"1,\"",
            "invoke 3 read",
            "ok 3 read \"2,1,\"",
            "invoke 4 append \"3,\"",
            "info 4 append \"3,\"",
        ];
        assert_eq!(decide(&ops(&h), &None), Inference::Valid);
    }

    #[test]
    fn a_read_holding_an_append_invoked_after_it_returned_is_refuted() {
        let why = invalid(&["invoke 1 read", "ok 1 read \"1,\"", "invoke 2 append \"1,\"", "ok 2 append \"1,\""]);
        assert!(why.contains("returned before") && why.contains("its read holds that append"), "{why}");
    }

    #[test]
    fn an_acknowledged_append_a_later_read_lacks_is_refuted() {
        let why = invalid(&["invoke 1 append \"1,\"", "ok 1 append \"1,\"", "invoke 2 read", "ok 2 read null"]);
        assert!(why.contains("append \"1,\"") && why.contains("no read holds this acknowledged append"), "{why}");
    }

    #[test]
    fn reads_that_disagree_on_the_order_are_refuted() {
        let h = [
            "invoke 1 append \"1,\"",
            "invoke 2 append \"2,\"",
            "ok 1 append \"1,\"",
            "ok 2 append \"2,\"",
            "invoke 3 read",
            "ok 3 read \"1,2,\"",
            "invoke 4 read",
            "ok 4 read \"2,\"",
        ];
        assert!(invalid(&h).contains("one must be a prefix of the other"));
    }

    #[test]
    fn texts_no_append_wrote_or_wrote_once_but_read_twice_are_refuted() {
        let unwritten =
            invalid(&["invoke 1 append \"1,\"", "ok 1 append \"1,\"", "invoke 2 read", "ok 2 read \"1,3,\""]);
        assert!(unwritten.contains("nothing appended \"3,\""), "{unwritten}");
        let twice = invalid(&["invoke 1 append \"1,\"", "ok 1 append \"1,\"", "invoke 2 read", "ok 2 read \"1,1,\""]);
        assert!(twice.contains("twice"), "{twice}");
        let empty = invalid(&["invoke 1 append \"1,\"", "ok 1 append \"1,\"", "invoke 2 read", "ok 2 read \"\""]);
        assert!(empty.contains("empty text"), "{empty}");
        let torn = [
            "invoke 1 append \"12,\"",
            "ok 1 append \"12,\"",
            "invoke 2 read",
            "ok 2 read \"12,\"",
            "invoke 3 read",
            "ok 3 read \"1\"",
        ];
        let why = invalid(&torn);
        assert!(why.contains("ends inside an append"), "{why}");
        assert!(matches!(decide(&ops(&torn), &None), Inference::Invalid { op: 2, .. }), "the torn read is the culprit");
    }

    #[test]
    fn keys_of_another_shape_are_left_to_the_search() {
        let write = ["invoke 1 write \"1,\"", "ok 1 write \"1,\"", "invoke 2 read", "ok 2 read \"1,\""];
        assert_eq!(decide(&ops(&write), &None), Inference::Undecided);
        let shared_prefix =
            ["invoke 1 append \"1\"", "ok 1 append \"1\"", "invoke 2 append \"12\"", "ok 2 append \"12\""];
        assert_eq!(decide(&ops(&shared_prefix), &None), Inference::Undecided);
        let repeated = ["invoke 1 append \"1,\"", "ok 1 append \"1,\"", "invoke 2 append \"1,\"", "ok 2 append \"1,\""];
        assert_eq!(decide(&ops(&repeated), &None), Inference::Undecided);
        let appends = ["invoke 1 append \"1,\"", "ok 1 append \"1,\""];
        assert_eq!(decide(&ops(&appends), &Some(Value::Str("0,".into()))), Inference::Undecided);
        let number = ["invoke 1 append \"1,\"", "ok 1 append \"1,\"", "invoke 2 read", "ok 2 read 7"];
        assert_eq!(decide(&ops(&number), &None), Inference::Undecided);
    }
}
