//! Everything that defines a run. Written to run.json, so `replay` can run
//! the same thing again.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

/// The name an option's value has on the command line and in run.json
/// (`cas-register`, `partition`, ...).
pub fn name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// One key: read, write, compare-and-set.
    Register,
    /// As register, but every value written (by a write or a cas) is new.
    RegisterUnique,
    /// Independent keys, a new one every --ops-per-key operations: read, write, cas.
    CasRegister,
    /// As cas-register, but every value written (by a write or a cas) is
    /// new: a stale read never passes for the current value by chance, and
    /// the checker decides keys by inference, without a search.
    CasRegisterUnique,
    /// A few keys: read, write, cas, delete.
    Kv,
    /// As kv, but every value written (by a write or a cas) is new: each
    /// read names the write it saw, so the checker decides keys by
    /// inference, without a search, however many clients are in flight.
    KvUnique,
    /// Unique appends and reads: catches lost writes.
    Append,
    /// List-append transactions over a few keys at a time (Elle's): checked
    /// for strict serializability, anomalies named.
    Txn,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NemesisChoice {
    /// No faults: a baseline.
    None,
    /// Network partitions (random halves, one node, the leader, majorities ring, bridge).
    Partition,
    /// kill -9 and restart from the same data directory.
    Kill,
    /// SIGSTOP and SIGCONT.
    Pause,
    /// Delay with jitter, loss, duplication, reordering.
    Netem,
    /// Power failure: kill -9 a minority or every node at once, lose every
    /// write not fsynced (data directories on lazyfs), restart.
    Power,
    /// Clocks that run fast or slow or jump (libfaketime), and a leader
    /// whose clock runs slow while it is cut off from its peers.
    Clock,
    /// Disk corruption on one node per run (stopped first): bits flipped in,
    /// truncation of, or zeros in a file of its data directory, then a restart.
    Corrupt,
    /// Failpoints armed in one server: crashes in named windows (before and
    /// after the log is written, a snapshot sent or installed...), stalls
    /// and failed writes. Needs the failpoints build (capukv-planted).
    Failpoint,
    /// Membership changes: a voter (the leader every other time) demoted to
    /// a learner, and promoted back once caught up at the heal.
    Member,
    /// All of the above, each in turn (power, clock and failpoint where the
    /// run can strike them), now and then two at once.
    All,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReadModeChoice {
    Linearizable,
    /// Served by any node at once: fast and unsafe; runs with it should be invalid.
    Stale,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Binding {
    /// Each logical client talks to one node first (process i to node i mod n), as in Jepsen.
    Node,
    /// Every client may use any node.
    Any,
}

/// What the nodes' data directories live on.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DataFs {
    /// `fuse` when the nemesis needs it (power; all on the netns runtime), else `plain`.
    #[default]
    Auto,
    /// The run directory's own filesystem.
    Plain,
    /// lazyfs (FUSE): keeps what was not fsynced apart, to lose it on a power failure.
    Fuse,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// One network namespace per node on a bridge of the run's own.
    Netns,
    /// One container per node from capukv:latest on a Docker network of the run's own.
    Docker,
}

/// Options of `capukv-chaos run` (and the record of them in run.json).
#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct RunOptions {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Seconds of workload under faults (the final heal, recovery and final reads come after).
    #[arg(long, default_value_t = 60.0)]
    pub time_limit: f64,
    #[arg(long, value_enum, default_value_t = WorkloadKind::CasRegister)]
    pub workload: WorkloadKind,
    #[arg(long, value_enum, default_value_t = NemesisChoice::All)]
    pub nemesis: NemesisChoice,
    /// Seconds from one fault to the next: each fault holds for half of it, then heals.
    #[arg(long, default_value_t = 10.0)]
    pub nemesis_interval: f64,
    /// Seconds of quiet before the first fault.
    #[arg(long, default_value_t = 3.0)]
    pub quiet_start: f64,
    /// Seconds to wait after the final heal before the final reads.
    #[arg(long, default_value_t = 5.0)]
    pub recovery_time: f64,
    /// Logical clients running at once.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Operations per second, all clients together (0: as fast as they go).
    #[arg(long, default_value_t = 300.0)]
    pub rate: f64,
    /// Seconds an operation may take before it is recorded as info.
    #[arg(long, default_value_t = 1.0)]
    pub op_timeout: f64,
    /// cas-register and append: operations on a key before moving to a new one.
    #[arg(long, default_value_t = 200)]
    pub ops_per_key: u64,
    #[arg(long, value_enum, default_value_t = ReadModeChoice::Linearizable)]
    pub read_mode: ReadModeChoice,
    #[arg(long, value_enum, default_value_t = Binding::Node)]
    pub client_binding: Binding,
    #[arg(long, value_enum, default_value_t = RuntimeKind::Netns)]
    pub runtime: RuntimeKind,
    /// Seeds the fault schedule and every client's choices (random when not given; always recorded).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The run directory (default: REPORTS/<time>-<workload>-<nemesis>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where run directories and the `latest` link go.
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// The `capukv` binary (default: next to capukv-chaos, then PATH).
    #[arg(long)]
    pub capukv_bin: Option<PathBuf>,
    /// The servers' Raft tick in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub tick_ms: u64,
    /// Seconds the linearizability search may take before the verdict is unknown.
    #[arg(long, default_value_t = 120.0)]
    pub checker_timeout: f64,
    /// Keep the nodes' data directories (removed by default; logs are always kept).
    #[arg(long)]
    pub keep_data: bool,
    /// Run servers with this bug planted on purpose (a capukv built with the
    /// `planted-bugs` feature: `capukv-planted` next to capukv-chaos or on
    /// PATH, or --capukv-bin). The run is then expected to be invalid.
    #[arg(long, value_name = "NAME")]
    #[serde(default)]
    pub planted_bug: Option<String>,
    /// A run in which fewer than this share of the operations succeeded (or
    /// some kind of operation never did) is vacuous, not valid.
    #[arg(long, default_value_t = 0.1)]
    #[serde(default = "default_min_ok_share")]
    pub min_ok_share: f64,
    /// What the data directories live on (netns runtime).
    #[arg(long, value_enum, default_value_t = DataFs::Auto)]
    #[serde(default)]
    pub data_fs: DataFs,
    /// With lazyfs: a power failure keeps a seeded prefix of each file's
    /// last unsynced write (a torn write) instead of none of it.
    #[arg(long)]
    #[serde(default)]
    pub torn_writes: bool,
    /// Mutual TLS between the nodes and to the harness's clients, with a CA
    /// and certificates issued for the run (under RUN_DIR/tls).
    #[arg(long)]
    #[serde(default)]
    pub tls: bool,
    /// Run the failpoints build of the server (`capukv-planted`, as for
    /// planted bugs), so that `--nemesis all` includes failpoints too.
    /// Implied by `--nemesis failpoint`.
    #[arg(long)]
    #[serde(default)]
    pub failpoints: bool,
    /// How many nodes disk corruption strikes at once (the same ones all
    /// run): 1, a minority, by default; more is a disk that lied on a
    /// majority, which no Raft survives but must not survive silently.
    #[arg(long, default_value_t = 1)]
    #[serde(default = "one")]
    pub corrupt_nodes: usize,
    /// The servers' Raft knobs: `random` draws them from the seed within
    /// safe ranges (tick around --tick-ms, election timeout, heartbeat,
    /// snapshot threshold), as etcd's robustness suite does; `fixed` keeps
    /// the defaults. Recorded in run.json.
    #[arg(long, value_enum, default_value_t = KnobsChoice::Random)]
    #[serde(default)]
    pub server_knobs: KnobsChoice,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KnobsChoice {
    /// The defaults (what runs recorded before knobs existed used).
    #[default]
    Fixed,
    Random,
}

impl RunOptions {
    /// Whether the data directories go on lazyfs.
    /// Whether the servers run under libfaketime (clock faults).
    /// `all` brings the clock and power kinds only where the runtime can
    /// strike them (netns); asked for by name elsewhere, they are refused.
    pub fn faketime(&self) -> bool {
        match self.nemesis {
            NemesisChoice::Clock => true,
            NemesisChoice::All => self.runtime == RuntimeKind::Netns,
            _ => false,
        }
    }

    /// Whether the servers are the failpoints build (the planted twin):
    /// asked for, implied by the nemesis, or by a planted bug (same binary).
    pub fn failpoints_build(&self) -> bool {
        self.failpoints || self.nemesis == NemesisChoice::Failpoint || self.planted_bug.is_some()
    }

    /// Whether disk corruption is struck (a data directory the harness can
    /// reach: the netns runtime).
    pub fn corruption(&self) -> bool {
        match self.nemesis {
            NemesisChoice::Corrupt => true,
            NemesisChoice::All => self.runtime == RuntimeKind::Netns,
            _ => false,
        }
    }

    /// Whether failpoint faults are struck.
    pub fn failpoints(&self) -> bool {
        match self.nemesis {
            NemesisChoice::Failpoint => true,
            NemesisChoice::All => self.failpoints_build() && self.runtime == RuntimeKind::Netns,
            _ => false,
        }
    }

    pub fn lazyfs(&self) -> bool {
        match self.data_fs {
            DataFs::Fuse => true,
            DataFs::Plain => false,
            DataFs::Auto => match self.nemesis {
                NemesisChoice::Power => true,
                NemesisChoice::All => self.runtime == RuntimeKind::Netns,
                _ => false,
            },
        }
    }
}

fn one() -> usize {
    1
}

fn default_min_ok_share() -> f64 {
    0.1
}

impl RunOptions {
    /// The options `capukv-chaos run ARGS` would have (the defaults with no
    /// arguments). Panics on arguments clap refuses: for code and tests.
    pub fn from_args(args: &[&str]) -> RunOptions {
        use clap::Parser;
        #[derive(Parser)]
        struct Run {
            #[command(flatten)]
            options: RunOptions,
        }
        Run::parse_from(std::iter::once("run").chain(args.iter().copied())).options
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=9).contains(&self.nodes) {
            return Err(format!("--nodes {}: 1 to 9 are supported", self.nodes));
        }
        let positive = [
            ("--time-limit", self.time_limit),
            ("--nemesis-interval", self.nemesis_interval),
            ("--op-timeout", self.op_timeout),
            ("--checker-timeout", self.checker_timeout),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be a positive number of seconds, not {v}"));
            }
        }
        for (name, v) in
            [("--quiet-start", self.quiet_start), ("--recovery-time", self.recovery_time), ("--rate", self.rate)]
        {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} must be zero or more, not {v}"));
            }
        }
        if self.concurrency == 0 || self.concurrency > 1000 {
            return Err(format!("--concurrency {}: 1 to 1000", self.concurrency));
        }
        if self.ops_per_key == 0 {
            return Err("--ops-per-key must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.min_ok_share) {
            return Err(format!("--min-ok-share {} must be between 0 and 1", self.min_ok_share));
        }
        if self.planted_bug.as_deref().is_some_and(|b| b.is_empty() || b.starts_with('-')) {
            return Err("--planted-bug needs a bug's name (`capukv planted-bugs` lists them)".into());
        }
        if self.data_fs == DataFs::Plain && self.nemesis == NemesisChoice::Power {
            return Err("--nemesis power loses unsynced writes on lazyfs: it needs --data-fs fuse (or auto)".into());
        }
        if self.lazyfs() && self.runtime == RuntimeKind::Docker {
            return Err(
                "--data-fs fuse (and the power nemesis) needs the netns runtime: a container's volume is not on lazyfs"
                    .into(),
            );
        }
        if self.faketime() && self.runtime == RuntimeKind::Docker {
            return Err("--nemesis clock (and all) needs the netns runtime: the capukv image carries no libfaketime (its FROM scratch image holds only the server and the libraries ldd lists)".into());
        }
        if !(1..=self.nodes).contains(&self.corrupt_nodes) {
            return Err(format!("--corrupt-nodes {}: 1 to --nodes ({})", self.corrupt_nodes, self.nodes));
        }
        if self.nemesis == NemesisChoice::Corrupt && self.runtime == RuntimeKind::Docker {
            return Err("--nemesis corrupt needs the netns runtime: a container's data directory is a volume the harness does not reach".into());
        }
        if self.nemesis == NemesisChoice::Failpoint && self.runtime == RuntimeKind::Docker {
            return Err("--nemesis failpoint needs the netns runtime: the capukv image holds the normal build, which has no failpoints".into());
        }
        if self.tick_ms == 0 {
            return Err("--tick-ms must be at least 1".into());
        }
        Ok(())
    }
}
