//! Revisions: what an etcd-style store promises beside its values, checked
//! across all keys.
//!
//! A store with revisions numbers every change (a write, an append, a cas
//! that succeeded, a delete of a present key) with the next store revision,
//! and answers every operation with the store revision it was served at and
//! the key's mod revision (the revision of the key's last change). The
//! history carries both, per completion (`revision`, `mod_revision`; see
//! docs/history-format.md). Together they claim an order: each change sits at
//! its revision, each observation (a read, a cas that found a mismatch, a
//! delete of an absent key) just after the change at its revision. That
//! order must be a linearization, and this module checks the claim:
//!
//! 1. **One change per revision.** Two acknowledged changes at one revision
//!    are two histories the store cannot both have had (two leaders in one
//!    term, a revision counter that went back and numbered again).
//! 2. **Revisions follow real time.** If `a` completed before `b` was
//!    invoked, `b` sits after `a`: a later change has a larger revision, a
//!    later observation at least as large. A store that forgets revisions in
//!    a crash (etcd #14370, #17780) fails this even when every value it
//!    returns is right.
//! 3. **A mod revision names the key's last change.** An operation that
//!    found mod revision `m` at revision `r` (for a change: just before
//!    `r`) says no change of that key lies in `(m, r]`, that the change at
//!    `m` was of this key, and that it left the value found (a read's value;
//!    a cas's expected value, which matched, or did not). Mod revision 0 says
//!    the key was absent: its last change before was a delete, or none.
//!
//! Each rule uses only what the history proves: changes whose revision is
//! unknown (`info`, or a completion without `revision`) are never assumed to
//! be anywhere, and a finding that one of them could explain (a mod revision
//! no recorded change made, a key absent after a recorded write) is not
//! reported while such a change of that key exists. So a history without
//! revisions is never invalid here, and one with them is invalid only where
//! the store's own answers contradict each other or real time.
//!
//! The check is O(n log n): a sort by invocation and by completion for rule
//! 2, a map from revision to change for rules 1 and 3.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::key::Key;
use crate::operation::{Input, Operation, Output};
use crate::value::Value;

/// Violations of one rule listed in full; the rest are counted.
const LISTED_PER_RULE: usize = 10;

/// Which promise a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Two changes at one revision.
    DuplicateRevision,
    /// A revision smaller than one an earlier-completed operation had.
    RevisionWentBack,
    /// A mod revision that does not name the key's last change.
    ModRevision,
}

impl Rule {
    /// Its name in JSON and in failure signatures.
    pub fn name(self) -> &'static str {
        match self {
            Rule::DuplicateRevision => "duplicate-revision",
            Rule::RevisionWentBack => "revision-went-back",
            Rule::ModRevision => "mod-revision",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Rule::DuplicateRevision => "two changes at one revision",
            Rule::RevisionWentBack => "a revision went back in real time",
            Rule::ModRevision => "a mod revision that is not the key's last change",
        }
    }
}

/// One operation a violation involves.
#[derive(Debug, Clone, Serialize)]
pub struct OpRef {
    pub key: Option<Key>,
    pub process: u64,
    pub invoke_index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_index: Option<u64>,
    pub invoke_time: u64,
    pub what: String,
}

impl OpRef {
    fn of(op: &Operation) -> OpRef {
        let revisions = match (op.revision, op.mod_revision) {
            (Some(r), Some(m)) => format!(" [revision {r}, found mod revision {m}]"),
            (Some(r), None) => format!(" [revision {r}]"),
            _ => String::new(),
        };
        OpRef {
            key: op.key.clone(),
            process: op.process,
            invoke_index: op.invoke_index,
            complete_index: op.complete_index,
            invoke_time: op.invoke_time,
            what: format!("{}{revisions}", op.describe()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub rule: Rule,
    pub message: String,
    /// The operations it involves, the one that breaks the rule last.
    pub ops: Vec<OpRef>,
}

/// What the revision check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RevisionReport {
    /// Operations that carried a revision, and of them the changes.
    pub checked: usize,
    pub changes: usize,
    /// Violations found, per rule (all of them counted)...
    pub counts: BTreeMap<Rule, usize>,
    /// ...and the first few of each listed.
    pub violations: Vec<Violation>,
}

impl RevisionReport {
    pub fn is_valid(&self) -> bool {
        self.counts.is_empty()
    }

    /// The earliest-invoked operation that broke a rule.
    pub fn first_violation(&self) -> Option<&OpRef> {
        self.violations.iter().filter_map(|v| v.ops.last()).min_by_key(|o| o.invoke_time)
    }

    fn add(&mut self, rule: Rule, message: String, ops: &[&Operation]) {
        let count = self.counts.entry(rule).or_default();
        *count += 1;
        if *count <= LISTED_PER_RULE {
            self.violations.push(Violation { rule, message, ops: ops.iter().map(|o| OpRef::of(o)).collect() });
        }
    }
}

/// Where the store placed an operation: changes at their revision,
/// observations just after the change at theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    revision: u64,
    observation: bool,
}

/// What a change left its key holding, as far as the history says.
#[derive(Debug, Clone, PartialEq)]
enum Left {
    Value(Value),
    Absent,
    /// An append: the new text is not recorded.
    Unknown,
}

fn place(op: &Operation) -> Option<Place> {
    let revision = op.revision?;
    let observation = match op.output {
        Output::Read(_) | Output::CasMismatch => true,
        Output::Write | Output::Cas | Output::Append => false,
        // A delete changes the store only when it found the key.
        Output::Delete => op.mod_revision? == 0,
        Output::Unknown => return None,
    };
    Some(Place { revision, observation })
}

fn left(op: &Operation) -> Left {
    match &op.input {
        Input::Write(v) | Input::Cas(_, v) => Left::Value(v.clone()),
        Input::Delete => Left::Absent,
        Input::Append(_) | Input::Read => Left::Unknown,
    }
}

/// Checks the revisions of every key's operations (all keys together).
/// `None` when no operation carries a revision.
pub fn check(keys: &[(Option<Key>, Vec<Operation>)]) -> Option<RevisionReport> {
    let placed: Vec<(&Operation, Place)> =
        keys.iter().flat_map(|(_, ops)| ops.iter()).filter_map(|o| place(o).map(|p| (o, p))).collect();
    if placed.is_empty() {
        return None;
    }
    let mut report = RevisionReport {
        checked: placed.len(),
        changes: placed.iter().filter(|(_, p)| !p.observation).count(),
        ..RevisionReport::default()
    };
    let changes = one_change_per_revision(&placed, &mut report);
    revisions_follow_real_time(&placed, &mut report);
    mod_revisions_name_the_last_change(keys, &placed, &changes, &mut report);
    Some(report)
}

/// Rule 1; returns the changes by revision (the first of any duplicates).
fn one_change_per_revision<'a>(
    placed: &[(&'a Operation, Place)],
    report: &mut RevisionReport,
) -> BTreeMap<u64, &'a Operation> {
    let mut changes: BTreeMap<u64, &Operation> = BTreeMap::new();
    for &(op, p) in placed.iter().filter(|(_, p)| !p.observation) {
        match changes.get(&p.revision) {
            Some(first) => {
                let message = format!(
                    "revision {} was given to two acknowledged changes: {} and {}",
                    p.revision,
                    first.describe(),
                    op.describe()
                );
                report.add(Rule::DuplicateRevision, message, &[first, op]);
            }
            None => {
                changes.insert(p.revision, op);
            }
        }
    }
    changes
}

/// Rule 2: a sweep over invocations in history order, holding the largest
/// place among operations completed before each one.
fn revisions_follow_real_time(placed: &[(&Operation, Place)], report: &mut RevisionReport) {
    let mut by_call: Vec<&(&Operation, Place)> = placed.iter().collect();
    by_call.sort_by_key(|(o, _)| o.call);
    let mut by_ret: Vec<&(&Operation, Place)> = placed.iter().collect();
    by_ret.sort_by_key(|(o, _)| o.ret);
    let mut done = by_ret.into_iter().peekable();
    let mut latest: Option<(&Operation, Place)> = None;
    for &&(op, p) in &by_call {
        while let Some(&&(d, dp)) = done.peek() {
            if d.ret.is_none_or(|r| r > op.call) {
                break;
            }
            if latest.is_none_or(|(_, lp)| dp > lp) {
                latest = Some((d, dp));
            }
            done.next();
        }
        let Some((before, bp)) = latest else { continue };
        if p < bp {
            let what = |p: Place| if p.observation { "was served at" } else { "changed the store at" };
            let message = format!(
                "{} {} revision {}, but {} {} revision {} and completed before it was invoked",
                op.describe(),
                what(p),
                p.revision,
                before.describe(),
                what(bp),
                bp.revision
            );
            report.add(Rule::RevisionWentBack, message, &[before, op]);
        }
    }
}

/// Rule 3.
fn mod_revisions_name_the_last_change(
    keys: &[(Option<Key>, Vec<Operation>)],
    placed: &[(&Operation, Place)],
    changes: &BTreeMap<u64, &Operation>,
    report: &mut RevisionReport,
) {
    // Per key: its changes by revision, and whether it has changes whose
    // revision the history does not give (which may explain what was found).
    let mut by_key: HashMap<&Option<Key>, BTreeMap<u64, &Operation>> = HashMap::new();
    for (&revision, &op) in changes {
        by_key.entry(&op.key).or_default().insert(revision, op);
    }
    let unplaced_changes: HashMap<&Option<Key>, Vec<&Operation>> = keys
        .iter()
        .map(|(k, ops)| (k, ops.iter().filter(|o| !matches!(o.input, Input::Read) && place(o).is_none()).collect()))
        .collect();
    let empty = BTreeMap::new();
    for &(op, p) in placed {
        let Some(found) = op.mod_revision else { continue };
        let key_changes = by_key.get(&op.key).unwrap_or(&empty);
        let unplaced = unplaced_changes.get(&op.key).map_or(&[][..], Vec::as_slice);
        // The last revision at which the key may have changed before `op`
        // found it: its own for an observation, the one before for a change.
        let upto = if p.observation { p.revision } else { p.revision.saturating_sub(1) };
        if found > upto {
            let message =
                format!("{} found mod revision {found}, later than the revision {upto} it saw", op.describe());
            report.add(Rule::ModRevision, message, &[op]);
            continue;
        }
        // (Absent, mod revision 0: the key's last change deleted it, below.)
        let skipped = key_changes.range(found + 1..).take_while(|(r, _)| **r <= upto).last();
        if let Some((&later, &change)) = skipped.filter(|_| found > 0) {
            let message = format!(
                "{} found mod revision {found} at revision {}, but {} changed the key at revision {later}",
                op.describe(),
                p.revision,
                change.describe()
            );
            report.add(Rule::ModRevision, message, &[change, op]);
            continue;
        }
        if found == 0 {
            // Absent: the key's last change up to here, if any, deleted it.
            // A delete whose revision is unknown may have come after it.
            if let Some((&at, &change)) = key_changes.range(..=upto).next_back()
                && left(change) != Left::Absent
                && !unplaced.iter().any(|u| matches!(u.input, Input::Delete))
            {
                let message = format!(
                    "{} found the key absent at revision {}, but its last change, {} at revision {at}, left it present",
                    op.describe(),
                    p.revision,
                    change.describe()
                );
                report.add(Rule::ModRevision, message, &[change, op]);
            }
            continue;
        }
        match changes.get(&found) {
            Some(&change) if change.key != op.key => {
                let message = format!(
                    "{} found mod revision {found}, but revision {found} changed another key: {} of key {}",
                    op.describe(),
                    change.describe(),
                    change.key.as_ref().map_or_else(|| "(single register)".to_string(), Key::quoted)
                );
                report.add(Rule::ModRevision, message, &[change, op]);
            }
            Some(&change) => {
                if let Some(contradiction) = contradicts(op, &left(change)) {
                    let message = format!(
                        "{} found mod revision {found}, the revision of {}, which left {contradiction}",
                        op.describe(),
                        change.describe()
                    );
                    report.add(Rule::ModRevision, message, &[change, op]);
                }
            }
            None if unplaced.is_empty() => {
                let message = format!(
                    "{} found mod revision {found}, which no change of this key was given (and none is in doubt)",
                    op.describe()
                );
                report.add(Rule::ModRevision, message, &[op]);
            }
            None => {}
        }
    }
}

/// How what `op` found contradicts what the change at its mod revision
/// left, if it does.
fn contradicts(op: &Operation, left: &Left) -> Option<String> {
    let found = match (&op.input, &op.output) {
        (_, Output::Read(v)) => Found::Is(v.clone()),
        (Input::Cas(expected, _), Output::Cas) => Found::Is(Some(expected.clone())),
        (Input::Cas(expected, _), Output::CasMismatch) => Found::IsNot(expected.clone()),
        // A delete that found the key: present, value not recorded.
        (Input::Delete, _) => Found::Present,
        _ => return None,
    };
    match (left, found) {
        (Left::Unknown, _) => None,
        (Left::Absent, Found::Is(None)) => None,
        (Left::Absent, _) => Some("the key absent".to_string()),
        (Left::Value(v), Found::Is(Some(f))) if *v != f => Some(format!("{v}, not {f}")),
        (Left::Value(v), Found::Is(None)) => Some(format!("{v}, not the key absent")),
        (Left::Value(v), Found::IsNot(e)) if *v == e => Some(format!("{v}, the value the cas expected")),
        (Left::Value(_), _) => None,
    }
}

enum Found {
    Is(Option<Value>),
    IsNot(Value),
    Present,
}

/// Whether the order the store's revisions claim for one key's operations
/// is itself a linearization: every operation that completed carries a
/// revision, the claimed order respects real time, and the model accepts
/// each operation in turn. Info operations (no revision) are placed at a
/// revision an operation found as the key's mod revision that no recorded
/// change was given (one that could have left what was found), or left out:
/// they may never have happened. When the order passes, the key is
/// linearizable without a search: the order is the proof, however it was
/// chosen. When it does not (or revisions are missing), nothing follows,
/// and the search decides. This is what makes a key with many clients in
/// flight cheap to decide on a correct store: the search there may try
/// orders far apart before the right one, the store names it.
pub fn witnessed(ops: &[Operation], initial: &Option<Value>) -> bool {
    let mut order: Vec<(Place, u64, &Operation)> = Vec::with_capacity(ops.len());
    let mut in_doubt: Vec<&Operation> = Vec::new();
    for op in ops {
        match place(op) {
            Some(p) => order.push((p, op.call, op)),
            None if op.output == Output::Unknown => in_doubt.push(op),
            None => return false,
        }
    }
    if order.is_empty() {
        return false;
    }
    // Mod revisions found that no recorded change of the key was given:
    // each must be one of the changes in doubt.
    let given: std::collections::HashSet<u64> =
        order.iter().filter(|(p, _, _)| !p.observation).map(|(p, _, _)| p.revision).collect();
    let mut needed: BTreeMap<u64, &Operation> = BTreeMap::new();
    for &(_, _, op) in &order {
        if let Some(m) = op.mod_revision.filter(|m| *m > 0 && !given.contains(m)) {
            needed.entry(m).or_insert(op);
        }
    }
    for (m, finder) in needed {
        let fits = |candidate: &&Operation| {
            candidate.call < finder.ret.unwrap_or(u64::MAX) && contradicts(finder, &left(candidate)).is_none()
        };
        let Some(i) = in_doubt.iter().position(fits) else { return false };
        let op = in_doubt.remove(i);
        order.push((Place { revision: m, observation: false }, op.call, op));
    }
    // Observations at one revision in invocation order: any real-time
    // order among them is also an invocation order.
    order.sort_unstable_by_key(|&(p, call, _)| (p, call));
    let mut latest_call = 0;
    let mut value = initial.clone();
    for (i, &(p, _, op)) in order.iter().enumerate() {
        if i > 0 && !p.observation && order[i - 1].0 == p {
            return false; // two changes at one revision
        }
        // Something placed earlier was invoked after this one returned.
        if op.ret.is_some_and(|r| r < latest_call) {
            return false;
        }
        latest_call = latest_call.max(op.call);
        match crate::model::step(&value, &op.input, &op.output) {
            Some(next) => value = next,
            None => return false,
        }
    }
    true
}
