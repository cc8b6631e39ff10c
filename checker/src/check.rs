//! Checking a whole history: pair events into operations, split them by key,
//! search every key (in parallel, largest first) within one time and memory
//! budget, and gather verdicts and counterexamples.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::append_inference::{self, Inference};
use crate::history::{History, HistoryError};
use crate::key::Key;
use crate::model::{CasRegister, Kv, ModelKind, Register};
use crate::operation::{Input, Operation, Output, pair};
use crate::revisions::{self, RevisionReport};
use crate::search::{CANCELLED, Counterexample, Limits, Outcome, search, search_within_steps};
use crate::settlement::{Settlement, SettlementEffect};
use crate::value::Value;
use crate::version_inference;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every key has a linearization.
    Valid,
    /// Some key has none.
    Invalid,
    /// The budget ran out first. Never reported as valid.
    Unknown,
}

/// How much a check may spend.
#[derive(Debug, Clone)]
pub struct Budget {
    pub timeout: Duration,
    /// Bytes the search caches may hold together.
    pub memory_bytes: usize,
    /// Keys searched at once (0: one per core).
    pub threads: usize,
    /// Search every key to the end, for a full report. Without it the check
    /// stops at the first key proven not linearizable (that settles the
    /// verdict); keys not yet decided then are listed as not searched.
    pub all_keys: bool,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget { timeout: Duration::from_secs(60), memory_bytes: 1 << 30, threads: 0, all_keys: false }
    }
}

/// The verdict for one key, and for an invalid one what shows why.
#[derive(Debug, Clone, Serialize)]
pub struct KeyReport {
    pub key: Option<Key>,
    pub verdict: Verdict,
    pub operations: usize,
    /// Why the verdict is unknown; for a key an inference (append or version) proved
    /// invalid, the contradiction it found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Keys an inference refuted: the operation (index in `ops`)
    /// that has no place in any order, whether or not a counterexample was
    /// found in time to draw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refuted_op: Option<usize>,
    /// Invalid keys only: all of the key's operations...
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<Operation>,
    /// ...and the longest linearizable prefix with what could not follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<Counterexample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub verdict: Verdict,
    pub model: ModelKind,
    pub initial: Option<Value>,
    /// Events read and client operations checked.
    pub events: usize,
    pub operations: usize,
    /// Failed operations and info reads, removed by the format's rules.
    pub removed: usize,
    /// Info writes no operation could have observed, set aside (they may
    /// as well never have happened).
    pub unobserved_info_writes: usize,
    pub keys: usize,
    pub invalid_keys: usize,
    pub unknown_keys: usize,
    /// Keys left undecided because an invalid key stopped the check (never
    /// with [`Budget::all_keys`]); they are not in `results`.
    pub unsearched_keys: Vec<Option<Key>>,
    pub elapsed_ms: u64,
    /// Invalid and unknown keys first, then the rest: every key decided.
    pub results: Vec<KeyReport>,
    /// The revision check over all keys ([`revisions`]), when the history
    /// carries revisions. A violation makes the verdict invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revisions: Option<RevisionReport>,
    /// What a settlement from the store's log did to the info writes
    /// ([`crate::settlement`]), when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SettlementEffect>,
}

/// Checks `history` against `model`, every key starting from `initial`.
pub fn check_history(
    history: &History,
    model: ModelKind,
    initial: Option<Value>,
    budget: &Budget,
) -> Result<CheckReport, HistoryError> {
    check_settled(history, model, initial, budget, None)
}

/// [`check_history`], with the info writes a settlement settles taken as it
/// says.
pub fn check_settled(
    history: &History,
    model: ModelKind,
    initial: Option<Value>,
    budget: &Budget,
    settlement: Option<&Settlement>,
) -> Result<CheckReport, HistoryError> {
    let started = Instant::now();
    let mut paired = pair(history)?;
    let effect = settlement.map(|s| s.apply(history, &mut paired.by_key)).transpose()?;
    if let Some(effect) = &effect {
        (paired.kept, paired.removed) = (paired.kept - effect.never, paired.removed + effect.never);
    }
    for op in paired.by_key.values().flatten() {
        if !model.supports(&op.input) {
            let line = history.line_of(op.call as usize);
            let message = format!("the {model} model has no `{}` operation", input_name(&op.input));
            return Err(HistoryError::at(&history.source, line, message));
        }
    }
    let mut keys: Vec<(Option<Key>, Vec<Operation>)> = paired.by_key.into_iter().collect();
    // Before info writes are set aside: a delete in doubt may explain what a
    // revision shows.
    let revisions = revisions::check(&keys);
    let mut unobserved = 0;
    for (_, ops) in &mut keys {
        unobserved += set_aside_unobserved_info_writes(ops);
    }
    // Largest first, so one long key does not start last.
    keys.sort_by_key(|(_, ops)| std::cmp::Reverse(ops.len()));
    let limits = Limits::new(started + budget.timeout, budget.memory_bytes);
    let threads = match budget.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(keys.len().max(1));
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(keys.len()));
    let unsearched = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((key, ops)) = keys.get(i) else { break };
                    // An invalid key settled the verdict: the rest are not searched.
                    if limits.cancelled.load(Ordering::Relaxed) {
                        unsearched.lock().expect("no thread panics holding it").push(key.clone());
                        continue;
                    }
                    let report = check_key(key, ops, model, &initial, &limits);
                    if report.verdict == Verdict::Invalid && !budget.all_keys {
                        limits.cancelled.store(true, Ordering::Relaxed);
                    }
                    // A search the stop cut short decided nothing.
                    if report.verdict == Verdict::Unknown && report.reason.as_deref() == Some(CANCELLED) {
                        unsearched.lock().expect("no thread panics holding it").push(key.clone());
                        continue;
                    }
                    results.lock().expect("no thread panics holding it").push(report);
                }
            });
        }
    });
    let mut results = results.into_inner().expect("no thread panics holding it");
    let mut unsearched_keys = unsearched.into_inner().expect("no thread panics holding it");
    unsearched_keys.sort();
    results.sort_by(|a, b| rank(a.verdict).cmp(&rank(b.verdict)).then_with(|| a.key.cmp(&b.key)));
    let invalid_keys = results.iter().filter(|r| r.verdict == Verdict::Invalid).count();
    let unknown_keys = results.iter().filter(|r| r.verdict == Verdict::Unknown).count();
    let verdict = if invalid_keys > 0 || revisions.as_ref().is_some_and(|r| !r.is_valid()) {
        Verdict::Invalid
    } else if unknown_keys > 0 {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    Ok(CheckReport {
        verdict,
        model,
        initial,
        events: paired.events,
        operations: paired.kept,
        removed: paired.removed,
        unobserved_info_writes: unobserved,
        keys: results.len() + unsearched_keys.len(),
        invalid_keys,
        unknown_keys,
        unsearched_keys,
        elapsed_ms: started.elapsed().as_millis() as u64,
        results,
        revisions,
        settlement: effect,
    })
}

fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Invalid => 0,
        Verdict::Unknown => 1,
        Verdict::Valid => 2,
    }
}

fn input_name(input: &Input) -> &'static str {
    match input {
        Input::Read => "read",
        Input::Write(_) => "write",
        Input::Cas(..) => "cas",
        Input::Delete => "delete",
        Input::Append(_) => "append",
    }
}

/// How long a key the append inference proved invalid is searched for the
/// counterexample the report draws (the verdict does not wait on it).
const EXPLAIN_FOR: Duration = Duration::from_secs(5);

/// The same for a key of writes and appends the version inference proved
/// invalid: the search rarely finds such a key's counterexample at all (the
/// reason the inference exists), so it is not waited on for long.
const EXPLAIN_VERSIONS_FOR: Duration = Duration::from_millis(300);

fn check_key(
    key: &Option<Key>,
    ops: &[Operation],
    model: ModelKind,
    initial: &Option<Value>,
    limits: &Limits,
) -> KeyReport {
    // The store's revisions may name a linearization outright.
    if revisions::witnessed(ops, initial) {
        return valid(key, ops);
    }
    // Every model runs an operation as the kv model does (`model::run`); a
    // register's history is a kv key's without deletes and appends, so the
    // inferences decide it too, and their counterexample searches use `Kv`.
    // Append-only keys first; then keys whose reads name their write.
    let (inference, explain_for) = match append_inference::decide(ops, initial) {
        Inference::Undecided => {
            let inference = match version_inference::decide_unguessed(ops, initial, limits.deadline) {
                Some(decided) => decided,
                // A value written twice: the search's first rounds decide
                // most such keys sooner than guessing (which can grow with
                // the square of the key) does.
                None => match search_model(ops, model, initial, limits, SEARCH_BEFORE_GUESSING * ops.len() as u64) {
                    Some(outcome @ (Outcome::Linearizable | Outcome::NotLinearizable(_))) => {
                        return searched(key, ops, outcome);
                    }
                    _ => version_inference::decide_by_guessing(ops, initial, limits.deadline),
                },
            };
            (inference, EXPLAIN_VERSIONS_FOR)
        }
        decided => (decided, EXPLAIN_FOR),
    };
    match inference {
        Inference::Valid => return valid(key, ops),
        Inference::Invalid { why, op: refuted } => {
            let explain = Limits::new(limits.deadline.min(Instant::now() + explain_for), limits.memory_bytes / 4);
            let (verdict, reason, counterexample) = match search(ops, Kv(initial.clone()), &explain, true) {
                Outcome::NotLinearizable(cx) => (Verdict::Invalid, why, Some(cx)),
                Outcome::Unknown(_) => (Verdict::Invalid, why, None),
                // Never a verdict the two disagree on: that is a bug of this crate.
                Outcome::Linearizable => {
                    let reason = format!("checker bug: the search linearized a key the inference refutes ({why})");
                    (Verdict::Unknown, reason, None)
                }
            };
            let operations = ops.len();
            let invalid = verdict == Verdict::Invalid;
            return KeyReport {
                key: key.clone(),
                verdict,
                operations,
                reason: Some(reason),
                refuted_op: invalid.then_some(refuted),
                ops: if invalid { ops.to_vec() } else { Vec::new() },
                counterexample,
            };
        }
        Inference::Undecided => {}
    }
    let outcome = search_model(ops, model, initial, limits, u64::MAX).expect("no step cap");
    searched(key, ops, outcome)
}

/// The steps per operation (per order, in the last round) the search gets
/// on a key whose values repeat before the version inference guesses:
/// enough for the keys of Jepsen-style histories (values 0..5, a few
/// clients), where the search is quick and the guessing slower.
const SEARCH_BEFORE_GUESSING: u64 = 64;

/// The search under the key's model, its race of step budgets capped at
/// `max_steps` (`None`: undecided by then). The longest prefix is kept as
/// it goes (at little cost), so an invalid key needs no second search for
/// its counterexample.
fn search_model(
    ops: &[Operation],
    model: ModelKind,
    initial: &Option<Value>,
    limits: &Limits,
    max_steps: u64,
) -> Option<Outcome> {
    match model {
        ModelKind::Register => search_within_steps(ops, Register(initial.clone()), limits, true, max_steps),
        ModelKind::CasRegister => search_within_steps(ops, CasRegister(initial.clone()), limits, true, max_steps),
        ModelKind::Kv => search_within_steps(ops, Kv(initial.clone()), limits, true, max_steps),
    }
}

/// The report of a key the search decided (or gave up on).
fn searched(key: &Option<Key>, ops: &[Operation], outcome: Outcome) -> KeyReport {
    match outcome {
        Outcome::Linearizable => valid(key, ops),
        Outcome::Unknown(reason) => KeyReport {
            key: key.clone(),
            verdict: Verdict::Unknown,
            operations: ops.len(),
            reason: Some(reason),
            refuted_op: None,
            ops: Vec::new(),
            counterexample: None,
        },
        Outcome::NotLinearizable(counterexample) => KeyReport {
            key: key.clone(),
            verdict: Verdict::Invalid,
            operations: ops.len(),
            reason: None,
            refuted_op: None,
            ops: ops.to_vec(),
            counterexample: Some(counterexample),
        },
    }
}

/// The texts that are no other's prefix: whatever one of the others
/// contains, one of these contains too. On an append key every read is a
/// prefix of the longest, so one text is left where there were thousands
/// (searching each of them for each info append was quadratic).
fn maximal_texts(mut texts: Vec<String>) -> Vec<String> {
    texts.sort_unstable_by_key(|t| std::cmp::Reverse(t.len()));
    let mut kept: Vec<String> = Vec::new();
    for t in texts {
        if !kept.iter().any(|k| k.starts_with(&t)) {
            kept.push(t);
        }
    }
    kept
}

fn valid(key: &Option<Key>, ops: &[Operation]) -> KeyReport {
    KeyReport {
        key: key.clone(),
        verdict: Verdict::Valid,
        operations: ops.len(),
        reason: None,
        refuted_op: None,
        ops: Vec::new(),
        counterexample: None,
    }
}

/// Sets aside info writes and appends that no operation could have
/// observed: taking effect or not makes no difference to any linearization,
/// and each one left in would double the search wherever it fails.
///
/// An info `write v` is set aside when no read returned `v` and no cas
/// expected `v`; on a key with appends, when no read or expected value even
/// contains `v`'s text (an append after it keeps it as a prefix). An info
/// `append a` is set aside when no read or expected value contains `a`
/// (once applied, `a` stays a contiguous part of the value until a write or
/// delete replaces it, and then nobody saw it). Either way, also only when no
/// cas that reported a mismatch was still in flight when it was invoked (a
/// mismatch observes "not `e`", which it might be what made true). Returns
/// how many were set aside.
pub fn set_aside_unobserved_info_writes(ops: &mut Vec<Operation>) -> usize {
    let has_appends = ops.iter().any(|o| matches!(o.input, Input::Append(_)));
    let mut observed: HashSet<&Value> = HashSet::new();
    let mut last_mismatch_ret: Option<u64> = None;
    for o in ops.iter() {
        match (&o.input, &o.output) {
            (_, Output::Read(Some(v))) => {
                observed.insert(v);
            }
            (Input::Cas(e, _), Output::CasMismatch) => {
                observed.insert(e);
                last_mismatch_ret = last_mismatch_ret.max(Some(o.ret.unwrap_or(u64::MAX)));
            }
            (Input::Cas(e, _), _) => {
                observed.insert(e);
            }
            _ => {}
        }
    }
    let texts = if has_appends { maximal_texts(observed.iter().map(|v| v.text()).collect()) } else { Vec::new() };
    let seen_in_text = |needle: &str| texts.iter().any(|t| t.contains(needle));
    let drop: HashSet<usize> = ops
        .iter()
        .filter(|o| o.output == Output::Unknown && last_mismatch_ret.is_none_or(|r| r < o.call))
        .filter(|o| match &o.input {
            Input::Write(v) if has_appends => !seen_in_text(&v.text()),
            Input::Write(v) => !observed.contains(v),
            Input::Append(a) => !a.is_empty() && !seen_in_text(a),
            _ => false,
        })
        .map(|o| o.id)
        .collect();
    if drop.is_empty() {
        return 0;
    }
    ops.retain(|o| !drop.contains(&o.id));
    for (id, o) in ops.iter_mut().enumerate() {
        o.id = id;
    }
    drop.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_texts_no_other_starts_with_are_kept_and_they_contain_whatever_the_others_do() {
        let texts = ["1,", "1,2,", "1,2,3,", "4,", "4,5,"].map(String::from).to_vec();
        let mut kept = maximal_texts(texts.clone());
        kept.sort();
        assert_eq!(kept, vec!["1,2,3,".to_string(), "4,5,".to_string()]);
        for needle in ["2,", "1,2", "5,", "4,"] {
            assert_eq!(texts.iter().any(|t| t.contains(needle)), kept.iter().any(|t| t.contains(needle)), "{needle}");
        }
    }
}
