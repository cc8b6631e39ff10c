//! Keys of writes, appends and compare-and-sets decided without a search,
//! when every read names the write it saw and the appends after it.
//!
//! Under the kv model a key's value is always the value of the last write
//! (or delete, or cas that took effect, or the initial value: together, the
//! *bases*) followed by the
//! texts appended since, in order. When the appended texts are distinct, no
//! one a prefix of another, and a read's value can be spelled from exactly
//! one base and a sequence of appends, that read names its base and the
//! appends before it: in every linearization, that base is the last write
//! before the read and those appends, in that order, the only ones between.
//! (Not candidates: bases invoked after the read returned, and bases another
//! base certainly overwrote before the read was invoked, one invoked after
//! they returned that returned itself before the read began; nor spellings
//! that hold an append of either kind: appends happen once, so an append a
//! base replaced never comes back.) Then:
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
//! Compare-and-set, with the values written unique:
//!
//! 4. A cas that took effect read the whole value and replaced it at once:
//!    it is a read of its expected value (spelled, and its base named, as a
//!    read's are, with the same contradictions when nothing spells it) that
//!    ends the block of that base, and it is a base itself, whose block
//!    continues the one it ended. A chain of them is one block, one item in
//!    the real-time order (nothing enters between a cas and the state it
//!    found). A base happens once and a cas leaves nothing of it, so a read
//!    that holds more appends of the base than the cas found, a second cas
//!    from the same base, and cas that each expected the value of the one
//!    before in a cycle are contradictions.
//! 5. A cas took effect if it was acknowledged, or if it is an info one that
//!    a read, or a cas that took effect, names as its base (nothing else
//!    leaves its value). An info cas no one names is left out, as info
//!    writes and appends no read saw are: with the mismatches of 6 left out,
//!    in a linearization where it took effect, what follows it up to the
//!    next base holds no read and no cas that took effect (either would
//!    name it), only appends no one saw, and that base is a write or a
//!    delete (a cas would name it): removing it leaves a linearization.
//! 6. A cas that reported a mismatch saw only that the value was not the
//!    one it expected, and changed nothing. To refute, the mismatches are
//!    left out: a linearization without them is one of the rest, so a
//!    contradiction among the rest refutes the key. For a valid verdict each
//!    is put into the order found at the first place within its real time
//!    (after every operation before it was invoked, before every one after
//!    it returned) where the value differs from the one it expected, not
//!    before one left for later that returned before it was invoked. If
//!    one has no such place, a second order is tried, which lets the item
//!    invoked earliest go first wherever it may; if one has none there
//!    either, the key is left to the search (another order might have one).
//!
//! A valid verdict comes with the order found, which is replayed on the
//! model (every result as the model gives it, every operation invoked
//! before anything after it returned) before it is trusted.
//!
//! A read that two bases could spell with different appends (a written
//! value that looks like appended elements: the write `1` then the append
//! `2,`, or a delete then the append `12,`) is given, under a guess, the
//! spellings whose oldest append was invoked last. One that several bases
//! could spell with the same appends (two writes of one value; an absent
//! key, or appends to one, once the key has deletes) is given one by a
//! guess: the reads of one first append share a base, preferably one no
//! other first append has (nor a cas that replaced it bare), latest to
//! return choosing first; a read of no append prefers a base none of whose
//! known appends, reads of them and cas replacing it returned before the
//! read began; each takes the first candidate, preferred ones first, in the
//! [`Guess`]'s order (invoked last, or returned last before the reads
//! began), whose block or lone operation it can join without a
//! contradiction with the items known so far. A cas
//! whose expected value several bases spell (with the same appends) is
//! given, under a guess, the base an unambiguous read put its first append
//! after, else the one invoked last that no other cas replaced and no read
//! saw another first append follow. If an
//! order follows that the replay accepts, the key is valid.
//!
//! A contradiction under a guess may come from the guess alone and refutes
//! nothing, but it names the operations it involves (the two items that
//! must each precede the other, the block out of order), and so the
//! guessed choices (a unit's base, a cas's, or the spelling kept of several
//! with different appends) that put them where they are: those choices must
//! not all be made again together (a *nogood*), and the guess is *mended*
//! and run again. First by blame, up to 64 times per guess within a quarter
//! of the time left: the base of the choice holding the first-named
//! operation is ruled out for good, which is quick when that choice is the
//! culprit and can rule out the right base when it is not. Then, if the
//! refutations below refute nothing, by backtracking, within a quarter of
//! what is left: the nogood holds every choice involved, each choice avoids
//! the candidates that would complete one with the choices made before it,
//! and a choice left none learns the nogood of the choices that ruled them
//! out and stops the run. Runs make their choices in about the same order
//! (which units and cas there are depends on choices made before), so this
//! backtracks to the latest choice a contradiction involved, and does not
//! make a set of choices a nogood holds again. It is a search for an order,
//! not a proof: a nogood leaves out what the contradiction did not name, so
//! running out of choices refutes nothing. An order found that the replay
//! rejects mends the guess the same way, the operation that does not fit
//! (then the two placed before it) named as a contradiction's are. Bases
//! the guess's preferences set aside (another first append follows them, a
//! block ended before the read) are taken only once the preferred ones are
//! ruled out. An info cas no read or cas that took effect named is no
//! candidate: nothing would check what it expected.
//!
//! A contradiction found with the ambiguous reads left out, or with one
//! *unit* of them put back under each base it could have in turn, holds for
//! the whole key (leaving reads out of a linearization leaves a
//! linearization of the rest): a unit is the reads whose every spelling
//! holds one first append (in every linearization they share its base,
//! which must spell each of them), or one other read alone. To refute, a
//! cas that took effect whose expected value several bases spell is left
//! unchecked: what it expected is not looked at and no block continues into
//! it (a read of its value still starts a block at it; if none did, it
//! constrains nothing). That drops constraints only, so a contradiction
//! among the rest still refutes the key. Otherwise the key is left to the
//! search.
//!
//! Time and memory are about linear in the size of the key's history
//! (sorting aside, and trying each distinct length of base text and
//! appended text where a read is spelled out); an ambiguous key repeats the
//! inference for two guesses and their mends and, to refute, up to 128
//! times more (a unit under one of its bases each time), within the time
//! given. Left to the
//! search: appends that repeat or share a prefix, a key no mended guess
//! linearizes and no refutation that holds for every guess refutes, and a
//! mismatch with no place in the order found.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

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
            Input::Write(v) | Input::Cas(_, v) => Some(v),
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
    /// Acknowledged and info compare-and-sets (bases too), and those that
    /// reported a mismatch.
    cas: Vec<usize>,
    mismatches: Vec<usize>,
    overwrites: Overwrites,
}

/// Which bases another base certainly overwrote before a given time: a
/// base `x` that was invoked after `b` returned and returned itself before
/// then lies between them in every linearization (an acknowledged cas took
/// effect within its span too; an info base is never certain).
struct Overwrites {
    /// Completed bases' (invocation, return, op), by invocation...
    by_call: Vec<(u64, u64, usize)>,
    /// ...and the earliest (return, op) among each one and those after it.
    earliest_return_from: Vec<(u64, usize)>,
}

impl Overwrites {
    fn new(ops: &[Operation], bases: &[Base]) -> Overwrites {
        let mut by_call: Vec<(u64, u64, usize)> =
            bases.iter().filter_map(|&b| b.and_then(|op| Some((ops[op].call, ops[op].ret?, op)))).collect();
        by_call.sort_unstable();
        let mut earliest_return_from = vec![(u64::MAX, usize::MAX); by_call.len() + 1];
        for i in (0..by_call.len()).rev() {
            earliest_return_from[i] = earliest_return_from[i + 1].min((by_call[i].1, by_call[i].2));
        }
        Overwrites { by_call, earliest_return_from }
    }

    /// Another base that certainly took effect after `base` and before
    /// `time` (a history position), if any: then nothing that began at
    /// `time` or later saw `base`. The initial value is overwritten by any
    /// base that returned before `time`; an info base never is.
    fn overwriter(&self, ops: &[Operation], base: Base, time: u64) -> Option<usize> {
        let from = match base {
            None => 0,
            Some(op) => {
                let ret = ops[op].ret?;
                self.by_call.partition_point(|&(call, _, _)| call <= ret)
            }
        };
        let (ret, op) = self.earliest_return_from[from];
        (ret < time).then_some(op)
    }

    fn overwritten(&self, ops: &[Operation], base: Base, time: u64) -> bool {
        self.overwriter(ops, base, time).is_some()
    }
}

fn shape<'a>(ops: &'a [Operation], initial: &Option<Value>) -> Option<Shape<'a>> {
    let mut appends: HashMap<&str, usize> = HashMap::new();
    let mut bases: Vec<Base> = vec![None];
    let mut reads = Vec::new();
    let (mut cas, mut mismatches) = (Vec::new(), Vec::new());
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
            Input::Cas(..) if op.output == expect(Output::Cas) => {
                bases.push(Some(i));
                cas.push(i);
            }
            Input::Cas(..) if !unknown && op.output == Output::CasMismatch => mismatches.push(i),
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
    let overwrites = Overwrites::new(ops, &bases);
    let mut bases_by_text: HashMap<String, Vec<Base>> = HashMap::new();
    for base in bases {
        bases_by_text.entry(base_text(ops, initial, base)).or_default().push(base);
    }
    let mut base_lengths: Vec<usize> = bases_by_text.keys().map(String::len).collect();
    base_lengths.sort_unstable();
    base_lengths.dedup();
    Some(Shape { appends, append_lengths, bases_by_text, base_lengths, reads, cas, mismatches, overwrites })
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

/// Under a guess, of spellings that differ in their appends (`1` then
/// `2,`, or an absent key then `12,`), keeps those whose oldest append was
/// invoked last: with many concurrent clients no base is certain to have
/// overwritten an older one, but the older, the likelier it was. The
/// guess only steers the order the replay then checks.
fn keep_freshest_appends(ops: &[Operation], found: &mut Vec<Spelling>) {
    if found.iter().all(|f| f.appends == found[0].appends) {
        return;
    }
    let oldest = |f: &Spelling| f.appends.iter().map(|&a| ops[a].call).min().unwrap_or(u64::MAX);
    let freshest = found.iter().max_by_key(|f| oldest(f)).expect("spellings that differ").appends.clone();
    found.retain(|f| f.appends == freshest);
}

/// Every way a read's result can be spelled by a base it may have seen.
#[derive(Default)]
struct Spellings {
    found: Vec<Spelling>,
    /// A spelling held an append twice.
    twice: bool,
    /// A spelling that cannot be what the read saw: its base or one of its
    /// appends, and the base that certainly overwrote that before the read
    /// was invoked (`None`: it was invoked after the read returned).
    excluded: Option<Excluded>,
}

/// What a spelling names that the read cannot have seen.
#[derive(Clone, Copy)]
enum Unseen {
    /// The base (and whether appends follow it in the spelling).
    Base(Base, bool),
    /// One of its appends (an op index).
    Append(usize),
}

type Excluded = (Unseen, Option<usize>);

/// A completed read's value, or the value a cas that took effect expected.
fn observed(op: &Operation) -> Option<&Value> {
    match (&op.input, &op.output) {
        (_, Output::Read(seen)) => seen.as_ref(),
        (Input::Cas(expected, _), _) => Some(expected),
        _ => unreachable!("completed reads and cas only"),
    }
}

fn spellings(ops: &[Operation], initial: &Option<Value>, shape: &Shape, read: &Operation) -> Spellings {
    let seen = observed(read);
    let mut out = Spellings::default();
    // A base invoked after the read returned cannot be the one it saw, nor
    // one another base certainly overwrote before the read was invoked (an
    // info cas never returned). Nor can an append be in the value on either
    // count: appends happen once, so once a base replaced an append's text,
    // nothing brings it back.
    let ret = read.ret.unwrap_or(u64::MAX);
    let unseen = |x: Base| match x.is_some_and(|op| ops[op].call > ret) {
        true => Some(None),
        false => shape.overwrites.overwriter(ops, x, read.call).map(Some),
    };
    let add = |out: &mut Spellings, base: Base, appends: Vec<usize>| {
        // Only two appends need a look: if any was invoked after the read
        // returned, the one invoked last was; if a base erased any, it
        // erased the one that returned first (more bases began after it).
        let last_invoked = appends.iter().copied().max_by_key(|&a| ops[a].call);
        let first_returned = appends.iter().copied().min_by_key(|&a| ops[a].ret.unwrap_or(u64::MAX));
        let excluded = unseen(base).map(|by| (Unseen::Base(base, !appends.is_empty()), by)).or_else(|| {
            [last_invoked, first_returned]
                .into_iter()
                .flatten()
                .find_map(|a| Some((Unseen::Append(a), unseen(Some(a))?)))
        });
        match excluded {
            Some(excluded) => _ = out.excluded.get_or_insert(excluded),
            None => out.found.push(Spelling { base, appends }),
        }
    };
    // No append since the base: the base's value itself.
    let text = seen.map(Value::text).unwrap_or_default();
    if let Some(bases) = shape.bases_by_text.get(&text) {
        for &base in bases {
            if base_value(ops, initial, base) == seen {
                add(&mut out, base, Vec::new());
            }
        }
    }
    // At least one append since the base: the value is text.
    if let Some(Value::Str(s)) = seen {
        for &len in &shape.base_lengths {
            if len >= s.len() {
                break;
            }
            let (Some(head), Some(rest)) = (s.get(..len), s.get(len..)) else { continue };
            let Some(bases) = shape.bases_by_text.get(head) else { continue };
            let Some(appends) = spell_appends(shape, rest) else { continue };
            let mut sorted = appends.clone();
            sorted.sort_unstable();
            if sorted.windows(2).any(|w| w[0] == w[1]) {
                out.twice = true;
                continue;
            }
            for &base in bases {
                add(&mut out, base, appends.clone());
            }
        }
    }
    out
}

/// Reads that must share one base, to be guessed together.
struct Unit {
    /// Names it across runs (see [`Choice::key`]).
    key: usize,
    /// The first append they hold (`None`: they hold none, and are one read).
    first: Option<usize>,
    /// The reads with their appends, and every read and append of the unit.
    reads: Vec<(usize, Vec<usize>)>,
    members: Vec<usize>,
    /// The bases it may have seen, in the guess's order of preference, and
    /// one to take when none fits.
    candidates: Vec<Base>,
    fallback: Base,
}

/// Groups the ambiguous reads into units, each with the bases it may have
/// seen, in the order [`place_units`] places them: the reads that hold the
/// same first append share one base (that append follows one base), to be
/// invoked before any of them or their appends returned and certainly not
/// overwritten before the last of them was invoked; units with appends
/// first (they claim bases), latest to return first (so that bases are
/// paired with appends in time order); then each read of no append alone.
/// An info cas that no read or cas that took effect named is no candidate
/// (only the fallback, the first spelling's base, may be one; the replay
/// catches it); [`place_units`] sets aside those nogoods rule out.
fn units(
    ops: &[Operation],
    overwrites: &Overwrites,
    took_effect: &BTreeSet<usize>,
    guessing: &Guessing,
    ambiguous: Vec<Ambiguous>,
) -> Vec<Unit> {
    // An info cas no read or cas that took effect named has no place yet:
    // nothing would check what it expected.
    let unplaced =
        |op: usize| ops[op].ret.is_none() && matches!(ops[op].input, Input::Cas(..)) && !took_effect.contains(&op);
    let mut by_first: BTreeMap<(Option<usize>, usize), Vec<Ambiguous>> = BTreeMap::new();
    for (read, found) in ambiguous {
        let first = found[0].appends.first().copied();
        let unit = if first.is_some() { 0 } else { read };
        by_first.entry((first, unit)).or_default().push((read, found));
    }
    let mut units = Vec::new();
    // `lone`: the read of a unit of no append (0 for the others).
    for ((first, lone), unit) in by_first {
        let key = first.unwrap_or(lone);
        let mut candidates: Vec<Base> = unit[0].1.iter().map(|s| s.base).collect();
        for (_, found) in &unit[1..] {
            candidates.retain(|b| found.iter().any(|s| s.base == *b));
        }
        let longest = unit.iter().map(|(_, found)| &found[0].appends).max_by_key(|a| a.len()).expect("a read");
        let members: Vec<usize> = unit.iter().map(|(read, _)| *read).chain(longest.iter().copied()).collect();
        let deadline = members.iter().map(|&op| ops[op].ret.unwrap_or(u64::MAX)).min().unwrap_or(u64::MAX);
        let latest = members.iter().map(|&op| ops[op].call).max().unwrap_or(0);
        candidates.retain(|b| {
            b.is_none_or(|op| ops[op].call < deadline && !unplaced(op)) && !overwrites.overwritten(ops, *b, latest)
        });
        let start = unit.iter().map(|(read, _)| ops[*read].call).min().expect("a unit has a read");
        let rank = |b: &Base| {
            let returned = b.map_or(Some(0), |op| ops[op].ret.filter(|&r| r < start));
            match (guessing.guess, returned) {
                (Guess::LatestReturned, Some(ret)) => (true, ret),
                _ => (false, b.map_or(0, |op| ops[op].call + 1)),
            }
        };
        candidates.sort_by_key(|b| std::cmp::Reverse(rank(b)));
        let fallback = unit[0].1[0].base;
        let reads = unit.into_iter().map(|(read, mut found)| (read, found.swap_remove(0).appends)).collect();
        units.push((deadline, Unit { key, first, reads, members, candidates, fallback }));
    }
    units.sort_by_key(|(deadline, unit)| (unit.first.is_none(), std::cmp::Reverse(*deadline)));
    units.into_iter().map(|(_, unit)| unit).collect()
}

/// Gives each unit the first of its candidates whose item it can join
/// without making that item and another each precede the other (`items`:
/// those of the unambiguous reads): the base an unambiguous read put its
/// first append after, if one did; else preferably a base no other first
/// append follows (and, for a read of no append, whose block had not ended
/// when it began), the other candidates once nogoods ruled those out; the
/// unit's fallback if it has none.
fn place_units(
    ops: &[Operation],
    guessing: &mut Guessing,
    items: &mut [Item],
    units: Vec<Unit>,
    reads_of: &mut HashMap<Base, Vec<(usize, Vec<usize>)>>,
    cas_of: &HashMap<Base, Vec<(usize, Vec<usize>)>>,
    deadline: Instant,
) -> bool {
    let mut known: HashMap<usize, Base> = HashMap::new();
    for (&base, seen) in reads_of.iter().chain(cas_of.iter()) {
        for (_, appends) in seen {
            if let Some(&first) = appends.first() {
                known.insert(first, base);
            }
        }
    }
    // Bases a cas that took effect replaced before any append: none follows.
    let closed: BTreeSet<Base> =
        cas_of.iter().filter(|(_, cas)| cas.iter().any(|(_, appends)| appends.is_empty())).map(|(&b, _)| b).collect();
    let mut first_after: HashMap<Base, usize> = known.iter().map(|(&a, &b)| (b, a)).collect();
    let item_of = |items: &[Item], base: Base| {
        items.iter().position(|it| match (it.base, base) {
            (Some(b), _) => b == base,
            (None, Some(op)) => it.groups.first().and_then(|g| g.first()) == Some(&op),
            (None, None) => false,
        })
    };
    // The block of the initial value, if no unambiguous read saw it.
    let mut added: Vec<Item> = Vec::new();
    let mut ended: Option<HashMap<Base, u64>> = None;
    for mut unit in units {
        if Instant::now() >= deadline {
            return false;
        }
        // An unambiguous read put the unit's first append after its base.
        let known_base = unit.first.and_then(|first| known.get(&first));
        if let Some(base) = known_base {
            unit.candidates.retain(|b| b == base);
        }
        if unit.candidates.is_empty() {
            unit.candidates.push(unit.fallback);
        }
        guessing.keep_allowed(unit.key, &mut unit.candidates, |b| *b);
        if guessing.stuck {
            return false;
        }
        // The candidates the guess prefers first; the rest are left for
        // when nogoods have ruled those out.
        let preferred: Vec<Base> = match unit.first {
            Some(_) if known_base.is_some() => unit.candidates.clone(),
            Some(_) => unit
                .candidates
                .iter()
                .copied()
                .filter(|b| !first_after.contains_key(b) && !closed.contains(b))
                .collect(),
            None => {
                // Units with appends are all placed by now.
                let ended = ended.get_or_insert_with(|| block_ends(ops, reads_of, cas_of));
                let start = ops[unit.reads[0].0].call;
                unit.candidates.iter().copied().filter(|b| ended.get(b).is_none_or(|&r| r > start)).collect()
            }
        };
        let first_return = unit.members.iter().filter_map(|&op| Some((ops[op].ret? + 1, op))).min();
        let first_return = first_return.unwrap_or((u64::MAX, BEFORE_ALL));
        let last_call = unit.members.iter().map(|&op| (ops[op].call + 1, op)).max().expect("a read");
        let own = |x: &Item| x.base.is_none() && x.groups.len() == 1 && unit.members.contains(&x.groups[0][0]);
        let fits = |items: &[Item], added: &[Item], base: Base| {
            let at = item_of(items, base);
            let (f, g) = match at {
                Some(i) => (items[i].first_return, items[i].last_call),
                None if base.is_none() => {
                    added.first().map_or(((0, BEFORE_ALL), (0, BEFORE_ALL)), |it| (it.first_return, it.last_call))
                }
                None => return false,
            };
            let (f, g) = (f.min(first_return), g.max(last_call));
            items
                .iter()
                .enumerate()
                .filter(|&(i, x)| Some(i) != at && !own(x))
                .all(|(_, x)| !(f < x.last_call && x.first_return < g))
        };
        let pick = |list: &[Base]| list.iter().copied().find(|&b| fits(items, &added, b)).or(list.first().copied());
        let base = pick(&preferred).or_else(|| pick(&unit.candidates)).unwrap_or(unit.fallback);
        let others = unit.candidates.iter().any(|&b| b != base);
        guessing.made(Choice { key: unit.key, bases: vec![base], ops: unit.members.clone(), others });
        match item_of(items, base) {
            Some(i) => {
                items[i].first_return = items[i].first_return.min(first_return);
                items[i].last_call = items[i].last_call.max(last_call);
                items[i].base = Some(base);
            }
            None if base.is_none() => match added.first_mut() {
                Some(it) => it.last_call = it.last_call.max(last_call),
                None => {
                    added.push(Item { base: Some(None), groups: Vec::new(), first_return: (0, BEFORE_ALL), last_call })
                }
            },
            None => {}
        }
        // The unit's appends no longer stand alone.
        for x in items.iter_mut().filter(|x| own(x)) {
            (x.first_return, x.last_call) = ((u64::MAX, BEFORE_ALL), (0, 0));
        }
        if let Some(first) = unit.first {
            known.insert(first, base);
            first_after.insert(base, first);
        }
        for (read, appends) in unit.reads {
            reads_of.entry(base).or_default().push((read, appends));
        }
    }
    true
}

/// For each base, the earliest return among the appends after it that
/// reads or cas saw, those reads, and the cas that replaced it: a read of
/// the base's value alone, invoked after that, cannot have seen it.
fn block_ends(
    ops: &[Operation],
    reads_of: &HashMap<Base, Vec<(usize, Vec<usize>)>>,
    cas_of: &HashMap<Base, Vec<(usize, Vec<usize>)>>,
) -> HashMap<Base, u64> {
    let mut ended: HashMap<Base, u64> = HashMap::new();
    let seen = reads_of.iter().flat_map(|(b, reads)| reads.iter().filter(|(_, a)| !a.is_empty()).map(move |r| (b, r)));
    for (&base, (op, appends)) in seen.chain(cas_of.iter().flat_map(|(b, cas)| cas.iter().map(move |c| (b, c)))) {
        let earliest = appends.iter().chain([op]).filter_map(|&o| ops[o].ret).min();
        if let Some(r) = earliest {
            let e = ended.entry(base).or_insert(u64::MAX);
            *e = (*e).min(r);
        }
    }
    ended
}

/// A read several bases could spell, and its spellings.
type Ambiguous = (usize, Vec<Spelling>);

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

/// Why [`infer_with`] found no linearization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The key is not of the inference's shape.
    Shape,
    /// A read two bases could spell (with the same appends after either).
    Ambiguous,
    /// No linearization: why, the operation that has no place, and the
    /// operations the contradiction involves, those it names first (what a
    /// guess that put one of them there may mend).
    Refuted(String, usize, Vec<usize>),
}

/// How a read that several bases could spell is given one, when guessing:
/// the guess is only a way to find an order, which the replay then checks,
/// so a wrong one costs a verdict, never a wrong one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guess {
    /// The candidate invoked last.
    LatestInvoked,
    /// The candidate that returned last before the reads were invoked,
    /// else the one invoked last.
    LatestReturned,
}

/// A guess, and what the runs under it have learned: a contradiction met
/// under a guess refutes nothing, but it names the guessed choices that led
/// to it, which must not all be made again together (a *nogood*), and each
/// choice avoids the candidates that would complete a nogood with the
/// choices made before it in the run ([`Mending`] says which and how).
struct Guessing {
    guess: Guess,
    mending: Mending,
    nogoods: Vec<Nogood>,
    /// The nogoods that name a choice, by [`Choice::key`].
    naming: HashMap<usize, Vec<usize>>,
    /// The choices this run made, in order, and the latest by key.
    made: Vec<Choice>,
    latest: HashMap<usize, usize>,
    /// This run met a choice all of whose candidates a nogood ruled out.
    stuck: bool,
    /// ... with no choice made before it to blame, or only a nogood learned
    /// already (the choices before it were made otherwise than when it
    /// was): no run is left to try.
    exhausted: bool,
}

/// Choices (by [`Choice::key`], each with the bases it may not take all
/// within) that must not all be made together.
type Nogood = BTreeMap<usize, Vec<Base>>;

/// How a guess that met a contradiction is mended for the next run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mending {
    /// The choice holding the operation the contradiction names first,
    /// with another candidate, is blamed alone: its base is ruled out for
    /// good (a nogood of one choice). A choice all of whose candidates are
    /// ruled out takes any. Quick where the first-named is the culprit, but
    /// it can rule out the right base for the wrong one's fault.
    Blame,
    /// Every choice the contradiction involves goes into the nogood. A
    /// choice left no candidate learns the nogood of the choices that ruled
    /// them out (resolution), and the run stops there: this backtracks to
    /// the latest choice a contradiction involved (see the module docs).
    Backtrack,
}

/// A base given by a guess, to a unit of reads or to a cas; or the bases
/// of the spelling kept, of several that differ in their appends.
struct Choice {
    /// The same in every run: a unit's first append, else its one read; a
    /// read or cas. (A unit of one read and that read's spelling share the
    /// key: both give that read's base, the unit's more narrowly.)
    key: usize,
    bases: Vec<Base>,
    /// The operations it put in that base's block.
    ops: Vec<usize>,
    /// Whether it had another candidate.
    others: bool,
}

impl Guessing {
    fn new(guess: Guess, mending: Mending) -> Guessing {
        Guessing {
            guess,
            mending,
            nogoods: Vec::new(),
            naming: HashMap::new(),
            made: Vec::new(),
            latest: HashMap::new(),
            stuck: false,
            exhausted: false,
        }
    }

    /// Forgets the last run's choices, before the next.
    fn begin(&mut self) {
        self.made.clear();
        self.latest.clear();
        self.stuck = false;
    }

    fn made(&mut self, choice: Choice) {
        self.latest.insert(choice.key, self.made.len());
        self.made.push(choice);
    }

    /// The nogood that giving `key` the base `base` would complete, with
    /// the choices made so far in this run.
    fn ruling_out(&self, key: usize, base: Base) -> Option<usize> {
        let naming = self.naming.get(&key)?;
        naming.iter().copied().find(|&n| {
            self.nogoods[n].iter().all(|(&k, within)| match k == key {
                true => within.contains(&base),
                false => self.latest.get(&k).is_some_and(|&c| self.made[c].bases.iter().all(|b| within.contains(b))),
            })
        })
    }

    /// Keeps the candidates (`base` of each) of the choice `key` that
    /// complete no nogood. If every one does, keeps them all; when
    /// backtracking, learns the nogood of the choices that ruled them out,
    /// and the run is stuck.
    fn keep_allowed<T>(&mut self, key: usize, candidates: &mut Vec<T>, base: impl Fn(&T) -> Base) {
        let ruling: Vec<Option<usize>> = candidates.iter().map(|c| self.ruling_out(key, base(c))).collect();
        if ruling.iter().any(Option::is_none) {
            let mut ruling = ruling.into_iter();
            candidates.retain(|_| ruling.next().flatten().is_none());
            return;
        }
        if candidates.is_empty() || self.mending == Mending::Blame {
            return;
        }
        let mut learned = Nogood::new();
        for n in ruling.into_iter().flatten() {
            for (&k, within) in self.nogoods[n].iter().filter(|(k, _)| **k != key) {
                match learned.get_mut(&k) {
                    Some(both) => both.retain(|b| within.contains(b)),
                    None => {
                        learned.insert(k, within.clone());
                    }
                }
            }
        }
        self.stuck = true;
        self.exhausted = learned.is_empty() || !self.learn(learned);
    }

    /// Keeps the spellings of a read or cas (`key`) whose bases complete no
    /// nogood, if any; of those that differ in their appends, the freshest
    /// ([`keep_freshest_appends`]), a choice. When backtracking, spellings
    /// narrowed by nogoods are a choice too: the nogoods that involve what
    /// follows from it must say so. An error if the run is stuck.
    fn spell(&mut self, ops: &[Operation], key: usize, found: &mut Vec<Spelling>) -> Result<(), Failure> {
        let before = found.len();
        self.keep_allowed(key, found, |f| f.base);
        if self.stuck {
            return Err(Failure::Shape);
        }
        let differ = found.iter().any(|f| f.appends != found[0].appends);
        if differ {
            keep_freshest_appends(ops, found);
        }
        if differ || (found.len() < before && self.mending == Mending::Backtrack) {
            let bases = found.iter().map(|f| f.base).collect();
            self.made(Choice { key, bases, ops: vec![key], others: true });
        }
        Ok(())
    }

    /// Learns the nogood [`Mending`] says of the choices that put an
    /// operation a contradiction involves (`involves`, those it names
    /// first) in a block, each as narrowly as this run made it; false if
    /// there is none, or it was learned already (another run would be the
    /// same).
    fn contradicted(&mut self, involves: &[usize]) -> bool {
        // Blaming looks at every choice made, a spelling before the unit
        // of one read it holds; a nogood holds the narrowest of each.
        let involved = self.made.iter().enumerate().filter_map(|(at, c)| {
            if self.mending == Mending::Backtrack && self.latest[&c.key] != at {
                return None;
            }
            let rank = c.ops.iter().filter_map(|op| involves.iter().position(|i| i == op)).min()?;
            Some((rank, c))
        });
        let nogood: Nogood = match self.mending {
            Mending::Blame => involved
                .filter(|(_, c)| c.others && c.bases.iter().any(|&b| self.ruling_out(c.key, b).is_none()))
                .min_by_key(|(rank, _)| *rank)
                .map(|(_, c)| (c.key, c.bases.clone()))
                .into_iter()
                .collect(),
            Mending::Backtrack => involved.map(|(_, c)| (c.key, c.bases.clone())).collect(),
        };
        !nogood.is_empty() && self.learn(nogood)
    }

    fn learn(&mut self, nogood: Nogood) -> bool {
        if self.nogoods.contains(&nogood) {
            return false;
        }
        for &key in nogood.keys() {
            self.naming.entry(key).or_default().push(self.nogoods.len());
        }
        self.nogoods.push(nogood);
        true
    }
}

impl Mending {
    /// How many times a guess is mended (each time the inference runs
    /// again, about as long as the first time) before the key is left to the
    /// search: blaming rules out one base each time, backtracking may need
    /// one run per candidate of the latest choice involved.
    fn runs(self) -> usize {
        match self {
            Mending::Blame => 64,
            Mending::Backtrack => 1024,
        }
    }
}

/// Decides the key whose operations are `ops` (in the order of their ids),
/// starting from `initial`. A key whose reads are ambiguous (as reads of an
/// absent key are once it has deletes) is valid if a guess of each such
/// read's base leads to an order the replay accepts, and left to the search
/// otherwise.
pub fn decide(ops: &[Operation], initial: &Option<Value>) -> Inference {
    decide_within(ops, initial, far_future())
}

/// [`decide`], giving up (undecided) at `deadline`: a key of many `info`
/// deletes and reads of an absent key keeps many candidates per read, and
/// the guesses and refutations rerun the inference, so its cost is bounded
/// by the check's budget rather than trusted to be small.
pub fn decide_within(ops: &[Operation], initial: &Option<Value>, deadline: Instant) -> Inference {
    decide_unguessed(ops, initial, deadline).unwrap_or_else(|| decide_by_guessing(ops, initial, deadline))
}

/// [`decide_within`] while no read needs a guess, in time about linear in
/// the key's history; `None` where one does (a value written twice, an
/// absent key once it has deletes): [`decide_by_guessing`] goes on from
/// there, at a cost that can grow with the square of the history.
pub fn decide_unguessed(ops: &[Operation], initial: &Option<Value>, deadline: Instant) -> Option<Inference> {
    let Some(whole) = shape(ops, initial) else { return Some(Inference::Undecided) };
    match infer_with(ops, initial, &whole, Mode::Strict, deadline) {
        // Never trusted unreplayed: a flaw of this inference is left to the search.
        Ok(order) if replay(ops, initial, &order).is_ok() => Some(Inference::Valid),
        Ok(_) | Err(Failure::Shape) => Some(Inference::Undecided),
        Err(Failure::Refuted(why, op, _)) => Some(Inference::Invalid { why, op }),
        Err(Failure::Ambiguous) => None,
    }
}

/// The rest of [`decide_within`] for a key [`decide_unguessed`] left
/// undecided for want of a guess.
pub fn decide_by_guessing(ops: &[Operation], initial: &Option<Value>, deadline: Instant) -> Inference {
    let Some(whole) = shape(ops, initial) else { return Inference::Undecided };
    let guesses = [Guess::LatestInvoked, Guess::LatestReturned];
    // A guess that meets a contradiction is mended and run again: first by
    // blame, within a quarter of the time left; then, once the
    // contradictions that hold for every guess have refuted nothing, by
    // backtracking, within a quarter of what is left then, half of it each
    // guess. The search gets the rest.
    let quarter_left = || Instant::now() + deadline.saturating_duration_since(Instant::now()) / 4;
    let blame_until = quarter_left();
    for guess in guesses {
        if linearized(ops, initial, &whole, Guessing::new(guess, Mending::Blame), blame_until, deadline) {
            return Inference::Valid;
        }
    }
    if let Some(invalid) = refuted(ops, initial, &whole, deadline) {
        return invalid;
    }
    let backtrack_until = quarter_left();
    for (at, guess) in guesses.into_iter().enumerate() {
        let now = Instant::now();
        let until = now + backtrack_until.saturating_duration_since(now) / (guesses.len() - at) as u32;
        if linearized(ops, initial, &whole, Guessing::new(guess, Mending::Backtrack), until, deadline) {
            return Inference::Valid;
        }
    }
    Inference::Undecided
}

/// Whether a guess, mended after each contradiction (until `until`, the
/// first run until `deadline`), leads to an order the replay accepts.
fn linearized(
    ops: &[Operation],
    initial: &Option<Value>,
    whole: &Shape,
    mut guessing: Guessing,
    until: Instant,
    deadline: Instant,
) -> bool {
    for runs in 0..=guessing.mending.runs() {
        // Blaming's first run is the guess itself, given all the time;
        // backtracking only ever runs within its share.
        let run_until = match guessing.mending {
            Mending::Blame if runs == 0 => deadline,
            _ if Instant::now() >= until => return false,
            _ => until,
        };
        let involves = match infer_with(ops, initial, whole, Mode::Guess(&mut guessing), run_until) {
            Ok(order) => match replay(ops, initial, &order) {
                Ok(()) => return true,
                Err(involves) => involves,
            },
            Err(Failure::Refuted(_, _, involves)) => involves,
            Err(_) => Vec::new(),
        };
        // A stuck run has learned its nogood already.
        let mended = if guessing.stuck { !guessing.exhausted } else { guessing.contradicted(&involves) };
        if !mended {
            return false;
        }
    }
    false
}

/// The key refuted by a contradiction that holds for every guess, if one
/// is found before `deadline`.
fn refuted(ops: &[Operation], initial: &Option<Value>, whole: &Shape, deadline: Instant) -> Option<Inference> {
    // Without the ambiguous reads: a read left out of a linearization
    // leaves one of the rest, so a contradiction among the rest
    // refutes the whole key.
    let (kept, ambiguous) = unambiguous(ops, initial, whole);
    let rest: Vec<Operation> = kept.iter().map(|&i| ops[i].clone()).collect();
    let rest_shape = shape(&rest, initial)?;
    if let Err(Failure::Refuted(why, op, _)) = infer_with(&rest, initial, &rest_shape, Mode::Refute(None), deadline) {
        let why = format!("{why} (found with the reads several writes or deletes could explain left out)");
        return Some(Inference::Invalid { why, op: kept[op] });
    }
    // Then with one unit of them (the reads that hold one first append
    // share its base in every linearization), given each base they could
    // share in turn: if every one is refuted, so is the whole key.
    let mut runs = 0;
    for (reads, first, bases) in ambiguous {
        let read = reads[0];
        let (who, has) = match (&reads[..], first) {
            ([_, others @ ..], Some(first)) if !others.is_empty() => (
                format!(
                    "{} and {} other read(s) that hold {} first after their base",
                    describe(&ops[read]),
                    others.len(),
                    describe(&ops[first])
                ),
                "have",
            ),
            _ => (describe(&ops[read]), "has"),
        };
        if bases.is_empty() {
            let why = format!("{who} have no base in common, but one append follows one write");
            return Some(Inference::Invalid { why, op: read });
        }
        runs += bases.len();
        if runs > AMBIGUOUS_RUNS || Instant::now() >= deadline {
            break;
        }
        let mut with: Vec<usize> = kept.iter().copied().chain(reads.iter().copied()).collect();
        with.sort_unstable();
        let rest: Vec<Operation> = with.iter().map(|&i| ops[i].clone()).collect();
        let at: Vec<usize> = reads.iter().map(|r| with.binary_search(r).expect("kept")).collect();
        let Some(rest_shape) = shape(&rest, initial) else { break };
        let (mut why, tried) = (Vec::new(), bases.len());
        for base in bases {
            let base = base.map(|op| with.binary_search(&op).expect("bases are kept"));
            match infer_with(&rest, initial, &rest_shape, Mode::Refute(Some((&at, base))), deadline) {
                Err(Failure::Refuted(reason, ..)) => why.push(reason),
                _ => break,
            }
        }
        if why.len() == tried {
            let why = format!(
                "{who} {has} no base that fits: {}",
                why.iter().map(|w| format!("({w})")).collect::<Vec<_>>().join(", or ")
            );
            return Some(Inference::Invalid { why, op: read });
        }
    }
    None
}

/// How many times [`decide`] runs the inference with one unit of ambiguous
/// reads given one of its bases, to refute a key no guess linearized: each run
/// takes about as long as the first (milliseconds for thousands of
/// operations).
const AMBIGUOUS_RUNS: usize = 128;

/// The operations but for the reads several bases could spell, by index,
/// and those reads in units, each with the bases its reads could share: the
/// reads whose every spelling holds one first append, which follows one
/// base, form one unit; each other read is a unit alone. Units of several
/// reads come first (the likeliest to be refuted), then those with the
/// fewest bases (the cheapest to refute).
#[allow(clippy::type_complexity)]
fn unambiguous(
    ops: &[Operation],
    initial: &Option<Value>,
    shape: &Shape,
) -> (Vec<usize>, Vec<(Vec<usize>, Option<usize>, Vec<Base>)>) {
    let mut units: Vec<(Vec<usize>, Option<usize>, Vec<Base>)> = Vec::new();
    let mut by_first: HashMap<usize, usize> = HashMap::new();
    for &read in &shape.reads {
        let found = spellings(ops, initial, shape, &ops[read]).found;
        if found.len() < 2 {
            continue;
        }
        let mut bases: Vec<Base> = found.iter().map(|s| s.base).collect();
        bases.dedup();
        let first = found[0].appends.first().copied().filter(|&a| found.iter().all(|s| s.appends.first() == Some(&a)));
        match first.and_then(|a| by_first.get(&a)) {
            Some(&unit) => {
                let (reads, _, shared) = &mut units[unit];
                reads.push(read);
                shared.retain(|b| bases.contains(b));
            }
            None => {
                if let Some(a) = first {
                    by_first.insert(a, units.len());
                }
                units.push((vec![read], first, bases));
            }
        }
    }
    units.sort_by_key(|(reads, _, bases)| (reads.len() == 1, bases.len()));
    let left_out: BTreeSet<usize> = units.iter().flat_map(|(reads, ..)| reads.iter().copied()).collect();
    ((0..ops.len()).filter(|i| !left_out.contains(i)).collect(), units)
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

/// What [`infer_with`] does with a read or cas several bases could spell.
enum Mode<'a> {
    /// Gives up ([`Failure::Ambiguous`]).
    Strict,
    /// Gives each one, and a contradiction refutes only that guess.
    Guess(&'a mut Guessing),
    /// Only refutes: the reads given (by index, sorted) are given that base,
    /// and a cas that took effect whose expected value several bases spell
    /// (with the same appends) is left unchecked (see the module docs):
    /// that drops constraints only, so a contradiction still refutes the
    /// key; the order found, if any, is not one of the key.
    Refute(Option<(&'a [usize], Base)>),
}

/// A linearization (operation indices, info operations no read saw left
/// out), or why none was found, with reads or cas several bases could spell
/// treated as `mode` says; `shape` is that of `ops`. Past `deadline` it
/// gives up as if the key had another shape.
fn infer_with(
    ops: &[Operation],
    initial: &Option<Value>,
    shape: &Shape,
    mut mode: Mode,
    deadline: Instant,
) -> Result<Vec<usize>, Failure> {
    let (force, refute) = match &mode {
        Mode::Refute(force) => (*force, true),
        _ => (None, false),
    };
    let mut guessing = match &mut mode {
        Mode::Guess(guessing) => Some(&mut **guessing),
        _ => None,
    };
    if let Some(guessing) = guessing.as_deref_mut() {
        guessing.begin();
    }
    // 1. Each read's base and appends.
    let mut reads_of: HashMap<Base, Vec<(usize, Vec<usize>)>> = HashMap::new();
    let mut ambiguous: Vec<Ambiguous> = Vec::new();
    for &read in &shape.reads {
        if Instant::now() >= deadline {
            return Err(Failure::Shape);
        }
        let Spellings { mut found, twice, excluded } = spellings(ops, initial, shape, &ops[read]);
        if let Some((forced, base)) = force
            && forced.binary_search(&read).is_ok()
        {
            found.retain(|s| s.base == base);
        }
        if let Some(guessing) = guessing.as_deref_mut() {
            guessing.spell(ops, read, &mut found)?;
        }
        match found.len() {
            0 => return Err(unspelled(ops, initial, read, excluded, twice)),
            1 => {
                let Spelling { base, appends } = found.pop().expect("one");
                reads_of.entry(base).or_default().push((read, appends));
            }
            _ if guessing.is_some() && found.iter().all(|f| f.appends == found[0].appends) => {
                ambiguous.push((read, found));
            }
            _ => return Err(Failure::Ambiguous),
        }
    }

    // 1, for cas: each one that took effect (acknowledged, or info with a
    // value some read or such cas saw) is a read of its expected value.
    let mut cas_of: HashMap<Base, Vec<(usize, Vec<usize>)>> = HashMap::new();
    let mut took_effect: BTreeSet<usize> = reads_of.keys().flatten().copied().collect();
    let mut next: Vec<usize> =
        shape.cas.iter().copied().filter(|&c| ops[c].ret.is_some() || took_effect.contains(&c)).collect();
    took_effect.extend(next.iter().copied());
    let first_after: HashMap<usize, Base> = reads_of
        .iter()
        .flat_map(|(&base, reads)| reads.iter().filter_map(move |(_, appends)| Some((*appends.first()?, base))))
        .collect();
    let followed: BTreeSet<Base> = first_after.values().copied().collect();
    while let Some(cas) = next.pop() {
        let Spellings { mut found, twice, excluded } = spellings(ops, initial, shape, &ops[cas]);
        if let Some(guessing) = guessing.as_deref_mut() {
            guessing.spell(ops, cas, &mut found)?;
        }
        let Spelling { base, appends } = match found.len() {
            0 => return Err(unspelled(ops, initial, cas, excluded, twice)),
            1 => found.pop().expect("one"),
            // Several bases spell it with the same appends (the absent key's
            // appends, once the key has deletes; a value written twice): a
            // guess, which the replay checks: the base an unambiguous read
            // put its first append after, else the one invoked last that no
            // other cas replaced and no read saw another first append after
            // (the cas found none or its own), else the one invoked last no
            // other cas replaced.
            _ if guessing.is_some() && found.iter().all(|f| f.appends == found[0].appends) => {
                // `spell` has set aside the bases nogoods ruled out.
                let guessing = guessing.as_deref_mut().expect("guessing");
                let owner = found[0].appends.first().and_then(|a| first_after.get(a));
                let latest = |free: &dyn Fn(&Spelling) -> bool| {
                    let free = found.iter().enumerate().filter(|(_, f)| free(f));
                    free.max_by_key(|(_, f)| f.base.map_or(0, |op| ops[op].call + 1)).map(|(i, _)| i)
                };
                let pick = found
                    .iter()
                    .position(|f| Some(&f.base) == owner)
                    .or_else(|| latest(&|f| !cas_of.contains_key(&f.base) && !followed.contains(&f.base)))
                    .or_else(|| latest(&|f| !cas_of.contains_key(&f.base)));
                let pick = found.swap_remove(pick.unwrap_or(0));
                guessing.made(Choice { key: cas, bases: vec![pick.base], ops: vec![cas], others: !found.is_empty() });
                pick
            }
            _ if refute && found.iter().all(|f| f.appends == found[0].appends) => continue,
            _ if guessing.is_none() && found.iter().all(|f| f.appends == found[0].appends) => {
                return Err(Failure::Ambiguous);
            }
            _ => return Err(Failure::Shape),
        };
        if let Some(b) = base
            && shape.cas.binary_search(&b).is_ok()
            && took_effect.insert(b)
        {
            next.push(b);
        }
        cas_of.entry(base).or_default().push((cas, appends));
    }
    if let Some(guessing) = guessing {
        let units = units(ops, &shape.overwrites, &took_effect, guessing, ambiguous);
        if !units.is_empty() {
            let mut items = items(ops, initial, reads_of.clone(), cas_of.clone())?;
            if !place_units(ops, guessing, &mut items, units, &mut reads_of, &cas_of, deadline) {
                return Err(Failure::Shape);
            }
        }
    }
    let items = items(ops, initial, reads_of, cas_of)?;
    let order = place(ops, initial, &items, false)?;
    if let Some(order) = with_mismatches(ops, initial, order, &shape.mismatches) {
        return Ok(order);
    }
    // Another order may give a mismatch a place.
    let order = place(ops, initial, &items, true)?;
    with_mismatches(ops, initial, order, &shape.mismatches).ok_or(Failure::Shape)
}

/// Why a read (or a cas that took effect) has no base: none spells its
/// value, or the only ones that do cannot be what it saw.
fn unspelled(
    ops: &[Operation],
    initial: &Option<Value>,
    read: usize,
    excluded: Option<Excluded>,
    twice: bool,
) -> Failure {
    let refuted = |why, read| Failure::Refuted(why, read, vec![read]);
    let saw = if matches!(ops[read].input, Input::Cas(..)) { "expected" } else { "read" };
    if let Some((unseen, by)) = excluded {
        let seen = match unseen {
            Unseen::Base(base, appended) => format!(
                "{} can only have seen {}{}",
                describe(&ops[read]),
                describe_base(ops, initial, base),
                if appended { " and appends after it" } else { "" }
            ),
            Unseen::Append(append) => {
                format!("{} can only have seen a value that holds {}", describe(&ops[read]), describe(&ops[append]))
            }
        };
        let initial_value = matches!(unseen, Unseen::Base(None, _));
        let why = match (by, initial_value) {
            (Some(by), true) => {
                format!("{seen}, but {} had returned before the {saw} was invoked", describe(&ops[by]))
            }
            (Some(by), false) => format!(
                "{seen}, but {} was invoked after that returned and returned before the {saw} was invoked: it overwrote it",
                describe(&ops[by])
            ),
            (None, _) => format!("{seen}, which was invoked after the {saw} returned"),
        };
        return refuted(why, read);
    }
    if twice {
        let why = format!("{} {saw} a value that holds an append twice", describe(&ops[read]));
        return refuted(why, read);
    }
    let why = format!(
        "{} {saw} a value that no write, delete, cas or initial value followed by appends leaves",
        describe(&ops[read])
    );
    refuted(why, read)
}

/// The blocks of the bases the reads saw, and the acknowledged changes no
/// read saw; or the first contradiction within a block.
fn items(
    ops: &[Operation],
    initial: &Option<Value>,
    mut reads_of: HashMap<Base, Vec<(usize, Vec<usize>)>>,
    mut cas_of: HashMap<Base, Vec<(usize, Vec<usize>)>>,
) -> Result<Vec<Item>, Failure> {
    let refuted = Failure::Refuted;
    let mut owner: HashMap<usize, (Base, usize)> = HashMap::new();
    // Each block with the cas that ends it, if one does.
    let mut blocks: Vec<(Base, Vec<Group>, Option<usize>)> = Vec::new();
    let mut bases: Vec<Base> = reads_of.keys().chain(cas_of.keys()).copied().collect();
    bases.sort_unstable();
    bases.dedup();
    for base in bases {
        let mut reads = reads_of.remove(&base).unwrap_or_default();
        reads.sort_by_key(|(r, appends)| (appends.len(), *r));
        // 1, for cas: one that took effect replaced its base's value at the
        // state it expected; nothing of that base comes after it.
        let mut cas = cas_of.remove(&base).unwrap_or_default();
        cas.sort_unstable();
        if let [(first, _), (second, _), ..] = cas[..] {
            let why = format!(
                "{} and {} both replaced {} (each expected the value it left), but a write's value is replaced once",
                describe(&ops[first]),
                describe(&ops[second]),
                describe_base(ops, initial, base)
            );
            return Err(refuted(why, second, vec![second, first]));
        }
        let cas = cas.pop();
        if let (Some((c, expected)), Some((read, seen))) = (&cas, reads.last())
            && seen.len() > expected.len()
        {
            let why = format!(
                "{} holds {} append(s) after {}, but {} found {} of them and replaced the value: nothing brings it back",
                describe(&ops[*read]),
                seen.len(),
                describe_base(ops, initial, base),
                describe(&ops[*c]),
                expected.len()
            );
            return Err(refuted(why, *read, vec![*read, *c]));
        }
        let (longest_read, longest) = match &cas {
            Some((c, expected)) => (*c, expected.clone()),
            None => reads.last().map(|(r, a)| (*r, a.clone())).expect("a read or a cas saw it"),
        };
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
                return Err(refuted(why, longest_read, vec![longest_read, by, append]));
            }
        }
        // Groups: the base, the reads of it alone, the first append, ...,
        // and last the cas that replaced it.
        let mut groups: Vec<Group> = Vec::with_capacity(2 * longest.len() + 3);
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
                    return Err(refuted(why, *read, vec![*read, longest_read]));
                }
                group.push(*read);
            }
            if !group.is_empty() {
                groups.push(group);
            }
        }
        if let Some((c, _)) = cas {
            groups.push(vec![c]);
        }
        blocks.push((base, groups, cas.map(|(c, _)| c)));
    }

    // 2, for cas: the block of a cas's value continues the block the cas
    // ends (its first step, the cas, is that block's last), so a chain of
    // them is one block from its first base on.
    let seen_base: BTreeSet<usize> = blocks.iter().filter_map(|(b, ..)| *b).collect();
    let at: HashMap<Base, usize> = blocks.iter().enumerate().map(|(i, (b, ..))| (*b, i)).collect();
    let successor: Vec<Option<usize>> =
        blocks.iter().map(|(_, _, cas)| cas.and_then(|c| at.get(&Some(c)).copied())).collect();
    let mut continues = vec![false; blocks.len()];
    for &s in successor.iter().flatten() {
        continues[s] = true;
    }
    let mut merged: Vec<(Base, Vec<Group>)> = Vec::new();
    let mut done = vec![false; blocks.len()];
    for first in 0..blocks.len() {
        if continues[first] {
            continue;
        }
        let mut groups = std::mem::take(&mut blocks[first].1);
        done[first] = true;
        let mut at = successor[first];
        while let Some(i) = at {
            done[i] = true;
            groups.extend(std::mem::take(&mut blocks[i].1).into_iter().skip(1));
            at = successor[i];
        }
        merged.push((blocks[first].0, groups));
    }
    if let Some(i) = done.iter().position(|d| !d) {
        // Every block of the cycle continues another: each cas expected a
        // value one after it left.
        let cas = blocks[i].0.expect("only a cas's block continues another");
        let why = format!(
            "{} expected a value that a chain of cas starting from its own left: each expects the value of the one before, in a cycle",
            describe(&ops[cas])
        );
        let cycle = (0..blocks.len()).filter(|&i| !done[i]).filter_map(|i| blocks[i].0);
        return Err(refuted(why, cas, cycle.collect()));
    }

    // 2. Items: the blocks, then every acknowledged change no read saw.
    let mut items: Vec<Item> = Vec::new();
    for (base, mut groups) in merged {
        // 3, within a block: no operation returned before one of an earlier
        // step was invoked.
        let mut latest: Option<(u64, usize)> = if base.is_none() { Some((0, BEFORE_ALL)) } else { None };
        for group in &mut groups {
            group.sort_by_key(|&op| ops[op].call);
        }
        for group in &groups {
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
                    let block = groups.iter().flatten().copied();
                    return Err(refuted(why, op, [op, by].into_iter().chain(block).collect()));
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
    Ok(items)
}

/// An order of the items in which no operation returned before one placed
/// earlier was invoked; or two items that must each precede the other.
/// Of the two items that may go next, the one whose first return is
/// earliest goes first, or with `invoked_first` the other one, invoked
/// earliest (either way any item that may go keeps an order possible: the
/// rest is a part of an order with no cycle).
fn place(
    ops: &[Operation],
    initial: &Option<Value>,
    items: &[Item],
    invoked_first: bool,
) -> Result<Vec<usize>, Failure> {
    // 3, between items: place one whenever nothing must precede it.
    let mut by_return: BTreeSet<((u64, usize), usize)> =
        items.iter().enumerate().map(|(i, it)| (it.first_return, i)).collect();
    let mut by_call: BTreeSet<((u64, usize), usize)> =
        items.iter().enumerate().map(|(i, it)| (it.last_call, i)).collect();
    let mut order: Vec<usize> = Vec::with_capacity(ops.len());
    while let Some(&(m_return, m)) = by_return.first() {
        let second = by_return.iter().nth(1).copied();
        // `m` may go when no other item returned before its last call.
        let m_may = second.is_none_or(|(r, _)| items[m].last_call < r);
        // Another item may go when no item returned before its last call:
        // the earliest-invoked one other than `m` is the one to try.
        let other = || {
            let other = by_call.iter().map(|&(_, i)| i).find(|&i| i != m)?;
            (items[other].last_call < m_return).then_some(other)
        };
        let pick = match (m_may, invoked_first) {
            (true, false) => Some(m),
            (true, true) => other().or(Some(m)),
            (false, _) => other(),
        };
        let Some(pick) = pick else {
            // `m` and the second must each precede the other.
            let (_, n) = second.expect("two items are left");
            let (why, op, named) = cycle(ops, initial, &items[m], &items[n]);
            let both = [m, n].into_iter().flat_map(|i| items[i].groups.iter().flatten().copied());
            return Err(Failure::Refuted(why, op, named.into_iter().chain(both).collect()));
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
fn cycle(ops: &[Operation], initial: &Option<Value>, a: &Item, b: &Item) -> (String, usize, Vec<usize>) {
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
    let named = [a_call, b_ret, b_call, a_ret].into_iter().filter(|&op| op != BEFORE_ALL).collect();
    (why, a_call, named)
}

/// `order` with each cas that reported a mismatch put in, at the first
/// place within its real time (after every operation placed earlier was
/// invoked, before every one placed later returned) where the value is not
/// the one it expected; `None` if one has no such place. The ones put in one
/// place go in the order of their invocations.
fn with_mismatches(
    ops: &[Operation],
    initial: &Option<Value>,
    order: Vec<usize>,
    mismatches: &[usize],
) -> Option<Vec<usize>> {
    if mismatches.is_empty() {
        return Some(order);
    }
    // Before place `p` (between order[p - 1] and order[p]): the latest
    // invocation before it (plus one; 0: none) and the earliest return
    // after it.
    let mut latest_call = vec![0u64; order.len() + 1];
    for (p, &op) in order.iter().enumerate() {
        latest_call[p + 1] = latest_call[p].max(ops[op].call + 1);
    }
    let mut earliest_return = vec![u64::MAX; order.len() + 1];
    for (p, &op) in order.iter().enumerate().rev() {
        earliest_return[p] = earliest_return[p + 1].min(ops[op].ret.unwrap_or(u64::MAX));
    }
    // Each one's first and last place: later ones returned after it was
    // invoked, earlier ones were invoked before it returned.
    let mut spans: Vec<(usize, usize, usize)> = mismatches
        .iter()
        .map(|&m| {
            let (call, ret) = (ops[m].call, ops[m].ret.expect("a mismatch returned"));
            let first = earliest_return.partition_point(|&r| r <= call);
            let last = latest_call.partition_point(|&c| c <= ret) - 1;
            (first, last, m)
        })
        .collect();
    if spans.iter().any(|&(first, last, _)| first > last) {
        return None;
    }
    spans.sort_unstable_by_key(|&(first, _, m)| (first, ops[m].call));
    let mut placed: Vec<Vec<usize>> = vec![Vec::new(); order.len() + 1];
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut spans = spans.into_iter().peekable();
    let mut value = initial.clone();
    for p in 0..=order.len() {
        if p > 0 {
            // In place: a value grows by every append.
            value = match (&ops[order[p - 1]].input, value.take()) {
                (Input::Append(suffix), Some(Value::Str(mut s))) => {
                    s.push_str(suffix);
                    Some(Value::Str(s))
                }
                (input, before) => crate::model::run(&before, input).1,
            };
        }
        while let Some((_, last, m)) = spans.next_if(|&(first, ..)| first == p) {
            open.push((last, m));
        }
        // The ones that may go here: the value is not the one they expected,
        // and no one left open returned before they were invoked (it would
        // have to go before them, so here too).
        let differs = |m: usize| {
            let Input::Cas(expected, _) = &ops[m].input else { unreachable!("a cas") };
            value.as_ref() != Some(expected)
        };
        let mut go: Vec<bool> = open.iter().map(|&(_, m)| differs(m)).collect();
        loop {
            let stay = open.iter().zip(&go).filter(|&(_, &g)| !g).map(|(&(_, m), _)| ops[m].ret.unwrap_or(u64::MAX));
            let Some(earliest) = stay.min() else { break };
            let mut changed = false;
            for (&(_, m), g) in open.iter().zip(go.iter_mut()) {
                if *g && ops[m].call >= earliest {
                    (*g, changed) = (false, true);
                }
            }
            if !changed {
                break;
            }
        }
        let mut still = Vec::with_capacity(open.len());
        for (&(last, m), g) in open.iter().zip(go) {
            if g {
                placed[p].push(m);
            } else if last > p {
                still.push((last, m));
            } else {
                return None;
            }
        }
        open = still;
    }
    if !open.is_empty() || spans.peek().is_some() {
        return None;
    }
    let mut out = Vec::with_capacity(order.len() + mismatches.len());
    for (p, mut here) in placed.into_iter().enumerate() {
        here.sort_unstable_by_key(|&m| ops[m].call);
        out.extend(here);
        if let Some(&op) = order.get(p) {
            out.push(op);
        }
    }
    Some(out)
}

/// Replays `order` on the model: every result as the model gives it, and
/// every operation invoked before every operation placed after it returned;
/// every completed operation placed once. If not, the operations that show
/// it: the one out of place first, then (for a result the model does not
/// give) the two placed just before it, as a contradiction names them.
fn replay(ops: &[Operation], initial: &Option<Value>, order: &[usize]) -> Result<(), Vec<usize>> {
    let mut value = initial.clone();
    let mut placed = vec![false; ops.len()];
    let mut latest_call = 0;
    for (at, &i) in order.iter().enumerate() {
        let op = &ops[i];
        if std::mem::replace(&mut placed[i], true) {
            return Err(vec![i]);
        }
        if op.ret.is_some_and(|r| r <= latest_call) {
            return Err(vec![i]);
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
                None => {
                    return Err(std::iter::once(i)
                        .chain(order[at.saturating_sub(2)..at].iter().rev().copied())
                        .collect());
                }
            },
        }
    }
    match ops.iter().zip(&placed).position(|(o, &placed)| o.ret.is_some() && !placed) {
        Some(i) => Err(vec![i]),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One run of two choices made in order, `a` (key 1) then `b` (key
    /// 2), each of three bases; `None` if the run got stuck.
    fn run_pair(guessing: &mut Guessing) -> Option<(usize, usize)> {
        guessing.begin();
        fn pick(guessing: &mut Guessing, key: usize) -> usize {
            let mut candidates: Vec<Base> = (0..3).map(Some).collect();
            guessing.keep_allowed(key, &mut candidates, |b| *b);
            let base = candidates[0];
            guessing.made(Choice { key, bases: vec![base], ops: vec![key * 10], others: candidates.len() > 1 });
            base.expect("a base")
        }
        let a = pick(guessing, 1);
        if guessing.stuck {
            return None;
        }
        let b = pick(guessing, 2);
        (!guessing.stuck).then_some((a, b))
    }

    /// Every pair but `solution` is a contradiction that involves both
    /// choices (or, when `a` is 0, `a` alone). One run per pair tried,
    /// each pair at most once.
    fn backtrack_until_allowed(solution: (usize, usize)) -> Vec<(usize, usize)> {
        let mut guessing = Guessing::new(Guess::LatestInvoked, Mending::Backtrack);
        let mut tried = Vec::new();
        for _ in 0..20 {
            let Some((a, b)) = run_pair(&mut guessing) else {
                assert!(!guessing.exhausted, "a solution is left");
                continue;
            };
            assert!(!tried.contains(&(a, b)), "{:?} tried twice: {tried:?}", (a, b));
            tried.push((a, b));
            if (a, b) == solution {
                return tried;
            }
            let involves = if a == 0 { vec![10] } else { vec![20, 10] };
            assert!(guessing.contradicted(&involves), "a new nogood");
        }
        panic!("not found: {tried:?}");
    }

    #[test]
    fn backtracking_that_every_pair_contradicts_is_exhausted_after_trying_each_once() {
        let mut guessing = Guessing::new(Guess::LatestInvoked, Mending::Backtrack);
        let mut tried = Vec::new();
        for _ in 0..30 {
            match run_pair(&mut guessing) {
                Some(pair) => {
                    assert!(!tried.contains(&pair), "{pair:?} tried twice: {tried:?}");
                    tried.push(pair);
                    assert!(guessing.contradicted(&[20, 10]), "a new nogood");
                }
                None if guessing.exhausted => break,
                None => {}
            }
        }
        assert!(guessing.exhausted, "{tried:?}");
        assert_eq!(tried.len(), 9, "{tried:?}");
    }

    #[test]
    fn backtracking_tries_each_pair_of_choices_at_most_once_and_skips_what_one_choice_ruled_out() {
        let tried = backtrack_until_allowed((2, 0));
        // a = 0 is ruled out alone, so b is tried under it once.
        assert_eq!(tried, [(0, 0), (1, 0), (1, 1), (1, 2), (2, 0)]);
    }

    #[test]
    fn a_choice_left_no_candidate_blames_the_choices_that_ruled_them_out() {
        let tried = backtrack_until_allowed((2, 2));
        assert_eq!(tried.last(), Some(&(2, 2)));
        assert_eq!(tried.len(), 7, "{tried:?}");
    }

    #[test]
    fn blaming_rules_out_the_first_named_choice_alone_and_never_gets_stuck() {
        let mut guessing = Guessing::new(Guess::LatestInvoked, Mending::Blame);
        let mut taken = Vec::new();
        for _ in 0..3 {
            guessing.begin();
            let mut candidates: Vec<Base> = vec![Some(0), Some(1)];
            guessing.keep_allowed(1, &mut candidates, |b| *b);
            assert!(!guessing.stuck);
            taken.push(candidates.clone());
            guessing.made(Choice { key: 1, bases: vec![candidates[0]], ops: vec![10], others: true });
            guessing.made(Choice { key: 2, bases: vec![Some(5)], ops: vec![20], others: true });
            // Named first: 10 (key 1), then 20 (key 2).
            assert!(guessing.contradicted(&[10, 20]));
        }
        // Both bases of key 1 ruled out, it takes any; the blame moves on.
        assert_eq!(taken, [vec![Some(0), Some(1)], vec![Some(1)], vec![Some(0), Some(1)]]);
        let one = |key: usize, base: usize| Nogood::from([(key, vec![Some(base)])]);
        assert_eq!(guessing.nogoods, [one(1, 0), one(1, 1), one(2, 5)]);
    }
}
