//! Raft messages between nodes over gRPC.
//!
//! Outgoing: one task per peer keeps one long-lived `Send` stream open and
//! pushes that peer's messages down it in order. When the peer is down the
//! task reconnects with backoff and drops what it could not send: Raft
//! tolerates lost messages, and old heartbeats are worthless anyway.
//! Snapshots go through `InstallSnapshot` in chunks.
//!
//! Incoming: the `Raft` gRPC service turns streams back into core messages
//! for the Raft loop, each first admitted by the [`PeerGate`] (this
//! cluster, this node, not a removed member). Each stream also says which
//! API and Raft addresses its sender listens on, so a follower can redirect
//! clients to the leader, and a node can answer a member it has not yet
//! learnt of (see [`super::members`]).
//!
//! Peers come and go with the membership: [`Transport::set_peer`] and
//! [`Transport::remove_peer`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use crossbeam_channel::Sender;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use super::peer_gate::PeerGate;
use super::raft_loop::Event;
use crate::convert::{message_from_proto, message_to_proto};
use crate::failpoints as fp;
use crate::proto::{self, raft_client::RaftClient};
use crate::raft::{MembershipChange, Message, MessageBody, NodeId, Snapshot, SnapshotMeta};

const API_ADDR_HEADER: &str = "x-capukv-api-addr";
const RAFT_ADDR_HEADER: &str = "x-capukv-raft-addr";
const NODE_ID_HEADER: &str = "x-capukv-node-id";
/// Messages queued for one peer before new ones are dropped.
const PEER_QUEUE: usize = 8192;
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// The largest snapshot a node accepts.
pub const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Which API address each node serves clients on, as far as this node knows.
pub type ApiAddrs = Arc<RwLock<HashMap<NodeId, String>>>;

/// The outgoing side, used by the Raft loop (from its own thread).
pub struct Transport {
    /// Each peer's Raft address and the queue of its sender task.
    peers: HashMap<NodeId, (String, mpsc::Sender<proto::RaftMessage>)>,
    /// This node's own addresses, told to every peer it streams to.
    addrs: (String, String),
    runtime: tokio::runtime::Handle,
    events: Sender<Event>,
    id: NodeId,
    /// Put on every message, for the receiver's [`PeerGate`].
    cluster_id: u64,
    dialer: Dialer,
    /// Peers a snapshot is streaming to now: the core asks again every
    /// election timeout while it waits, and a second transfer beside the
    /// first would only slow both down.
    streaming: Arc<Mutex<HashSet<NodeId>>>,
}

impl Transport {
    /// Starts a sender task for each peer (`id` to raft address).
    /// `tls`: how to dial peers over TLS (`None`: plain TCP).
    /// `addrs`: this node's (API, Raft) addresses.
    pub fn start(
        id: NodeId,
        cluster_id: u64,
        addrs: (String, String),
        peers: &HashMap<NodeId, String>,
        tls: Option<ClientTlsConfig>,
        runtime: tokio::runtime::Handle,
        events: Sender<Event>,
    ) -> Transport {
        let dialer = Dialer { tls };
        let mut transport = Transport {
            peers: HashMap::new(),
            addrs,
            runtime,
            events,
            id,
            cluster_id,
            dialer,
            streaming: Arc::default(),
        };
        for (&peer, addr) in peers {
            transport.set_peer(peer, addr);
        }
        transport
    }

    /// Sends to `peer` at `addr` from now on (a new member, or one that
    /// moved); its old sender task, if any, ends with its queue.
    pub fn set_peer(&mut self, peer: NodeId, addr: &str) {
        if peer == self.id || self.peers.get(&peer).is_some_and(|(a, _)| a == addr) {
            return;
        }
        tracing::info!(node = self.id, peer, %addr, "peer address");
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let (api, raft) = self.addrs.clone();
        self.runtime.spawn(peer_sender(self.dialer.clone(), self.id, (api, raft), peer, addr.to_string(), rx));
        self.peers.insert(peer, (addr.to_string(), tx));
    }

    /// Stops sending to `peer` (removed from the cluster).
    pub fn remove_peer(&mut self, peer: NodeId) {
        if self.peers.remove(&peer).is_some() {
            tracing::info!(node = self.id, peer, "no longer sending to a removed peer");
        }
    }

    pub fn send(&self, m: Message) {
        if let MessageBody::Snapshot(snapshot) = m.body {
            let to = m.to;
            let header = ChunkHeader { cluster_id: self.cluster_id, from: self.id, to, term: m.term };
            let Some(addr) = self.peers.get(&to).map(|(a, _)| a.clone()) else { return };
            if !self.streaming.lock().expect("not poisoned").insert(to) {
                tracing::debug!(to, "a snapshot to this peer is still streaming; not starting another");
                return;
            }
            let (events, streaming, dialer) = (self.events.clone(), self.streaming.clone(), self.dialer.clone());
            self.runtime.spawn(async move {
                let delivered = match send_snapshot(&dialer, &addr, header, snapshot).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(to, error = %e, "snapshot not delivered");
                        false
                    }
                };
                streaming.lock().expect("not poisoned").remove(&to);
                let _ = events.send(Event::SnapshotSent { to, delivered });
            });
            return;
        }
        let Some((_, queue)) = self.peers.get(&m.to) else { return };
        let Some(mut msg) = message_to_proto(&m) else { return };
        msg.cluster_id = self.cluster_id;
        // A full queue means the peer is unreachable: dropping is what the
        // network would do.
        let _ = queue.try_send(msg);
    }
}

/// Asks the node at `addr` whether it has seen this node take part (the
/// `Probe` RPC), once.
pub async fn probe(
    tls: Option<ClientTlsConfig>,
    addr: &str,
    request: proto::ProbeRequest,
) -> Result<proto::ProbeResponse, String> {
    let mut client = Dialer { tls }.connect(addr).await.map_err(|e| e.to_string())?;
    let (from, peer) = (request.from, request.to);
    let mut request = Request::new(request);
    request.set_timeout(Duration::from_secs(2));
    request.metadata_mut().insert(NODE_ID_HEADER, from.to_string().parse().expect("digits are valid metadata"));
    client.probe(request).await.map(Response::into_inner).map_err(|s| {
        if s.code() == tonic::Code::PermissionDenied {
            tracing::warn!(peer, %addr, reason = s.message(), "the peer refuses this node's messages");
        }
        format!("{}: {}", s.code(), s.message())
    })
}

/// How this node dials its peers: plain, or TLS with its own certificate.
#[derive(Clone)]
struct Dialer {
    tls: Option<ClientTlsConfig>,
}

impl Dialer {
    async fn connect(&self, addr: &str) -> Result<RaftClient<Channel>, tonic::transport::Error> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        let channel = endpoint.connect().await?;
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

async fn peer_sender(
    dialer: Dialer,
    id: NodeId,
    (api_addr, raft_addr): (String, String),
    peer: NodeId,
    addr: String,
    mut queue: mpsc::Receiver<proto::RaftMessage>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        // Connect only when there is something to say.
        let Some(first) = queue.recv().await else { return };
        let mut client = match dialer.connect(&addr).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer, %addr, error = %e, "peer unreachable");
                drain(&mut queue);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let (tx, rx) = mpsc::channel(1024);
        let _ = tx.send(first).await;
        let mut request = Request::new(ReceiverStream::new(rx));
        if let Ok(v) = api_addr.parse() {
            request.metadata_mut().insert(API_ADDR_HEADER, v);
        }
        if let Ok(v) = raft_addr.parse() {
            request.metadata_mut().insert(RAFT_ADDR_HEADER, v);
        }
        request.metadata_mut().insert(NODE_ID_HEADER, id.to_string().parse().expect("digits are valid metadata"));
        let mut call = tokio::spawn(async move { client.send(request).await });
        loop {
            tokio::select! {
                msg = queue.recv() => match msg {
                    Some(m) => {
                        if tx.send(m).await.is_err() {
                            break;
                        }
                    }
                    None => return,
                },
                result = &mut call => {
                    match result {
                        Ok(Err(status)) if status.code() == tonic::Code::PermissionDenied => {
                            tracing::warn!(peer, %addr, reason = status.message(), "the peer refuses this node's messages");
                        }
                        Ok(Err(status)) => tracing::debug!(peer, %addr, %status, "raft stream ended"),
                        _ => {}
                    }
                    break;
                }
            }
        }
        call.abort();
        drain(&mut queue);
        tokio::time::sleep(backoff).await;
    }
}

fn drain(queue: &mut mpsc::Receiver<proto::RaftMessage>) {
    while queue.try_recv().is_ok() {}
}

/// Who a snapshot transfer is from and for.
struct ChunkHeader {
    cluster_id: u64,
    from: NodeId,
    to: NodeId,
    term: u64,
}

async fn send_snapshot(dialer: &Dialer, addr: &str, header: ChunkHeader, snapshot: Snapshot) -> Result<(), String> {
    let ChunkHeader { cluster_id, from, to, term } = header;
    let mut client = dialer.connect(addr).await.map_err(|e| e.to_string())?;
    let total = snapshot.data.len() as u64;
    let change =
        MembershipChange { membership: snapshot.membership.clone(), context: snapshot.membership_context.clone() };
    let mut membership = Some(change.encode());
    let mut chunks = Vec::new();
    let mut offset = 0;
    loop {
        let end = (offset + SNAPSHOT_CHUNK).min(snapshot.data.len());
        chunks.push(proto::SnapshotChunk {
            from,
            to,
            term,
            index: snapshot.meta.index,
            snapshot_term: snapshot.meta.term,
            total_bytes: total,
            data: snapshot.data.slice(offset..end),
            cluster_id,
            membership: membership.take().unwrap_or_default(),
        });
        offset = end;
        if offset >= snapshot.data.len() {
            break;
        }
    }
    fp::pass(fp::SNAPSHOT_BEFORE_SEND).await?;
    client.install_snapshot(tokio_stream::iter(chunks)).await.map_err(|e| e.to_string())?;
    fp::pass(fp::SNAPSHOT_AFTER_SEND).await
}

/// The incoming side: the `Raft` gRPC service.
pub struct RaftService {
    pub events: Sender<Event>,
    pub api_addrs: ApiAddrs,
    pub gate: PeerGate,
    /// Who this node has seen take part, for `Probe`.
    pub participants: super::raft_loop::Participants,
    /// Mutual TLS is on: a stream's sender is the node its certificate
    /// names, never what it says.
    pub certified: bool,
}

impl RaftService {
    /// Who sent `request`: with TLS, the node the client certificate names
    /// (refused when it names none); without, the stream's own word.
    fn sender<T>(&self, request: &Request<T>) -> Result<Option<NodeId>, Status> {
        let claimed = request.metadata().get(NODE_ID_HEADER).and_then(|v| v.to_str().ok()?.parse::<NodeId>().ok());
        if !self.certified {
            return Ok(claimed);
        }
        let certs = request.peer_certs();
        let leaf = certs.as_ref().and_then(|c| c.first());
        // The node the stream claims to be is a candidate too: it may be a
        // member this node has not learnt of yet.
        let candidates: std::collections::BTreeSet<NodeId> = self.gate.known().into_iter().chain(claimed).collect();
        match leaf.and_then(|leaf| crate::tls::node_of(leaf, candidates)) {
            Some(node) => Ok(Some(node)),
            None => {
                let refusal = super::peer_gate::Refusal::Uncertified;
                tracing::warn!(node = self.gate.me, %refusal, "refusing a peer stream: not stepped");
                Err(Status::permission_denied(format!("node {} refuses this stream: {refusal}", self.gate.me)))
            }
        }
    }

    /// Refuses a message the gate does not admit, saying why in this
    /// node's log and to the sender.
    fn admit(&self, cluster_id: u64, from: NodeId, to: NodeId, stream: Option<NodeId>) -> Result<(), Status> {
        self.gate.admit(cluster_id, from, to, stream).map_err(|refusal| {
            tracing::warn!(node = self.gate.me, from, to, %refusal, "refusing a peer message: not stepped");
            Status::permission_denied(format!("node {} refuses this message: {refusal}", self.gate.me))
        })
    }
}

#[tonic::async_trait]
impl proto::raft_server::Raft for RaftService {
    async fn send(&self, request: Request<Streaming<proto::RaftMessage>>) -> Result<Response<proto::SendAck>, Status> {
        let sender = self.sender(&request)?;
        let header = |name: &str| request.metadata().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut addrs = Some((header(API_ADDR_HEADER), header(RAFT_ADDR_HEADER)));
        let mut stream = request.into_inner();
        while let Some(msg) = stream.message().await? {
            self.admit(msg.cluster_id, msg.from, msg.to, sender)?;
            // Learnt only from a stream whose messages were admitted.
            if let (Some(id), Some((api, raft))) = (sender, addrs.take()) {
                if let Some(api) = &api {
                    self.api_addrs.write().expect("not poisoned").insert(id, api.clone());
                }
                if let Some(raft) = raft
                    && !self.gate.knows(id)
                {
                    let addrs = super::members::Addresses { raft, api: api.unwrap_or_default() };
                    let _ = self.events.send(Event::LearnPeer { id, addrs });
                }
            }
            let m = message_from_proto(msg).map_err(Status::invalid_argument)?;
            if self.events.send(Event::Message(m)).is_err() {
                return Err(Status::unavailable("the node is shutting down"));
            }
        }
        Ok(Response::new(proto::SendAck {}))
    }

    async fn probe(&self, request: Request<proto::ProbeRequest>) -> Result<Response<proto::ProbeResponse>, Status> {
        let sender = self.sender(&request)?;
        let r = request.into_inner();
        self.admit(r.cluster_id, r.from, r.to, sender)?;
        let participated = self.participants.read().expect("not poisoned").contains(&r.from);
        tracing::info!(node = self.gate.me, from = r.from, participated, "answered a rejoin probe");
        Ok(Response::new(proto::ProbeResponse { participated }))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<proto::SnapshotChunk>>,
    ) -> Result<Response<proto::SnapshotAck>, Status> {
        let sender = self.sender(&request)?;
        let mut stream = request.into_inner();
        let mut header: Option<proto::SnapshotChunk> = None;
        let mut data = BytesMut::new();
        while let Some(chunk) = stream.message().await? {
            if chunk.total_bytes > MAX_SNAPSHOT_BYTES {
                return Err(Status::invalid_argument(format!(
                    "snapshot of {} bytes exceeds the limit of {MAX_SNAPSHOT_BYTES}",
                    chunk.total_bytes
                )));
            }
            if header.is_none() {
                self.admit(chunk.cluster_id, chunk.from, chunk.to, sender)?;
            }
            data.extend_from_slice(&chunk.data);
            if header.is_none() {
                data.reserve(chunk.total_bytes as usize);
                header = Some(proto::SnapshotChunk { data: Bytes::new(), ..chunk });
            }
        }
        let h = header.ok_or_else(|| Status::invalid_argument("an empty snapshot stream"))?;
        if data.len() as u64 != h.total_bytes {
            return Err(Status::invalid_argument(format!("snapshot has {} of {} bytes", data.len(), h.total_bytes)));
        }
        fp::pass(fp::SNAPSHOT_AFTER_RECEIVE).await.map_err(Status::unavailable)?;
        let change = MembershipChange::decode(&h.membership)
            .map_err(|_| Status::invalid_argument("the snapshot carries no readable membership"))?;
        let meta = SnapshotMeta { index: h.index, term: h.snapshot_term };
        let snapshot =
            Snapshot { meta, membership: change.membership, membership_context: change.context, data: data.freeze() };
        let m = Message { from: h.from, to: h.to, term: h.term, body: MessageBody::Snapshot(snapshot) };
        self.events.send(Event::Message(m)).map_err(|_| Status::unavailable("the node is shutting down"))?;
        Ok(Response::new(proto::SnapshotAck {}))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio_stream::wrappers::TcpListenerStream;

    use super::*;

    /// A peer that takes a second over each snapshot and counts them.
    struct SlowPeer {
        installs: Arc<AtomicUsize>,
    }

    #[tonic::async_trait]
    impl proto::raft_server::Raft for SlowPeer {
        async fn send(&self, r: Request<Streaming<proto::RaftMessage>>) -> Result<Response<proto::SendAck>, Status> {
            let mut stream = r.into_inner();
            while stream.message().await?.is_some() {}
            Ok(Response::new(proto::SendAck {}))
        }

        async fn probe(&self, _: Request<proto::ProbeRequest>) -> Result<Response<proto::ProbeResponse>, Status> {
            Ok(Response::new(proto::ProbeResponse { participated: false }))
        }

        async fn install_snapshot(
            &self,
            r: Request<Streaming<proto::SnapshotChunk>>,
        ) -> Result<Response<proto::SnapshotAck>, Status> {
            self.installs.fetch_add(1, Ordering::SeqCst);
            let mut stream = r.into_inner();
            while stream.message().await?.is_some() {}
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(Response::new(proto::SnapshotAck {}))
        }
    }

    fn snapshot_to(to: NodeId) -> Message {
        let snapshot = Snapshot {
            meta: SnapshotMeta { index: 10, term: 1 },
            membership: crate::raft::Membership::new([1, 2], []),
            membership_context: Bytes::new(),
            data: Bytes::from(vec![1u8; 1000]),
        };
        Message { from: 1, to, term: 1, body: MessageBody::Snapshot(snapshot) }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_is_not_sent_again_while_one_still_streams() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let installs = Arc::new(AtomicUsize::new(0));
        let peer = SlowPeer { installs: installs.clone() };
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(proto::raft_server::RaftServer::new(peer))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let (events_tx, events) = crossbeam_channel::unbounded();
        let peers = HashMap::from([(1, "127.0.0.1:1".to_string()), (2, addr)]);
        let transport = Transport::start(
            1,
            7,
            ("127.0.0.1:2".into(), "127.0.0.1:3".into()),
            &peers,
            None,
            tokio::runtime::Handle::current(),
            events_tx,
        );
        // What the core does while it waits: the same snapshot, again and again.
        for _ in 0..3 {
            transport.send(snapshot_to(2));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let reported = tokio::task::spawn_blocking(move || events.recv_timeout(Duration::from_secs(5))).await.unwrap();
        assert!(matches!(reported, Ok(Event::SnapshotSent { to: 2, delivered: true })), "{:?}", reported.is_ok());
        assert_eq!(installs.load(Ordering::SeqCst), 1, "one transfer at a time");
        // Once it is over, the next one goes.
        transport.send(snapshot_to(2));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(installs.load(Ordering::SeqCst), 2);
        server.abort();
    }
}
