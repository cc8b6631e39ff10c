//! Where the nodes run. A [`Runtime`] starts, kills, pauses and restarts
//! nodes and names their network namespaces; nemeses and workloads use only
//! this trait, so a new runtime (Docker) is one new module.

pub mod docker;
pub mod netns;

use std::path::{Path, PathBuf};

use capukv::tls::TlsFiles;
use capukv::{Client, ClientError};
use netem::NetNs;
use serde::Serialize;
use tonic::transport::ClientTlsConfig;

/// How long a [`Runtime::set_clock`] may take to reach the server (libfaketime
/// re-reads its control file at most once a second).
pub const CLOCK_TAKES_EFFECT: std::time::Duration = std::time::Duration::from_millis(1200);

/// One node as the rest of the harness sees it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeInfo {
    /// Raft id, 1-based.
    pub id: u64,
    /// `n1`, `n2`, ...
    pub name: String,
    pub ip: std::net::Ipv4Addr,
    /// Client API address, reachable from the harness.
    pub api_addr: String,
    pub raft_addr: String,
    /// The node's log file.
    pub log: PathBuf,
}

/// The ports every node listens on, at its own address.
pub const API_PORT: u16 = 7001;
pub const RAFT_PORT: u16 = 7002;

impl NodeInfo {
    /// Node `id` at `ip`, with its directory `RUN_DIR/nodes/nID` (made here) for its log.
    pub fn prepare(id: u64, ip: std::net::Ipv4Addr, run_dir: &std::path::Path) -> Result<NodeInfo> {
        let dir = run_dir.join("nodes").join(format!("n{id}"));
        std::fs::create_dir_all(&dir).map_err(|source| RuntimeError::Node {
            id,
            what: "create its directory",
            source,
        })?;
        Ok(NodeInfo {
            id,
            name: format!("n{id}"),
            ip,
            api_addr: format!("{ip}:{API_PORT}"),
            raft_addr: format!("{ip}:{RAFT_PORT}"),
            log: dir.join("server.log"),
        })
    }
}

/// How the harness reaches the nodes' client ports: plain, or TLS with the
/// run's CA and a client certificate of its own (`capukv-chaos run --tls`).
/// Every client the harness makes comes from here.
#[derive(Clone, Default)]
pub struct Access {
    tls: Option<ClientTlsConfig>,
}

impl Access {
    pub fn client(
        &self,
        endpoints: impl IntoIterator<Item = impl Into<String>>,
    ) -> std::result::Result<Client, ClientError> {
        let client = Client::new(endpoints)?;
        match &self.tls {
            Some(tls) => client.with_tls(tls.clone()),
            None => Ok(client),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// A TLS run's certificates, under `RUN_DIR/tls`: a fresh test CA, one
/// certificate per node valid for its address, and one for the harness.
pub struct RunCerts {
    /// Node `i`'s at `i - 1`.
    pub nodes: Vec<TlsFiles>,
    pub client: TlsFiles,
    pub dir: PathBuf,
}

impl RunCerts {
    pub fn issue(run_dir: &Path, nodes: &[NodeInfo]) -> Result<RunCerts> {
        let dir = run_dir.join("tls");
        let failed = |e: String| RuntimeError::Other(format!("issuing the run's TLS certificates: {e}"));
        let ca = capukv::tls::TestAuthority::new("capukv-chaos run CA").map_err(|e| failed(e.to_string()))?;
        use capukv::tls::Holder;
        let mut members: Vec<Holder> = nodes.iter().map(|n| Holder::node(n.id, vec![n.ip.to_string()])).collect();
        members.push(Holder::client("client"));
        let mut files = ca.write(&dir, &members).map_err(|e| failed(e.to_string()))?;
        let client = files.pop().expect("the client's");
        Ok(RunCerts { nodes: files, client, dir })
    }

    pub fn access(&self) -> Result<Access> {
        let c = &self.client;
        let tls = capukv::tls::client_config(&c.ca, Some((&c.cert, &c.key)))
            .map_err(|e| RuntimeError::Other(format!("the run's client certificate: {e}")))?;
        Ok(Access { tls: Some(tls) })
    }

    /// `capukv server` flags for node `id`, with the files at `dir` (where
    /// the server sees [`RunCerts::dir`]).
    pub fn server_args(&self, id: u64, dir: &Path) -> Vec<String> {
        let name = |file: &Path| dir.join(file.file_name().expect("a file")).display().to_string();
        let f = &self.nodes[(id - 1) as usize];
        vec!["--tls-cert".into(), name(&f.cert), "--tls-key".into(), name(&f.key), "--tls-ca".into(), name(&f.ca)]
    }
}

/// The servers' `--peers` value: `1=ADDR,2=ADDR,...`.
pub fn peers_flag(nodes: &[NodeInfo]) -> String {
    nodes.iter().map(|n| format!("{}={}", n.id, n.raft_addr)).collect::<Vec<_>>().join(",")
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("network setup failed: {0}")]
    Net(#[from] netem::NetemError),
    #[error("node n{id}: {what}: {source}")]
    Node { id: u64, what: &'static str, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// A cluster's nodes and the means to hurt them. Implementations clean up
/// everything they created in `teardown` and on drop.
pub trait Runtime: Send + Sync {
    fn nodes(&self) -> &[NodeInfo];
    /// How to reach the nodes' client ports.
    fn access(&self) -> &Access;
    /// Starts node `id` (again, after a kill, from the same data directory).
    fn start(&self, id: u64) -> Result<()>;
    /// kill -9.
    fn kill(&self, id: u64) -> Result<()>;
    /// SIGSTOP.
    fn pause(&self, id: u64) -> Result<()>;
    /// SIGCONT.
    fn resume(&self, id: u64) -> Result<()>;
    /// Whether node `id`'s process is running (paused counts as running).
    fn is_running(&self, id: u64) -> bool;
    /// The namespace whose network the node uses; `None` while it has none
    /// (a stopped container's namespace dies with it).
    fn netns(&self, id: u64) -> Option<NetNs>;
    /// The interface inside that namespace carrying cluster traffic.
    fn iface(&self) -> &str {
        "eth0"
    }
    /// The address the harness's clients reach the nodes from: the host's
    /// end of the nodes' /24, its `.1` (the bridge in namespaces, the
    /// network's gateway in Docker).
    fn clients_addr(&self) -> std::net::Ipv4Addr {
        let [a, b, c, _] = self.nodes()[0].ip.octets();
        std::net::Ipv4Addr::new(a, b, c, 1)
    }
    /// Loses everything node `id` (killed first) had not fsynced, as a power
    /// failure would; returns what was lost. Only data directories on lazyfs
    /// can (`--data-fs fuse`).
    fn lose_unsynced(&self, id: u64) -> Result<serde_json::Value> {
        Err(RuntimeError::Other(format!(
            "node n{id}: this runtime cannot lose unsynced writes (its data directories are not on lazyfs)"
        )))
    }
    /// Whether [`Runtime::replace`] can work in this run.
    fn can_replace(&self) -> bool {
        false
    }
    /// Replaces node `id`'s member (killed first) by a new one: the data
    /// directory is wiped, and from its next start the slot runs Raft id
    /// `member`, joining the cluster (`server --join`) at the same
    /// addresses. For the member nemesis.
    fn replace(&self, id: u64, member: u64) -> Result<()> {
        let _ = member;
        Err(RuntimeError::Other(format!("node n{id}: this runtime cannot replace nodes")))
    }
    /// Node `id`'s data directory as the server sees it (through its lazyfs
    /// mount, if any), for the corrupt nemesis; `None` where the harness
    /// cannot reach it.
    fn data_dir(&self, id: u64) -> Option<PathBuf> {
        let _ = id;
        None
    }
    /// Whether the nodes' clocks can be skewed ([`Runtime::set_clock`]).
    fn has_clocks(&self) -> bool {
        false
    }
    /// Sets node `id`'s clock (wall and monotonic) to run at `rate` times
    /// real time, `offset_s` seconds off: takes effect within a second, and
    /// a change of rate does not make the clock jump. Only servers started
    /// under libfaketime can.
    fn set_clock(&self, id: u64, offset_s: f64, rate: f64) -> Result<()> {
        let _ = (offset_s, rate);
        Err(RuntimeError::Other(format!("node n{id}: this runtime cannot skew clocks (no libfaketime)")))
    }
    /// Brings every node's log up to date in its `NodeInfo::log` file, for
    /// the end-of-run log scan (a runtime whose servers write there
    /// directly has nothing to do).
    fn collect_logs(&self) {}
    /// Stops every node and removes everything the runtime created. Idempotent.
    fn teardown(&self) -> Result<()>;
    /// For run.json.
    fn describe(&self) -> serde_json::Value;
}
