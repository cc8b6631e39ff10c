//! Clock faults through libfaketime (the servers run with it preloaded):
//! a minority's clocks run fast or slow or jump, and, every other time, the
//! leader's clock runs slow while it is cut off from its peers (not its
//! clients), so that its CheckQuorum fires late while the others elect a new
//! leader. The heal resets every clock (and the network, after a cut).

use rand::Rng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::kind::{Draw, FaultKind, names};
use super::{Fault, Nemesis, minority};
use crate::options::{NemesisChoice, RunOptions};

/// What a clock fault does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "clock", rename_all = "kebab-case")]
pub enum ClockFault {
    /// These nodes' clocks (wall and monotonic) run at `rate` times real time.
    Rate { nodes: Vec<u64>, rate: f64 },
    /// These nodes' clocks jump by `offset_s` seconds (either way).
    Bump { nodes: Vec<u64>, offset_s: f64 },
    /// Whoever leads when it strikes runs at `rate` (slow), and, with `cut`,
    /// is cut off from its peers (not from its clients): its CheckQuorum
    /// fires late while the others elect a new leader, the window in which
    /// a leader that trusts its lease or its own reads is wrong.
    SlowLeader { rate: f64, cut: bool },
}

pub struct ClockKind;

impl FaultKind for ClockKind {
    fn choice(&self) -> NemesisChoice {
        NemesisChoice::Clock
    }
    fn name(&self) -> &'static str {
        "clock"
    }
    fn events(&self) -> (&'static str, &'static str) {
        ("clock-skew", "clock-reset")
    }
    fn colour(&self) -> &'static str {
        "#2a9d8f"
    }
    fn network(&self) -> bool {
        // A slow leader is cut off: its heal heals the network.
        true
    }
    fn in_all(&self, options: &RunOptions) -> bool {
        options.faketime()
    }
    fn draw(&self, ctx: &Draw, turn: usize, rng: &mut SmallRng) -> Fault {
        let clock = match (turn % 2, rng.random_range(0..3)) {
            // Slow enough that CheckQuorum (an election timeout of ticks)
            // outlasts the others' election several times over.
            (0, _) => ClockFault::SlowLeader { rate: [0.1, 0.15, 0.2][rng.random_range(0..3)], cut: true },
            (_, 0 | 1) => ClockFault::Rate {
                nodes: minority(ctx.nodes, rng),
                rate: [0.1, 0.25, 0.5, 2.0, 5.0][rng.random_range(0..5)],
            },
            _ => ClockFault::Bump {
                nodes: minority(ctx.nodes, rng),
                offset_s: [-30.0, -5.0, -1.0, 1.0, 5.0, 60.0][rng.random_range(0..6)],
            },
        };
        Fault::Clock { clock }
    }
    fn needs_leader(&self, fault: &Fault) -> bool {
        matches!(fault, Fault::Clock { clock: ClockFault::SlowLeader { .. } })
    }
    fn strike(&self, n: &Nemesis, fault: &Fault, leader: Option<u64>) -> anyhow::Result<Value> {
        let Fault::Clock { clock } = fault else { unreachable!("a clock fault") };
        match clock {
            ClockFault::Rate { nodes, rate } => {
                for &id in nodes {
                    n.runtime.set_clock(id, 0.0, *rate)?;
                }
                Ok(json!({"nodes": names(nodes), "rate": rate}))
            }
            ClockFault::Bump { nodes, offset_s } => {
                for &id in nodes {
                    n.runtime.set_clock(id, *offset_s, 1.0)?;
                }
                Ok(json!({"nodes": names(nodes), "offset_s": offset_s}))
            }
            ClockFault::SlowLeader { rate, cut } => {
                let Some(leader) = leader else {
                    return Ok(json!({"skipped": "no leader to slow down"}));
                };
                n.runtime.set_clock(leader, 0.0, *rate)?;
                if *cut {
                    // Cut only once the slow clock is in force: until then
                    // the leader's CheckQuorum runs at full speed.
                    std::thread::sleep(crate::runtime::CLOCK_TAKES_EFFECT);
                    n.cut_off(leader)?;
                }
                Ok(json!({"leader": format!("n{leader}"), "rate": rate, "cut": cut}))
            }
        }
    }
    fn heal(&self, n: &Nemesis, fault: &Fault) -> anyhow::Result<Value> {
        n.heal_clocks()?;
        if matches!(fault, Fault::Clock { clock: ClockFault::SlowLeader { cut: true, .. } }) {
            n.heal_network()?;
        }
        Ok(json!("clocks reset"))
    }
}
