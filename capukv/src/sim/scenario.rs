//! What a seed turns into: the cluster size and the faults of one run.

use std::fmt;

use crate::raft::SplitMix64;

/// The most members (voters and learners) a churn run may grow to.
pub const MAX_NODES: usize = 7;
/// The most node ids a churn run hands out: removed ids are never reused,
/// so every node added is a new id.
pub const MAX_IDS: usize = 40;

/// The fault families. Seeds cycle through them so that any run of
/// consecutive seeds covers every family with both cluster sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    Loss,
    Delay,
    Duplication,
    Partition,
    Crash,
    /// A node stops (SIGSTOP, a long GC pause) and resumes later, unaware
    /// that time passed.
    Pause,
    Snapshot,
    Transfer,
    All,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Loss,
        FaultKind::Delay,
        FaultKind::Duplication,
        FaultKind::Partition,
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Snapshot,
        FaultKind::Transfer,
        FaultKind::All,
    ];

    /// The name `capukv simulate --faults` takes.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Loss => "loss",
            FaultKind::Delay => "delay",
            FaultKind::Duplication => "duplication",
            FaultKind::Partition => "partition",
            FaultKind::Crash => "crash",
            FaultKind::Pause => "pause",
            FaultKind::Snapshot => "snapshot",
            FaultKind::Transfer => "transfer",
            FaultKind::All => "all",
        }
    }

    pub fn from_name(name: &str) -> Result<FaultKind, String> {
        FaultKind::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
            let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown fault kind {name:?}: one of {}", names.join(", "))
        })
    }
}

/// Fault settings for a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Chance that a message is lost.
    pub drop: f64,
    /// Chance that a message is delivered twice.
    pub duplicate: f64,
    /// Messages take 1..=max_delay ticks; different delays reorder them.
    pub max_delay: u64,
    /// Chance that a message is held back for a long latency spike.
    pub spike: f64,
    pub partitions: bool,
    pub crashes: bool,
    pub pauses: bool,
    /// Nodes compact their logs often, so lagging nodes need snapshots.
    pub snapshots: bool,
    pub transfers: bool,
}

impl Faults {
    pub fn of(kind: FaultKind) -> Faults {
        let calm = Faults {
            drop: 0.0,
            duplicate: 0.0,
            max_delay: 3,
            spike: 0.0,
            partitions: false,
            crashes: false,
            pauses: false,
            snapshots: false,
            transfers: false,
        };
        match kind {
            FaultKind::Loss => Faults { drop: 0.25, ..calm },
            FaultKind::Delay => Faults { max_delay: 12, spike: 0.02, ..calm },
            FaultKind::Duplication => Faults { duplicate: 0.3, max_delay: 5, ..calm },
            FaultKind::Partition => Faults { partitions: true, ..calm },
            FaultKind::Crash => Faults { crashes: true, ..calm },
            FaultKind::Pause => Faults { pauses: true, ..calm },
            FaultKind::Snapshot => Faults { drop: 0.05, partitions: true, crashes: true, snapshots: true, ..calm },
            FaultKind::Transfer => Faults { drop: 0.05, transfers: true, ..calm },
            FaultKind::All => Faults {
                drop: 0.1,
                duplicate: 0.1,
                max_delay: 8,
                spike: 0.01,
                partitions: true,
                crashes: true,
                pauses: true,
                snapshots: true,
                transfers: true,
            },
        }
    }
}

/// One simulated run.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub seed: u64,
    pub nodes: usize,
    pub kind: FaultKind,
    pub faults: Faults,
    /// Ticks of faults and client load before the final heal.
    pub chaos_ticks: u64,
    pub clients: usize,
    /// The core's replication limits for this run.
    pub max_entries_per_message: usize,
    pub max_inflight_messages: usize,
    /// Leaders now and then report their own write durable only with their
    /// next batch, as an asynchronous storage would (off by default, so
    /// that every seed's trace stays what it was).
    pub late_reports: bool,
    /// Membership churn on top of the faults: the leader is asked to add
    /// learners (new, empty nodes), promote them, and remove voters (itself
    /// too) and learners, whose disks are then wiped; between 1 and
    /// [`MAX_NODES`] members (off by default, for the same reason).
    pub churn: bool,
    /// A bug planted in every node's core (see [`crate::planted`]).
    #[cfg(feature = "planted-bugs")]
    pub planted: Option<crate::planted::Bug>,
}

impl Scenario {
    /// The scenario a seed stands for: seeds cycle through the fault kinds,
    /// and alternate cluster sizes 3 and 5 every full cycle.
    pub fn from_seed(seed: u64) -> Scenario {
        let kinds = FaultKind::ALL.len() as u64;
        let kind = FaultKind::ALL[(seed % kinds) as usize];
        let nodes = if (seed / kinds).is_multiple_of(2) { 3 } else { 5 };
        // Mix the seed so the limits do not move in lockstep with the kind.
        let mix = SplitMix64::new(seed).next_u64();
        Scenario {
            seed,
            nodes,
            kind,
            faults: Faults::of(kind),
            chaos_ticks: 1_000,
            clients: 4,
            max_entries_per_message: 1 + (mix % 8) as usize,
            max_inflight_messages: 1 + ((mix >> 8) % 8) as usize,
            late_reports: false,
            churn: false,
            #[cfg(feature = "planted-bugs")]
            planted: None,
        }
    }
}

impl Scenario {
    /// The same seed under other faults: every seed's run under one fault
    /// family, rather than the family the seed would cycle to.
    pub fn with_faults(self, kind: FaultKind) -> Scenario {
        Scenario { kind, faults: Faults::of(kind), ..self }
    }

    /// The `capukv simulate` flags that turn the seed's own scenario into
    /// this one (churn aside, which the replay states itself).
    pub fn replay_flags(&self) -> Vec<String> {
        let own = Scenario::from_seed(self.seed);
        let mut flags = Vec::new();
        if self.chaos_ticks != own.chaos_ticks {
            flags.extend(["--ticks".to_string(), self.chaos_ticks.to_string()]);
        }
        if self.kind != own.kind {
            flags.extend(["--faults".to_string(), self.kind.name().to_string()]);
        }
        #[cfg(feature = "planted-bugs")]
        if let Some(bug) = self.planted {
            flags.extend(["--planted-bug".to_string(), bug.name().to_string()]);
        }
        flags
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let churn = if self.churn { ", membership churn" } else { "" };
        write!(
            f,
            "seed {} ({} nodes, {:?} faults{churn}, {} ticks)",
            self.seed, self.nodes, self.kind, self.chaos_ticks
        )
    }
}
