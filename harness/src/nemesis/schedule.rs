//! The fault schedule: a pure function of the options and the seed, written
//! to run.json so `replay` strikes the same faults at the same moments.

use rand::rngs::SmallRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

pub use super::clock::ClockFault;
use super::corrupt::CorruptFault;
pub use super::failpoint::{FailAction, FailTarget, FailpointFault};
pub use super::impairment::NetemFault;
use super::kind::{self, Draw, FaultKind};
use super::partition::Partition;
use crate::options::{NemesisChoice, RunOptions};

/// One fault: the data its kind ([`kind::of`]) strikes it with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    Partition {
        partition: Partition,
    },
    Kill {
        nodes: Vec<u64>,
        /// Hold them down past the heal until the leader has compacted its
        /// log past what they applied, so that they catch up by snapshot.
        #[serde(default)]
        until_compacted: bool,
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
    /// A failpoint armed in one server (a build with the `failpoints`
    /// feature): a crash, stall or error in a named window. Disarmed at the
    /// heal, and the node restarted if it crashed.
    Failpoint {
        failpoint: FailpointFault,
    },
    /// kill -9 the run's victims (one node unless asked), damage a file of
    /// each one's data directory, and (at the heal) start them again: each
    /// must refuse, naming the file, or come back with its data intact.
    Corrupt {
        corrupt: Vec<CorruptFault>,
    },
    /// A voter made a learner (the leader, or a given node), promoted back
    /// at the heal.
    Member {
        member: super::member::MemberFault,
    },
}

impl Fault {
    /// The nemesis kind, as `--nemesis` names it.
    pub fn kind(&self) -> &'static str {
        kind::of(self).name()
    }

    /// History `f` names for striking and healing, as in Jepsen.
    pub fn event_names(&self) -> (&'static str, &'static str) {
        kind::of(self).events()
    }

    /// The colour of this kind's bands in the report.
    pub fn colour(&self) -> &'static str {
        kind::of(self).colour()
    }

    /// The mark of the history event that strikes (`starts`) or heals it.
    pub fn mark(&self, starts: bool) -> checker::FaultMark {
        checker::FaultMark { kind: self.kind().into(), starts, colour: Some(self.colour().into()) }
    }

    /// Faults of one class may not overlap: network and clock faults heal
    /// every network fault at once; process faults stop and start nodes.
    /// Faults of the two classes may.
    pub fn is_network(&self) -> bool {
        kind::of(self).network()
    }

    /// The kind whose strike is recorded as `f`.
    pub fn kind_struck_by(f: &str) -> Option<&'static str> {
        kind::by_event(f, true).map(|k| k.name())
    }

    /// The kind whose heal is recorded as `f`.
    pub fn kind_healed_by(f: &str) -> Option<&'static str> {
        kind::by_event(f, false).map(|k| k.name())
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

/// Faults every `nemesis_interval` seconds after the quiet start, each held for
/// half the interval; `all` takes the kinds in turn, in a seeded order per
/// round, and now and then (a third of the faults, by the seed) strikes a
/// second fault of the other class inside the first: a kill during a
/// partition, a pause during netem.
pub fn plan(options: &RunOptions, seed: u64) -> Schedule {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7300);
    let nodes = options.nodes as u64;
    let mut steps = Vec::new();
    let single = kind::by_choice(options.nemesis);
    if options.nemesis != NemesisChoice::All && single.is_none() {
        return Schedule { steps };
    }
    let kinds: Vec<&'static dyn FaultKind> = kind::KINDS.iter().copied().filter(|k| k.in_all(options)).collect();
    // The same nodes take every disk corruption of the run: one, never more
    // than a minority, unless --corrupt-nodes asks.
    let first = (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33) % nodes;
    let victims = (0..options.corrupt_nodes.clamp(1, options.nodes) as u64).map(|i| 1 + (first + i) % nodes).collect();
    let ctx = Draw { nodes, seed, alone: single.is_some(), victims };
    let mut round: Vec<&'static dyn FaultKind> = Vec::new();
    let mut at = options.quiet_start;
    let mut turns: std::collections::HashMap<&'static str, usize> = std::collections::HashMap::new();
    let mut next = |kind: &'static dyn FaultKind, rng: &mut SmallRng| {
        let turn = turns.entry(kind.name()).or_default();
        let f = kind.draw(&ctx, *turn, rng);
        *turn += 1;
        f
    };
    while at < options.time_limit {
        let kind = match single {
            Some(kind) => kind,
            None => {
                if round.is_empty() {
                    round = kinds.clone();
                    round.shuffle(&mut rng);
                }
                round.pop().expect("refilled")
            }
        };
        let f = next(kind, &mut rng);
        // A slow leader is cut off only once its clock is slow (a second or
        // so after the strike): it holds longer, so that the window in which
        // it still leads beside a newly elected leader opens.
        let hold = if matches!(f, Fault::Clock { clock: ClockFault::SlowLeader { .. } }) { 0.8 } else { 0.5 };
        let heal_at = (at + options.nemesis_interval * hold).min(options.time_limit);
        steps.push(Step { at, heal_at, fault: f });
        if single.is_none() && kind.overlaps() && rng.random_bool(1.0 / 3.0) {
            let others: Vec<&'static dyn FaultKind> =
                kinds.iter().copied().filter(|k| k.overlaps() && k.network() != kind.network()).collect();
            if let Some(&other) = others.choose(&mut rng) {
                let span = heal_at - at;
                let (start, end) = (at + span * 0.2, at + span * 0.9);
                if start < end {
                    let f = next(other, &mut rng);
                    steps.push(Step { at: start, heal_at: end, fault: f });
                }
            }
        }
        at += options.nemesis_interval;
    }
    steps.sort_by(|a, b| a.at.total_cmp(&b.at));
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
        let o = options(&["--nodes", "5", "--time-limit", "60", "--nemesis", "all", "--nemesis-interval", "7"]);
        let a = plan(&o, 42);
        assert_eq!(a, plan(&o, 42), "same seed, same schedule");
        assert_ne!(a, plan(&o, 43));
        let kinds: std::collections::BTreeSet<_> = a.steps.iter().map(|s| s.fault.kind()).collect();
        assert_eq!(kinds.len(), 8, "every kind, power, clock, corrupt and member included: {kinds:?}");
        for s in &a.steps {
            assert!(s.at >= 3.0 && s.at < s.heal_at && s.heal_at <= 60.0);
            if let Fault::Kill { nodes, .. } | Fault::Pause { nodes } = &s.fault {
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
        assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["kill", "member", "netem", "partition", "pause"]);
        for nemesis in ["power", "clock", "corrupt", "failpoint"] {
            let err = options(&["--nemesis", nemesis, "--runtime", "docker"]).validate().unwrap_err();
            assert!(err.contains("netns runtime"), "{err}");
        }
        let err = options(&["--nemesis", "power", "--data-fs", "plain"]).validate().unwrap_err();
        assert!(err.contains("lazyfs"), "{err}");
    }

    #[test]
    fn all_overlaps_a_process_fault_with_a_network_fault_and_never_two_of_a_class() {
        let o = options(&["--nodes", "5", "--time-limit", "120", "--nemesis", "all", "--failpoints"]);
        let mut overlaps = 0;
        for seed in 0..20 {
            let steps = plan(&o, seed).steps;
            assert!(steps.iter().any(|s| s.fault.kind() == "failpoint"), "--failpoints brings failpoint into all");
            for (i, a) in steps.iter().enumerate() {
                for b in &steps[i + 1..] {
                    if b.at < a.heal_at && a.at < b.heal_at {
                        overlaps += 1;
                        assert_ne!(a.fault.is_network(), b.fault.is_network(), "{a:?} overlaps {b:?}");
                        assert!(b.at > a.at && b.heal_at < a.heal_at, "a second fault lies inside the first");
                    }
                }
            }
        }
        assert!(overlaps >= 20, "about a third of the faults overlap: {overlaps}");
        let single = options(&["--nodes", "5", "--time-limit", "120", "--nemesis", "kill"]);
        let steps = plan(&single, 3).steps;
        assert!(steps.windows(2).all(|w| w[0].heal_at <= w[1].at), "one kind alone never overlaps");
    }

    #[test]
    fn netem_parameters_and_the_corruption_victim_come_from_the_seed() {
        let o = options(&["--nodes", "5", "--time-limit", "120", "--nemesis", "netem"]);
        let delays: std::collections::BTreeSet<u64> = (0..10)
            .flat_map(|seed| plan(&o, seed).steps)
            .filter_map(|s| match s.fault {
                Fault::Netem { fault: NetemFault::Delay { delay_ms, .. }, .. } => Some(delay_ms),
                _ => None,
            })
            .collect();
        assert!(delays.len() > 5, "delays drawn, not a preset: {delays:?}");
        let c = options(&["--nodes", "5", "--time-limit", "60", "--nemesis", "corrupt"]);
        for seed in 0..10 {
            let victims: std::collections::BTreeSet<u64> = plan(&c, seed)
                .steps
                .iter()
                .flat_map(|s| match &s.fault {
                    Fault::Corrupt { corrupt } => corrupt.iter().map(|c| c.node).collect::<Vec<_>>(),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(victims.len(), 1, "one victim per run: {victims:?}");
        }
        let all = options(&["--nodes", "5", "--time-limit", "30", "--nemesis", "corrupt", "--corrupt-nodes", "5"]);
        for s in plan(&all, 4).steps {
            let Fault::Corrupt { corrupt } = s.fault else { panic!() };
            let nodes: std::collections::BTreeSet<u64> = corrupt.iter().map(|c| c.node).collect();
            assert_eq!(nodes.len(), 5, "asked for the whole cluster");
        }
    }

    #[test]
    fn failpoint_faults_name_real_failpoints_and_cover_the_snapshot_windows() {
        let o = options(&["--nodes", "3", "--time-limit", "300", "--nemesis", "failpoint", "--nemesis-interval", "5"]);
        let faults: Vec<FailpointFault> = plan(&o, 1)
            .steps
            .into_iter()
            .map(|s| match s.fault {
                Fault::Failpoint { failpoint } => failpoint,
                other => panic!("{other:?}"),
            })
            .collect();
        for f in &faults {
            assert!(capukv::failpoints::find(&f.point).is_ok(), "{f:?}");
        }
        assert!(faults.iter().any(|f| f.snapshot_catch_up && f.action == FailAction::Panic));
        assert!(faults.iter().any(|f| matches!(f.action, FailAction::Sleep { .. })));
        assert!(faults.iter().any(|f| f.action == FailAction::Error));
        assert_eq!(FailAction::Sleep { ms: 200 }.actions(), "sleep(200)");
    }

    #[test]
    fn none_schedules_nothing() {
        assert!(plan(&options(&["--nemesis", "none"]), 1).steps.is_empty());
    }
}
