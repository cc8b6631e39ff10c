//! Network impairments (`--nemesis netem`) on some nodes' outgoing traffic:
//! delay with jitter, loss, duplication, reordering, each in turn, with its
//! parameters drawn from the seed. The heal removes them.

use rand::Rng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::kind::{Draw, FaultKind, names};
use super::{Fault, Nemesis};
use crate::options::{NemesisChoice, RunOptions};

/// A network impairment the nemesis applies to some nodes' outgoing traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "impairment", rename_all = "kebab-case")]
pub enum NetemFault {
    Delay { delay_ms: u64, jitter_ms: u64, correlation: f64 },
    Loss { percent: f64 },
    Duplicate { percent: f64 },
    Reorder { percent: f64, delay_ms: u64 },
}

impl NetemFault {
    pub fn impairment(&self) -> netem::Impairment {
        use std::time::Duration;
        match *self {
            NetemFault::Delay { delay_ms, jitter_ms, correlation } => netem::Impairment {
                delay_correlation: correlation,
                ..netem::Impairment::delay(Duration::from_millis(delay_ms), Duration::from_millis(jitter_ms))
            },
            NetemFault::Loss { percent } => netem::Impairment::loss(percent),
            NetemFault::Duplicate { percent } => netem::Impairment::duplicate(percent),
            NetemFault::Reorder { percent, delay_ms } => {
                netem::Impairment::reorder(percent, Duration::from_millis(delay_ms))
            }
        }
    }
}

pub struct NetemKind;

impl FaultKind for NetemKind {
    fn choice(&self) -> NemesisChoice {
        NemesisChoice::Netem
    }
    fn name(&self) -> &'static str {
        "netem"
    }
    fn events(&self) -> (&'static str, &'static str) {
        ("start-netem", "stop-netem")
    }
    fn colour(&self) -> &'static str {
        "#288cc8"
    }
    fn network(&self) -> bool {
        true
    }
    fn in_all(&self, _: &RunOptions) -> bool {
        true
    }
    fn draw(&self, ctx: &Draw, turn: usize, rng: &mut SmallRng) -> Fault {
        // Each impairment in turn, so a run with several netem faults sees
        // them all, with its parameters drawn from the seed.
        let fault = match turn % 4 {
            0 => {
                let delay_ms = rng.random_range(5..=200);
                NetemFault::Delay {
                    delay_ms,
                    jitter_ms: rng.random_range(0..=delay_ms / 2),
                    correlation: rng.random_range(0..=50) as f64,
                }
            }
            1 => NetemFault::Loss { percent: rng.random_range(2..=40) as f64 },
            2 => NetemFault::Duplicate { percent: rng.random_range(5..=50) as f64 },
            _ => NetemFault::Reorder { percent: rng.random_range(5..=50) as f64, delay_ms: rng.random_range(5..=50) },
        };
        let mut ids: Vec<u64> = (1..=ctx.nodes).collect();
        ids.shuffle(rng);
        let count = rng.random_range(1..=ctx.nodes as usize);
        let mut chosen = ids[..count].to_vec();
        chosen.sort();
        Fault::Netem { nodes: chosen, fault }
    }
    fn strike(&self, n: &Nemesis, fault: &Fault, _: Option<u64>) -> anyhow::Result<Value> {
        let Fault::Netem { nodes, fault } = fault else { unreachable!("a netem fault") };
        let impairment = fault.impairment();
        for &id in nodes {
            n.with_netem(id, |h| h.impair(&netem::Scope::All, &impairment))?;
        }
        Ok(json!({"nodes": names(nodes), "impairment": fault}))
    }
    fn heal(&self, n: &Nemesis, _: &Fault) -> anyhow::Result<Value> {
        n.heal_network()?;
        Ok(json!("healed"))
    }
}
