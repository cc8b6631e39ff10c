//! The fault schedule: a pure function of the options and the seed, written
//! to run.json so `replay` strikes the same faults at the same moments.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::partition::Partition;
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

/// One fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    Partition {
        partition: Partition,
    },
    Kill {
        nodes: Vec<u64>,
    },
    Pause {
        nodes: Vec<u64>,
    },
    Netem {
        nodes: Vec<u64>,
        fault: NetemFault,
    },
    /// kill -9, then everything the nodes had not fsynced is lost (lazyfs),
    /// then (at the heal) restart.
    Power {
        nodes: Vec<u64>,
    },
    /// Clocks skewed (libfaketime), reset at the heal.
    Clock {
        clock: ClockFault,
    },
}

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

impl Fault {
    /// The nemesis kind, as `--nemesis` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition { .. } => "partition",
            Fault::Kill { .. } => "kill",
            Fault::Pause { .. } => "pause",
            Fault::Netem { .. } => "netem",
            Fault::Power { .. } => "power",
            Fault::Clock { .. } => "clock",
        }
    }

    /// History `f` names for striking and healing, as in Jepsen.
    pub fn event_names(&self) -> (&'static str, &'static str) {
        match self {
            Fault::Partition { .. } => ("start-partition", "stop-partition"),
            Fault::Kill { .. } => ("kill", "start"),
            Fault::Pause { .. } => ("pause", "resume"),
            Fault::Netem { .. } => ("start-netem", "stop-netem"),
            Fault::Power { .. } => ("power-off", "power-on"),
            Fault::Clock { .. } => ("clock-skew", "clock-reset"),
        }
    }
}

impl Fault {
    /// Every kind with a sample fault, to map history names back to kinds.
    fn samples() -> [Fault; 6] {
        [
            Fault::Partition { partition: Partition::IsolateLeader },
            Fault::Kill { nodes: vec![] },
            Fault::Pause { nodes: vec![] },
            Fault::Netem { nodes: vec![], fault: NetemFault::Loss { percent: 0.0 } },
            Fault::Power { nodes: vec![] },
            Fault::Clock { clock: ClockFault::Bump { nodes: vec![], offset_s: 0.0 } },
        ]
    }

    /// The kind whose strike is recorded as `f`.
    pub fn kind_struck_by(f: &str) -> Option<&'static str> {
        Fault::samples().iter().find(|s| s.event_names().0 == f).map(Fault::kind)
    }

    /// The kind whose heal is recorded as `f`.
    pub fn kind_healed_by(f: &str) -> Option<&'static str> {
        Fault::samples().iter().find(|s| s.event_names().1 == f).map(Fault::kind)
    }
}

/// A fault and when it strikes and heals, in seconds from the start of the workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub at: f64,
    pub heal_at: f64,
    pub fault: Fault,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub steps: Vec<Step>,
}

const KINDS: [NemesisChoice; 4] =
    [NemesisChoice::Partition, NemesisChoice::Kill, NemesisChoice::Pause, NemesisChoice::Netem];

/// A minority of the nodes, at least one, at random.
fn minority(nodes: u64, rng: &mut SmallRng) -> Vec<u64> {
    let most = ((nodes - 1) / 2).max(1);
    let count = rng.random_range(1..=most);
    let mut ids: Vec<u64> = (1..=nodes).collect();
    ids.shuffle(rng);
    let mut chosen = ids[..count as usize].to_vec();
    chosen.sort();
    chosen
}

/// Fault number `turn` of kind `kind` in the run (kinds that cycle through
/// variants use it, so every run sees each).
fn fault(kind: NemesisChoice, nodes: u64, turn: usize, rng: &mut SmallRng) -> Fault {
    match kind {
        NemesisChoice::Partition => Fault::Partition { partition: Partition::random(nodes, rng) },
        NemesisChoice::Kill => Fault::Kill { nodes: minority(nodes, rng) },
        NemesisChoice::Pause => Fault::Pause { nodes: minority(nodes, rng) },
        NemesisChoice::Netem => {
            // Each impairment in turn, so a run with several netem faults sees them all.
            let fault = match turn % 4 {
                0 => NetemFault::Delay { delay_ms: 50, jitter_ms: 25, correlation: 25.0 },
                1 => NetemFault::Loss { percent: 20.0 },
                2 => NetemFault::Duplicate { percent: 30.0 },
                _ => NetemFault::Reorder { percent: 25.0, delay_ms: 20 },
            };
            let mut ids: Vec<u64> = (1..=nodes).collect();
            ids.shuffle(rng);
            let count = rng.random_range(1..=nodes as usize);
            let mut chosen = ids[..count].to_vec();
            chosen.sort();
            Fault::Netem { nodes: chosen, fault }
        }
        NemesisChoice::Power => {
            // A coordinated power failure of the whole cluster now and then:
            // what no node fsynced is then gone everywhere at once.
            if rng.random_bool(0.4) {
                Fault::Power { nodes: (1..=nodes).collect() }
            } else {
                Fault::Power { nodes: minority(nodes, rng) }
            }
        }
        NemesisChoice::Clock => {
            // Every other clock fault is a slow leader cut off (the one that
            // tests leases and reads); the others skew a minority's clocks.
            let clock = match (turn % 2, rng.random_range(0..3)) {
                // Slow enough that CheckQuorum (an election timeout of ticks)
                // outlasts the others' election several times over.
                (0, _) => ClockFault::SlowLeader { rate: [0.1, 0.15, 0.2][rng.random_range(0..3)], cut: true },
                (_, 0 | 1) => ClockFault::Rate {
                    nodes: minority(nodes, rng),
                    rate: [0.1, 0.25, 0.5, 2.0, 5.0][rng.random_range(0..5)],
                },
                _ => ClockFault::Bump {
                    nodes: minority(nodes, rng),
                    offset_s: [-30.0, -5.0, -1.0, 1.0, 5.0, 60.0][rng.random_range(0..6)],
                },
            };
            Fault::Clock { clock }
        }
        NemesisChoice::None | NemesisChoice::All => unreachable!("not a single kind"),
    }
}

/// Faults every `nemesis_interval` seconds after the quiet start, each held for
/// half the interval; `all` takes the kinds in turn, in a seeded order per round.
pub fn plan(options: &RunOptions, seed: u64) -> Schedule {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7300);
    let nodes = options.nodes as u64;
    let mut steps = Vec::new();
    if options.nemesis == NemesisChoice::None {
        return Schedule { steps };
    }
    let mut round: Vec<NemesisChoice> = Vec::new();
    let mut at = options.quiet_start;
    let mut turns: std::collections::HashMap<NemesisChoice, usize> = std::collections::HashMap::new();
    while at < options.time_limit {
        let kind = match options.nemesis {
            NemesisChoice::All => {
                if round.is_empty() {
                    round = KINDS.to_vec();
                    if options.lazyfs() {
                        round.push(NemesisChoice::Power);
                    }
                    if options.faketime() {
                        round.push(NemesisChoice::Clock);
                    }
                    round.shuffle(&mut rng);
                }
                round.pop().expect("refilled")
            }
            single => single,
        };
        let turn = turns.entry(kind).or_default();
        let f = fault(kind, nodes, *turn, &mut rng);
        *turn += 1;
        // A slow leader is cut off only once its clock is slow (a second or
        // so after the strike): it holds longer, so that the window in which
        // it still leads beside a newly elected leader opens.
        let hold = if matches!(f, Fault::Clock { clock: ClockFault::SlowLeader { .. } }) { 0.8 } else { 0.5 };
        let heal_at = (at + options.nemesis_interval * hold).min(options.time_limit);
        steps.push(Step { at, heal_at, fault: f });
        at += options.nemesis_interval;
    }
    Schedule { steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> RunOptions {
        RunOptions::from_args(args)
    }

    #[test]
    fn all_strikes_every_kind_within_a_minute_and_the_seed_decides_everything() {
        let o = options(&["--nodes", "5", "--time-limit", "60", "--nemesis", "all"]);
        let a = plan(&o, 42);
        assert_eq!(a, plan(&o, 42), "same seed, same schedule");
        assert_ne!(a, plan(&o, 43));
        let kinds: std::collections::BTreeSet<_> = a.steps.iter().map(|s| s.fault.kind()).collect();
        assert_eq!(kinds.len(), 6, "every kind, power and clock included: {kinds:?}");
        for s in &a.steps {
            assert!(s.at >= 3.0 && s.at < s.heal_at && s.heal_at <= 60.0);
            if let Fault::Kill { nodes } | Fault::Pause { nodes } = &s.fault {
                assert!(nodes.len() <= 2, "a majority must survive: {nodes:?}");
            }
        }
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), a, "run.json round-trips");
    }

    #[test]
    fn all_on_docker_leaves_out_what_containers_cannot_do_and_asking_for_it_is_refused() {
        let o = options(&["--nodes", "5", "--time-limit", "60", "--nemesis", "all", "--runtime", "docker"]);
        assert!(o.validate().is_ok());
        let kinds: std::collections::BTreeSet<_> = plan(&o, 42).steps.iter().map(|s| s.fault.kind()).collect();
        assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["kill", "netem", "partition", "pause"]);
        for nemesis in ["power", "clock"] {
            let err = options(&["--nemesis", nemesis, "--runtime", "docker"]).validate().unwrap_err();
            assert!(err.contains("netns runtime"), "{err}");
        }
        let err = options(&["--nemesis", "power", "--data-fs", "plain"]).validate().unwrap_err();
        assert!(err.contains("lazyfs"), "{err}");
    }

    #[test]
    fn none_schedules_nothing() {
        assert!(plan(&options(&["--nemesis", "none"]), 1).steps.is_empty());
    }
}
