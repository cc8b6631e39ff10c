//! Settling indeterminate writes: what a source outside the history (the
//! store's replicated log, read after the run) proves about writes whose
//! client never learned their outcome.
//!
//! An `info` write may take effect at any time after its invocation, or
//! never, and every such write doubles the search wherever it could fit.
//! A settlement narrows it, only as far as the log proves:
//!
//! - **Took effect before event `e`**: the write is in the committed log at
//!   index `i`, and the operation that completed at `e` is a write at a
//!   later index `j > i` of the same log. A replica applies its log in
//!   order, and the node that answered `e` had applied `j`, so `i` had taken
//!   effect before `e` was recorded. The write becomes `ok`, completing at
//!   `e`: the search may still place it anywhere from its invocation up to
//!   `e`, which includes where the log says it went. A write at index `i`
//!   with no later acknowledged write stays `info` (it committed, but
//!   nothing bounds when).
//! - **Never took effect**: the write is in no node's log, the logs cover
//!   every index where it could have been committed, and nothing in flight
//!   can still commit it. It is removed, as a failed write is.
//!
//! A `cas` in the log was applied, but whether it matched is not in the
//! log: a committed cas stays `info`. One never committed is removed.
//!
//! Soundness: each rule keeps the truth (where the log says the write went)
//! among the orders the search may choose, so a history that was
//! linearizable stays so, and one that was not stays not: the verdict
//! changes only where the log takes a choice away that the history alone
//! left open. This trusts the log to be the record of what the store
//! applied, which is what the store promises and the run tests: the harness
//! settles nothing from logs that fail its audit (committed entries that
//! differ between replicas, or an acknowledged write the log lacks), where a
//! store that applied what it never committed would show.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::history::{History, HistoryError};
use crate::key::Key;
use crate::operation::{Input, Operation, Output};

/// What the log proves about one indeterminate operation, named by the
/// history index of its invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settled {
    pub invoke_index: u64,
    /// `Some(e)`: took effect before the event with history index `e`.
    /// `None`: never took effect.
    pub before_index: Option<u64>,
}

/// Settlements for a history, as `capukv-chaos run` writes them
/// (`settlement.json`) and `check --settlement` reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settlement {
    /// Where they come from, for the report ("raft log of n1..n5").
    #[serde(default)]
    pub source: String,
    pub settled: Vec<Settled>,
}

/// What applying a settlement did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SettlementEffect {
    /// Info operations in the history before settling (reads excluded).
    pub info_writes: usize,
    /// Made `ok`, completing at the event the log bounds them by.
    pub took_effect: usize,
    /// Removed.
    pub never: usize,
    /// Settled entries that named an info write of the history (the rest
    /// are ignored), cas among them.
    pub matched: usize,
}

impl Settlement {
    pub fn read_file(path: &std::path::Path) -> Result<Settlement, HistoryError> {
        let name = path.display().to_string();
        let io = |message: String| HistoryError::Io { source_name: name.clone(), message };
        let text = std::fs::read_to_string(path).map_err(|e| io(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| io(format!("not a settlement: {e}")))
    }

    /// Applies the settlement to every key's operations (ids renumbered).
    /// Events are looked up in `history` by index. An entry whose bound is
    /// not after the invocation, or names no event, is refused as an error:
    /// it cannot come from a log.
    pub fn apply(
        &self,
        history: &History,
        keys: &mut BTreeMap<Option<Key>, Vec<Operation>>,
    ) -> Result<SettlementEffect, HistoryError> {
        let by_invoke: HashMap<u64, &Settled> = self.settled.iter().map(|s| (s.invoke_index, s)).collect();
        let mut effect = SettlementEffect::default();
        for ops in keys.values_mut() {
            apply_to_key(history, ops, &mut effect, &by_invoke)?;
        }
        Ok(effect)
    }
}

/// [`Settlement::apply`] for one key's operations.
fn apply_to_key(
    history: &History,
    ops: &mut Vec<Operation>,
    effect: &mut SettlementEffect,
    by_invoke: &HashMap<u64, &Settled>,
) -> Result<(), HistoryError> {
    let position = |index: u64| history.events.binary_search_by_key(&index, |e| e.index).ok();
    let mut removed = false;
    for op in ops.iter_mut().filter(|o| o.output == Output::Unknown) {
        effect.info_writes += 1;
        let Some(settled) = by_invoke.get(&op.invoke_index) else { continue };
        effect.matched += 1;
        match settled.before_index {
            None => {
                op.id = usize::MAX;
                removed = true;
                effect.never += 1;
            }
            // The log cannot tell whether a cas matched: it only happened.
            Some(_) if matches!(op.input, Input::Cas(..)) => {}
            Some(before) => {
                let at = position(before).filter(|&p| p as u64 > op.call).ok_or_else(|| {
                    HistoryError::at(
                        &history.source,
                        history.line_of(op.call as usize),
                        format!(
                            "settlement: event {before} does not follow the invocation (index {}) it bounds",
                            op.invoke_index
                        ),
                    )
                })?;
                let e = &history.events[at];
                op.output = match op.input {
                    Input::Write(_) => Output::Write,
                    Input::Delete => Output::Delete,
                    Input::Append(_) => Output::Append,
                    Input::Cas(..) | Input::Read => unreachable!("cas kept; reads are never info"),
                };
                (op.ret, op.complete_index, op.complete_time) = (Some(at as u64), Some(e.index), Some(e.time));
                effect.took_effect += 1;
            }
        }
    }
    if removed {
        ops.retain(|o| o.id != usize::MAX);
    }
    for (id, o) in ops.iter_mut().enumerate() {
        o.id = id;
    }
    Ok(())
}
