//! Partition shapes, as Jepsen names them, and the grudge each one implies:
//! for every node, the nodes it must not hear from.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rand::Rng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::kind::{Draw, FaultKind};
use super::{Fault, Nemesis};
use crate::options::{NemesisChoice, RunOptions};

/// How the cluster is cut. Node ids are 1-based.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "kebab-case")]
pub enum Partition {
    /// Two sides, as even as possible.
    RandomHalves { groups: Vec<Vec<u64>> },
    /// One node alone.
    IsolateOne { node: u64 },
    /// Whoever leads when the fault strikes, alone.
    IsolateLeader,
    /// Every node sees a majority, no two the same one.
    MajoritiesRing { ring: Vec<u64> },
    /// Two halves that only `bridge` connects.
    Bridge { left: Vec<u64>, bridge: u64, right: Vec<u64> },
    /// Whoever leads when the fault strikes, with the first `size - 1` of
    /// `order` (the leader skipped), in a minority: the old leader keeps
    /// some followers and its clients while the majority elects anew.
    LeaderMinority { size: usize, order: Vec<u64> },
    /// One way: whoever leads hears nobody, while its own messages still
    /// reach everyone (its followers keep hearing heartbeats it cannot see
    /// answered).
    LeaderDeaf,
    /// One way: nobody hears whoever leads, while it still hears everyone
    /// (the others elect anew; it learns of them only by what it hears).
    LeaderMute,
}

pub type Grudge = Vec<(u64, BTreeSet<u64>)>;

fn between(groups: &[Vec<u64>]) -> Grudge {
    let mut grudge = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let others: BTreeSet<u64> =
            groups.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, g)| g.iter().copied()).collect();
        for &n in group {
            grudge.push((n, others.clone()));
        }
    }
    grudge.sort();
    grudge
}

impl Partition {
    /// A shape at random; `IsolateLeader` is resolved when it strikes.
    pub fn random(nodes: u64, rng: &mut impl Rng) -> Partition {
        let mut ids: Vec<u64> = (1..=nodes).collect();
        ids.shuffle(rng);
        // Shapes that cut the leader off are drawn most often: a partition
        // that leaves the leader with a majority changes nothing a client sees.
        match rng.random_range(0..10) {
            0 => {
                let cut = ids.len() / 2;
                let mut groups = vec![ids[..cut].to_vec(), ids[cut..].to_vec()];
                groups.iter_mut().for_each(|g| g.sort());
                Partition::RandomHalves { groups }
            }
            1 => Partition::IsolateOne { node: ids[0] },
            2 => Partition::IsolateLeader,
            3 if nodes >= 5 => Partition::MajoritiesRing { ring: ids },
            4 if nodes >= 3 => {
                let half = (ids.len() - 1) / 2;
                let mut left = ids[..half].to_vec();
                let mut right = ids[half + 1..].to_vec();
                left.sort();
                right.sort();
                Partition::Bridge { left, bridge: ids[half], right }
            }
            5 | 6 if nodes >= 3 => Partition::LeaderMinority { size: (nodes as usize - 1) / 2, order: ids },
            7 => Partition::IsolateLeader,
            8 if nodes >= 2 => Partition::LeaderDeaf,
            9 if nodes >= 2 => Partition::LeaderMute,
            _ => Partition::IsolateOne { node: ids[0] },
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Partition::RandomHalves { .. } => "random-halves",
            Partition::IsolateOne { .. } => "isolate-one",
            Partition::IsolateLeader => "isolate-leader",
            Partition::MajoritiesRing { .. } => "majorities-ring",
            Partition::Bridge { .. } => "bridge",
            Partition::LeaderMinority { .. } => "leader-minority",
            Partition::LeaderDeaf => "leader-deaf",
            Partition::LeaderMute => "leader-mute",
        }
    }

    /// Whether the shape is resolved against the leader when it strikes.
    pub fn needs_leader(&self) -> bool {
        matches!(
            self,
            Partition::IsolateLeader | Partition::LeaderMinority { .. } | Partition::LeaderDeaf | Partition::LeaderMute
        )
    }

    /// Whether the grudge holds one way only: a node drops what its grudge
    /// names, and they still hear it. Other shapes cut both ways.
    pub fn one_way(&self) -> bool {
        matches!(self, Partition::LeaderDeaf | Partition::LeaderMute)
    }

    /// Who may not talk to whom, given the current leader (for `IsolateLeader`).
    pub fn grudge(&self, nodes: u64, leader: Option<u64>) -> Grudge {
        let all: Vec<u64> = (1..=nodes).collect();
        let others = |node: u64| -> BTreeSet<u64> { all.iter().copied().filter(|&n| n != node).collect() };
        let alone = |node: u64| between(&[vec![node], others(node).into_iter().collect()]);
        match self {
            Partition::RandomHalves { groups } => between(groups),
            Partition::IsolateOne { node } => alone(*node),
            Partition::IsolateLeader => alone(leader.unwrap_or(1)),
            Partition::MajoritiesRing { ring } => {
                // Each node keeps its neighbours within `reach` on the ring: itself
                // plus 2 * reach nodes make the smallest majority symmetry allows.
                let n = ring.len();
                let reach = (n / 2).div_ceil(2);
                let mut grudge: Grudge = ring
                    .iter()
                    .enumerate()
                    .map(|(i, &node)| {
                        let seen: BTreeSet<u64> =
                            (0..=reach).flat_map(|d| [ring[(i + d) % n], ring[(i + n - d % n) % n]]).collect();
                        (node, ring.iter().copied().filter(|x| !seen.contains(x)).collect())
                    })
                    .collect();
                grudge.sort();
                grudge
            }
            Partition::LeaderMinority { size, order } => {
                let leader = leader.unwrap_or(1);
                let minority: Vec<u64> = std::iter::once(leader)
                    .chain(order.iter().copied().filter(|&n| n != leader).take(size.saturating_sub(1)))
                    .collect();
                let majority: Vec<u64> = all.iter().copied().filter(|n| !minority.contains(n)).collect();
                between(&[minority, majority])
            }
            Partition::LeaderDeaf => {
                let leader = leader.unwrap_or(1);
                all.iter().map(|&n| (n, if n == leader { others(n) } else { BTreeSet::new() })).collect()
            }
            Partition::LeaderMute => {
                let leader = leader.unwrap_or(1);
                all.iter().map(|&n| (n, if n == leader { BTreeSet::new() } else { BTreeSet::from([leader]) })).collect()
            }
            Partition::Bridge { left, bridge, right } => {
                let mut grudge = between(&[left.clone(), right.clone()]);
                grudge.push((*bridge, BTreeSet::new()));
                grudge.sort();
                grudge
            }
        }
    }
}

pub struct PartitionKind;

impl FaultKind for PartitionKind {
    fn choice(&self) -> NemesisChoice {
        NemesisChoice::Partition
    }
    fn name(&self) -> &'static str {
        "partition"
    }
    fn events(&self) -> (&'static str, &'static str) {
        ("start-partition", "stop-partition")
    }
    fn colour(&self) -> &'static str {
        "#e67828"
    }
    fn network(&self) -> bool {
        true
    }
    fn in_all(&self, _: &RunOptions) -> bool {
        true
    }
    fn draw(&self, ctx: &Draw, _: usize, rng: &mut SmallRng) -> Fault {
        Fault::Partition { partition: Partition::random(ctx.nodes, rng) }
    }
    fn needs_leader(&self, fault: &Fault) -> bool {
        matches!(fault, Fault::Partition { partition } if partition.needs_leader())
    }
    fn strike(&self, n: &Nemesis, fault: &Fault, leader: Option<u64>) -> anyhow::Result<Value> {
        let Fault::Partition { partition } = fault else { unreachable!("a partition fault") };
        let grudge = partition.grudge(n.runtime.nodes().len() as u64, leader);
        for (node, cut) in &grudge {
            if !cut.is_empty() {
                let peers: Vec<Ipv4Addr> = cut.iter().map(|&p| n.addr(p)).collect();
                if partition.one_way() {
                    n.with_netem(*node, |h| h.deafen(&peers))?;
                } else {
                    n.with_netem(*node, |h| h.partition(&peers))?;
                }
            }
        }
        let cuts: serde_json::Map<String, Value> = grudge
            .iter()
            .map(|(node, cut)| (format!("n{node}"), json!(cut.iter().map(|c| format!("n{c}")).collect::<Vec<_>>())))
            .collect();
        Ok(json!({"shape": partition.name(), "leader": leader.map(|l| format!("n{l}")), "cuts": cuts}))
    }
    fn heal(&self, n: &Nemesis, _: &Fault) -> anyhow::Result<Value> {
        n.heal_network()?;
        Ok(json!("healed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sees(grudge: &Grudge, node: u64, nodes: u64) -> usize {
        let cut = &grudge.iter().find(|(n, _)| *n == node).unwrap().1;
        (1..=nodes).filter(|n| !cut.contains(n)).count()
    }

    #[test]
    fn grudges_are_symmetric_and_shapes_do_what_their_names_say() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        use rand::SeedableRng;
        let mut one_way = 0;
        for nodes in [3u64, 5, 7] {
            for _ in 0..200 {
                let p = Partition::random(nodes, &mut rng);
                let g = p.grudge(nodes, Some(2));
                if p.one_way() {
                    one_way += 1;
                    let cut = |n: u64| g.iter().find(|(m, _)| *m == n).unwrap().1.len();
                    match p {
                        Partition::LeaderDeaf => assert_eq!(cut(2), nodes as usize - 1, "the leader hears nobody"),
                        _ => assert_eq!(cut(2), 0, "the muted leader hears everyone"),
                    }
                    let heard_by_others = (1..=nodes).filter(|&n| n != 2).all(|n| cut(n) == 0);
                    assert_eq!(heard_by_others, p == Partition::LeaderDeaf, "{p:?}: {g:?}");
                    continue;
                }
                for (a, cut) in &g {
                    for b in cut {
                        let back = &g.iter().find(|(n, _)| n == b).unwrap().1;
                        assert!(back.contains(a), "{p:?}: {a} cuts {b} but not back");
                    }
                }
                let majority = nodes as usize / 2 + 1;
                match &p {
                    Partition::MajoritiesRing { .. } => {
                        for n in 1..=nodes {
                            let seen = sees(&g, n, nodes);
                            assert!(seen >= majority && seen < nodes as usize, "{p:?}: {n} sees {seen}");
                        }
                    }
                    Partition::IsolateLeader => assert_eq!(sees(&g, 2, nodes), 1),
                    Partition::LeaderMinority { .. } => {
                        let seen = sees(&g, 2, nodes);
                        assert!(seen >= 1 && seen < majority, "{p:?}: the leader sees {seen}");
                    }
                    Partition::IsolateOne { node } => assert_eq!(sees(&g, *node, nodes), 1),
                    Partition::Bridge { bridge, .. } => assert_eq!(sees(&g, *bridge, nodes), nodes as usize),
                    Partition::LeaderDeaf | Partition::LeaderMute => unreachable!("checked above"),
                    Partition::RandomHalves { groups } => {
                        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), nodes as usize);
                        assert!(groups.iter().all(|g| g.len() < majority || g.len() == majority));
                    }
                }
            }
        }
        assert!(one_way > 0, "one-way shapes are drawn too");
    }
}
