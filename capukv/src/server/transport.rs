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
//! cluster, this node, a member). Each stream also says which API address
//! its sender serves clients on, so a follower can redirect clients to the
//! leader.

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
use crate::raft::{Message, MessageBody, NodeId, Snapshot, SnapshotMeta};

const API_ADDR_HEADER: &str = "x-capukv-api-addr";
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
    peers: HashMap<NodeId, mpsc::Sender<proto::RaftMessage>>,
    snapshots: HashMap<NodeId, String>,
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
    pub fn start(
        id: NodeId,
        cluster_id: u64,
        api_addr: String,
        peers: &HashMap<NodeId, String>,
        tls: Option<ClientTlsConfig>,
        runtime: tokio::runtime::Handle,
        events: Sender<Event>,
    ) -> Transport {
        let dialer = Dialer { tls };
        let mut senders = HashMap::new();
        for (&peer, addr) in peers.iter().filter(|(p, _)| **p != id) {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            runtime.spawn(peer_sender(dialer.clone(), id, api_addr.clone(), peer, addr.clone(), rx));
            senders.insert(peer, tx);
        }
        let snapshots = peers.iter().map(|(&p, a)| (p, a.clone())).collect();
        Transport { peers: senders, snapshots, runtime, events, id, cluster_id, dialer, streaming: Arc::default() }
    }

    pub fn send(&self, m: Message) {
        if let MessageBody::Snapshot(snapshot) = m.body {
            let to = m.to;
            let header = ChunkHeader { cluster_id: self.cluster_id, from: self.id, to, term: m.term };
            let Some(addr) = self.snapshots.get(&to).cloned() else { return };
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
        let Some(queue) = self.peers.get(&m.to) else { return };
        let Some(mut msg) = message_to_proto(&m) else { return };
        msg.cluster_id = self.cluster_id;
        // A full queue means the peer is unreachable: dropping is what the
        // network would do.
        let _ = queue.try_send(msg);
    }
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
    api_addr: String,
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
    /// Mutual TLS is on: a stream's sender is the node its certificate
    /// names, never what it says.
    pub certified: bool,
}

impl RaftService {
    /// Who sent `request`: with TLS, the node the client certificate names
    /// (refused when it names none); without, the stream's own word.
    fn sender<T>(&self, request: &Request<T>) -> Result<Option<NodeId>, Status> {
        if !self.certified {
            let said = request.metadata().get(NODE_ID_HEADER).and_then(|v| v.to_str().ok()?.parse().ok());
            return Ok(said);
        }
        let certs = request.peer_certs();
        let leaf = certs.as_ref().and_then(|c| c.first());
        match leaf.and_then(|leaf| crate::tls::node_of(leaf, self.gate.members())) {
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
        let mut api_addr = request.metadata().get(API_ADDR_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut stream = request.into_inner();
        while let Some(msg) = stream.message().await? {
            self.admit(msg.cluster_id, msg.from, msg.to, sender)?;
            // Learnt only from a stream whose messages were admitted.
            if let (Some(id), Some(api)) = (sender, api_addr.take()) {
                self.api_addrs.write().expect("not poisoned").insert(id, api);
            }
            let m = message_from_proto(msg).map_err(Status::invalid_argument)?;
            if self.events.send(Event::Message(m)).is_err() {
                return Err(Status::unavailable("the node is shutting down"));
            }
        }
        Ok(Response::new(proto::SendAck {}))
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
        let snapshot = Snapshot { meta: SnapshotMeta { index: h.index, term: h.snapshot_term }, data: data.freeze() };
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
        let snapshot = Snapshot { meta: SnapshotMeta { index: 10, term: 1 }, data: Bytes::from(vec![1u8; 1000]) };
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
        let transport =
            Transport::start(1, 7, "127.0.0.1:2".into(), &peers, None, tokio::runtime::Handle::current(), events_tx);
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
