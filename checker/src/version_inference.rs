//! Keys of writes and appends decided without a search, when every read
//! names the write it saw and the appends after it.
//!
//! Under the kv model a key's value is always the value of the last write
//! (or delete, or the initial value: together, the *bases*) followed by the
//! texts appended since, in order. When the appended texts are distinct, no
//! one a prefix of another, and a read's value can be spelled from exactly
//! one base and a sequence of appends, that read names its base and the
//! appends before it: in every linearization, that base is the last write
//! before the read and those appends, in that order, the only ones between.
//! (Bases invoked after the read returned are not candidates. A read that
//! two bases could spell, as when a written value looks like appended
//! elements, two writes wrote the same value, or a delete and the initial
//! absence both explain an absent key, leaves the key to the search.) Then:
//!
//! 1. A read that no base and appends spell, or that holds an append twice,
//!    has no place. Each append a read holds belongs to that read's base,
//!    and the reads of one base see the prefixes of one order of appends:
//!    two reads that put an append after different bases, or that hold
//!    appends of one base in different orders, contradict each other.
//! 2. A base some read saw and everything after it up to its last read form
//!    a *block* that no other write, append or read of another base can
//!    enter: the base, the reads that saw it alone, the first append, the
//!    reads that saw that, and so on. The initial value's block, if a read
//!    saw it, comes first. Acknowledged writes, deletes and appends that no
//!    read saw stand alone between blocks (inside one, a later read of the
//!    block would see them); info ones no read saw may never have happened
//!    and are left out.
//! 3. Real time orders operation `a` before `b` when `a` returned before `b`
//!    was invoked. Within a block the order is fixed up to the reads of one
//!    state, so each operation must not have returned before one of an
//!    earlier step was invoked. Between items (blocks and lone operations),
//!    `X` must precede `Y` when the first return in `X` comes before the
//!    last invocation in `Y`; an order of the items exists exactly when that
//!    relation has no cycle, and then any order it allows is a
//!    linearization (every operation was invoked before any operation placed
//!    after it returned). The items are placed one at a time, the one whose
//!    first return is earliest whenever nothing else must precede it: when
//!    no item can be placed, the two with the earliest first returns must
//!    each precede the other, and those two are the contradiction shown.
//!
//! A valid verdict comes with the order found, which is replayed on the
//! model (every result as the model gives it, every operation invoked
//! before anything after it returned) before it is trusted. Time and memory
//! are about linear in the size of the key's history (sorting aside, and
//! trying each distinct length of base text and appended text where a read
//! is spelled out). Compare-and-set, appends that repeat or share a prefix,
//! and reads two bases could spell are left to the search.

use std::collections::{BTreeSet, HashMap};

use crate::append_inference::Inference;
use crate::operation::{Input, Operation, Output};
use crate::value::Value;

/// A base: the initial value (`None`) or a write or delete (its op index).
type Base = Option<usize>;

/// The value a base leaves.
fn base_value<'a>(ops: &'a [Operation], initial: &'a Option<Value>, base: Base) -> Option<&'a Value> {
    match base {
        None => initial.as_ref(),
        Some(op) => match &ops[op].input {
            Input::Write(v) => Some(v),
            _ => None,
        },
    }
}

fn base_text(ops: &[Operation], initial: &Option<Value>, base: Base) -> String {
    base_value(ops, initial, base).map(Value::text).unwrap_or_default()
}

fn describe(op: &Operation) -> String {
    format!("[{}]", op.describe())
}

fn describe_base(ops: &[Operation], initial: &Option<Value>, base: Base) -> String {
    match base {
        None => format!("the initial value ({})", crate::value::show(initial)),
        Some(op) => describe(&ops[op]),
    }
}

/// How one read is spelled: its base and the appends after it, in order.
struct Spelling {
    base: Base,
    appends: Vec<usize>,
}

/// What the key's operations are, once checked to be of the shape the
/// inference needs.
struct Shape<'a> {
    /// Appended text to its operation.
    appends: HashMap<&'a str, usize>,
    /// Distinct lengths of appended texts, ascending.
    append_lengths: Vec<usize>,
    /// Base text to the bases that leave it.
    bases_by_text: HashMap<String, Vec<Base>>,
    /// Distinct lengths of base texts, ascending.
    base_lengths: Vec<usize>,
    /// Completed reads.
    reads: Vec<usize>,
}

fn shape<'a>(ops: &'a [Operation], initial: &Option<Value>) -> Option<Shape<'a>> {
    let mut appends: HashMap<&str, usize> = HashMap::new();
    let mut bases: Vec<Base> = vec![None];
    let mut reads = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        // As in the search, an operation without a return may take effect at
        // any later time or never; one with a return happened within its span.
        let unknown = op.ret.is_none();
        let expect = |done: Output| if unknown { Output::Unknown } else { done };
        match &op.input {
            Input::Append(text) if !text.is_empty() => {
                if op.output != expect(Output::Append) || appends.insert(text.as_str(), i).is_some() {
                    return None;
                }
            }
            Input::Write(_) if op.output == expect(Output::Write) => bases.push(Some(i)),
            Input::Delete if op.output == expect(Output::Delete) => bases.push(Some(i)),
            // A read that may happen any time, seeing anything, constrains nothing.
            Input::Read if unknown => {}
            Input::Read if matches!(op.output, Output::Read(_)) => reads.push(i),
            _ => return None,
        }
    }
    // A prefix code: in sorted order, a text that is a prefix of another is
    // a prefix of the one right after it.
    let mut texts: Vec<&str> = appends.keys().copied().collect();
    texts.sort_unstable();
    if texts.windows(2).any(|w| w[1].starts_with(w[0])) {
        return None;
    }
    let mut append_lengths: Vec<usize> = texts.iter().map(|t| t.len()).collect();
    append_lengths.sort_unstable();
    append_lengths.dedup();
    let mut bases_by_text: HashMap<String, Vec<Base>> = HashMap::new();
    for base in bases {
        bases_by_text.entry(base_text(ops, initial, base)).or_default().push(base);
    }
    let mut base_lengths: Vec<usize> = bases_by_text.keys().map(String::len).collect();
    base_lengths.sort_unstable();
    base_lengths.dedup();
    Some(Shape { appends, append_lengths, bases_by_text, base_lengths, reads })
}

/// The appends that spell `rest` in order (a prefix code spells it in at
/// most one way), or `None`.
fn spell_appends(shape: &Shape, rest: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < rest.len() {
        let (op, len) =
            shape.append_lengths.iter().find_map(|&len| Some((*shape.appends.get(rest.get(at..at + len)?)?, len)))?;
        out.push(op);
        at += len;
    }
    Some(out)
}

/// Every way the read's result can be spelled: up to two (two already
/// make it ambiguous), and whether a spelling held an append twice.
fn spellings(ops: &[Operation], initial: &Option<Value>, shape: &Shape, read: &Operation) -> (Vec<Spelling>, bool) {
    let Output::Read(seen) = &read.output else { unreachable!("completed reads only") };
    // A base invoked after the read returned cannot be the one it saw.
    let ret = read.ret.expect("completed reads only");
    let before = |base: &Base| base.is_none_or(|op| ops[op].call < ret);
    let mut found = Vec::new();
    let mut twice = false;
    // No append since the base: the base's value itself.
    let text = seen.as_ref().map(Value::text).unwrap_or_default();
    if let Some(bases) = shape.bases_by_text.get(&text) {
        for &base in bases.iter().filter(|b| before(b)) {
            if base_value(ops, initial, base) == seen.as_ref() {
                found.push(Spelling { base, appends: Vec::new() });
            }
        }
    }
    // At least one append since the base: the value is text.
    if let Some(Value::Str(s)) = seen {
        for &len in &shape.base_lengths {
            if found.len() > 1 || len >= s.len() {
                break;
            }
            let (Some(head), Some(rest)) = (s.get(..len), s.get(len..)) else { continue };
            let Some(bases) = shape.bases_by_text.get(head) else { continue };
            let Some(appends) = spell_appends(shape, rest) else { continue };
            let mut sorted = appends.clone();
            sorted.sort_unstable();
            if sorted.windows(2).any(|w| w[0] == w[1]) {
                twice = true;
                continue;
            }
            for &base in bases.iter().filter(|b| before(b)) {
                found.push(Spelling { base, appends: appends.clone() });
            }
        }
    }
    (found, twice)
}

/// One step of a block: operations the order fixes only as a group.
type Group = Vec<usize>;

/// A block (a base a read saw, with its appends and reads) or a lone
/// operation no read saw.
struct Item {
    /// The block's base (`None` for a lone operation).
    base: Option<Base>,
    groups: Vec<Group>,
    /// Earliest return and latest invocation of its operations, as history
    /// positions plus one (0: before everything, the initial value).
    first_return: (u64, usize),
    last_call: (u64, usize),
}

const BEFORE_ALL: usize = usize::MAX;

/// Decides the key whose operations are `ops` (in the order of their ids),
/// starting from `initial`.
pub fn decide(ops: &[Operation], initial: &Option<Value>) -> Inference {
    match infer(ops, initial) {
        Ok(order) => match replay(ops, initial, &order) {
            Ok(()) => Inference::Valid,
            // Never trusted: a flaw of this inference, left to the search.
            Err(_) => Inference::Undecided,
        },
        Err(Some((why, op))) => Inference::Invalid { why, op },
        Err(None) => Inference::Undecided,
    }
}

/// A linearization (operation indices, info operations no read saw left
/// out); `Err(Some(why, op))` when there is none, `Err(None)` when the key
/// is not of the inference's shape.
pub fn infer(ops: &[Operation], initial: &Option<Value>) -> Result<Vec<usize>, Option<(String, usize)>> {
    let shape = shape(ops, initial).ok_or(None)?;

    // 1. Each read's base and appends.
    let mut reads_of: HashMap<Base, Vec<(usize, Vec<usize>)>> = HashMap::new();
    for &read in &shape.reads {
        let (mut found, twice) = spellings(ops, initial, &shape, &ops[read]);
        match found.len() {
            0 if twice => {
                let why = format!("{} read a value that holds an append twice", describe(&ops[read]));
                return Err(Some((why, read)));
            }
            0 => {
                let why = format!(
                    "{} read a value that no write, delete or initial value followed by appends leaves",
                    describe(&ops[read])
                );
                return Err(Some((why, read)));
            }
            1 => {
                let Spelling { base, appends } = found.pop().expect("one");
                reads_of.entry(base).or_default().push((read, appends));
            }
            _ => return Err(None),
        }
    }
    let mut owner: HashMap<usize, (Base, usize)> = HashMap::new();
    let mut blocks: Vec<(Base, Vec<Group>)> = Vec::new();
    let mut bases: Vec<Base> = reads_of.keys().copied().collect();
    bases.sort_unstable();
    for base in bases {
        let mut reads = reads_of.remove(&base).expect("listed");
        reads.sort_by_key(|(r, appends)| (appends.len(), *r));
        let (longest_read, longest) = reads.last().map(|(r, a)| (*r, a.clone())).expect("a read saw it");
        for &append in &longest {
            if let Some((other, by)) = owner.insert(append, (base, longest_read)) {
                let why = format!(
                    "{} holds {} after {}, but {} holds it after {}: one append follows one write",
                    describe(&ops[longest_read]),
                    describe(&ops[append]),
                    describe_base(ops, initial, base),
                    describe(&ops[by]),
                    describe_base(ops, initial, other)
                );
                return Err(Some((why, longest_read)));
            }
        }
        // Groups: the base, the reads of it alone, the first append, ...
        let mut groups: Vec<Group> = Vec::with_capacity(2 * longest.len() + 2);
        if let Some(op) = base {
            groups.push(vec![op]);
        }
        let mut next = reads.iter().peekable();
        for state in 0..=longest.len() {
            if state > 0 {
                groups.push(vec![longest[state - 1]]);
            }
            let mut group = Vec::new();
            while let Some((read, appends)) = next.next_if(|(_, a)| a.len() == state) {
                if appends[..] != longest[..state] {
                    let why = format!(
                        "{} and {} read appends after {} in orders neither of which extends the other",
                        describe(&ops[*read]),
                        describe(&ops[longest_read]),
                        describe_base(ops, initial, base)
                    );
                    return Err(Some((why, *read)));
                }
                group.push(*read);
            }
            if !group.is_empty() {
                groups.push(group);
            }
        }
        blocks.push((base, groups));
    }

    // 2. Items: the blocks, then every acknowledged change no read saw.
    let seen_base: BTreeSet<usize> = blocks.iter().filter_map(|(b, _)| *b).collect();
    let mut items: Vec<Item> = Vec::new();
    for (base, mut groups) in blocks {
        // 3, within a block: no operation returned before one of an earlier
        // step was invoked.
        let mut latest: Option<(u64, usize)> = if base.is_none() { Some((0, BEFORE_ALL)) } else { None };
        for group in &mut groups {
            group.sort_by_key(|&op| ops[op].call);
            let mut group_latest = latest;
            for &op in group.iter() {
                let (call, ret) = (ops[op].call + 1, ops[op].ret.map_or(u64::MAX, |r| r + 1));
                if let Some((before, by)) = latest
                    && ret <= before
                {
                    let why = format!(
                        "{} must come after {} (both follow {} and {}), but returned before that was invoked",
                        describe(&ops[op]),
                        describe(&ops[by]),
                        describe_base(ops, initial, base),
                        why_after(&ops[op], &ops[by])
                    );
                    return Err(Some((why, op)));
                }
                if group_latest.is_none_or(|(c, _)| call > c) {
                    group_latest = Some((call, op));
                }
            }
            latest = group_latest;
        }
        let members = groups.iter().flatten();
        let mut first_return =
            members.clone().filter_map(|&op| Some((ops[op].ret? + 1, op))).min().unwrap_or((u64::MAX, BEFORE_ALL));
        if base.is_none() {
            first_return = (0, BEFORE_ALL);
        }
        let last_call = members.map(|&op| (ops[op].call + 1, op)).max().expect("a block has a read");
        items.push(Item { base: Some(base), groups, first_return, last_call });
    }
    for (i, op) in ops.iter().enumerate() {
        let Some(ret) = op.ret else { continue };
        let lone = match op.input {
            Input::Write(_) | Input::Delete => !seen_base.contains(&i),
            Input::Append(_) => !owner.contains_key(&i),
            _ => false,
        };
        if lone {
            items.push(Item {
                base: None,
                groups: vec![vec![i]],
                first_return: (ret + 1, i),
                last_call: (op.call + 1, i),
            });
        }
    }

    // 3, between items: place one whenever nothing must precede it.
    let mut by_return: BTreeSet<((u64, usize), usize)> =
        items.iter().enumerate().map(|(i, it)| (it.first_return, i)).collect();
    let mut by_call: BTreeSet<((u64, usize), usize)> =
        items.iter().enumerate().map(|(i, it)| (it.last_call, i)).collect();
    let mut order: Vec<usize> = Vec::with_capacity(ops.len());
    while let Some(&(m_return, m)) = by_return.first() {
        let second = by_return.iter().nth(1).copied();
        // `m` may go when no other item returned before its last call.
        let pick = if second.is_none_or(|(r, _)| items[m].last_call < r) {
            Some(m)
        } else {
            // Another item may go when no item returned before its last call:
            // the earliest-invoked one other than `m` is the one to try.
            let other = by_call.iter().map(|&(_, i)| i).find(|&i| i != m).expect("two items are left");
            (items[other].last_call < m_return).then_some(other)
        };
        let Some(pick) = pick else {
            // `m` and the second must each precede the other.
            let (_, n) = second.expect("two items are left");
            return Err(Some(cycle(ops, initial, &items[m], &items[n])));
        };
        by_return.remove(&(items[pick].first_return, pick));
        by_call.remove(&(items[pick].last_call, pick));
        order.extend(items[pick].groups.iter().flatten());
    }
    Ok(order)
}

/// Why `op` must follow `before` in one block.
fn why_after(op: &Operation, before: &Operation) -> &'static str {
    match (&op.input, &before.input) {
        (Input::Read, Input::Append(_)) => "its read holds that append",
        (Input::Read, _) => "its read holds that value",
        (Input::Append(_), Input::Read) => "that read lacks this append, which a read after the same write holds",
        (Input::Append(_), Input::Append(_)) => "the reads hold them in that order",
        _ => "the reads fix that order",
    }
}

/// Two items each of which must precede the other: `a` has the earliest
/// first return (the initial value's block, if a read saw it), `b` the next.
fn cycle(ops: &[Operation], initial: &Option<Value>, a: &Item, b: &Item) -> (String, usize) {
    let name = |item: &Item| match item.base {
        Some(base) => format!("the block of {} and the reads that saw it", describe_base(ops, initial, base)),
        None => format!("{} (no read saw it)", describe(&ops[item.groups[0][0]])),
    };
    let (a_ret, a_call) = (a.first_return.1, a.last_call.1);
    let (b_ret, b_call) = (b.first_return.1, b.last_call.1);
    let why = if a_ret == BEFORE_ALL {
        format!(
            "{} returned before {} was invoked, yet that read saw the initial value ({}): {} must come before it, and nothing may come before the reads of the initial value",
            describe(&ops[b_ret]),
            describe(&ops[a_call]),
            crate::value::show(initial),
            name(b),
        )
    } else {
        format!(
            "{} returned before {} was invoked, and {} returned before {} was invoked: {} and {} must each come before the other, and nothing may enter a write's block (a read in it after that would see it)",
            describe(&ops[a_ret]),
            describe(&ops[b_call]),
            describe(&ops[b_ret]),
            describe(&ops[a_call]),
            name(a),
            name(b)
        )
    };
    (why, a_call)
}

/// Replays `order` on the model: every result as the model gives it, and
/// every operation invoked before every operation placed after it returned;
/// every completed operation placed once.
fn replay(ops: &[Operation], initial: &Option<Value>, order: &[usize]) -> Result<(), String> {
    let mut value = initial.clone();
    let mut placed = vec![false; ops.len()];
    let mut latest_call = 0;
    for &i in order {
        let op = &ops[i];
        if std::mem::replace(&mut placed[i], true) {
            return Err(format!("op {i} placed twice"));
        }
        if op.ret.is_some_and(|r| r <= latest_call) {
            return Err(format!("op {i} returned before an earlier one was invoked"));
        }
        latest_call = latest_call.max(op.call);
        match &op.input {
            // In place: a value grows by every append.
            Input::Append(suffix) => {
                value = Some(match value.take() {
                    Some(Value::Str(mut s)) => {
                        s.push_str(suffix);
                        Value::Str(s)
                    }
                    other => Value::Str(format!("{}{suffix}", other.as_ref().map(Value::text).unwrap_or_default())),
                });
            }
            input => match crate::model::step(&value, input, &op.output) {
                Some(next) => value = next,
                None => return Err(format!("op {i} does not fit")),
            },
        }
    }
    match ops.iter().zip(&placed).position(|(o, &placed)| o.ret.is_some() && !placed) {
        Some(i) => Err(format!("op {i} left out")),
        None => Ok(()),
    }
}
