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
//! The set of linearized operations is kept as a Zobrist hash (a 128-bit XOR
//! of per-operation random keys) rather than a bitset, so a cache entry is a
//! few bytes however long the history. A hash collision can only prune a
//! branch, never invent a linearization: it could turn a valid verdict into
//! an invalid one with probability about 2^-128, and never the reverse.

use std::collections::HashSet;
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
}

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
}

/// Searches for a linearization of `ops` (one key's operations, `id` equal
/// to position) from `init`. With `explain`, a failed search also returns
/// the longest linearizable prefix and what could not follow it.
///
/// Once every completed operation is linearized, the info operations still
/// pending are taken never to have happened, and the search is done.
pub fn search<S: SearchState>(ops: &[Operation], init: S, limits: &Limits, explain: bool) -> Outcome {
    let mut list = EntryList::new(ops);
    let keys = zobrist_keys(ops.len());
    let mut cache: HashSet<(u128, S)> = HashSet::new();
    let entry_bytes = std::mem::size_of::<(u128, S)>() + 16;
    let mut charged = 0usize;
    let mut stack: Vec<Frame<S>> = Vec::new();
    let mut state = init;
    let mut linearized: u128 = 0;
    // The longest prefix so far, as (op, state after); refreshed lazily when
    // the search backs out of a new deepest point.
    let mut best: Vec<(usize, S)> = Vec::new();
    let mut deepest_unsaved = false;
    let mut entry = list.first();
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
            return Outcome::Linearizable;
        }
        steps += 1;
        // Check the budget at the first step and every 4096 after.
        if steps & 4095 == 1 {
            let grown = cache.len() * entry_bytes;
            limits.memory_used.fetch_add(grown - charged, Ordering::Relaxed);
            charged = grown;
            if limits.memory_used.load(Ordering::Relaxed) > limits.memory_bytes {
                release(charged);
                return Outcome::Unknown(format!("memory budget of {} MiB ran out", limits.memory_bytes >> 20));
            }
            if Instant::now() >= limits.deadline {
                release(charged);
                return Outcome::Unknown("time budget ran out".to_string());
            }
            if limits.cancelled.load(Ordering::Relaxed) {
                release(charged);
                return Outcome::Unknown("cancelled".to_string());
            }
        }
        let e = list.entries[entry];
        if e.is_call {
            let op = &ops[e.op];
            let mut next_state = state.clone();
            if next_state.is_valid_step(&op.input, &op.output) {
                let next_linearized = linearized ^ keys[e.op];
                if cache.insert((next_linearized, next_state.clone())) {
                    stack.push(Frame { call: entry, state: std::mem::replace(&mut state, next_state) });
                    linearized = next_linearized;
                    list.lift(entry);
                    pending_completed -= usize::from(op.ret.is_some());
                    if explain && stack.len() > best.len() {
                        deepest_unsaved = true;
                    }
                    entry = list.first();
                    continue;
                }
            }
            entry = e.next;
        } else {
            // An operation returned before it could be linearized: undo.
            if explain && deepest_unsaved {
                best = prefix_of(&stack, &list, &state);
                deepest_unsaved = false;
            }
            let Some(frame) = stack.pop() else {
                release(charged);
                return Outcome::NotLinearizable(if explain {
                    counterexample(ops, &best, init_state_after(&best, &state))
                } else {
                    Counterexample { linearized: Vec::new(), unplaced: Vec::new() }
                });
            };
            let op = list.entries[frame.call].op;
            linearized ^= keys[op];
            pending_completed += usize::from(ops[op].ret.is_some());
            state = frame.state;
            list.unlift(frame.call);
            entry = list.entries[frame.call].next;
        }
    }
}

/// The stack as (op, state after each step).
fn prefix_of<S: Clone>(stack: &[Frame<S>], list: &EntryList, current: &S) -> Vec<(usize, S)> {
    let mut out = Vec::with_capacity(stack.len());
    for (i, frame) in stack.iter().enumerate() {
        let after = stack.get(i + 1).map_or_else(|| current.clone(), |f| f.state.clone());
        out.push((list.entries[frame.call].op, after));
    }
    out
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
