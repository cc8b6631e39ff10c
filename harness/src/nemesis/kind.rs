//! What every fault kind is: one module per kind implements [`FaultKind`]
//! (how the schedule draws it, how it strikes and heals, what the history
//! and the report call it), and [`KINDS`] registers it. The data a fault
//! carries is its variant of [`Fault`], the schedule's serialized contract.
//!
//! To add a kind: a module with its fault's data and an impl of this trait,
//! a variant of `Fault` and of `NemesisChoice`, and a line in [`KINDS`] and
//! in [`of`].

use rand::rngs::SmallRng;
use serde_json::Value;

use super::{Fault, Nemesis};
use crate::options::{NemesisChoice, RunOptions};

/// What a kind needs to draw a fault.
pub struct Draw {
    pub nodes: u64,
    /// The run's seed, for what a kind keeps fixed over a run (its draws
    /// take their randomness from the schedule's generator).
    pub seed: u64,
    /// Whether this kind is the run's only one (not `all`, where faults of
    /// other kinds follow at every interval and must not be pushed back).
    pub alone: bool,
    /// The nodes disk corruption strikes in this run (one, unless
    /// `--corrupt-nodes` asks for more).
    pub victims: Vec<u64>,
}

pub trait FaultKind: Sync {
    /// The `--nemesis` choice that strikes only this kind.
    fn choice(&self) -> NemesisChoice;
    /// The kind's name, as `--nemesis` spells it.
    fn name(&self) -> &'static str;
    /// History `f` names for striking and healing, as in Jepsen.
    fn events(&self) -> (&'static str, &'static str);
    /// The colour of its bands in the report (`#rrggbb`).
    fn colour(&self) -> &'static str;
    /// Network (and clock) faults heal together, so two of them never
    /// overlap; nor do two process faults. One of each may.
    fn network(&self) -> bool;
    /// Whether a fault of the other class may strike while this one holds
    /// (or this one inside another).
    fn overlaps(&self) -> bool {
        true
    }
    /// Whether `--nemesis all` brings it, with these options.
    fn in_all(&self, options: &RunOptions) -> bool;
    /// Fault number `turn` of this kind in the run (kinds that cycle
    /// through variants use it, so that every run sees each).
    fn draw(&self, ctx: &Draw, turn: usize, rng: &mut SmallRng) -> Fault;
    /// Whether striking `fault` needs to know who leads.
    fn needs_leader(&self, fault: &Fault) -> bool {
        let _ = fault;
        false
    }
    /// Strikes `fault` (always of this kind); returns what was done, with
    /// node names resolved.
    fn strike(&self, nemesis: &Nemesis, fault: &Fault, leader: Option<u64>) -> anyhow::Result<Value>;
    /// Heals what `strike` did.
    fn heal(&self, nemesis: &Nemesis, fault: &Fault) -> anyhow::Result<Value>;
}

/// Every kind, in the order `all` lists them before its seeded shuffle.
pub const KINDS: [&dyn FaultKind; 9] = [
    &super::partition::PartitionKind,
    &super::kill::KillKind,
    &super::pause::PauseKind,
    &super::impairment::NetemKind,
    &super::power::PowerKind,
    &super::clock::ClockKind,
    &super::failpoint::FailpointKind,
    &super::corrupt::CorruptKind,
    &super::member::MemberKind,
];

/// The kind of `fault`.
pub fn of(fault: &Fault) -> &'static dyn FaultKind {
    match fault {
        Fault::Partition { .. } => &super::partition::PartitionKind,
        Fault::Kill { .. } => &super::kill::KillKind,
        Fault::Pause { .. } => &super::pause::PauseKind,
        Fault::Netem { .. } => &super::impairment::NetemKind,
        Fault::Power { .. } => &super::power::PowerKind,
        Fault::Clock { .. } => &super::clock::ClockKind,
        Fault::Failpoint { .. } => &super::failpoint::FailpointKind,
        Fault::Corrupt { .. } => &super::corrupt::CorruptKind,
        Fault::Member { .. } => &super::member::MemberKind,
    }
}

/// The kind `--nemesis choice` strikes alone (`None` for `none` and `all`).
pub fn by_choice(choice: NemesisChoice) -> Option<&'static dyn FaultKind> {
    KINDS.iter().copied().find(|k| k.choice() == choice)
}

/// The kind whose strike (`strikes`) or heal is recorded as `f`.
pub fn by_event(f: &str, strikes: bool) -> Option<&'static dyn FaultKind> {
    KINDS.iter().copied().find(|k| {
        let (strike, heal) = k.events();
        if strikes { strike == f } else { heal == f }
    })
}

/// The nodes' names, `n1`, `n2`, ..., for the history.
pub fn names(nodes: &[u64]) -> Vec<String> {
    nodes.iter().map(|n| format!("n{n}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_consistent() {
        let names: std::collections::BTreeSet<_> = KINDS.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), KINDS.len(), "one name each");
        for k in KINDS {
            assert_eq!(by_choice(k.choice()).map(|c| c.name()), Some(k.name()));
            assert_eq!(crate::options::name(&k.choice()), k.name(), "--nemesis spells it as the kind does");
            let (strike, heal) = k.events();
            assert_eq!(by_event(strike, true).map(|c| c.name()), Some(k.name()));
            assert_eq!(by_event(heal, false).map(|c| c.name()), Some(k.name()));
            assert!(k.colour().len() == 7 && k.colour().starts_with('#'), "{}", k.colour());
            let mut rng = <SmallRng as rand::SeedableRng>::seed_from_u64(1);
            let f = k.draw(&Draw { nodes: 5, seed: 1, alone: true, victims: vec![2] }, 0, &mut rng);
            assert_eq!(of(&f).name(), k.name(), "a kind draws its own faults");
        }
        assert!(by_choice(NemesisChoice::All).is_none() && by_choice(NemesisChoice::None).is_none());
    }
}
