//! Random concurrent histories from a simulated store, for tests and
//! benchmarks. The store is linearizable unless told to misbehave: it can
//! serve stale reads and lose acknowledged writes, so both verdicts occur.
//! Operations take effect at a random instant between invocation and
//! completion; an `info` may take effect late, after its completion, or not
//! at all, and retires its process as the history format demands.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use crate::history::{Event, EventType, History, Process};
use crate::key::Key;
use crate::model::{ModelKind, run};
use crate::operation::{Input, Output};
use crate::value::Value;

#[derive(Debug, Clone)]
pub struct Synth {
    pub seed: u64,
    pub model: ModelKind,
    /// Client processes in flight at once.
    pub concurrency: usize,
    pub keys: usize,
    /// Operations invoked in all.
    pub operations: usize,
    /// Written values are drawn from `0..values` (small: cas often matches).
    pub values: i64,
    /// Chance that an operation completes as `info`.
    pub info: f64,
    /// Chance that a read returns an older value instead of the current one.
    pub stale_read: f64,
    /// Chance that a write, append or delete (and, with unique values, a
    /// cas that matched) completes `ok` without taking effect.
    pub lost_write: f64,
    /// The kinds of operation drawn, one letter each, repeated for weight:
    /// `r` read, `w` write, `c` cas, `d` delete, `a` append. `None`: the
    /// model's own mix.
    pub mix: Option<String>,
    /// Completions carry the store's revisions, etcd-style: every change
    /// advances one store revision (see [`crate::revisions`]). Stale reads
    /// and lost writes carry none.
    pub revisions: bool,
    /// Writes write unique elements `N,` from the counter appends draw
    /// theirs from (`values` then plays no part), so that on a key of
    /// writes and appends every value read names the write it started from
    /// and the appends after it ([`crate::version_inference`]). A cas then
    /// writes a unique element too, and expects a value the key held: the
    /// one it holds when the cas is invoked half the time, else one drawn
    /// from all it held (`0,`, held by none, before anything was written),
    /// so that some succeed and some report a mismatch.
    pub unique_values: bool,
}

impl Synth {
    pub fn new(seed: u64, model: ModelKind) -> Synth {
        Synth {
            seed,
            model,
            concurrency: 3,
            keys: 1,
            operations: 8,
            values: 4,
            info: 0.1,
            stale_read: 0.0,
            lost_write: 0.0,
            mix: None,
            revisions: false,
            unique_values: false,
        }
    }
}

/// SplitMix64: small, seedable, the same on every platform.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Invoke { process: u64 },
    Apply { op: usize },
    Complete { op: usize },
}

/// A key's value now, and every value it held (for stale reads).
type KeyValues = (Option<Value>, Vec<Option<Value>>);

struct InFlight {
    process: u64,
    key: Option<Key>,
    input: Input,
    /// Set when it takes effect.
    output: Option<Output>,
    info: bool,
    /// The store revision it was given and the mod revision it found.
    revisions: Option<(u64, Option<u64>)>,
    /// Its place in the order operations took effect in (the store's log).
    applied: Option<u64>,
    /// The history index of its `ok` completion.
    ok_at: Option<u64>,
    invoked_at: u64,
}

/// Generates one history.
pub fn generate(cfg: &Synth) -> History {
    generate_with_log(cfg).0
}

/// Generates one history, and the settlement an exact log of the store
/// gives its info writes (see [`crate::settlement`]): each one that took
/// effect, bounded by the first acknowledged write that took effect after
/// it (none such: left out), and each one that never did.
pub fn generate_with_log(cfg: &Synth) -> (History, crate::settlement::Settlement) {
    let (history, ops) = simulate(cfg);
    let mut acknowledged: Vec<(u64, u64)> =
        ops.iter().filter(|o| !matches!(o.input, Input::Read)).filter_map(|o| Some((o.applied?, o.ok_at?))).collect();
    acknowledged.sort_unstable();
    // The earliest acknowledgement among writes applied at or after each position.
    let mut earliest_after = vec![u64::MAX; acknowledged.len() + 1];
    for i in (0..acknowledged.len()).rev() {
        earliest_after[i] = earliest_after[i + 1].min(acknowledged[i].1);
    }
    let settled = ops
        .iter()
        .filter(|o| o.info && !matches!(o.input, Input::Read))
        .filter_map(|o| {
            let before_index = match o.applied {
                None => None,
                Some(at) => {
                    let later = acknowledged.partition_point(|(a, _)| *a <= at);
                    Some(earliest_after[later]).filter(|&e| e != u64::MAX)?.into()
                }
            };
            Some(crate::settlement::Settled { invoke_index: o.invoked_at, before_index })
        })
        .collect();
    (history, crate::settlement::Settlement { source: format!("synth-{} log", cfg.seed), settled })
}

fn simulate(cfg: &Synth) -> (History, Vec<InFlight>) {
    let mut rng = Rng(cfg.seed ^ 0xA5A5_5A5A_0F0F_F0F0);
    let mut queue: BinaryHeap<Reverse<(u64, u64, Action)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<_>, at: u64, action: Action| {
        seq += 1;
        queue.push(Reverse((at, seq, action)));
    };
    let mut next_process = cfg.concurrency as u64;
    for p in 0..cfg.concurrency as u64 {
        let at = rng.below(50);
        push(&mut queue, at, Action::Invoke { process: p });
    }
    let mut store: BTreeMap<Option<Key>, KeyValues> = BTreeMap::new();
    // The store revision, and each key's mod revision (absent: 0).
    let mut revision = 0u64;
    let mut mod_revisions: BTreeMap<Option<Key>, u64> = BTreeMap::new();
    // Operations that took effect so far: the store's log.
    let mut applied = 0u64;
    let mut ops: Vec<InFlight> = Vec::new();
    let mut history = History { source: format!("synth-{}", cfg.seed), ..History::default() };
    let mut invoked = 0;
    let mut appended = 0u64;
    while let Some(Reverse((now, _, action))) = queue.pop() {
        match action {
            Action::Invoke { process } => {
                if invoked >= cfg.operations {
                    continue;
                }
                invoked += 1;
                let key = (cfg.keys > 1 || cfg.model == ModelKind::Kv)
                    .then(|| Key::from(format!("k{}", rng.below(cfg.keys as u64))));
                let input = random_input(cfg, &mut rng, &mut appended, store.get(&key));
                let info = rng.chance(cfg.info);
                let event = event(&history, now, process, EventType::Invoke, &key, &input, None);
                push_event(&mut history, event);
                let op = ops.len();
                ops.push(InFlight {
                    process,
                    key,
                    input,
                    output: None,
                    info,
                    revisions: None,
                    applied: None,
                    ok_at: None,
                    invoked_at: history.events.len() as u64 - 1,
                });
                let apply_at = now + 1 + rng.below(100);
                let complete_at = apply_at + 1 + rng.below(100);
                match (info, rng.below(3)) {
                    (false, _) | (true, 0) => push(&mut queue, apply_at, Action::Apply { op }),
                    // Late: takes effect after the client gave up on it.
                    (true, 1) => push(&mut queue, complete_at + 1 + rng.below(300), Action::Apply { op }),
                    (true, _) => {} // never takes effect
                }
                push(&mut queue, complete_at, Action::Complete { op });
            }
            Action::Apply { op } => {
                let o = &mut ops[op];
                let (current, past) = store.entry(o.key.clone()).or_insert((None, vec![None]));
                let (mut output, next) = run(current, &o.input);
                match &o.input {
                    Input::Read if rng.chance(cfg.stale_read) => {
                        output = Output::Read(past[rng.below(past.len() as u64) as usize].clone());
                    }
                    Input::Write(_) | Input::Append(_) | Input::Delete if rng.chance(cfg.lost_write) => {}
                    // With unique values, a cas that matched may be lost too
                    // (acknowledged, not applied).
                    Input::Cas(..) if cfg.unique_values && output == Output::Cas && rng.chance(cfg.lost_write) => {}
                    _ => {
                        let found = mod_revisions.get(&o.key).copied().unwrap_or(0);
                        let changes = match &o.input {
                            Input::Write(_) | Input::Append(_) => true,
                            Input::Cas(..) => output == Output::Cas,
                            Input::Delete => current.is_some(),
                            Input::Read => false,
                        };
                        if changes {
                            revision += 1;
                            mod_revisions.insert(o.key.clone(), if next.is_some() { revision } else { 0 });
                        }
                        applied += 1;
                        o.applied = Some(applied);
                        let learns = !matches!(o.input, Input::Write(_) | Input::Append(_));
                        o.revisions = cfg.revisions.then_some((revision, learns.then_some(found)));
                        if next != *current {
                            past.push(next.clone());
                        }
                        *current = next;
                    }
                }
                o.output = Some(output);
            }
            Action::Complete { op } => {
                let o = &ops[op];
                let (kind, output, error) = if o.info {
                    (EventType::Info, None, Some("timeout"))
                } else {
                    match o.output.clone().expect("applied before completion") {
                        Output::CasMismatch => (EventType::Fail, None, Some("mismatch")),
                        out => (EventType::Ok, Some(out), None),
                    }
                };
                let mut e = event(&history, now, o.process, kind, &o.key, &o.input, output.as_ref());
                e.error = error.map(str::to_string);
                if kind != EventType::Info
                    && let Some((r, m)) = o.revisions
                {
                    (e.revision, e.mod_revision) = (Some(r), m);
                }
                let ok_at = (kind == EventType::Ok).then_some(history.events.len() as u64);
                push_event(&mut history, e);
                let process = if o.info {
                    next_process += 1;
                    next_process - 1
                } else {
                    o.process
                };
                ops[op].ok_at = ok_at;
                let at = now + 1 + rng.below(20);
                push(&mut queue, at, Action::Invoke { process });
            }
        }
    }
    (history, ops)
}

/// Whether every letter of a [`Synth::mix`] names an operation the model has.
pub fn check_mix(mix: &str, model: ModelKind) -> Result<(), String> {
    if mix.is_empty() {
        return Err("no operation named (letters r, w, c, d, a)".to_string());
    }
    for letter in mix.chars() {
        let input = match letter {
            'r' => Input::Read,
            'w' => Input::Write(Value::Int(0)),
            'c' => Input::Cas(Value::Int(0), Value::Int(0)),
            'd' => Input::Delete,
            'a' => Input::Append(String::new()),
            other => return Err(format!("`{other}` is none of r, w, c, d, a")),
        };
        if !model.supports(&input) {
            return Err(format!("the {model} model has no `{letter}`"));
        }
    }
    Ok(())
}

fn random_input(cfg: &Synth, rng: &mut Rng, appended: &mut u64, held: Option<&KeyValues>) -> Input {
    let value = |rng: &mut Rng| Value::Int(rng.below(cfg.values as u64) as i64);
    let kinds: &[u8] = match (&cfg.mix, cfg.model) {
        (Some(mix), _) => mix.as_bytes(),
        (None, ModelKind::Register) => b"rw",
        // Reads are what observe a misbehaving store: give them weight.
        (None, ModelKind::CasRegister) => b"rrwc",
        (None, ModelKind::Kv) => b"rrrwcda",
    };
    match kinds[rng.below(kinds.len() as u64) as usize] {
        b'r' => Input::Read,
        b'w' if cfg.unique_values => {
            *appended += 1;
            Input::Write(Value::Str(format!("{},", *appended)))
        }
        b'w' => Input::Write(value(rng)),
        b'c' if cfg.unique_values => {
            let current = held.and_then(|(now, _)| now.clone());
            let past: Vec<&Value> = held.map(|(_, past)| past.iter().flatten().collect()).unwrap_or_default();
            let expected = match current {
                Some(now) if rng.chance(0.5) => now,
                _ if !past.is_empty() => past[rng.below(past.len() as u64) as usize].clone(),
                _ => Value::Str("0,".to_string()),
            };
            *appended += 1;
            Input::Cas(expected, Value::Str(format!("{},", *appended)))
        }
        b'c' => Input::Cas(value(rng), value(rng)),
        b'd' => Input::Delete,
        _ => {
            *appended += 1;
            Input::Append(format!("{},", *appended))
        }
    }
}

pub(crate) fn push_event(history: &mut History, event: Event) {
    let line = history.events.len() + 1;
    history.push(event, line).expect("indexes increase");
}

fn event(
    history: &History,
    now: u64,
    process: u64,
    kind: EventType,
    key: &Option<Key>,
    input: &Input,
    output: Option<&Output>,
) -> Event {
    let json = |v: &Value| serde_json::to_value(v).expect("values serialize");
    let (f, value) = match input {
        Input::Read => (
            "read",
            match output {
                Some(Output::Read(Some(v))) => json(v),
                _ => serde_json::Value::Null,
            },
        ),
        Input::Write(v) => ("write", json(v)),
        Input::Cas(e, n) => ("cas", serde_json::json!([json(e), json(n)])),
        Input::Delete => ("delete", serde_json::Value::Null),
        Input::Append(s) => ("append", serde_json::Value::String(s.clone())),
    };
    Event::new(history.events.len() as u64, kind, Process::Client(process), f, key.clone(), value, now * 1_000)
}
