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

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use serde_json::{Value, json};

use super::kind::{Draw, FaultKind, names};
use super::{Fault, Nemesis, current_leader, minority};
use crate::options::{NemesisChoice, RunOptions};

/// How long a kill held until compaction waits for it past its heal.
const COMPACTION_WAIT: Duration = Duration::from_secs(10);

/// What node `id` has applied, asked of it (`None` if it does not answer).
fn applied_index(n: &Nemesis, id: u64) -> Option<u64> {
    let addr = n.runtime.nodes()[(id - 1) as usize].api_addr.clone();
    let mut client = capukv::Client::new([addr.clone()]).ok()?;
    client.timeout = Duration::from_millis(500);
    tokio::runtime::Handle::current().block_on(client.status_of(&addr)).ok().map(|s| s.applied_index)
}

/// Waits (at most `within`) until whoever leads has compacted its log past
/// `applied`; how long it took, or `None` if it did not come to that.
fn wait_until_compacted_past(n: &Nemesis, applied: u64, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let handle = tokio::runtime::Handle::current();
    while started.elapsed() < within {
        if let Some(leader) = handle.block_on(current_leader(&*n.runtime)) {
            let addr = n.runtime.nodes()[(leader - 1) as usize].api_addr.clone();
            if let Ok(mut client) = capukv::Client::new([addr.clone()]) {
                client.timeout = Duration::from_millis(500);
                if handle.block_on(client.status_of(&addr)).is_ok_and(|s| s.snapshot_index > applied) {
                    return Some(started.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

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
            if *until_compacted && let Some(applied) = applied_index(n, id) {
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
                waited = match wait_until_compacted_past(n, most, COMPACTION_WAIT) {
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
