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
    /// Chance that a write, append or delete completes `ok` without taking
    /// effect.
    pub lost_write: f64,
    /// The kinds of operation drawn, one letter each, repeated for weight:
    /// `r` read, `w` write, `c` cas, `d` delete, `a` append. `None`: the
    /// model's own mix.
    pub mix: Option<String>,
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
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    fn chance(&mut self, p: f64) -> bool {
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
}

/// Generates one history.
pub fn generate(cfg: &Synth) -> History {
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
                let input = random_input(cfg, &mut rng, &mut appended);
                let info = rng.chance(cfg.info);
                let event = event(&history, now, process, EventType::Invoke, &key, &input, None);
                push_event(&mut history, event);
                let op = ops.len();
                ops.push(InFlight { process, key, input, output: None, info });
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
                    _ => {
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
                push_event(&mut history, e);
                let process = if o.info {
                    next_process += 1;
                    next_process - 1
                } else {
                    o.process
                };
                let at = now + 1 + rng.below(20);
                push(&mut queue, at, Action::Invoke { process });
            }
        }
    }
    history
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

fn random_input(cfg: &Synth, rng: &mut Rng, appended: &mut u64) -> Input {
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
        b'w' => Input::Write(value(rng)),
        b'c' => Input::Cas(value(rng), value(rng)),
        b'd' => Input::Delete,
        _ => {
            *appended += 1;
            Input::Append(format!("{},", *appended))
        }
    }
}

fn push_event(history: &mut History, event: Event) {
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
    Event {
        index: history.events.len() as u64,
        kind,
        process: Process::Client(process),
        f: f.to_string(),
        key: key.clone(),
        value,
        time: now * 1_000,
        error: None,
        fault: None,
    }
}
