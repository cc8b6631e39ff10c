//! Random list-append transaction histories from a simulated store, for
//! tests and benchmarks. The store runs each transaction whole at one
//! instant between its invocation and completion, so the history is
//! strictly serializable; with `split`, it runs the first half of a
//! transaction at one instant and the rest at a later one (the planted
//! `txn-split` bug), so other transactions come between and anomalies
//! appear; with `stale`, a read-only transaction may read the store as it
//! was some steps before (a read at a stale revision: serializable, not
//! strictly). Keys rotate as in Elle's generator: a key retires after
//! `writes_per_key` appends and a fresh one takes its place.

use std::collections::{HashMap, VecDeque};

use serde_json::{Value as Json, json};

use crate::history::{Event, EventType, History, Process};
use crate::synth::{Rng, push_event};

#[derive(Debug, Clone)]
pub struct TxnSynth {
    pub seed: u64,
    pub transactions: usize,
    pub concurrency: usize,
    /// Keys in use at once.
    pub keys: usize,
    pub writes_per_key: usize,
    /// Micro-operations per transaction, 1 to this.
    pub max_mops: usize,
    /// Chance a transaction completes `info` (having run, or never).
    pub info: f64,
    /// Chance a transaction fails without running.
    pub fail: f64,
    /// Run transactions in two halves (not atomic).
    pub split: bool,
    /// Chance that a read-only transaction reads an older state of the
    /// store (a consistent one, up to 50 steps old).
    pub stale: f64,
}

impl TxnSynth {
    pub fn new(seed: u64) -> TxnSynth {
        TxnSynth {
            seed,
            transactions: 100,
            concurrency: 5,
            keys: 5,
            writes_per_key: 16,
            max_mops: 4,
            info: 0.05,
            fail: 0.02,
            split: false,
            stale: 0.0,
        }
    }
}

enum Mop {
    Append(u64, u64),
    Read(u64, Option<Vec<u64>>),
}

struct Pending {
    process: u64,
    mops: Vec<Mop>,
    /// Micro-operations run so far.
    ran: usize,
}

fn to_json(mops: &[Mop]) -> Json {
    Json::Array(
        mops.iter()
            .map(|m| match m {
                Mop::Append(k, e) => json!(["append", k, e]),
                Mop::Read(k, l) => json!(["r", k, l]),
            })
            .collect(),
    )
}

/// Generates one history.
pub fn generate(cfg: &TxnSynth) -> History {
    let mut rng = Rng(cfg.seed);
    let mut history = History { source: format!("txn-synth seed {}", cfg.seed), ..History::default() };
    let mut store: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut active: Vec<u64> = (0..cfg.keys.max(1) as u64).collect();
    let mut next_key = active.len() as u64;
    let mut writes: HashMap<u64, usize> = HashMap::new();
    let mut next_element = 1u64;
    let mut slots: Vec<Option<Pending>> = (0..cfg.concurrency.max(1)).map(|_| None).collect();
    let mut processes: Vec<u64> = (0..slots.len() as u64).collect();
    let (mut invoked, mut now) = (0usize, 0u64);
    // For stale reads: every key's length, as of each of the last steps.
    let mut past: VecDeque<HashMap<u64, usize>> = VecDeque::new();
    let emit = |history: &mut History, kind, process, value, now: u64| {
        let index = history.events.len() as u64;
        let e = Event::new(index, kind, Process::Client(process), crate::txn::TXN, None, value, now * 1_000);
        push_event(history, e);
    };
    loop {
        if invoked >= cfg.transactions && slots.iter().all(Option::is_none) {
            break;
        }
        now += 1;
        let s = rng.below(slots.len() as u64) as usize;
        match slots[s].take() {
            None if invoked < cfg.transactions => {
                invoked += 1;
                let n = 1 + rng.below(cfg.max_mops.max(1) as u64) as usize;
                let mops: Vec<Mop> = (0..n)
                    .map(|_| {
                        let k = active[rng.below(active.len() as u64) as usize];
                        if rng.chance(0.5) {
                            next_element += 1;
                            Mop::Append(k, next_element - 1)
                        } else {
                            Mop::Read(k, None)
                        }
                    })
                    .collect();
                emit(&mut history, EventType::Invoke, processes[s], to_json(&mops), now);
                slots[s] = Some(Pending { process: processes[s], mops, ran: 0 });
            }
            None => {}
            Some(p) if p.ran == 0 && rng.chance(cfg.fail) => {
                emit(&mut history, EventType::Fail, p.process, to_json(&p.mops), now);
            }
            Some(mut p)
                if p.ran == 0
                    && !past.is_empty()
                    && p.mops.iter().all(|m| matches!(m, Mop::Read(..)))
                    && rng.chance(cfg.stale) =>
            {
                // Read-only: from a consistent state of some steps ago.
                let lengths = &past[rng.below(past.len() as u64) as usize];
                for m in &mut p.mops {
                    if let Mop::Read(k, l) = m {
                        let list = store.get(k).map_or(&[][..], |v| &v[..lengths.get(k).copied().unwrap_or(0)]);
                        *l = Some(list.to_vec());
                    }
                }
                p.ran = p.mops.len();
                slots[s] = Some(p);
            }
            Some(mut p) if p.ran < p.mops.len() => {
                if cfg.stale > 0.0 {
                    past.push_back(store.iter().map(|(k, v)| (*k, v.len())).collect());
                    if past.len() > 50 {
                        past.pop_front();
                    }
                }
                // Run it, whole, or (split) its first half now.
                let upto = if cfg.split && p.ran == 0 { (p.mops.len() / 2).max(1) } else { p.mops.len() };
                for m in &mut p.mops[p.ran..upto] {
                    match m {
                        Mop::Append(k, e) => {
                            store.entry(*k).or_default().push(*e);
                            let w = writes.entry(*k).or_default();
                            *w += 1;
                            if *w == cfg.writes_per_key
                                && let Some(i) = active.iter().position(|a| a == k)
                            {
                                active[i] = next_key;
                                next_key += 1;
                            }
                        }
                        Mop::Read(k, l) => *l = Some(store.get(k).cloned().unwrap_or_default()),
                    }
                }
                p.ran = upto;
                slots[s] = Some(p);
            }
            Some(p) => {
                if rng.chance(cfg.info) {
                    let unread: Vec<Mop> = p
                        .mops
                        .iter()
                        .map(|m| match m {
                            Mop::Append(k, e) => Mop::Append(*k, *e),
                            Mop::Read(k, _) => Mop::Read(*k, None),
                        })
                        .collect();
                    emit(&mut history, EventType::Info, p.process, to_json(&unread), now);
                    // A process that got an info never acts again.
                    processes[s] += slots.len() as u64;
                } else {
                    emit(&mut history, EventType::Ok, p.process, to_json(&p.mops), now);
                }
            }
        }
    }
    history
}
