// `capukv`: run a node (`capukv server`), or talk to a cluster in the style
// of etcdctl. Exit status: 0 success, 1 key not found or compare failed,
// 2 any error (the message goes to standard error).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use capukv::bench::{self, BenchConfig, BenchOp};
use capukv::client::{Client, KeyValue, NamedSnapshot, ReadAt, ReadMode};
use capukv::server::{self, ServerConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "capukv", version, about = "CapuKV: a strongly consistent key-value store on Raft")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct ClientArgs {
    /// Client API addresses of the cluster's nodes, comma-separated.
    #[arg(long, global = true, env = "CAPUKV_ENDPOINTS", value_delimiter = ',', default_value = "127.0.0.1:5701")]
    endpoints: Vec<String>,
    /// `linearizable` (ReadIndex on the leader) or `stale` (any node's local
    /// state: faster, may be out of date).
    #[arg(long, global = true, value_enum, default_value_t = Mode::Linearizable)]
    read_mode: Mode,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds a request may take, retries included.
    #[arg(long, global = true, default_value_t = 10.0)]
    timeout: f64,
    /// TLS: the CA (PEM) that signs the nodes' certificates. A client with
    /// it talks TLS to the cluster; `server` needs all three flags (mutual
    /// TLS on the peer port, TLS on the client port).
    #[arg(long, global = true, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// TLS: this node's (or client's) certificate, PEM.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS: the key of --tls-cert, PEM.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Linearizable,
    Stale,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Server(Box<ServerArgs>),
    /// Print a key's value (now, or as it was at --rev or --snapshot).
    Get {
        key: String,
        #[command(flatten)]
        at: AtArgs,
    },
    /// Set a key's value.
    Put { key: String, value: String },
    /// Delete a key.
    Delete { key: String },
    /// Set NEW if the value is EXPECTED (with --absent: if the key is absent,
    /// and only NEW is given).
    Cas {
        key: String,
        /// EXPECTED NEW, or NEW alone with --absent.
        #[arg(num_args = 1..=2, required = true)]
        values: Vec<String>,
        #[arg(long)]
        absent: bool,
    },
    /// Append SUFFIX to a key's value.
    Append { key: String, suffix: String },
    /// Run a transaction: if every --if holds, the --then operations, else
    /// the --else ones, atomically at one revision. Compares: `KEY = VALUE`,
    /// `mod(KEY) < N` (also `create(KEY)`, `version(KEY)`; `=`, `!=`, `<`,
    /// `>`), `absent(KEY)`. Operations: `put K V`, `append K V`, `get K`,
    /// `del K`, `range S [E [LIMIT]]`, `delrange S [E]`. Prints the answer
    /// as JSON; exits 1 when the compares did not hold.
    Txn {
        #[arg(long = "if", value_name = "COMPARE")]
        compares: Vec<String>,
        #[arg(long = "then", value_name = "OP")]
        success: Vec<String>,
        #[arg(long = "else", value_name = "OP")]
        failure: Vec<String>,
        /// A JSON file `{"if": [...], "then": [...], "else": [...]}` of the
        /// same texts, instead of the flags (`-`: standard input).
        #[arg(long, conflicts_with_all = ["compares", "success", "failure"])]
        file: Option<std::path::PathBuf>,
    },
    /// List keys in [START, END) (END empty: to the end).
    Scan {
        start: String,
        end: String,
        #[arg(long, default_value_t = 0)]
        limit: u64,
        #[command(flatten)]
        at: AtArgs,
    },
    /// Named snapshots: a revision pinned against compaction, readable with
    /// `get --snapshot NAME`.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Discard the versions older than REVISION (never past the oldest named
    /// snapshot); reads below it are then refused. Prints the compacted
    /// revision.
    Compact { revision: u64 },
    /// Show each endpoint's node status (with --hash: a digest of its state
    /// machine at its applied index, equal on replicas that agree).
    Status {
        #[arg(long)]
        hash: bool,
    },
    /// Hand leadership to node ID.
    TransferLeader { id: u64 },
    /// Show or change who is in the cluster.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Measure throughput and latency (of CapuKV, or of etcd for comparison).
    Bench(BenchArgs),
    /// Measure the latency of append + fdatasync on the disk holding a directory.
    BenchFsync(BenchFsyncArgs),
    /// Measure what the version history costs: disk bytes per version next
    /// to per live key, and reads at the head next to reads at past
    /// revisions (on a scratch state machine, no cluster).
    BenchHistory(BenchHistoryArgs),
    /// Write a throwaway CA and a certificate per node (and one for a
    /// client) for trying TLS out: ca.pem, nN.pem, nN-key.pem, client.pem,
    /// client-key.pem. Not for production: use your own PKI there.
    Certs {
        /// Where to write them.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Each node's hosts (IP addresses or DNS names it is dialled by),
        /// one entry per node, in node id order; several hosts of one node
        /// `+`-separated: `--hosts 10.0.0.1,10.0.0.2+n2.example,10.0.0.3`.
        #[arg(long, value_delimiter = ',', required = true)]
        hosts: Vec<String>,
    },
    /// List the bugs this build can plant (`server --planted-bug`); with
    /// --check NAME, exit 0 only if NAME is one of them.
    PlantedBugs {
        #[arg(long, value_name = "NAME")]
        check: Option<String>,
    },
    /// List the server's failpoints (`server --failpoint`, `failpoint`) and
    /// the window each opens; with --check, exit 0 only if this build has
    /// them working (the `failpoints` feature).
    Failpoints {
        #[arg(long)]
        check: bool,
    },
    /// Arm failpoint NAME with ACTIONS (`1*panic`, `sleep(500)`, `return`,
    /// `off`) on the node at the first endpoint; with neither, list what is
    /// armed there.
    Failpoint { name: Option<String>, actions: Option<String> },
    /// Run the Raft core's seeded simulation (as the tests do) and print how
    /// many seeds broke an invariant; with --planted-bug, against a core with
    /// that bug planted (a `planted-bugs` build).
    Simulate {
        /// Seeds to run, from --first-seed on.
        #[arg(long, default_value_t = 300)]
        seeds: u64,
        #[arg(long, default_value_t = 0)]
        first_seed: u64,
        #[arg(long, value_name = "NAME")]
        planted_bug: Option<String>,
        /// Change the membership throughout each run as well (learners,
        /// promotions, removals of voters and the leader, wiped nodes).
        #[arg(long)]
        churn: bool,
        /// Ticks of faults and client load in each seed's run before the
        /// final heal (the scenario's own 1,000 if not given): a longer run
        /// is one cluster living through more faults, more leader changes
        /// and more of the rare interleavings.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        ticks: Option<u64>,
        /// Run every seed under this fault family (loss, delay,
        /// duplication, partition, crash, pause, snapshot, transfer, all)
        /// instead of the one the seed cycles to.
        #[arg(long, value_name = "KIND", value_parser = parse_fault_kind)]
        faults: Option<capukv::sim::FaultKind>,
    },
    /// Print the CapuKV/etcd comparison table of `bench --json` results
    /// (JSON lines in FILE, or standard input for -).
    BenchTable { file: PathBuf },
}

/// Where a read looks: now, or the past.
#[derive(Args)]
struct AtArgs {
    /// Read the state as of this revision.
    #[arg(long, conflicts_with = "snapshot")]
    rev: Option<u64>,
    /// Read the state at this named snapshot.
    #[arg(long)]
    snapshot: Option<String>,
}

impl AtArgs {
    fn read_at(&self) -> ReadAt {
        match (self.rev, &self.snapshot) {
            (Some(r), _) => ReadAt::Revision(r),
            (None, Some(name)) => ReadAt::Snapshot(name.clone()),
            (None, None) => ReadAt::Head,
        }
    }
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Pin the current revision (or --rev) under NAME.
    Create {
        name: String,
        #[arg(long, default_value_t = 0)]
        rev: u64,
    },
    /// List the named snapshots and the compacted revision.
    List,
    /// Delete the snapshot NAME (exit 1 if there is none).
    Delete { name: String },
    /// Delete every named snapshot below revision --below (default: all).
    Purge {
        #[arg(long, default_value_t = 0)]
        below: u64,
    },
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Every member with its role, addresses and (from the leader) how far
    /// its log is replicated.
    List,
    /// Add node ID as a voter (start it with `server --join`).
    Add(NewMember),
    /// Add node ID as a learner: it receives the log but does not vote
    /// until promoted (start it with `server --join`).
    AddLearner(NewMember),
    /// Make learner ID a voter (once it has caught up: see `member list`).
    Promote { id: u64 },
    /// Remove member ID (the leader too: it steps down once the change is
    /// committed). One voter at a time; the id can never be added again
    /// (a replacement joins under a new id).
    Remove { id: u64 },
    /// Make voter ID a learner: it keeps its data and can be promoted back.
    Demote { id: u64 },
}

#[derive(Args)]
struct NewMember {
    id: u64,
    /// Where it listens for Raft traffic.
    #[arg(long)]
    raft_addr: String,
    /// Where it listens for clients.
    #[arg(long)]
    api_addr: String,
}

#[derive(Args)]
struct ServerArgs {
    /// This node's id (its entry in --peers).
    #[arg(long)]
    id: u64,
    /// Data directory (created if missing; a restart with the same one resumes).
    #[arg(long)]
    dir: PathBuf,
    /// Address for clients.
    #[arg(long)]
    api_addr: SocketAddr,
    /// Address for Raft traffic between nodes.
    #[arg(long)]
    raft_addr: SocketAddr,
    /// Every founding voter's Raft address, this node's included:
    /// ID=HOST:PORT,... (members added later come from the log). A founder
    /// that starts with an empty directory asks the others whether it took
    /// part before, and neither votes nor campaigns until they all say no.
    #[arg(long, value_delimiter = ',', required_unless_present_any = ["join", "dns"], conflicts_with_all = ["join", "dns"])]
    peers: Vec<String>,
    /// Find the founding voters through DNS instead of --peers: SRV records
    /// `_capukv-raft._tcp.NAME` (a peer's id ends its host's first label,
    /// e.g. capukv-3), else NAME's A records (ids in address order, Raft on
    /// this node's --raft-addr port). Asks again until --expect peers answer.
    #[arg(long, value_name = "NAME", requires = "expect", conflicts_with = "join")]
    dns: Option<String>,
    /// How many founding voters --dns must find.
    #[arg(long, value_name = "N", requires = "dns", value_parser = clap::value_parser!(u64).range(1..))]
    expect: Option<u64>,
    /// The DNS server --dns asks, HOST:PORT (default: the system's).
    #[arg(long, value_name = "HOST:PORT", requires = "dns")]
    dns_server: Option<SocketAddr>,
    /// Seconds --dns keeps asking for missing peers.
    #[arg(long, default_value_t = 300, requires = "dns")]
    dns_timeout_secs: u64,
    /// Join a running cluster as the new member this node was added as
    /// (`member add`/`add-learner`): client addresses of members to ask,
    /// HOST:PORT,... Restart a node that joined with the same flag.
    #[arg(long, value_delimiter = ',')]
    join: Vec<String>,
    /// The cluster's name; a data directory of another cluster is refused.
    #[arg(long, default_value = "capukv")]
    cluster: String,
    /// The cluster id (16 hex digits, as `status --json` shows it) to start
    /// with instead of the one derived from --cluster and --peers (which
    /// must then be the same on every node); a directory of another id is
    /// refused.
    #[arg(long, value_parser = parse_cluster_id)]
    cluster_id: Option<u64>,
    /// Milliseconds per Raft tick.
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
    /// Ticks without a leader before an election (randomized up to twice this).
    #[arg(long, default_value_t = 10)]
    election_ticks: u32,
    /// Ticks between leader heartbeats.
    #[arg(long, default_value_t = 1)]
    heartbeat_ticks: u32,
    /// Compact the log every this many applied entries.
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// Keep the log entries that snapshots cover (the data directory grows
    /// by every entry): the `Log` Cluster RPC then lists the whole log, so a
    /// test can settle after a run which writes were committed.
    #[arg(long)]
    keep_compacted_log: bool,
    /// Largest value accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_value_bytes: usize,
    /// Milliseconds a node waits for a write to commit before answering
    /// DeadlineExceeded.
    #[arg(long, default_value_t = 5_000)]
    request_timeout_ms: u64,
    /// Switch on a bug planted on purpose (builds with the `planted-bugs`
    /// feature only; see capukv/src/planted.rs for the catalogue).
    #[arg(long, value_name = "NAME")]
    planted_bug: Option<String>,
    /// Arm a failpoint at startup, NAME=ACTIONS (repeatable; builds with the
    /// `failpoints` feature only; `capukv failpoints` lists them).
    #[arg(long, value_name = "NAME=ACTIONS")]
    failpoint: Vec<String>,
    /// How the version history is compacted on its own, as etcd's flag:
    /// `revision` keeps the last --auto-compaction-retention revisions,
    /// `periodic` what was written within it (e.g. 30m, 1h).
    #[arg(long, default_value = "revision", value_parser = ["revision", "periodic"])]
    auto_compaction_mode: String,
    /// Revisions (revision mode) or a duration (periodic mode) of history to
    /// keep; 0: never compact on its own (only `capukv compact`).
    #[arg(long, default_value_t = server::DEFAULT_RETAINED_REVISIONS.to_string())]
    auto_compaction_retention: String,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to run, e.g. 10s or 500ms.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    #[arg(long, value_enum, default_value_t = Op::Put)]
    op: Op,
    /// Size of the key space.
    #[arg(long, default_value_t = 1_000)]
    keys: u64,
    /// The system to load: `capukv`, or `etcd` (v3 API; `--endpoints` then
    /// lists etcd's client URLs, and the load goes to its leader).
    #[arg(long, value_enum, default_value_t = BenchTarget::Capukv)]
    target: BenchTarget,
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchTarget {
    Capukv,
    Etcd,
}

#[derive(Args)]
struct BenchFsyncArgs {
    /// A directory on the disk to measure (a scratch file is made and removed).
    #[arg(long)]
    dir: PathBuf,
    /// Number of append+fdatasync rounds (stops early after 30 s).
    #[arg(long, default_value_t = 500)]
    count: usize,
    /// Bytes appended before each fdatasync.
    #[arg(long, default_value_t = 2048)]
    size: usize,
}

#[derive(Args)]
struct BenchHistoryArgs {
    /// Where the scratch data directory goes (removed after).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    keys: u64,
    /// Versions written per key (every key is written this many times).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    versions: u64,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Reads of each kind timed.
    #[arg(long, default_value_t = 20_000)]
    reads: usize,
    /// Keys per timed range read.
    #[arg(long, default_value_t = 100)]
    range_keys: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Op {
    Put,
    Get,
    Mixed,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = number.parse().map_err(|_| format!("bad duration {s:?} (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s or m)")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("the duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Server(_)) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let args = cli.client;
    if let Command::Server(s) = cli.command {
        let tls = capukv::tls::files_from_flags(args.tls_cert, args.tls_key, args.tls_ca)?;
        serve(*s, tls).await?;
        return Ok(0);
    }
    let mut client = Client::new(args.endpoints.clone())?;
    if args.tls_cert.is_some() && args.tls_ca.is_none() {
        bail!("--tls-cert needs --tls-ca (the CA that signed the nodes' certificates)");
    }
    if let Some(ca) = &args.tls_ca {
        let identity = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
        client = client.with_tls(capukv::tls::client_config(ca, identity)?)?;
    }
    client.timeout = Duration::from_secs_f64(args.timeout);
    client.read_mode = match args.read_mode {
        Mode::Linearizable => ReadMode::Linearizable,
        Mode::Stale => ReadMode::Stale,
    };
    let json = args.json;
    match cli.command {
        Command::Server(_) => unreachable!("handled above"),
        Command::PlantedBugs { check } => return planted_bugs(check.as_deref(), json),
        Command::Certs { out, hosts } => {
            use capukv::tls::Holder;
            let mut members: Vec<Holder> =
                (1..).zip(&hosts).map(|(id, h)| Holder::node(id, h.split('+').map(str::to_string).collect())).collect();
            members.push(Holder::client("client"));
            let ca = capukv::tls::TestAuthority::new("capukv test CA")?;
            ca.write(&out, &members).with_context(|| format!("writing certificates into {}", out.display()))?;
            println!("wrote ca.pem and certificates for {} nodes and a client into {}", hosts.len(), out.display());
        }
        Command::Failpoints { check } => return list_failpoints(check, json),
        Command::Failpoint { name, actions } => {
            let endpoint = args.endpoints.first().context("no --endpoints given")?;
            let armed =
                client.failpoint(endpoint, name.as_deref().unwrap_or(""), actions.as_deref().unwrap_or("")).await?;
            for (name, actions) in armed {
                if json {
                    println!("{}", serde_json::json!({"name": name, "actions": actions}));
                } else {
                    println!("{name}\t{actions}");
                }
            }
        }
        Command::Simulate { seeds, first_seed, planted_bug, churn, ticks, faults } => {
            let runs = SimulationRuns { seeds, first_seed, churn, ticks, faults };
            return simulate(runs, planted_bug.as_deref(), json);
        }
        Command::BenchTable { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            print!("{}", bench::comparison_table(&text).with_context(|| format!("in {}", file.display()))?);
        }
        Command::BenchHistory(h) => {
            let cfg = bench::HistoryBenchConfig {
                keys: h.keys,
                versions_per_key: h.versions,
                value_bytes: h.value_size,
                reads: h.reads.clamp(1, 10_000_000),
                range_keys: h.range_keys.max(1),
            };
            let cost = bench::measure_history(&h.dir, cfg).with_context(|| format!("in {}", h.dir.display()))?;
            if json {
                println!("{}", serde_json::to_string(&cost)?);
            } else {
                println!(
                    "{} keys x {} versions of {}-byte values: {:.1} bytes on disk per live key (current records), {:.1} per version (history)",
                    cost.keys,
                    cost.versions / cost.keys,
                    cost.value_bytes,
                    cost.head_bytes_per_key,
                    cost.history_bytes_per_version
                );
                println!("{:<40} {:>8} {:>10} {:>10} {:>10}", "read", "count", "mean us", "p50 us", "p99 us");
                for r in &cost.reads {
                    println!("{:<40} {:>8} {:>10.1} {:>10.1} {:>10.1}", r.what, r.reads, r.mean_us, r.p50_us, r.p99_us);
                }
            }
        }
        Command::BenchFsync(f) => {
            let report = bench::measure_fsync(&f.dir, f.count, f.size, Duration::from_secs(30))
                .with_context(|| format!("measuring fdatasync in {}", f.dir.display()))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "fdatasync after {}-byte appends in {}: {} rounds, mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                    report.bytes_per_write,
                    report.dir,
                    report.writes,
                    report.mean_ms,
                    report.p50_ms,
                    report.p99_ms,
                    report.max_ms
                );
            }
        }
        Command::Get { key, at } => match client.get_as_of(key.clone(), &at.read_at()).await?.0 {
            Some(kv) => print_kv(&kv, json, true),
            None => {
                eprintln!("key not found: {key}");
                return Ok(1);
            }
        },
        Command::Put { key, value } => {
            let previous = client.put(key, value).await?;
            if json {
                println!("{}", serde_json::json!({"ok": true, "previous": previous.as_ref().map(kv_json)}));
            } else {
                println!("OK");
            }
        }
        Command::Delete { key } => match client.delete(key.clone()).await? {
            Some(previous) => {
                if json {
                    println!("{}", serde_json::json!({"deleted": true, "previous": kv_json(&previous)}));
                } else {
                    println!("deleted");
                }
            }
            None => {
                eprintln!("key not found: {key}");
                return Ok(1);
            }
        },
        Command::Cas { key, values, absent } => {
            let (expected, new) = match (absent, values.as_slice()) {
                (false, [expected, new]) => (Some(Bytes::from(expected.clone())), new.clone()),
                (true, [new]) => (None, new.clone()),
                (false, _) => bail!("cas takes KEY EXPECTED NEW (or KEY NEW with --absent)"),
                (true, _) => bail!("with --absent, cas takes KEY NEW"),
            };
            let (succeeded, current) = client.cas(key, expected, new).await?;
            if json {
                println!("{}", serde_json::json!({"succeeded": succeeded, "current": current.as_ref().map(kv_json)}));
            } else if succeeded {
                println!("OK");
            } else {
                let shown =
                    current.map_or_else(|| "absent".to_string(), |kv| String::from_utf8_lossy(&kv.value).into_owned());
                eprintln!("compare failed: the value is {shown}");
            }
            if !succeeded {
                return Ok(1);
            }
        }
        Command::Append { key, suffix } => {
            let kv = client.append(key, suffix).await?;
            print_kv(&kv, json, true);
        }
        Command::Txn { compares, success, failure, file } => {
            let request = match file {
                Some(path) => {
                    let text = if path.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin())?
                    } else {
                        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
                    };
                    capukv::txn::parse_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                }
                None => capukv::txn::parse(&compares, &success, &failure).map_err(anyhow::Error::msg)?,
            };
            let response = client.txn(request).await?;
            println!("{}", capukv::txn::response_json(&response));
            if !response.succeeded {
                return Ok(1);
            }
        }
        Command::Scan { start, end, limit, at } => {
            let (kvs, more) = client.scan_as_of(start, end, limit, &at.read_at()).await?;
            if json {
                let items: Vec<_> = kvs.iter().map(kv_json).collect();
                println!("{}", serde_json::json!({"kvs": items, "more": more}));
            } else {
                for kv in &kvs {
                    println!("{}\t{}", String::from_utf8_lossy(&kv.key), String::from_utf8_lossy(&kv.value));
                }
            }
        }
        Command::Status { hash } => return status(&client, json, hash).await,
        Command::Snapshot(command) => return snapshot(&client, command, json).await,
        Command::Compact { revision } => {
            let compacted = client.compact(revision).await?;
            if json {
                println!("{}", serde_json::json!({"compacted": compacted, "requested": revision}));
            } else if compacted < revision {
                println!("compacted below revision {compacted} (a named snapshot holds the rest)");
            } else {
                println!("compacted below revision {compacted}");
            }
        }
        Command::TransferLeader { id } => {
            client.transfer_leader(id).await?;
            if !json {
                println!("leadership transfer to node {id} started");
            }
        }
        Command::Member(m) => return member(&client, m, json).await,
        Command::Bench(b) => {
            let endpoints = args.endpoints.clone();
            let target = match b.target {
                BenchTarget::Capukv => bench::Target::CapuKv(Arc::new(client)),
                BenchTarget::Etcd => bench::Target::etcd(&endpoints).await?,
            };
            let cfg = BenchConfig {
                clients: b.clients,
                duration: b.duration,
                value_size: b.value_size,
                op: match b.op {
                    Op::Put => BenchOp::Put,
                    Op::Get => BenchOp::Get,
                    Op::Mixed => BenchOp::Mixed,
                },
                keys: b.keys.max(1),
            };
            let report = bench::run(target, &endpoints, &cfg).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{} {} x{}: {} ops in {:.1}s = {:.0} ops/s; latency p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, max {:.2} ms; {} errors; fsyncs per write: leader {:.3}, all nodes {:.3}; leader log syncs {} for {} entries ({:.1} writes per fsync)",
                    report.target,
                    report.op,
                    report.clients,
                    report.operations,
                    report.seconds,
                    report.throughput,
                    report.p50_ms,
                    report.p99_ms,
                    report.p999_ms,
                    report.max_ms,
                    report.errors,
                    report.leader_syncs_per_write(),
                    report.cluster_syncs_per_write(),
                    report.leader_syncs,
                    report.leader_entries_synced,
                    report.writes_per_sync()
                );
            }
        }
    }
    Ok(0)
}

fn parse_cluster_id(s: &str) -> Result<u64, String> {
    match u64::from_str_radix(s.trim_start_matches("0x"), 16) {
        Ok(0) => Err("0 is no cluster id".into()),
        Ok(id) => Ok(id),
        Err(e) => Err(format!("{s:?} is not a hexadecimal cluster id: {e}")),
    }
}

async fn serve(s: ServerArgs, tls: Option<capukv::tls::TlsFiles>) -> anyhow::Result<()> {
    capukv::failpoints::install_panic_hook();
    if let Some(name) = &s.planted_bug {
        plant(name)?;
    }
    for spec in &s.failpoint {
        capukv::failpoints::arm_spec(spec)?;
    }
    let mut peers = HashMap::new();
    if let (Some(name), Some(expect)) = (&s.dns, s.expect) {
        let discovery = server::dns::DnsDiscovery {
            name: name.clone(),
            expect: expect as usize,
            server: s.dns_server,
            raft_port: s.raft_addr.port(),
            timeout: Duration::from_secs(s.dns_timeout_secs),
        };
        peers = server::dns::discover(&discovery).await?;
    }
    for p in &s.peers {
        let (id, addr) = p.split_once('=').with_context(|| format!("--peers entry {p:?} is not ID=HOST:PORT"))?;
        let id: u64 = id.trim().parse().with_context(|| format!("--peers entry {p:?}: {id:?} is not a node id"))?;
        if id == 0 {
            bail!("--peers entry {p:?}: node ids start at 1");
        }
        if peers.insert(id, addr.trim().to_string()).is_some() {
            bail!("--peers names node {id} twice");
        }
    }
    let mut cfg = ServerConfig::new(s.id, s.dir, s.api_addr, s.raft_addr, peers);
    cfg.join = s.join;
    cfg.cluster = s.cluster;
    cfg.cluster_id = s.cluster_id;
    cfg.tick = Duration::from_millis(s.tick_ms.max(1));
    cfg.election_ticks = s.election_ticks;
    cfg.heartbeat_ticks = s.heartbeat_ticks;
    cfg.snapshot_every = s.snapshot_every.max(1);
    cfg.keep_compacted_log = s.keep_compacted_log;
    cfg.tls = tls;
    cfg.max_value_bytes = s.max_value_bytes;
    cfg.request_timeout = Duration::from_millis(s.request_timeout_ms.max(1));
    cfg.auto_compaction = server::AutoCompaction::parse(&s.auto_compaction_mode, &s.auto_compaction_retention)
        .map_err(anyhow::Error::msg)?;
    server::run(cfg, shutdown_signal()).await?;
    Ok(())
}

async fn snapshot(client: &Client, command: SnapshotCommand, json: bool) -> anyhow::Result<u8> {
    let snapshot_json = |s: &NamedSnapshot| serde_json::json!({"name": s.name, "revision": s.revision, "created_unix_ms": s.created_unix_ms});
    match command {
        SnapshotCommand::Create { name, rev } => {
            let s = client.snapshot_create(&name, rev).await?;
            if json {
                println!("{}", snapshot_json(&s));
            } else {
                println!("snapshot {} pins revision {}", s.name, s.revision);
            }
        }
        SnapshotCommand::List => {
            let list = client.snapshot_list().await?;
            if json {
                let items: Vec<_> = list.snapshots.iter().map(snapshot_json).collect();
                println!(
                    "{}",
                    serde_json::json!({"snapshots": items, "revision": list.revision, "compacted": list.compacted})
                );
            } else {
                println!("revision {}, compacted below {}", list.revision, list.compacted);
                for s in &list.snapshots {
                    println!("{}\t{}\t{}", s.name, s.revision, s.created_unix_ms);
                }
            }
        }
        SnapshotCommand::Delete { name } => {
            let deleted = client.snapshot_delete(&name).await?;
            if json {
                println!("{}", serde_json::json!({"deleted": deleted}));
            } else if deleted {
                println!("deleted");
            }
            if !deleted {
                eprintln!("no snapshot named {name}");
                return Ok(1);
            }
        }
        SnapshotCommand::Purge { below } => {
            let deleted = client.snapshot_purge(below).await?;
            if json {
                println!("{}", serde_json::json!({"deleted": deleted}));
            } else {
                for name in &deleted {
                    println!("deleted {name}");
                }
            }
        }
    }
    Ok(0)
}

async fn member(client: &Client, command: MemberCommand, json: bool) -> anyhow::Result<u8> {
    use capukv::proto::{MemberChangeRequest, member_change_request::Kind};
    let change = |kind: Kind, id: u64, raft_addr: String, api_addr: String| MemberChangeRequest {
        kind: kind as i32,
        id,
        raft_addr,
        api_addr,
    };
    let list = match command {
        MemberCommand::List => client.member_list().await?,
        MemberCommand::Add(n) => client.member_change(change(Kind::Add, n.id, n.raft_addr, n.api_addr)).await?,
        MemberCommand::AddLearner(n) => {
            client.member_change(change(Kind::AddLearner, n.id, n.raft_addr, n.api_addr)).await?
        }
        MemberCommand::Promote { id } => {
            client.member_change(change(Kind::Promote, id, String::new(), String::new())).await?
        }
        MemberCommand::Remove { id } => {
            client.member_change(change(Kind::Remove, id, String::new(), String::new())).await?
        }
        MemberCommand::Demote { id } => {
            client.member_change(change(Kind::Demote, id, String::new(), String::new())).await?
        }
    };
    if json {
        let members: Vec<_> = list
            .members
            .iter()
            .map(|m| serde_json::json!({"id": m.id, "role": m.role, "raft_addr": m.raft_addr, "api_addr": m.api_addr, "match_index": m.match_index}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"node": list.id, "leader": list.leader, "config_index": list.config_index,
                "cluster_id": format!("{:016x}", list.cluster_id), "members": members})
        );
    } else {
        println!("configuration of entry {} (as node {} sees it; leader {})", list.config_index, list.id, list.leader);
        for m in &list.members {
            let leader = if m.id == list.leader { " leader" } else { "" };
            println!("{}	{}{leader}	raft {}	api {}	match {}", m.id, m.role, m.raft_addr, m.api_addr, m.match_index);
        }
    }
    Ok(0)
}

fn list_failpoints(check: bool, json: bool) -> anyhow::Result<u8> {
    use capukv::failpoints;
    if check {
        if !failpoints::compiled() {
            bail!(failpoints::FailpointError::NotCompiled);
        }
        return Ok(0);
    }
    for f in failpoints::ALL {
        if json {
            println!("{}", serde_json::json!({"name": f.name, "window": f.window, "compiled": failpoints::compiled()}));
        } else {
            println!("{}\t{}", f.name, f.window);
        }
    }
    Ok(0)
}

#[cfg(feature = "planted-bugs")]
fn planted_bugs(check: Option<&str>, json: bool) -> anyhow::Result<u8> {
    use capukv::planted::Bug;
    if let Some(name) = check {
        Bug::from_name(name).map_err(anyhow::Error::msg)?;
        return Ok(0);
    }
    for bug in Bug::ALL {
        let place = if bug.in_core() { "raft core" } else { "server" };
        if json {
            println!("{}", serde_json::json!({"name": bug.name(), "in_core": bug.in_core()}));
        } else {
            println!("{}\t{place}", bug.name());
        }
    }
    Ok(0)
}

#[cfg(not(feature = "planted-bugs"))]
fn planted_bugs(_: Option<&str>, _: bool) -> anyhow::Result<u8> {
    bail!("this capukv was built without planted bugs; build one with `cargo build -p capukv --features planted-bugs`")
}

/// Runs seeds of the simulation; exit 1 if any broke an invariant.
fn parse_fault_kind(name: &str) -> Result<capukv::sim::FaultKind, String> {
    capukv::sim::FaultKind::from_name(name)
}

/// Which runs of the simulation `simulate` makes.
struct SimulationRuns {
    seeds: u64,
    first_seed: u64,
    churn: bool,
    ticks: Option<u64>,
    faults: Option<capukv::sim::FaultKind>,
}

fn simulate(runs: SimulationRuns, planted: Option<&str>, json: bool) -> anyhow::Result<u8> {
    let SimulationRuns { seeds, first_seed, churn, ticks, faults } = runs;
    use capukv::sim::{self, Scenario};
    #[cfg(feature = "planted-bugs")]
    let planted = match planted {
        Some(name) => {
            let bug = capukv::planted::Bug::from_name(name).map_err(anyhow::Error::msg)?;
            if !bug.in_core() {
                bail!("--planted-bug {name} lives in the server, not the Raft core: the simulation cannot run it");
            }
            Some(bug)
        }
        None => None,
    };
    #[cfg(not(feature = "planted-bugs"))]
    if let Some(name) = planted {
        plant(name)?;
    }
    let started = std::time::Instant::now();
    let mut broken: Vec<(u64, String)> = Vec::new();
    // What the seeds that broke nothing did: a run with no leader changes
    // or no acknowledged writes proves little.
    let mut done = sim::Stats::default();
    for seed in first_seed..first_seed + seeds {
        let mut scenario = Scenario::from_seed(seed);
        if let Some(kind) = faults {
            scenario = scenario.with_faults(kind);
        }
        scenario.churn = churn;
        if let Some(ticks) = ticks {
            scenario.chaos_ticks = ticks;
        }
        #[cfg(feature = "planted-bugs")]
        {
            scenario.planted = planted;
        }
        // A planted bug may trip one of the core's own assertions: that is
        // a catch too, as the simulation reports it.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || sim::run_with(scenario)));
        match outcome {
            Ok(Ok(outcome)) => done.add(&outcome.stats),
            Ok(Err(v)) => broken.push((seed, v.to_string())),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                broken.push((seed, format!("seed {seed}: the core panicked: {what}")));
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ticks = ticks.unwrap_or_else(|| Scenario::from_seed(first_seed).chaos_ticks);
    if json {
        let first: Vec<&String> = broken.iter().take(3).map(|(_, v)| v).collect();
        println!(
            "{}",
            serde_json::json!({"seeds": seeds, "first_seed": first_seed, "churn": churn, "planted_bug": planted.map(|b| b.to_string()),
                "ticks": ticks, "faults": faults.map(|k| k.name()), "broken": broken.len(), "broken_seeds": broken.iter().map(|(s, _)| s).collect::<Vec<_>>(),
                "first_violations": first, "unbroken_stats": done, "seconds": elapsed})
        );
    } else {
        let faults = faults.map_or("each seed's own".to_string(), |k| k.name().to_string());
        println!(
            "simulation: {} of {seeds} seeds of {ticks} ticks under {faults} faults broke an invariant ({elapsed:.1} s)",
            broken.len()
        );
        for (_, v) in broken.iter().take(3) {
            println!("  {v}");
        }
    }
    Ok(u8::from(!broken.is_empty()))
}

#[cfg(feature = "planted-bugs")]
fn plant(name: &str) -> anyhow::Result<()> {
    let bug = capukv::planted::Bug::from_name(name).map_err(|e| anyhow::anyhow!("--planted-bug: {e}"))?;
    capukv::planted::set(bug);
    Ok(())
}

#[cfg(not(feature = "planted-bugs"))]
fn plant(name: &str) -> anyhow::Result<()> {
    bail!(
        "--planted-bug {name}: this capukv was built without planted bugs; build one with `cargo build -p capukv --features planted-bugs`"
    )
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

async fn status(client: &Client, json: bool, hash: bool) -> anyhow::Result<u8> {
    let mut failed = false;
    let mut rows = Vec::new();
    for addr in client.endpoints() {
        let answer = match client.status_of(addr).await {
            Ok(s) if hash => client.state_hash_of(addr).await.map(|h| (s, Some(h))),
            Ok(s) => Ok((s, None)),
            Err(e) => Err(e),
        };
        match answer {
            Ok((s, h)) => {
                if json {
                    let mut row = serde_json::json!({
                        "endpoint": addr, "id": s.id, "role": s.role, "term": s.term, "leader": s.leader,
                        "leader_api_addr": s.leader_api_addr, "commit_index": s.commit_index,
                        "applied_index": s.applied_index, "snapshot_index": s.snapshot_index,
                        "log_syncs": s.log_syncs, "log_entries_synced": s.log_entries_synced, "ticks": s.ticks,
                        "cluster_id": format!("{:016x}", s.cluster_id),
                        "members": s.members.iter().map(|m| serde_json::json!({
                            "id": m.id, "role": m.role, "raft_addr": m.raft_addr, "api_addr": m.api_addr,
                            "match_index": m.match_index,
                        })).collect::<Vec<_>>(),
                    });
                    if let Some(h) = &h {
                        row["state_hash"] = serde_json::json!({
                            "applied_index": h.applied_index, "hash": format!("{:016x}", h.hash),
                            "keys": h.keys, "sessions": h.sessions, "revision": h.revision,
                        });
                    }
                    rows.push(row);
                } else {
                    let digest = h.map_or(String::new(), |h| {
                        format!("\tstate {:016x} at {} ({} keys)", h.hash, h.applied_index, h.keys)
                    });
                    println!(
                        "{addr}\tnode {}\t{}\tterm {}\tleader {}\tcommit {}\tapplied {}{digest}",
                        s.id, s.role, s.term, s.leader, s.commit_index, s.applied_index
                    );
                }
            }
            Err(e) => {
                failed = true;
                if json {
                    rows.push(serde_json::json!({"endpoint": addr, "error": e.to_string()}));
                } else {
                    eprintln!("{addr}\terror: {e}");
                }
            }
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(rows));
    }
    Ok(if failed { 2 } else { 0 })
}

fn kv_json(kv: &KeyValue) -> serde_json::Value {
    serde_json::json!({
        "key": String::from_utf8_lossy(&kv.key),
        "value": String::from_utf8_lossy(&kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
    })
}

fn print_kv(kv: &KeyValue, json: bool, value_only: bool) {
    if json {
        println!("{}", kv_json(kv));
    } else if value_only {
        println!("{}", String::from_utf8_lossy(&kv.value));
    }
}
