//! Network impairments (`--nemesis netem`) on some nodes' outgoing traffic:
//! delay with jitter, loss, duplication, reordering, slow links from the
//! leader to some followers, and the leader's answers to clients lost, each
//! in turn, with its parameters drawn from the seed. The heal removes them.
//!
//! Slow links are the one impairment aimed at a role: the leader's messages
//! to the chosen followers arrive late while clients reach everyone at full
//! speed, so those followers apply every write late. A follower that answers
//! reads from its own state (`follower-stale-reads`) then serves stale values
//! for the whole fault, where a partition would make it give up on the
//! leader after one election timeout and refuse reads instead.
//!
//! Lost answers drop everything the leader sends to the clients' address
//! while it keeps receiving their requests and leading: every write is
//! applied and its answer never arrives, so the clients retry it. Only
//! exactly-once sessions keep the retry from applying again
//! (`no-sessions`); elsewhere a retry meets its first answer in the cache.

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
    Delay {
        delay_ms: u64,
        jitter_ms: u64,
        correlation: f64,
    },
    Loss {
        percent: f64,
    },
    Duplicate {
        percent: f64,
    },
    Reorder {
        percent: f64,
        delay_ms: u64,
    },
    /// The leader's traffic to `count` followers (the first of `order` that
    /// are not the leader) is delayed; resolved against the leader when it strikes.
    SlowLinks {
        delay_ms: u64,
        jitter_ms: u64,
        count: usize,
        order: Vec<u64>,
    },
    /// Whatever leads when it strikes sends nothing to the clients (the
    /// fault's only node stands in when no leader is found).
    LostAnswers,
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
            NetemFault::SlowLinks { delay_ms, jitter_ms, .. } => {
                netem::Impairment::delay(Duration::from_millis(delay_ms), Duration::from_millis(jitter_ms))
            }
            NetemFault::LostAnswers => netem::Impairment::loss(100.0),
        }
    }

    /// The followers whose links from `leader` a [`NetemFault::SlowLinks`] slows.
    fn slowed(count: usize, order: &[u64], leader: u64) -> Vec<u64> {
        let mut slowed: Vec<u64> = order.iter().copied().filter(|&n| n != leader).take(count).collect();
        slowed.sort();
        slowed
    }
}

pub struct NetemKind;

/// How many impairments [`NetemKind::draw`] takes in turn.
const IMPAIRMENTS: usize = 6;

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
        // Each impairment in turn from a place the seed picks, so a run with
        // several netem faults sees them all and short runs see each first
        // in some seeds; its parameters drawn from the seed.
        let phase = (ctx.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as usize;
        let mut ids: Vec<u64> = (1..=ctx.nodes).collect();
        ids.shuffle(rng);
        let fault = match (turn + phase) % IMPAIRMENTS {
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
            3 => NetemFault::Reorder { percent: rng.random_range(5..=50) as f64, delay_ms: rng.random_range(5..=50) },
            4 => {
                // Late by far more than a round trip, never by an election
                // timeout's worth of silence: heartbeats still arrive in a steady stream.
                let delay_ms = rng.random_range(100..=400);
                let count = rng.random_range(1..=(ctx.nodes as usize / 2).max(1));
                NetemFault::SlowLinks { delay_ms, jitter_ms: delay_ms / 10, count, order: ids.clone() }
            }
            _ => NetemFault::LostAnswers,
        };
        let count = rng.random_range(1..=ctx.nodes as usize);
        let mut chosen = ids[..count].to_vec();
        chosen.sort();
        // Aimed at the leader: `nodes` holds only the node taken when none leads.
        if matches!(fault, NetemFault::LostAnswers) {
            chosen = vec![ids[0]];
        }
        if matches!(fault, NetemFault::SlowLinks { .. }) {
            chosen = Vec::new();
        }
        Fault::Netem { nodes: chosen, fault }
    }
    fn needs_leader(&self, fault: &Fault) -> bool {
        matches!(fault, Fault::Netem { fault: NetemFault::SlowLinks { .. } | NetemFault::LostAnswers, .. })
    }
    fn strike(&self, n: &Nemesis, fault: &Fault, leader: Option<u64>) -> anyhow::Result<Value> {
        let Fault::Netem { nodes, fault } = fault else { unreachable!("a netem fault") };
        let impairment = fault.impairment();
        // The faults aimed at the leader: without one (no election settled
        // within the wait) they strike the first node of the seed's order as
        // if it led, and say so.
        let aimed = |order: &[u64]| match leader {
            Some(leader) => (leader, json!(format!("n{leader}"))),
            None => (order[0], json!(format!("none found: n{} taken as leader", order[0]))),
        };
        if let NetemFault::SlowLinks { count, order, .. } = fault {
            let (leader, named) = aimed(order);
            let slowed = NetemFault::slowed(*count, order, leader);
            let peers: Vec<_> = slowed.iter().map(|&id| n.addr(id)).collect();
            if !peers.is_empty() {
                n.with_netem(leader, |h| h.impair(&netem::Scope::Peers(peers), &impairment))?;
            }
            return Ok(json!({"leader": named, "slowed": names(&slowed), "impairment": fault}));
        }
        if let NetemFault::LostAnswers = fault {
            let (leader, named) = aimed(nodes);
            let clients = n.runtime.clients_addr();
            n.with_netem(leader, |h| h.impair(&netem::Scope::Peers(vec![clients]), &impairment))?;
            return Ok(json!({"leader": named, "clients": clients.to_string(), "impairment": fault}));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_links_slow_followers_of_whoever_leads_never_the_leader_itself() {
        let order = vec![3, 1, 5, 2, 4];
        assert_eq!(NetemFault::slowed(2, &order, 3), vec![1, 5]);
        assert_eq!(NetemFault::slowed(2, &order, 1), vec![3, 5]);
        assert_eq!(NetemFault::slowed(4, &order, 4), vec![1, 2, 3, 5]);
        let fault = Fault::Netem {
            nodes: vec![1],
            fault: NetemFault::SlowLinks { delay_ms: 200, jitter_ms: 20, count: 2, order },
        };
        assert!(NetemKind.needs_leader(&fault));
        let lost = Fault::Netem { nodes: vec![1], fault: NetemFault::LostAnswers };
        assert!(NetemKind.needs_leader(&lost));
        let delay = Fault::Netem { nodes: vec![1], fault: NetemFault::Loss { percent: 5.0 } };
        assert!(!NetemKind.needs_leader(&delay));
    }

    #[test]
    fn every_impairment_comes_within_a_cycle_and_each_comes_first_in_some_seeds() {
        let name = |f: &Fault| match f {
            Fault::Netem { fault, .. } => {
                serde_json::to_value(fault).unwrap()["impairment"].as_str().unwrap().to_string()
            }
            other => panic!("{other:?}"),
        };
        let mut firsts = std::collections::BTreeSet::new();
        for seed in 0..60 {
            let mut rng = <SmallRng as rand::SeedableRng>::seed_from_u64(seed);
            let ctx = Draw { nodes: 5, seed, alone: true, victims: vec![1] };
            let cycle: std::collections::BTreeSet<String> =
                (0..IMPAIRMENTS).map(|turn| name(&NetemKind.draw(&ctx, turn, &mut rng))).collect();
            assert_eq!(cycle.len(), IMPAIRMENTS, "seed {seed}: {cycle:?}");
            let mut rng = <SmallRng as rand::SeedableRng>::seed_from_u64(seed);
            firsts.insert(name(&NetemKind.draw(&ctx, 0, &mut rng)));
        }
        assert_eq!(firsts.len(), IMPAIRMENTS, "{firsts:?}");
    }
}
