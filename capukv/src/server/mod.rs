//! A CapuKV node: storage, state machine and Raft core behind two gRPC
//! servers, one for Raft traffic (`--raft-addr`) and one for clients
//! (`--api-addr`).
//!
//! - [`raft_loop`]: the thread that owns the core and the log's storage.
//! - [`apply`]: the thread that owns the state machine.
//! - [`transport`]: Raft messages between nodes; [`peer_gate`]: which of
//!   them are let through; [`members`]: who the members are and where they
//!   listen.
//! - [`api`]: the KV and Cluster services.
//! - [`compactor`]: automatic compaction of the version history.
//! - [`dns`]: founding peers found through DNS.

pub mod api;
pub mod apply;
pub mod compactor;
pub mod dns;
pub mod join;
pub mod members;
pub mod peer_gate;
pub mod raft_loop;
pub mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::coalesce::Coalescing;
use crate::proto;
use crate::raft::{Config, NodeId, Raft, RaftError};
use crate::state_machine::StateMachine;
use crate::storage::{Identity, Storage, StorageError};
use crate::tls::{NodeTls, TlsError, TlsFiles};
use raft_loop::{Event, LoopConfig, RaftLoop};
use transport::{RaftService, Transport};

pub use compactor::AutoCompaction;

/// Revisions of history a node keeps unless told otherwise: enough for
/// reads a little in the past, bounded so that snapshots stay small.
pub const DEFAULT_RETAINED_REVISIONS: u64 = 100_000;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub id: NodeId,
    pub dir: PathBuf,
    pub api_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    /// Every founding voter's Raft address, this node's included (empty for
    /// a node that joins: `join`). Members added later come from the log.
    pub peers: HashMap<NodeId, String>,
    /// Client addresses of members of a running cluster that this node
    /// joins as a new member (added first with `member add`/`add-learner`);
    /// empty: the node is a founder, named in `peers`.
    pub join: Vec<String>,
    /// A name for the cluster; a data directory of another cluster is refused.
    pub cluster: String,
    /// The cluster id to bootstrap with instead of the one derived from
    /// `cluster` and `peers` (and to insist on in a directory that has one).
    pub cluster_id: Option<u64>,
    pub tick: Duration,
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    pub snapshot_every: u64,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub request_timeout: Duration,
    /// Exactly-once sessions kept; past it the least recently active is
    /// evicted. Part of what replicas must agree on: every node of a cluster
    /// runs with the same bound (it is no flag for that reason).
    pub max_sessions: usize,
    /// Keep the log entries snapshots cover, for after-run audits.
    pub keep_compacted_log: bool,
    /// Mutual TLS on both ports ([`crate::tls`]); `None`: plain TCP.
    pub tls: Option<TlsFiles>,
    /// How much version history to keep ([`compactor`]).
    pub auto_compaction: AutoCompaction,
}

impl ServerConfig {
    pub fn new(
        id: NodeId,
        dir: PathBuf,
        api_addr: SocketAddr,
        raft_addr: SocketAddr,
        peers: HashMap<NodeId, String>,
    ) -> Self {
        ServerConfig {
            id,
            dir,
            api_addr,
            raft_addr,
            peers,
            join: Vec::new(),
            cluster: "capukv".into(),
            cluster_id: None,
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 1,
            snapshot_every: 10_000,
            max_key_bytes: 4 << 10,
            max_value_bytes: 1 << 20,
            request_timeout: Duration::from_secs(5),
            max_sessions: crate::state_machine::MAX_SESSIONS,
            keep_compacted_log: false,
            tls: None,
            auto_compaction: AutoCompaction::Revisions(DEFAULT_RETAINED_REVISIONS),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the Raft state in {dir} cannot be used: {source}")]
    Raft { dir: String, source: RaftError },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot set up TLS on the {what} port: {source}")]
    TlsSetup { what: &'static str, source: tonic::transport::Error },
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { addr: SocketAddr, what: &'static str, source: std::io::Error },
    #[error("the {what} server failed: {source}")]
    Serve { what: &'static str, source: tonic::transport::Error },
    #[error("the Raft loop stopped: {0}")]
    Loop(String),
    #[error("cannot join the cluster: {0}")]
    Join(String),
}

/// Accepted connections with Nagle's algorithm off: small Raft messages and
/// answers must leave at once, not wait for the peer's delayed ACK.
fn no_delay(listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// Client connections whose answers leave together when they are released
/// together (a committed batch of writes): see [`crate::coalesce`].
fn coalescing(
    conns: impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>>,
) -> impl tokio_stream::Stream<Item = std::io::Result<Coalescing<tokio::net::TcpStream>>> {
    use tokio_stream::StreamExt;
    conns.map(|conn| conn.map(Coalescing::new))
}

/// Runs a node until `shutdown` completes, then stops it cleanly.
pub async fn run(cfg: ServerConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ServerError> {
    let joining = !cfg.join.is_empty();
    if joining && !cfg.peers.is_empty() {
        return Err(ServerError::Config("--join and --peers exclude each other: a node founds or joins".into()));
    }
    if !joining && !cfg.peers.contains_key(&cfg.id) {
        return Err(ServerError::Config(format!("--peers does not name this node ({})", cfg.id)));
    }
    let fresh = !cfg.dir.join("CURRENT").exists();
    std::fs::create_dir_all(&cfg.dir)
        .map_err(|e| ServerError::Storage(StorageError::Open { dir: cfg.dir.clone(), reason: e.to_string() }))?;
    let tls = cfg.tls.as_ref().map(NodeTls::load).transpose()?;
    let mut book = members::Book::new();
    let identity = if joining {
        let cluster_id = match (fresh, cfg.cluster_id) {
            (false, id) => id.unwrap_or(0),
            (true, _) => {
                let (cluster_id, members) = join::ask_members(&cfg, tls.as_ref()).await?;
                book = members;
                cluster_id
            }
        };
        Identity { node_id: cfg.id, cluster: cfg.cluster.clone(), voters: Vec::new(), cluster_id }
    } else {
        let mut identity = Identity::bootstrap(cfg.id, &cfg.cluster, &cfg.peers);
        identity.cluster_id = cfg.cluster_id.unwrap_or(identity.cluster_id);
        identity
    };
    // A fresh directory starts on vote probation (see `join`): a founder's
    // lasts until the other founders have answered; one that joined is a
    // learner (only a learner may join empty), which never votes, so it
    // needs none.
    let storage = Storage::open(&cfg.dir, &identity)?;
    if joining && fresh {
        storage.set_probation(false)?;
    }
    let probation = storage.on_probation()?;
    if let Some(given) = cfg.cluster_id
        && given != storage.identity().cluster_id
    {
        return Err(ServerError::Config(format!(
            "--cluster-id {given:016x}, but {} belongs to cluster {:016x}",
            cfg.dir.display(),
            storage.identity().cluster_id
        )));
    }
    let voters = storage.identity().voters.clone();
    let cluster_id = storage.identity().cluster_id;
    tracing::info!(node = cfg.id, cluster = %cfg.cluster, cluster_id = format!("{cluster_id:#018x}"), ?voters, "starting");
    storage.keep_compacted_log.store(cfg.keep_compacted_log, std::sync::atomic::Ordering::Relaxed);
    let mut sm = StateMachine::open(storage.clone(), cfg.max_sessions)?;
    let persisted = storage.load_raft_state()?;
    // What this node knows of where members listen: what it kept, what its
    // log and snapshot say (the book may not have been kept after them),
    // what the cluster it joins told it, its flags, and itself.
    let mut known = storage.load_members()?;
    known.extend(members::books_in(&persisted));
    known.extend(book);
    for (&id, raft) in &cfg.peers {
        known.entry(id).or_default().raft = raft.clone();
    }
    known.insert(cfg.id, members::Addresses { raft: cfg.raft_addr.to_string(), api: cfg.api_addr.to_string() });
    storage.save_members(&known)?;
    // A crash between persisting a received snapshot and restoring the state
    // machine from it leaves the state machine behind the log: restore now.
    if let Some(snap) = &persisted.snapshot
        && sm.applied() < snap.meta.index
    {
        sm.restore(snap)?;
    }
    let mut raft_cfg = Config::new(cfg.id, voters);
    raft_cfg.election_ticks = cfg.election_ticks;
    raft_cfg.heartbeat_ticks = cfg.heartbeat_ticks;
    raft_cfg.applied = sm.applied();
    raft_cfg.seed = rand::random();
    #[cfg(feature = "planted-bugs")]
    {
        raft_cfg.planted = crate::planted::current();
    }
    let dir = cfg.dir.display().to_string();
    let mut raft = Raft::new(raft_cfg, persisted).map_err(|source| ServerError::Raft { dir, source })?;
    raft.set_probation(probation);
    let asked: members::Book =
        known.iter().filter(|(id, _)| cfg.peers.contains_key(id)).map(|(&id, a)| (id, a.clone())).collect();
    let prober = join::Prober::new(cfg.id, cluster_id, &asked, tls.as_ref());
    let mut answers = join::Answers::default();
    if probation {
        prober.round(&mut answers).await;
        if let Some(by) = answers.participated {
            return Err(prober.refusal(by));
        }
    }

    let raft_listener = TcpListener::bind(cfg.raft_addr).await.map_err(|source| ServerError::Bind {
        addr: cfg.raft_addr,
        what: "--raft-addr",
        source,
    })?;
    let api_listener = TcpListener::bind(cfg.api_addr).await.map_err(|source| ServerError::Bind {
        addr: cfg.api_addr,
        what: "--api-addr",
        source,
    })?;

    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    let api_addrs: transport::ApiAddrs = Arc::new(RwLock::new(HashMap::from([(cfg.id, cfg.api_addr.to_string())])));
    let peer_addrs: HashMap<NodeId, String> = known.iter().map(|(&id, a)| (id, a.raft.clone())).collect();
    for (&id, a) in &known {
        if !a.api.is_empty() {
            api_addrs.write().expect("not poisoned").insert(id, a.api.clone());
        }
    }
    let directory: members::SharedDirectory =
        Arc::new(RwLock::new(members::Directory { book: known, ..Default::default() }));
    let transport = Transport::start(
        cfg.id,
        cluster_id,
        (cfg.api_addr.to_string(), cfg.raft_addr.to_string()),
        &peer_addrs,
        tls.as_ref().map(NodeTls::peer_client),
        tokio::runtime::Handle::current(),
        events_tx.clone(),
    );
    let loop_cfg = LoopConfig { tick: cfg.tick, snapshot_every: cfg.snapshot_every };
    let participants: raft_loop::Participants = Arc::new(RwLock::new(storage.load_participants()?));
    let shared = raft_loop::Shared {
        directory: directory.clone(),
        api_addrs: api_addrs.clone(),
        participants: participants.clone(),
    };
    let raft_loop =
        RaftLoop::new(raft, storage.clone(), sm, transport, shared, (events_tx.clone(), events_rx), loop_cfg)
            .map_err(|e| ServerError::Loop(e.to_string()))?;
    let (loop_done_tx, loop_done_rx) = tokio::sync::oneshot::channel();
    let loop_thread = std::thread::Builder::new()
        .name(format!("raft-{}", cfg.id))
        .spawn(move || {
            let result = raft_loop.run();
            let _ = loop_done_tx.send(());
            result
        })
        .map_err(|e| ServerError::Loop(e.to_string()))?;

    let api = api::Api {
        id: cfg.id,
        events: events_tx.clone(),
        storage,
        api_addrs: api_addrs.clone(),
        directory: directory.clone(),
        limits: api::Limits { max_key_bytes: cfg.max_key_bytes, max_value_bytes: cfg.max_value_bytes },
        request_timeout: cfg.request_timeout,
    };
    let raft_service = proto::raft_server::RaftServer::new(RaftService {
        events: events_tx.clone(),
        api_addrs,
        gate: peer_gate::PeerGate::new(cluster_id, cfg.id, directory),
        participants,
        certified: tls.is_some(),
    })
    .max_decoding_message_size(transport::MAX_MESSAGE_BYTES);
    // Room for the largest value, and for a transaction twice its bound, so
    // that an oversize one is refused by `validate_txn` with its reason
    // rather than by the decoder.
    let message_limit =
        (cfg.max_value_bytes + cfg.max_key_bytes).max(2 * crate::state_machine::MAX_TXN_BYTES) + (64 << 10);
    let compactor = tokio::spawn(compactor::run(api.clone(), cfg.auto_compaction));
    let kv_service = proto::kv_server::KvServer::new(api.clone()).max_decoding_message_size(message_limit);
    let cluster_service = proto::cluster_server::ClusterServer::new(api);

    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let stopped = |mut rx: tokio::sync::broadcast::Receiver<()>| async move {
        let _ = rx.recv().await;
    };
    let (mut raft_builder, mut api_builder) =
        (tonic::transport::Server::builder(), tonic::transport::Server::builder());
    if let Some(tls) = &tls {
        let setup = |what| move |source| ServerError::TlsSetup { what, source };
        raft_builder = raft_builder.tls_config(tls.peer_server()).map_err(setup("peer"))?;
        api_builder = api_builder.tls_config(tls.api_server()).map_err(setup("client"))?;
    }
    let raft_server = raft_builder
        .add_service(raft_service)
        .serve_with_incoming_shutdown(no_delay(raft_listener), stopped(stop_tx.subscribe()));
    let api_server = api_builder
        .add_service(kv_service)
        .add_service(cluster_service)
        .serve_with_incoming_shutdown(coalescing(no_delay(api_listener)), stopped(stop_tx.subscribe()));
    tracing::info!(id = cfg.id, api = %cfg.api_addr, raft = %cfg.raft_addr, dir = %cfg.dir.display(), tls = tls.is_some(), "node started");

    let raft_server = tokio::spawn(raft_server);
    let api_server = tokio::spawn(api_server);
    if probation {
        tokio::spawn(prober.clear_in_background(answers, events_tx.clone()));
    }
    let loop_failed = tokio::select! {
        _ = shutdown => false,
        _ = loop_done_rx => true,
    };
    compactor.abort();
    let _ = stop_tx.send(());
    let _ = events_tx.send(Event::Shutdown);
    let loop_result = tokio::task::spawn_blocking(move || loop_thread.join())
        .await
        .map_err(|e| ServerError::Loop(e.to_string()))?
        .map_err(|_| ServerError::Loop("the Raft loop panicked".into()))?;
    loop_result?;
    if loop_failed {
        return Err(ServerError::Loop("the Raft loop ended unexpectedly".into()));
    }
    for (what, server) in [("raft", raft_server), ("api", api_server)] {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => return Err(ServerError::Serve { what, source }),
            Err(e) => return Err(ServerError::Loop(format!("the {what} server task failed: {e}"))),
        }
    }
    tracing::info!(id = cfg.id, "node stopped");
    Ok(())
}
