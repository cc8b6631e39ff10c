//! Partition shapes, as Jepsen names them, and the grudge each one implies:
//! for every node, the nodes it must not hear from.

use std::collections::BTreeSet;

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

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
        match rng.random_range(0..8) {
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
        }
    }

    /// Who may not talk to whom, given the current leader (for `IsolateLeader`).
    pub fn grudge(&self, nodes: u64, leader: Option<u64>) -> Grudge {
        let all: Vec<u64> = (1..=nodes).collect();
        let alone = |node: u64| between(&[vec![node], all.iter().copied().filter(|&n| n != node).collect()]);
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
            Partition::Bridge { left, bridge, right } => {
                let mut grudge = between(&[left.clone(), right.clone()]);
                grudge.push((*bridge, BTreeSet::new()));
                grudge.sort();
                grudge
            }
        }
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
        for nodes in [3u64, 5, 7] {
            for _ in 0..200 {
                let p = Partition::random(nodes, &mut rng);
                let g = p.grudge(nodes, Some(2));
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
                    Partition::RandomHalves { groups } => {
                        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), nodes as usize);
                        assert!(groups.iter().all(|g| g.len() < majority || g.len() == majority));
                    }
                }
            }
        }
    }
}
