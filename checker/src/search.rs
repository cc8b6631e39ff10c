//! The linearizability search for one key: Wing & Gong's algorithm with
//! Lowe's just-in-time linearization and memoization, as in Porcupine.
//!
//! Operations become a doubly linked list of call and return entries in
//! history order. The search walks it: at a call it tries to linearize that
//! operation now (the model must accept it, and the pair (set of linearized
//! operations, model state) must be new); if it succeeds, both entries are
//! lifted out of the list and the walk restarts at the head. Reaching a
//! return entry means an operation returned without being linearized, so
//! the last choice is undone. An operation of unknown outcome (info) has its
//! return at the end of time: it may be linearized anywhere after its call,
//! and placing it after everything else is the same as it never happening.
//!
//! Two prunings keep a history with many concurrent clients from blowing
//! up; each keeps every linearization that matters (an exchange argument,
//! stated where the code applies it):
//!
//! - **Observations first.** An operation that never changes the value (a
//!   read, a cas that reported a mismatch), has been invoked and fits the
//!   current value is linearized at once, and no other choice is tried
//!   there: any linearization that places it later can place it now.
//! - **Twins in return order.** Of operations with the same input and the
//!   same output that are all invoked and not yet linearized, only the one
//!   that returns first (or, for info operations, the first one) may go
//!   next: swapping two twins in a linearization changes nothing.
//!
//! - **Info operations only where they are seen.** An info operation goes
//!   next only if it changes the value and some invoked operation that
//!   depends on the value (not a blind write or delete) fits right after
//!   it. A shortest linearization never holds an info operation that
//!   changes nothing, or whose effect nobody sees before it is overwritten
//!   or the history ends: removing it leaves every other step as it was.
//!   So the operation after it must be one that depends on the value.
//!
//! The set of linearized operations is kept as a Zobrist hash (a 128-bit XOR
//! of per-operation random keys) rather than a bitset, so a cache entry is a
//! few bytes however long the history. A hash collision can only prune a
//! branch, never invent a linearization: it could turn a valid verdict into
//! an invalid one with probability about 2^-128, and never the reverse.
//! The first 128 info operations are kept apart, as a bit mask: a node is
//! pruned when one was searched with the same value, the same other
//! operations and a subset of those info operations. Having more info
//! operations left never hurts (they are optional and never return), so
//! whatever failed with fewer used fails with more; and a shortest
//! linearization never comes back to a searched node with more used.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;
use stateright::semantics::SequentialSpec;

use crate::operation::{Input, Operation, Output};
use crate::value::Value;

/// A model state the search can memoize and show to a person.
pub trait SearchState: SequentialSpec<Op = Input, Ret = Output> + Clone + Eq + Hash {
    /// The key's value in this state.
    fn value(&self) -> &Option<Value>;

    fn describe(&self) -> String {
        crate::value::show(self.value())
    }
}

macro_rules! searchable {
    ($($t:ty),*) => {$(
        impl SearchState for $t {
            fn value(&self) -> &Option<Value> {
                &self.0
            }
        }
    )*};
}
searchable!(crate::model::Register, crate::model::CasRegister, crate::model::Kv);

/// Limits shared by every key of one check.
pub struct Limits {
    pub deadline: Instant,
    /// Bytes the caches of all keys may hold together.
    pub memory_bytes: usize,
    pub memory_used: AtomicUsize,
    /// Set by the caller to stop every search (a key of the history was
    /// already found invalid and the caller wants no more).
    pub cancelled: AtomicBool,
    /// Whether the search prunes (see the module docs). Always, but for the
    /// test that checks the prunings against the plain search.
    pub prune: bool,
}

impl Limits {
    pub fn new(deadline: Instant, memory_bytes: usize) -> Limits {
        Limits {
            deadline,
            memory_bytes,
            memory_used: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
            prune: true,
        }
    }
}

/// The [`Outcome::Unknown`] reason of a search stopped through [`Limits::cancelled`].
pub const CANCELLED: &str = "cancelled";

/// One step of a linearization: the operation and the state after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub op: usize,
    pub state_after: String,
}

/// An operation that could not be placed after the longest linearizable
/// prefix, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unplaced {
    pub op: usize,
    pub reason: String,
}

/// What a person needs to see why a key is not linearizable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counterexample {
    /// The longest prefix that could be linearized, in the order found.
    pub linearized: Vec<Step>,
    /// The operations that could come next but could not be placed there.
    pub unplaced: Vec<Unplaced>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Linearizable,
    NotLinearizable(Counterexample),
    /// The time or memory budget ran out (the reason says which).
    Unknown(String),
}

const NIL: usize = usize::MAX;
/// Operations whose return is at the end of time sort after every event.
const NEVER: u64 = u64::MAX;

#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For a call, its return entry.
    partner: usize,
    prev: usize,
    next: usize,
}

/// The call/return list. Entry 0 is the head sentinel.
struct EntryList {
    entries: Vec<Entry>,
}

impl EntryList {
    fn new(ops: &[Operation]) -> EntryList {
        let mut events: Vec<(u64, usize, bool)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, i, true));
            events.push((op.ret.unwrap_or(NEVER), i, false));
        }
        // Calls at one instant go before returns (only NEVER ties happen).
        events.sort_unstable_by_key(|&(at, op, is_call)| (at, !is_call, op));
        let mut entries = vec![Entry { op: NIL, is_call: false, partner: NIL, prev: NIL, next: NIL }];
        let mut return_of = vec![NIL; ops.len()];
        for &(_, op, is_call) in &events {
            let id = entries.len();
            let prev = id - 1;
            entries[prev].next = id;
            entries.push(Entry { op, is_call, partner: NIL, prev, next: NIL });
            if !is_call {
                return_of[op] = id;
            }
        }
        for e in entries.iter_mut().skip(1).filter(|e| e.is_call) {
            e.partner = return_of[e.op];
        }
        EntryList { entries }
    }

    fn first(&self) -> usize {
        self.entries[0].next
    }

    fn unlink(&mut self, id: usize) {
        let Entry { prev, next, .. } = self.entries[id];
        self.entries[prev].next = next;
        if next != NIL {
            self.entries[next].prev = prev;
        }
    }

    fn relink(&mut self, id: usize) {
        let Entry { prev, next, .. } = self.entries[id];
        self.entries[prev].next = id;
        if next != NIL {
            self.entries[next].prev = id;
        }
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.entries[call].partner);
    }

    /// Puts them back (in the reverse order of `lift`).
    fn unlift(&mut self, call: usize) {
        self.relink(self.entries[call].partner);
        self.relink(call);
    }
}

/// Per-operation Zobrist keys, from a fixed generator so runs repeat.
fn zobrist_keys(n: usize) -> Vec<u128> {
    let mut state: u64 = 0x5EED_CAFE_F00D_D00D;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n).map(|_| (u128::from(next()) << 64) | u128::from(next())).collect()
}

struct Frame<S> {
    call: usize,
    state: S,
    /// The time of the first return entry when this node was entered.
    frontier: u64,
    /// An observation taken as the only choice at its node: when it fails,
    /// the node fails.
    forced: bool,
    /// Whether the operation before this one was an info operation.
    after_info: bool,
    /// Whether its node had moved on to its info operations.
    info_phase: bool,
    /// What its node allowed to be appended next.
    next: Next,
}

/// Marks, in a node's hash, a node entered through an info operation:
/// fewer operations may follow there.
const AFTER_INFO: u128 = 0x9d3c_1f7e_55a2_4b08_e6f1_03c7_a2d9_6b41;

/// Whether an operation leaves every value as it found it.
fn observes_only(op: &Operation) -> bool {
    matches!(op.output, Output::Read(_) | Output::CasMismatch)
}

/// Info operations kept in a node's bit mask rather than in its hash.
const INFO_BITS: usize = 128;

/// The nodes searched: per (hash of the linearized operations outside the
/// mask, value), the masks of info operations they had linearized, none a
/// superset of another.
struct Seen<S> {
    nodes: HashMap<(u128, S), Vec<u128>>,
    masks: usize,
}

impl<S: Eq + Hash + Clone> Seen<S> {
    /// Records a node; false when it, or one that used a subset of its info
    /// operations, was searched already.
    fn visit(&mut self, fixed: u128, state: &S, info: u128) -> bool {
        let masks = self.nodes.entry((fixed, state.clone())).or_default();
        if masks.iter().any(|&m| m & !info == 0) {
            return false;
        }
        let before = masks.len();
        masks.retain(|&m| info & !m != 0);
        masks.push(info);
        self.masks = self.masks + masks.len() - before;
        true
    }

    fn bytes(&self) -> usize {
        self.nodes.len() * (std::mem::size_of::<((u128, S), Vec<u128>)>() + 16) + self.masks * 16
    }
}

/// Whether an operation sets the value whatever it was.
fn blind(op: &Operation) -> bool {
    matches!(op.input, Input::Write(_) | Input::Delete)
}

/// Whether an operation invoked by the frontier (the calls from `entry` up
/// to the first return), other than `info`, depends on the value `after`
/// that `info` leaves and fits it; an info one must also change it.
fn seen_next<S: SearchState>(list: &EntryList, ops: &[Operation], info: usize, after: &S, mut entry: usize) -> bool {
    while entry != NIL {
        let e = list.entries[entry];
        if !e.is_call {
            return false;
        }
        let op = &ops[e.op];
        if e.op != info && !blind(op) {
            let mut next = after.clone();
            if next.is_valid_step(&op.input, &op.output) && (op.ret.is_some() || next != *after) {
                return true;
            }
        }
        entry = e.next;
    }
    false
}

/// Twins (same input, same output) in return order, for the
/// "twins in return order" pruning.
struct Twins {
    /// The twins of each operation's class, by (return, id).
    classes: Vec<Vec<usize>>,
    /// Each operation's class, and its place in it.
    class_of: Vec<(usize, usize)>,
}

/// How many earlier-returning twins one candidate is compared with: a
/// shorter look can only prune less, never wrongly.
const TWINS_LOOKED_AT: usize = 16;

impl Twins {
    fn new(ops: &[Operation]) -> Twins {
        let mut ids: std::collections::HashMap<(&Input, &Output), usize> = std::collections::HashMap::new();
        let mut classes: Vec<Vec<usize>> = Vec::new();
        for op in ops {
            let next = ids.len();
            let class = *ids.entry((&op.input, &op.output)).or_insert(next);
            if class == classes.len() {
                classes.push(Vec::new());
            }
            classes[class].push(op.id);
        }
        let mut class_of = vec![(0, 0); ops.len()];
        for (c, members) in classes.iter_mut().enumerate() {
            members.sort_unstable_by_key(|&id| (ops[id].ret.unwrap_or(NEVER), id));
            for (place, &id) in members.iter().enumerate() {
                class_of[id] = (c, place);
            }
        }
        Twins { classes, class_of }
    }

    /// Whether a twin of `op` that returns no later is invoked by the
    /// frontier and not yet linearized. Then `op` need not go next: in any
    /// linearization that places `op` here and that twin later, the two can
    /// swap (the twin is invoked, and `op` returns no earlier than the twin).
    fn earlier_twin_waits(&self, op: usize, ops: &[Operation], lifted: &[bool], frontier: u64) -> bool {
        let (class, place) = self.class_of[op];
        let members = &self.classes[class];
        for &twin in members[..place].iter().rev().take(TWINS_LOOKED_AT) {
            // Every operation returning before the frontier is linearized.
            if ops[twin].ret.unwrap_or(NEVER) < frontier {
                return false;
            }
            if !lifted[twin] && ops[twin].call <= frontier {
                return true;
            }
        }
        false
    }
}

/// What may be appended next on a key of appends and reads only. Such a
/// value only grows, so a completed read invoked by the frontier that saw
/// `v` while the value is `s` says it all: if `v` does not extend `s` the
/// read can never be placed, and otherwise every append until it must
/// spell out the rest of `v`, the next one a prefix of it.
enum Next {
    Any,
    Prefix(String),
    Nothing,
}

impl Next {
    /// Narrows what may come next by one completed read that saw `seen`
    /// while the value is `have`.
    fn narrow(self, have: &str, seen: &str) -> Next {
        let Some(rest) = seen.strip_prefix(have) else { return Next::Nothing };
        match self {
            _ if rest.is_empty() => self,
            Next::Any => Next::Prefix(rest.to_string()),
            Next::Prefix(p) if rest.starts_with(&p) => Next::Prefix(p),
            Next::Prefix(p) if p.starts_with(rest) => Next::Prefix(rest.to_string()),
            _ => Next::Nothing,
        }
    }
}

/// One walk over a new node's calls, up to its first return: that
/// return's time, the first observation that fits `state`, and (on an
/// append-only key) what may be appended next.
fn scan_node<S: SearchState>(
    list: &EntryList,
    ops: &[Operation],
    state: &S,
    mut entry: usize,
    append_only: bool,
) -> (u64, Option<usize>, Next) {
    let mut observation = None;
    let have = if append_only { text(state.value().as_ref()) } else { String::new() };
    let mut next = Next::Any;
    while entry != NIL {
        let e = list.entries[entry];
        if !e.is_call {
            return (ops[e.op].ret.unwrap_or(NEVER), observation, next);
        }
        let op = &ops[e.op];
        if observation.is_none() && observes_only(op) && state.clone().is_valid_step(&op.input, &op.output) {
            observation = Some(entry);
        }
        if let (true, Output::Read(seen), Some(_)) = (append_only, &op.output, op.ret) {
            next = next.narrow(&have, &text(seen.as_ref()));
        }
        entry = e.next;
    }
    (NEVER, observation, next)
}

/// A value as text, as appends see it (absent: empty).
fn text(v: Option<&Value>) -> String {
    v.map(Value::text).unwrap_or_default()
}

/// Searches for a linearization of `ops` (one key's operations, `id` equal
/// to position) from `init`. With `explain`, a failed search also returns
/// the longest linearizable prefix and what could not follow it.
///
/// Once every completed operation is linearized, the info operations still
/// pending are taken never to have happened, and the search is done.
///
/// Two orders of trying the operations at a node race, each run for a step
/// budget that grows fourfold every round, and the first to decide wins:
/// the order of invocation (quick where info operations must be placed in
/// the order they were invoked, as after a crash that left many appends
/// open) and completed operations before info ones (quick where a history
/// is invalid and has many info operations, which the subsumed sets then
/// prune). Either decides alone; racing them costs at most a few times the
/// faster one, and the step budgets keep it deterministic.
pub fn search<S: SearchState>(ops: &[Operation], init: S, limits: &Limits, explain: bool) -> Outcome {
    search_within_steps(ops, init, limits, explain, u64::MAX).expect("no step cap")
}

/// [`search`]'s race, its rounds' step budgets growing fourfold up to
/// `max_steps` each; `None` if no round up to there decided. Cheap and
/// deterministic, for a key another way may decide faster when this
/// cannot quickly.
pub fn search_within_steps<S: SearchState>(
    ops: &[Operation],
    init: S,
    limits: &Limits,
    explain: bool,
    max_steps: u64,
) -> Option<Outcome> {
    if !limits.prune {
        return search_in(ops, init, limits, explain, false, max_steps, &mut 0);
    }
    let mut budget: u64 = FIRST_ROUND_STEPS;
    // An order whose cache outgrew the memory budget drops out of the race;
    // the other goes on alone (it may need far less).
    let mut racing = [true, true];
    let mut out_of_memory = None;
    // The longest prefix any round linearized, for an unknown outcome.
    let mut deepest = 0;
    loop {
        for (completed_first, racing) in [false, true].into_iter().zip(racing.iter_mut()) {
            if !*racing {
                continue;
            }
            match search_in(ops, init.clone(), limits, explain, completed_first, budget, &mut deepest) {
                None => {}
                Some(Outcome::Unknown(reason)) if reason.starts_with(MEMORY_RAN_OUT) => {
                    *racing = false;
                    out_of_memory = Some(reason);
                }
                Some(outcome) => return Some(outcome),
            }
        }
        if let (Some(reason), [false, false]) = (&out_of_memory, racing) {
            return Some(Outcome::Unknown(format!("{reason}{}", progress(deepest, ops))));
        }
        if budget >= max_steps {
            return None;
        }
        budget = budget.saturating_mul(4);
    }
}

/// The step budget of the race's first round.
pub const FIRST_ROUND_STEPS: u64 = 1 << 16;

/// How an [`Outcome::Unknown`] reason for the memory budget begins.
const MEMORY_RAN_OUT: &str = "memory budget";

/// How far a search got, after the reason it stopped.
const PROGRESS: &str = " (the longest linearizable prefix found holds ";

fn progress(deepest: usize, ops: &[Operation]) -> String {
    let completed = ops.iter().filter(|o| o.ret.is_some()).count();
    format!("{PROGRESS}{deepest} of {} operations, {completed} of them completed)", ops.len())
}

/// One search in one order, `None` when `max_steps` ran out first.
fn search_in<S: SearchState>(
    ops: &[Operation],
    init: S,
    limits: &Limits,
    explain: bool,
    completed_first: bool,
    max_steps: u64,
    deepest: &mut usize,
) -> Option<Outcome> {
    let mut list = EntryList::new(ops);
    let keys = zobrist_keys(ops.len());
    let twins = Twins::new(ops);
    let mut lifted = vec![false; ops.len()];
    // Each operation's share of a node: a bit of the info mask, or its key
    // in the hash of the rest.
    let mut info_ops = 0;
    let share: Vec<(u128, u128)> = ops
        .iter()
        .zip(keys)
        .map(|(op, key)| {
            if limits.prune && op.ret.is_none() && info_ops < INFO_BITS {
                info_ops += 1;
                (0, 1u128 << (info_ops - 1))
            } else {
                (key, 0)
            }
        })
        .collect();
    let mut seen: Seen<S> = Seen { nodes: HashMap::new(), masks: 0 };
    let mut info_mask: u128 = 0;
    let mut charged = 0usize;
    let mut stack: Vec<Frame<S>> = Vec::new();
    let mut state = init;
    let mut linearized: u128 = 0;
    // The longest prefix so far, as (op, state after); refreshed lazily when
    // the search backs out of a new deepest point.
    let mut best: Vec<(usize, S)> = Vec::new();
    let mut deepest_unsaved = false;
    // How many leading frames of the stack `best` already holds: saving a
    // new deepest prefix copies only what changed, so keeping it costs no
    // more than the search itself.
    let mut shared = 0;
    let mut entry = list.first();
    // A new node: where its first return lies, and an observation to force.
    let mut entered = true;
    let mut frontier = NEVER;
    let mut after_info = false;
    let mut info_phase = false;
    let append_only = ops.iter().all(|o| matches!(o.input, Input::Read | Input::Append(_)));
    let mut next = Next::Any;
    let mut steps: u64 = 0;
    let release = |charged: usize| {
        limits.memory_used.fetch_sub(charged, Ordering::Relaxed);
    };
    // Completed operations not yet linearized: once none is left, the info
    // operations still pending can be taken never to have happened.
    let mut pending_completed = ops.iter().filter(|o| o.ret.is_some()).count();
    loop {
        if pending_completed == 0 {
            release(charged);
            return Some(Outcome::Linearizable);
        }
        steps += 1;
        // Check the budget at the first step and every 4096 after.
        if steps & 4095 == 1 {
            if steps > max_steps {
                release(charged);
                return None;
            }
            // Subsumed masks are dropped, so the cache can also shrink.
            let now = seen.bytes();
            if now >= charged {
                limits.memory_used.fetch_add(now - charged, Ordering::Relaxed);
            } else {
                limits.memory_used.fetch_sub(charged - now, Ordering::Relaxed);
            }
            charged = now;
            if limits.memory_used.load(Ordering::Relaxed) > limits.memory_bytes {
                release(charged);
                return Some(Outcome::Unknown(format!(
                    "{MEMORY_RAN_OUT} of {} MiB ran out",
                    limits.memory_bytes >> 20
                )));
            }
            if Instant::now() >= limits.deadline {
                release(charged);
                return Some(Outcome::Unknown(format!("time budget ran out{}", progress(*deepest, ops))));
            }
            if limits.cancelled.load(Ordering::Relaxed) {
                release(charged);
                return Some(Outcome::Unknown(CANCELLED.to_string()));
            }
        }
        // At a new node, an observation that fits is the only choice tried.
        let mut forced = false;
        if entered && limits.prune {
            entered = false;
            let (first_return, observation, allowed) = scan_node(&list, ops, &state, entry, append_only);
            frontier = first_return;
            next = allowed;
            if let Some(at) = observation {
                entry = at;
                forced = true;
            }
        }
        let e = list.entries[entry];
        // Completed operations before info ones: a node with fewer info
        // operations linearized comes first and subsumes the rest.
        if completed_first {
            if e.is_call && !forced && limits.prune && info_phase == ops[e.op].ret.is_some() {
                entry = e.next;
                continue;
            }
            if !e.is_call && !info_phase && limits.prune {
                info_phase = true;
                entry = list.first();
                continue;
            }
        }
        let mut backtrack = !e.is_call;
        if e.is_call {
            let op = &ops[e.op];
            let mut next_state = state.clone();
            let info = op.ret.is_none();
            let prune = limits.prune;
            if (forced || !prune || !twins.earlier_twin_waits(e.op, ops, &lifted, frontier))
                && next_state.is_valid_step(&op.input, &op.output)
                && (!prune || !info || (next_state != state && seen_next(&list, ops, e.op, &next_state, list.first())))
                && (!prune || !after_info || (!blind(op) && (!info || next_state != state)))
                && match (&op.input, &next) {
                    (Input::Append(a), Next::Prefix(p)) => !prune || p.starts_with(a.as_str()),
                    (Input::Append(_), Next::Nothing) => !prune,
                    _ => true,
                }
            {
                let (fixed, bit) = share[e.op];
                let mark = if info && prune { AFTER_INFO } else { 0 };
                if seen.visit(linearized ^ fixed ^ mark, &next_state, info_mask | bit) {
                    let state = std::mem::replace(&mut state, next_state);
                    let next = std::mem::replace(&mut next, Next::Any);
                    let frame = Frame { call: entry, state, frontier, forced, after_info, info_phase, next };
                    stack.push(frame);
                    *deepest = (*deepest).max(stack.len());
                    linearized ^= fixed;
                    info_mask |= bit;
                    after_info = info;
                    list.lift(entry);
                    lifted[e.op] = true;
                    pending_completed -= usize::from(op.ret.is_some());
                    if explain && stack.len() > best.len() {
                        deepest_unsaved = true;
                    }
                    entry = list.first();
                    entered = true;
                    info_phase = false;
                    continue;
                }
            }
            // A forced observation that leads nowhere fails its node.
            backtrack = forced;
            entry = e.next;
        }
        // An operation returned before it could be linearized, or the only
        // choice failed: undo the last choice (and every forced one before it).
        while backtrack {
            if explain && deepest_unsaved {
                save_prefix(&mut best, shared, &stack, &list, &state);
                shared = stack.len();
                deepest_unsaved = false;
            }
            shared = shared.min(stack.len().saturating_sub(1));
            let Some(frame) = stack.pop() else {
                release(charged);
                return Some(Outcome::NotLinearizable(if explain {
                    counterexample(ops, &best, init_state_after(&best, &state))
                } else {
                    Counterexample { linearized: Vec::new(), unplaced: Vec::new() }
                }));
            };
            let op = list.entries[frame.call].op;
            linearized ^= share[op].0;
            info_mask &= !share[op].1;
            pending_completed += usize::from(ops[op].ret.is_some());
            state = frame.state;
            frontier = frame.frontier;
            after_info = frame.after_info;
            info_phase = frame.info_phase;
            next = frame.next;
            list.unlift(frame.call);
            lifted[op] = false;
            entry = list.entries[frame.call].next;
            backtrack = frame.forced;
        }
    }
}

/// Makes `best` the stack as (op, state after each step), keeping its
/// first `shared` steps, which are the stack's already.
fn save_prefix<S: Clone>(best: &mut Vec<(usize, S)>, shared: usize, stack: &[Frame<S>], list: &EntryList, current: &S) {
    best.truncate(shared);
    for i in shared..stack.len() {
        let after = stack.get(i + 1).map_or_else(|| current.clone(), |f| f.state.clone());
        best.push((list.entries[stack[i].call].op, after));
    }
}

/// The state after the best prefix: its last step's, or the initial state
/// (which the search holds once it has backed out of everything).
fn init_state_after<S: Clone>(best: &[(usize, S)], initial: &S) -> S {
    best.last().map_or_else(|| initial.clone(), |(_, s)| s.clone())
}

fn counterexample<S: SearchState>(ops: &[Operation], best: &[(usize, S)], state: S) -> Counterexample {
    let linearized: Vec<Step> = best.iter().map(|(op, s)| Step { op: *op, state_after: s.describe() }).collect();
    let mut done = vec![false; ops.len()];
    for step in &linearized {
        done[step.op] = true;
    }
    // The operations that could come next: invoked before the first
    // remaining operation returned.
    let horizon = ops.iter().filter(|o| !done[o.id]).filter_map(|o| o.ret).min().unwrap_or(NEVER);
    let value = state.describe();
    let unplaced = ops
        .iter()
        .filter(|o| !done[o.id] && o.call < horizon)
        .map(|o| {
            let mut s = state.clone();
            let reason = if s.is_valid_step(&o.input, &o.output) {
                format!("it could follow on value {value}, but then no order fits the operations after it")
            } else {
                crate::model::explain(state.value(), &o.input, &o.output)
            };
            Unplaced { op: o.id, reason }
        })
        .collect();
    Counterexample { linearized, unplaced }
}
