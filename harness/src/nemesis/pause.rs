//! SIGSTOP a minority of the nodes (a process that stops answering without
//! dying: a GC pause, a stalled VM); the heal sends SIGCONT.

use rand::rngs::SmallRng;
use serde_json::{Value, json};

use super::kind::{Draw, FaultKind, names};
use super::{Fault, Nemesis, minority};
use crate::options::{NemesisChoice, RunOptions};

pub struct PauseKind;

impl FaultKind for PauseKind {
    fn choice(&self) -> NemesisChoice {
        NemesisChoice::Pause
    }
    fn name(&self) -> &'static str {
        "pause"
    }
    fn events(&self) -> (&'static str, &'static str) {
        ("pause", "resume")
    }
    fn colour(&self) -> &'static str {
        "#7850c8"
    }
    fn network(&self) -> bool {
        false
    }
    fn in_all(&self, _: &RunOptions) -> bool {
        true
    }
    fn draw(&self, ctx: &Draw, _: usize, rng: &mut SmallRng) -> Fault {
        Fault::Pause { nodes: minority(ctx.nodes, rng) }
    }
    fn strike(&self, n: &Nemesis, fault: &Fault, _: Option<u64>) -> anyhow::Result<Value> {
        let Fault::Pause { nodes } = fault else { unreachable!("a pause fault") };
        // A node that is down (one that refused its damaged data) cannot be paused.
        let (up, down): (Vec<u64>, Vec<u64>) = nodes.iter().partition(|&&id| n.runtime.is_running(id));
        for &id in &up {
            n.runtime.pause(id)?;
        }
        Ok(json!({"nodes": names(&up), "down": names(&down)}))
    }
    fn heal(&self, n: &Nemesis, fault: &Fault) -> anyhow::Result<Value> {
        let Fault::Pause { nodes } = fault else { unreachable!("a pause fault") };
        let up: Vec<u64> = nodes.iter().copied().filter(|&id| n.runtime.is_running(id)).collect();
        for &id in &up {
            n.runtime.resume(id)?;
        }
        Ok(json!({"nodes": names(&up)}))
    }
}
