//! kill -9 a minority of the nodes; the heal starts them again from the
//! same data directories (SIGKILL keeps the page cache: nothing written is
//! lost, only what was in flight).

use rand::rngs::SmallRng;
use serde_json::{Value, json};

use super::kind::{Draw, FaultKind, names};
use super::{Fault, Nemesis, minority};
use crate::options::{NemesisChoice, RunOptions};

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
    fn draw(&self, ctx: &Draw, _: usize, rng: &mut SmallRng) -> Fault {
        Fault::Kill { nodes: minority(ctx.nodes, rng) }
    }
    fn strike(&self, n: &Nemesis, fault: &Fault, _: Option<u64>) -> anyhow::Result<Value> {
        let Fault::Kill { nodes } = fault else { unreachable!("a kill fault") };
        for &id in nodes {
            n.runtime.kill(id)?;
        }
        Ok(json!({"nodes": names(nodes)}))
    }
    fn heal(&self, n: &Nemesis, fault: &Fault) -> anyhow::Result<Value> {
        let Fault::Kill { nodes } = fault else { unreachable!("a kill fault") };
        n.start_nodes(nodes)
    }
}
