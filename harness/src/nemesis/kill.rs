//! kill -9 a minority of the nodes; the heal starts them again from the
//! same data directories (SIGKILL keeps the page cache: nothing written is
//! lost, only what was in flight).
//!
//! In a kill-only run, every other kill holds its nodes down past the heal
//! (at most [`COMPACTION_WAIT`]) until the leader has compacted its log past
//! what they had applied: they then catch up by snapshot, the path a
//! snapshot bug lives on. A short kill leaves a node a few hundred entries
//! behind, and with a snapshot threshold of a thousand or more it would
//! never take one. Under `all` kills are never held: the hold would push
//! the other kinds' faults out of the run.

use std::time::Duration;

use rand::rngs::SmallRng;
use serde_json::{Value, json};

use super::kind::{Draw, FaultKind, names};
use super::{Fault, Nemesis, minority, status_of, wait_until_compacted_past};
use crate::options::{NemesisChoice, RunOptions};

/// How long a kill held until compaction waits for it past its heal.
const COMPACTION_WAIT: Duration = Duration::from_secs(10);

pub struct KillKind;

impl FaultKind for KillKind {
    fn choice(&self) -> NemesisChoice {
        NemesisChoice::Kill
    }
    fn name(&self) -> &'static str {
        "kill"
    }
    fn events(&self) -> (&'static str, &'static str) {
        ("kill", "start")
    }
    fn colour(&self) -> &'static str {
        "#c82828"
    }
    fn network(&self) -> bool {
        false
    }
    fn in_all(&self, _: &RunOptions) -> bool {
        true
    }
    fn draw(&self, ctx: &Draw, turn: usize, rng: &mut SmallRng) -> Fault {
        Fault::Kill { nodes: minority(ctx.nodes, rng), until_compacted: ctx.alone && turn % 2 == 1 }
    }
    fn strike(&self, n: &Nemesis, fault: &Fault, _: Option<u64>) -> anyhow::Result<Value> {
        let Fault::Kill { nodes, until_compacted } = fault else { unreachable!("a kill fault") };
        for &id in nodes {
            if *until_compacted && let Some(applied) = status_of(n, id).map(|s| s.applied_index) {
                n.applied_when_killed.lock().expect("not poisoned").insert(id, applied);
            }
            n.runtime.kill(id)?;
        }
        Ok(json!({"nodes": names(nodes), "until_compacted": until_compacted}))
    }
    fn heal(&self, n: &Nemesis, fault: &Fault) -> anyhow::Result<Value> {
        let Fault::Kill { nodes, until_compacted } = fault else { unreachable!("a kill fault") };
        let mut waited = Value::Null;
        if *until_compacted {
            let applied: Vec<u64> = {
                let mut held = n.applied_when_killed.lock().expect("not poisoned");
                nodes.iter().filter_map(|id| held.remove(id)).collect()
            };
            if let Some(&most) = applied.iter().max() {
                waited = match wait_until_compacted_past(n, None, most, COMPACTION_WAIT) {
                    Some(took) => json!({"compacted_past": most, "waited_s": took.as_secs_f64()}),
                    None => json!({"compacted_past": null, "gave_up_after_s": COMPACTION_WAIT.as_secs_f64()}),
                };
            }
        }
        let mut started = n.start_nodes(nodes)?;
        if !waited.is_null() {
            started["held"] = waited;
        }
        Ok(started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_other_kill_waits_for_compaction_and_old_schedules_still_read() {
        let mut rng = <SmallRng as rand::SeedableRng>::seed_from_u64(7);
        let ctx = Draw { nodes: 5, seed: 7, alone: true, victims: vec![1] };
        let held: Vec<bool> = (0..4)
            .map(|turn| match KillKind.draw(&ctx, turn, &mut rng) {
                Fault::Kill { nodes, until_compacted } => {
                    assert!(!nodes.is_empty() && nodes.len() <= 2, "a minority: {nodes:?}");
                    until_compacted
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(held, vec![false, true, false, true]);
        let among_others = Draw { alone: false, ..ctx };
        assert!((0..4).all(|turn| matches!(
            KillKind.draw(&among_others, turn, &mut rng),
            Fault::Kill { until_compacted: false, .. }
        )));
        // A run.json written before the field existed replays as plain kills.
        let old: Fault = serde_json::from_str(r#"{"kind": "kill", "nodes": [2]}"#).unwrap();
        assert_eq!(old, Fault::Kill { nodes: vec![2], until_compacted: false });
    }
}
