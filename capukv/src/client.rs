//! The CapuKV client library, used by the CLI, the chaos harness and the
//! benchmark.
//!
//! It keeps a list of endpoints (client API addresses), learns the leader
//! from redirects (`FailedPrecondition` with `x-capukv-leader`), retries
//! `Unavailable` and connection failures on other endpoints with backoff
//! until the request's deadline, and numbers writes so that a retried write
//! is applied once (each in-flight write holds a session of its own: a
//! session id the cluster issued (`OpenSession`) and a sequence number that
//! only grows). A session the cluster evicted is dropped, never reused.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Uri};
use tonic::{Code, Response, Status};

use crate::coalesce::Coalescing;
use crate::proto::{self, cluster_client::ClusterClient, kv_client::KvClient};
use crate::server::api::{COMPACTED_HEADER, LEADER_HEADER, SESSION_EXPIRED_HEADER};
use crate::txn;

pub use crate::proto::{KeyValue, NamedSnapshot, ReadMode};
pub use crate::state_machine::ReadAt;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no endpoints given (use --endpoints or CAPUKV_ENDPOINTS)")]
    NoEndpoints,
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    /// Retried until the deadline without an answer. A write may or may not
    /// have taken effect.
    #[error("no answer within {timeout:?}; last error: {last}")]
    Timeout { timeout: Duration, last: String },
    /// The cluster refused the request for good (bad argument, ...).
    #[error("{}: {}", .0.code(), .0.message())]
    Rejected(Status),
    /// The last attempt failed for good, but an earlier attempt of the same
    /// request may have reached a leader (it timed out, or the connection
    /// broke after it was sent): a write may have taken effect.
    #[error("{last}; an earlier attempt may have taken effect ({earlier})")]
    Indefinite { last: Box<ClientError>, earlier: String },
    /// The write named a session the cluster no longer knows (evicted past
    /// [`crate::state_machine::MAX_SESSIONS`], least recently active
    /// first): this attempt
    /// applied nothing. The client drops the session; the next write opens
    /// a new one.
    #[error("session {session} expired: {message}")]
    SessionExpired { session: u64, message: String },
    /// No write session could be opened for the write, so it was never
    /// sent: it certainly did not happen.
    #[error("no write session could be opened, the write was not sent: {0}")]
    NoSession(Box<ClientError>),
    /// A read (or a snapshot) named a revision the cluster compacted away:
    /// the oldest readable revision is `compacted`.
    #[error("{message}")]
    Compacted { compacted: u64, message: String },
}

impl ClientError {
    /// Whether a write that failed this way may still have happened.
    pub fn is_indefinite(&self) -> bool {
        matches!(self, ClientError::Timeout { .. } | ClientError::Indefinite { .. })
    }

    /// Whether the write's session expired (on this attempt or the last one
    /// of an indefinite write).
    pub fn session_expired(&self) -> bool {
        match self {
            ClientError::SessionExpired { .. } => true,
            ClientError::Indefinite { last, .. } => last.session_expired(),
            _ => false,
        }
    }
}

/// The request fields `(revision, snapshot)` of a read at `at`. Revision 0
/// (the empty store before the first change) has none: a request's 0 means
/// "now".
fn read_at_fields(at: &ReadAt) -> Result<(u64, String), ClientError> {
    match at {
        ReadAt::Head => Ok((0, String::new())),
        ReadAt::Revision(0) => Err(ClientError::Rejected(Status::invalid_argument(
            "revision 0 is the empty store before the first change; past revisions start at 1",
        ))),
        ReadAt::Revision(r) => Ok((*r, String::new())),
        ReadAt::Snapshot(name) => Ok((0, name.clone())),
    }
}

/// Whether a failed attempt may have reached a node that proposed it. Only a
/// redirect (a follower names the leader), the server's validation
/// (`InvalidArgument`) and refusals before any handler ran are known to come
/// before anything was proposed; every
/// other status, a client-side decoding error of the answer (`OutOfRange`,
/// `ResourceExhausted`) included, may follow a write that took effect.
fn attempt_may_have_applied(status: &Status) -> bool {
    !matches!(
        status.code(),
        Code::FailedPrecondition
            | Code::InvalidArgument
            // The state machine refused it (a snapshot name taken, none of
            // that name): nothing applied.
            | Code::AlreadyExists
            | Code::NotFound
            | Code::Unimplemented
            | Code::PermissionDenied
            | Code::Unauthenticated
    )
}

pub struct Client {
    endpoints: Vec<String>,
    channels: Mutex<HashMap<String, Channel>>,
    leader: Mutex<Option<String>>,
    next_endpoint: AtomicUsize,
    /// TLS to the cluster's client port ([`Client::with_tls`]).
    tls: Option<ClientTlsConfig>,
    /// Idle write sessions: (session id, next sequence number).
    sessions: Mutex<Vec<(u64, u64)>>,
    /// How long one request may take, retries included.
    pub timeout: Duration,
    /// How long one attempt may take before the request is sent again (to
    /// the next endpoint, with the same write id, so it applies once).
    /// `None`: an attempt may use the whole `timeout`.
    pub attempt_timeout: Option<Duration>,
    /// The largest answer decoded; a larger one fails with `OutOfRange`
    /// (after a write it answers took effect: see [`ClientError::Indefinite`]).
    pub max_response_bytes: usize,
    pub read_mode: ReadMode,
    /// Whether a request starts at the leader an earlier request found
    /// (default), or at the first endpoint again, as a client bound to one
    /// node does: it follows redirects, and moves on to the other
    /// endpoints, within each request only.
    pub remember_leader: bool,
}

/// A session held by one in-flight write; back to the idle ones when the
/// write is over, unless the cluster said it expired or the write's outcome
/// is unknown: an attempt of it may still be under way, and would be refused
/// as stale (committed, yet never applied) if the session's next write got
/// there first. A session is reused only once its last write is decided.
struct Session<'a> {
    client: &'a Client,
    id: u64,
    seq: u64,
    expired: bool,
}

impl Session<'_> {
    fn write_id(&self) -> proto::WriteId {
        proto::WriteId { client_id: self.id, seq: self.seq }
    }

    /// Notes how the write ended, and passes its result on.
    fn finish<T>(mut self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        self.expired = result.as_ref().is_err_and(|e| e.session_expired() || e.is_indefinite());
        result
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if !self.expired {
            self.client.sessions.lock().expect("not poisoned").push((self.id, self.seq + 1));
        }
    }
}

impl Client {
    /// A client for these endpoints (`host:port`, or `http://host:port`).
    /// Connections are made lazily.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Result<Client, ClientError> {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(Into::into)
            .map(|e: String| e.trim().trim_start_matches("http://").to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        for e in &endpoints {
            endpoint(e, None)?;
        }
        Ok(Client {
            endpoints,
            channels: Mutex::new(HashMap::new()),
            leader: Mutex::new(None),
            next_endpoint: AtomicUsize::new(0),
            tls: None,
            sessions: Mutex::new(Vec::new()),
            timeout: Duration::from_secs(10),
            attempt_timeout: None,
            max_response_bytes: 64 << 20,
            read_mode: ReadMode::Linearizable,
            remember_leader: true,
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Talks TLS to the cluster (see [`crate::tls::client_config`]): the
    /// nodes' certificates are checked against its CA, and its own
    /// certificate, if it has one, is presented.
    pub fn with_tls(mut self, tls: ClientTlsConfig) -> Result<Client, ClientError> {
        for e in &self.endpoints {
            endpoint(e, Some(&tls))?;
        }
        self.tls = Some(tls);
        self.channels.lock().expect("not poisoned").clear();
        Ok(self)
    }

    fn channel(&self, addr: &str) -> Result<Channel, ClientError> {
        let mut channels = self.channels.lock().expect("not poisoned");
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let channel = endpoint(addr, self.tls.as_ref())?.connect_with_connector_lazy(tower::service_fn(connect));
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    fn pick_endpoint(&self) -> String {
        if let Some(leader) = self.leader.lock().expect("not poisoned").clone() {
            return leader;
        }
        let i = self.next_endpoint.fetch_add(1, Ordering::Relaxed);
        self.endpoints[i % self.endpoints.len()].clone()
    }

    /// The write id (session id, sequence number) the next write will
    /// carry, for a caller that records it (the harness settles writes whose
    /// outcome it never learned by finding their ids in the Raft log); opens
    /// a session when none is idle. Exact while no other write of this
    /// client runs at the same time.
    pub async fn next_write_id(&self) -> Result<(u64, u64), ClientError> {
        if let Some(&next) = self.sessions.lock().expect("not poisoned").last() {
            return Ok(next);
        }
        let id = self.open_session().await?;
        let mut idle = self.sessions.lock().expect("not poisoned");
        idle.push((id, 1));
        Ok(*idle.last().expect("just pushed"))
    }

    /// Opens an exactly-once write session (one replicated command) and
    /// returns its id. Writes open theirs as they need them.
    pub async fn open_session(&self) -> Result<u64, ClientError> {
        let request = proto::OpenSessionRequest {};
        Ok(self.call_kv(request, |mut kv, r| async move { kv.open_session(r).await }).await?.session_id)
    }

    /// Opens a session ahead of need and keeps it idle: a write then needs
    /// no round of its own to open one (when the cluster may not answer).
    pub async fn reserve_session(&self) -> Result<(), ClientError> {
        let id = self.open_session().await?;
        self.sessions.lock().expect("not poisoned").insert(0, (id, 1));
        Ok(())
    }

    /// Sessions idle now.
    pub fn idle_sessions(&self) -> usize {
        self.sessions.lock().expect("not poisoned").len()
    }

    /// Takes the idle sessions, for another client of the same cluster to
    /// go on with ([`Client::add_sessions`]).
    pub fn take_sessions(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut *self.sessions.lock().expect("not poisoned"))
    }

    /// Goes on with sessions another client of the same cluster took.
    pub fn add_sessions(&self, sessions: Vec<(u64, u64)>) {
        self.sessions.lock().expect("not poisoned").extend(sessions);
    }

    async fn session(&self) -> Result<Session<'_>, ClientError> {
        let idle = self.sessions.lock().expect("not poisoned").pop();
        let (id, seq) = match idle {
            Some(idle) => idle,
            None => (self.open_session().await.map_err(|e| ClientError::NoSession(Box::new(e)))?, 1),
        };
        Ok(Session { client: self, id, seq, expired: false })
    }

    /// Runs `call` against the leader (or any endpoint), following redirects
    /// and retrying what may succeed elsewhere or later, until the deadline.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut backoff = Duration::from_millis(10);
        let mut last = String::from("no attempt made");
        // An earlier attempt whose outcome is unknown, if any.
        let mut earlier: Option<String> = None;
        let indefinite = |e: ClientError, earlier: &Option<String>| match earlier {
            Some(earlier) if !e.is_indefinite() => {
                ClientError::Indefinite { last: Box::new(e), earlier: earlier.clone() }
            }
            _ => e,
        };
        let mut redirects = 0u32;
        if !self.remember_leader {
            self.leader.lock().expect("not poisoned").take();
            self.next_endpoint.store(0, Ordering::Relaxed);
        }
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClientError::Timeout { timeout: self.timeout, last });
            }
            let addr = self.pick_endpoint();
            let channel = self.channel(&addr).map_err(|e| indefinite(e, &earlier))?;
            let attempt = self.attempt_timeout.map_or(remaining, |a| a.min(remaining));
            let status = match tokio::time::timeout(attempt, call(channel)).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => status,
                Err(_) if attempt < remaining => {
                    // No answer in time: the request may be under way. Send it
                    // again elsewhere; its write id makes a second copy harmless.
                    last = format!("{addr}: no answer within {attempt:?}");
                    earlier = Some(last.clone());
                    self.forget_leader(&addr);
                    continue;
                }
                Err(_) => {
                    return Err(ClientError::Timeout { timeout: self.timeout, last: format!("{addr}: no answer") });
                }
            };
            last = format!("{addr}: {}: {}", status.code(), status.message());
            let expired_session =
                status.metadata().get(SESSION_EXPIRED_HEADER).and_then(|v| v.to_str().ok()?.parse().ok());
            let compacted = status.metadata().get(COMPACTED_HEADER).and_then(|v| v.to_str().ok()?.parse().ok());
            if let (Code::OutOfRange, Some(compacted)) = (status.code(), compacted) {
                let e = ClientError::Compacted { compacted, message: status.message().to_string() };
                return Err(indefinite(e, &earlier));
            }
            if let (Code::Aborted, Some(session)) = (status.code(), expired_session) {
                // This attempt applied nothing; retrying cannot help.
                let e = ClientError::SessionExpired { session, message: status.message().to_string() };
                return Err(indefinite(e, &earlier));
            }
            match status.code() {
                Code::FailedPrecondition => {
                    let leader = status.metadata().get(LEADER_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
                    match leader {
                        // Redirected: go straight to the leader. Two nodes
                        // that name each other (an election under way) are
                        // asked again only after a pause, never in a spin.
                        Some(leader) if leader != addr => {
                            *self.leader.lock().expect("not poisoned") = Some(leader);
                            redirects += 1;
                            if redirects > 1 {
                                tokio::time::sleep(backoff.min(remaining)).await;
                                backoff = (backoff * 2).min(Duration::from_millis(500));
                            }
                            continue;
                        }
                        _ => return Err(indefinite(ClientError::Rejected(status), &earlier)),
                    }
                }
                Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled | Code::Aborted => {
                    // This node cannot serve now: forget it as leader, try
                    // another after a pause.
                    if attempt_may_have_applied(&status) {
                        earlier = Some(last.clone());
                    }
                    self.forget_leader(&addr);
                    tokio::time::sleep(backoff.min(remaining)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                _ => {
                    let may_have_applied = attempt_may_have_applied(&status);
                    let e = indefinite(ClientError::Rejected(status), &earlier);
                    return Err(if may_have_applied && !e.is_indefinite() {
                        ClientError::Indefinite {
                            last: Box::new(e),
                            earlier: "this attempt may have been applied before it failed".into(),
                        }
                    } else {
                        e
                    });
                }
            }
        }
    }

    fn forget_leader(&self, addr: &str) {
        let mut leader = self.leader.lock().expect("not poisoned");
        if leader.as_deref() == Some(addr) {
            *leader = None;
        }
    }

    /// `call` for a KV request, sent again (cloned) on each attempt.
    async fn call_kv<Req, T, F, Fut>(&self, request: Req, rpc: F) -> Result<T, ClientError>
    where
        Req: Clone,
        F: Fn(KvClient<Channel>, Req) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.call(|c| rpc(self.kv(c), request.clone())).await
    }

    fn kv(&self, channel: Channel) -> KvClient<Channel> {
        KvClient::new(channel).max_decoding_message_size(self.max_response_bytes).max_encoding_message_size(64 << 20)
    }

    // --- Reads ---------------------------------------------------------------

    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<KeyValue>, ClientError> {
        self.get_with(key, self.read_mode).await
    }

    pub async fn get_with(&self, key: impl Into<Bytes>, mode: ReadMode) -> Result<Option<KeyValue>, ClientError> {
        Ok(self.get_request(key.into(), mode).await?.kv)
    }

    /// The pair (in this client's read mode) and the store revision it was
    /// read at.
    pub async fn get_at(&self, key: impl Into<Bytes>) -> Result<(Option<KeyValue>, u64), ClientError> {
        let response = self.get_request(key.into(), self.read_mode).await?;
        Ok((response.kv, response.revision))
    }

    async fn get_request(&self, key: Bytes, mode: ReadMode) -> Result<proto::GetResponse, ClientError> {
        self.get_request_at(key, mode, &ReadAt::Head).await
    }

    async fn get_request_at(&self, key: Bytes, mode: ReadMode, at: &ReadAt) -> Result<proto::GetResponse, ClientError> {
        let (revision, snapshot) = read_at_fields(at)?;
        let request = proto::GetRequest { key, mode: mode as i32, revision, snapshot };
        self.call_kv(request, |mut kv, r| async move { kv.get(r).await }).await
    }

    /// The pair as it was at `at` (a past revision, a named snapshot, or
    /// now), in this client's read mode, and the store's current revision.
    /// A revision the cluster compacted is [`ClientError::Compacted`].
    pub async fn get_as_of(&self, key: impl Into<Bytes>, at: &ReadAt) -> Result<(Option<KeyValue>, u64), ClientError> {
        let r = self.get_request_at(key.into(), self.read_mode, at).await?;
        Ok((r.kv, r.revision))
    }

    /// [`Client::scan`] as the keys were at `at`.
    pub async fn scan_as_of(
        &self,
        start: impl Into<Bytes>,
        end: impl Into<Bytes>,
        limit: u64,
        at: &ReadAt,
    ) -> Result<(Vec<KeyValue>, bool), ClientError> {
        let (revision, snapshot) = read_at_fields(at)?;
        let request = proto::ScanRequest {
            start: start.into(),
            end: end.into(),
            limit,
            mode: self.read_mode as i32,
            revision,
            snapshot,
        };
        let response = self.call_kv(request, |mut kv, r| async move { kv.scan(r).await }).await?;
        Ok((response.kvs, response.more))
    }

    /// Keys in `[start, end)` (`end` empty: to the end), at most `limit`
    /// (0: all). Returns the pairs and whether more remain.
    pub async fn scan(
        &self,
        start: impl Into<Bytes>,
        end: impl Into<Bytes>,
        limit: u64,
    ) -> Result<(Vec<KeyValue>, bool), ClientError> {
        self.scan_as_of(start, end, limit, &ReadAt::Head).await
    }

    // --- Writes --------------------------------------------------------------

    /// Writes `value`; returns the previous pair, if any.
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<Option<KeyValue>, ClientError> {
        Ok(self.put_request(key.into(), value.into(), false).await?.previous)
    }

    /// Writes `value`; returns the revision of the write. The cheaper put
    /// for a writer with no use for the previous pair: the cluster neither
    /// copies it into its answer nor sends it.
    pub async fn set(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<u64, ClientError> {
        Ok(self.put_request(key.into(), value.into(), true).await?.revision)
    }

    async fn put_request(
        &self,
        key: Bytes,
        value: Bytes,
        omit_previous: bool,
    ) -> Result<proto::PutResponse, ClientError> {
        let s = self.session().await?;
        let request = proto::PutRequest { key, value, id: Some(s.write_id()), omit_previous };
        s.finish(self.call_kv(request, |mut kv, r| async move { kv.put(r).await }).await)
    }

    /// Deletes the key; returns the previous pair, if any.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<Option<KeyValue>, ClientError> {
        Ok(self.delete_at(key).await?.0)
    }

    /// Deletes the key; returns the previous pair, if any, and the store
    /// revision after (the delete's own when there was a pair).
    pub async fn delete_at(&self, key: impl Into<Bytes>) -> Result<(Option<KeyValue>, u64), ClientError> {
        let s = self.session().await?;
        let request = proto::DeleteRequest { key: key.into(), id: Some(s.write_id()) };
        let response = s.finish(self.call_kv(request, |mut kv, r| async move { kv.delete(r).await }).await)?;
        Ok((response.previous, response.revision))
    }

    /// Sets `new` if the value is `expected` (`None`: the key is absent).
    /// Returns whether it did, and the pair as compared.
    pub async fn cas(
        &self,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        new: impl Into<Bytes>,
    ) -> Result<(bool, Option<KeyValue>), ClientError> {
        let r = self.cas_at(key, expected, new).await?;
        Ok((r.succeeded, r.current))
    }

    /// [`Client::cas`], with the whole answer: the store revision too.
    pub async fn cas_at(
        &self,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        new: impl Into<Bytes>,
    ) -> Result<proto::CasResponse, ClientError> {
        // An absent key has mod revision 0.
        let revision = expected.is_none().then_some(0);
        self.compare_and_set(key.into(), expected, revision, new.into()).await
    }

    /// Sets `new` if the key's mod revision is `revision` (0: absent).
    pub async fn cas_revision(
        &self,
        key: impl Into<Bytes>,
        revision: u64,
        new: impl Into<Bytes>,
    ) -> Result<(bool, Option<KeyValue>), ClientError> {
        let r = self.compare_and_set(key.into(), None, Some(revision), new.into()).await?;
        Ok((r.succeeded, r.current))
    }

    async fn compare_and_set(
        &self,
        key: Bytes,
        expected_value: Option<Bytes>,
        expected_mod_revision: Option<u64>,
        new_value: Bytes,
    ) -> Result<proto::CasResponse, ClientError> {
        let s = self.session().await?;
        let request =
            proto::CasRequest { key, expected_value, expected_mod_revision, new_value, id: Some(s.write_id()) };
        s.finish(self.call_kv(request, |mut kv, r| async move { kv.cas(r).await }).await)
    }

    /// Appends to the key's value (absent: empty); returns the new pair.
    pub async fn append(&self, key: impl Into<Bytes>, suffix: impl Into<Bytes>) -> Result<KeyValue, ClientError> {
        let s = self.session().await?;
        let request = proto::AppendRequest { key: key.into(), suffix: suffix.into(), id: Some(s.write_id()) };
        let r = s.finish(self.call_kv(request, |mut kv, r| async move { kv.append(r).await }).await)?;
        r.kv.ok_or_else(|| ClientError::Rejected(Status::internal("append returned no value")))
    }

    /// Deletes the keys in `[start, end)`; returns how many there were.
    pub async fn delete_range(&self, start: impl Into<Bytes>, end: impl Into<Bytes>) -> Result<u64, ClientError> {
        let s = self.session().await?;
        let request = proto::DeleteRangeRequest { start: start.into(), end: end.into(), id: Some(s.write_id()) };
        Ok(s.finish(self.call_kv(request, |mut kv, r| async move { kv.delete_range(r).await }).await)?.deleted)
    }

    // --- Transactions and batches ---------------------------------------------

    /// Runs a transaction (its `id` is filled in: exactly-once like every
    /// write). See `TxnRequest` in capukv.proto for what it promises.
    pub async fn txn(&self, mut request: proto::TxnRequest) -> Result<proto::TxnResponse, ClientError> {
        // Refused here, before anything is sent, so that the refusal is
        // certain (a server may refuse a request too large to decode with a
        // code that reads as an answer too large: in doubt).
        let size = prost::Message::encoded_len(&request);
        if size > crate::state_machine::MAX_TXN_BYTES {
            return Err(ClientError::Rejected(Status::invalid_argument(format!(
                "the transaction is {size} bytes; the limit is {} bytes",
                crate::state_machine::MAX_TXN_BYTES
            ))));
        }
        // A transaction of reads is served without the log: no session.
        if crate::state_machine::reads_only(&request) {
            request.id = None;
            return self.call_kv(request, |mut kv, r| async move { kv.txn(r).await }).await;
        }
        let s = self.session().await?;
        request.id = Some(s.write_id());
        s.finish(self.call_kv(request, |mut kv, r| async move { kv.txn(r).await }).await)
    }

    /// Writes every pair atomically; returns the revision of the writes.
    pub async fn put_batch(&self, pairs: Vec<(Bytes, Bytes)>) -> Result<u64, ClientError> {
        let success = pairs.into_iter().map(|(key, value)| txn::put(key, value)).collect();
        Ok(self.txn(proto::TxnRequest { success, ..Default::default() }).await?.revision)
    }

    /// Reads every key at one revision (a transaction of gets); returns the
    /// pairs in the keys' order (`None`: absent) and that revision.
    pub async fn get_batch(&self, keys: Vec<Bytes>) -> Result<(Vec<Option<KeyValue>>, u64), ClientError> {
        let success = keys.into_iter().map(txn::get).collect();
        let r = self.txn(proto::TxnRequest { success, ..Default::default() }).await?;
        let kvs = r.responses.into_iter().map(txn::got).collect();
        Ok((kvs, r.revision))
    }

    /// Deletes every key atomically; returns how many existed.
    pub async fn delete_batch(&self, keys: Vec<Bytes>) -> Result<u64, ClientError> {
        let success = keys.into_iter().map(txn::delete).collect();
        let r = self.txn(proto::TxnRequest { success, ..Default::default() }).await?;
        Ok(r.responses.iter().filter(|r| txn::deleted_one(r)).count() as u64)
    }

    /// Writes every pair only if none of their keys changed after revision
    /// `since` (the seed's `InsertBatchCas`): returns whether it did, and
    /// the store revision after.
    pub async fn put_batch_if_unchanged(
        &self,
        pairs: Vec<(Bytes, Bytes)>,
        since: u64,
    ) -> Result<(bool, u64), ClientError> {
        let compares = pairs.iter().map(|(key, _)| txn::unchanged_since(key.clone(), since)).collect();
        let success = pairs.into_iter().map(|(key, value)| txn::put(key, value)).collect();
        let r = self.txn(proto::TxnRequest { compares, success, ..Default::default() }).await?;
        Ok((r.succeeded, r.revision))
    }

    /// [`Client::put_batch_if_unchanged`] since the revision of the named
    /// snapshot `name` (a pinned revision never changes, so asking for it
    /// first and then writing is the same as naming it in the write).
    pub async fn put_batch_if_unchanged_since_snapshot(
        &self,
        pairs: Vec<(Bytes, Bytes)>,
        name: &str,
    ) -> Result<(bool, u64), ClientError> {
        let list = self.snapshot_list().await?;
        let Some(snapshot) = list.snapshots.iter().find(|s| s.name == name) else {
            return Err(ClientError::Rejected(Status::not_found(format!("there is no snapshot named {name:?}"))));
        };
        self.put_batch_if_unchanged(pairs, snapshot.revision).await
    }

    // --- History --------------------------------------------------------------

    /// Discards the versions older than `revision` (never past the oldest
    /// named snapshot); returns the compacted revision after.
    pub async fn compact(&self, revision: u64) -> Result<u64, ClientError> {
        let request = proto::CompactRequest { revision };
        Ok(self.call_kv(request, |mut kv, r| async move { kv.compact(r).await }).await?.compacted)
    }

    /// Pins `revision` (0: the current one) under `name`.
    pub async fn snapshot_create(&self, name: &str, revision: u64) -> Result<NamedSnapshot, ClientError> {
        let s = self.session().await?;
        let request =
            proto::SnapshotCreateRequest { name: name.into(), revision, id: Some(s.write_id()), created_unix_ms: 0 };
        let r = s.finish(self.call_kv(request, |mut kv, r| async move { kv.snapshot_create(r).await }).await)?;
        r.snapshot.ok_or_else(|| ClientError::Rejected(Status::internal("the cluster named no snapshot")))
    }

    /// The named snapshots (by name) and the compacted revision.
    pub async fn snapshot_list(&self) -> Result<proto::SnapshotListResponse, ClientError> {
        let request = proto::SnapshotListRequest { mode: self.read_mode as i32 };
        self.call_kv(request, |mut kv, r| async move { kv.snapshot_list(r).await }).await
    }

    /// Deletes the named snapshot; returns whether it existed.
    pub async fn snapshot_delete(&self, name: &str) -> Result<bool, ClientError> {
        let s = self.session().await?;
        let request = proto::SnapshotDeleteRequest { name: name.into(), id: Some(s.write_id()) };
        Ok(s.finish(self.call_kv(request, |mut kv, r| async move { kv.snapshot_delete(r).await }).await)?.deleted)
    }

    /// Deletes every named snapshot below revision `below` (0: all);
    /// returns their names.
    pub async fn snapshot_purge(&self, below: u64) -> Result<Vec<String>, ClientError> {
        let s = self.session().await?;
        let request = proto::SnapshotPurgeRequest { below, id: Some(s.write_id()) };
        Ok(s.finish(self.call_kv(request, |mut kv, r| async move { kv.snapshot_purge(r).await }).await)?.deleted)
    }

    // --- Cluster -------------------------------------------------------------

    /// The status of one node, asked directly (no redirect, no retry).
    pub async fn status_of(&self, addr: &str) -> Result<proto::StatusResponse, ClientError> {
        self.ask_node(addr, |mut c| async move { c.status(proto::StatusRequest {}).await }).await
    }

    /// A page of one node's Raft log from index `from` on (see the `Log`
    /// RPC), asked directly.
    pub async fn log_of(&self, addr: &str, from: u64) -> Result<proto::LogResponse, ClientError> {
        self.ask_node(addr, |mut c| async move { c.log(proto::LogRequest { from, max: 0 }).await }).await
    }

    /// The digest of one node's state machine, asked directly (no redirect,
    /// no retry): replicas at the same applied index must agree.
    pub async fn state_hash_of(&self, addr: &str) -> Result<proto::StateHashResponse, ClientError> {
        self.ask_node(addr, |mut c| async move { c.state_hash(proto::StateHashRequest {}).await }).await
    }

    /// Arms failpoint `name` with `actions` on the node at `addr` (empty
    /// actions disarm; an empty name only lists), and returns what is armed
    /// there. Refused by a build without the `failpoints` feature.
    pub async fn failpoint(&self, addr: &str, name: &str, actions: &str) -> Result<Vec<(String, String)>, ClientError> {
        let request = proto::FailpointRequest { name: name.to_string(), actions: actions.to_string() };
        let r = self.ask_node(addr, |mut c| async move { c.failpoint(request).await }).await?;
        Ok(r.armed.into_iter().map(|a| (a.name, a.actions)).collect())
    }

    /// One Cluster call to the node at `addr` itself, within `timeout`.
    async fn ask_node<T, F, Fut>(&self, addr: &str, call: F) -> Result<T, ClientError>
    where
        F: FnOnce(ClusterClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let cluster = ClusterClient::new(self.channel(addr)?);
        match tokio::time::timeout(self.timeout, call(cluster)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(ClientError::Rejected(status)),
            Err(_) => Err(ClientError::Timeout { timeout: self.timeout, last: format!("{addr}: no answer") }),
        }
    }

    /// The configuration in force on the node at `addr`, asked directly.
    pub async fn member_list_of(&self, addr: &str) -> Result<proto::MemberListResponse, ClientError> {
        self.ask_node(addr, |mut c| async move { c.member_list(proto::MemberListRequest { local: true }).await }).await
    }

    /// The configuration as the leader sees it, with each member's progress.
    pub async fn member_list(&self) -> Result<proto::MemberListResponse, ClientError> {
        let request = proto::MemberListRequest { local: false };
        self.call(|c| async move { ClusterClient::new(c).member_list(request).await }).await
    }

    /// One membership change, made by the leader (retried while a previous
    /// change is still committing); returns the configuration after it.
    pub async fn member_change(
        &self,
        request: proto::MemberChangeRequest,
    ) -> Result<proto::MemberListResponse, ClientError> {
        self.call(|c| {
            let request = request.clone();
            async move { ClusterClient::new(c).member_change(request).await }
        })
        .await
    }

    /// Asks the leader to hand leadership to node `target`.
    pub async fn transfer_leader(&self, target: u64) -> Result<(), ClientError> {
        let request = proto::TransferLeaderRequest { target };
        self.call(|c| async move { ClusterClient::new(c).transfer_leader(request).await }).await?;
        Ok(())
    }
}

/// A connection to a node, its writes coalesced: the requests that many
/// tasks send at once leave together (see [`crate::coalesce`]).
async fn connect(uri: Uri) -> std::io::Result<TokioIo<Coalescing<TcpStream>>> {
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("no host and port in {uri}"));
    let host = uri.host().ok_or_else(invalid)?.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((host, uri.port_u16().ok_or_else(invalid)?)).await?;
    // Small requests must leave at once, not wait for the peer's delayed ACK.
    stream.set_nodelay(true)?;
    Ok(TokioIo::new(Coalescing::new(stream)))
}

fn endpoint(addr: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, ClientError> {
    let bad = |reason: String| ClientError::BadEndpoint { endpoint: addr.to_string(), reason };
    if !addr.contains(':') {
        return Err(bad("expected host:port".into()));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_millis(500))
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2));
    match tls {
        Some(tls) => endpoint.tls_config(tls.clone()).map_err(|e| bad(format!("TLS: {e}"))),
        None => Ok(endpoint),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response, Status};

    use super::*;
    use crate::proto::kv_server::{Kv, KvServer};

    /// A node that always says the other one leads (or, with no other,
    /// answers reads as the leader), and counts the asking.
    struct Deflecting {
        other: Option<String>,
        asked: Arc<AtomicUsize>,
    }

    impl Deflecting {
        fn redirect<T>(&self) -> Result<Response<T>, Status> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let mut status = Status::failed_precondition("not the leader");
            let other = self.other.as_deref().unwrap_or("nobody");
            status.metadata_mut().insert(LEADER_HEADER, other.parse().expect("an address is a header value"));
            Err(status)
        }
    }

    #[tonic::async_trait]
    impl Kv for Deflecting {
        async fn get(&self, _: Request<proto::GetRequest>) -> Result<Response<proto::GetResponse>, Status> {
            if self.other.is_none() {
                self.asked.fetch_add(1, Ordering::SeqCst);
                return Ok(Response::new(proto::GetResponse::default()));
            }
            self.redirect()
        }
        async fn put(&self, _: Request<proto::PutRequest>) -> Result<Response<proto::PutResponse>, Status> {
            self.redirect()
        }
        async fn delete(&self, _: Request<proto::DeleteRequest>) -> Result<Response<proto::DeleteResponse>, Status> {
            self.redirect()
        }
        async fn cas(&self, _: Request<proto::CasRequest>) -> Result<Response<proto::CasResponse>, Status> {
            self.redirect()
        }
        async fn append(
            &self,
            _: Request<proto::AppendRequest>,
        ) -> Result<Response<proto::AppendValueResponse>, Status> {
            self.redirect()
        }
        async fn scan(&self, _: Request<proto::ScanRequest>) -> Result<Response<proto::ScanResponse>, Status> {
            self.redirect()
        }
        async fn delete_range(
            &self,
            _: Request<proto::DeleteRangeRequest>,
        ) -> Result<Response<proto::DeleteRangeResponse>, Status> {
            self.redirect()
        }
        async fn open_session(
            &self,
            _: Request<proto::OpenSessionRequest>,
        ) -> Result<Response<proto::OpenSessionResponse>, Status> {
            self.redirect()
        }
        async fn txn(&self, _: Request<proto::TxnRequest>) -> Result<Response<proto::TxnResponse>, Status> {
            self.redirect()
        }
        async fn compact(&self, _: Request<proto::CompactRequest>) -> Result<Response<proto::CompactResponse>, Status> {
            self.redirect()
        }
        async fn snapshot_create(
            &self,
            _: Request<proto::SnapshotCreateRequest>,
        ) -> Result<Response<proto::SnapshotCreateResponse>, Status> {
            self.redirect()
        }
        async fn snapshot_list(
            &self,
            _: Request<proto::SnapshotListRequest>,
        ) -> Result<Response<proto::SnapshotListResponse>, Status> {
            self.redirect()
        }
        async fn snapshot_delete(
            &self,
            _: Request<proto::SnapshotDeleteRequest>,
        ) -> Result<Response<proto::SnapshotDeleteResponse>, Status> {
            self.redirect()
        }
        async fn snapshot_purge(
            &self,
            _: Request<proto::SnapshotPurgeRequest>,
        ) -> Result<Response<proto::SnapshotPurgeResponse>, Status> {
            self.redirect()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_naming_each_other_leader_are_asked_with_backoff_not_in_a_spin() {
        let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr_a, addr_b) = (a.local_addr().unwrap().to_string(), b.local_addr().unwrap().to_string());
        let asked = Arc::new(AtomicUsize::new(0));
        let mut servers = Vec::new();
        for (listener, other) in [(a, addr_b.clone()), (b, addr_a.clone())] {
            let node = Deflecting { other: Some(other), asked: asked.clone() };
            servers.push(tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(KvServer::new(node))
                    .serve_with_incoming(TcpListenerStream::new(listener)),
            ));
        }
        let mut client = Client::new([addr_a, addr_b]).unwrap();
        client.timeout = Duration::from_secs(2);
        let err = client.get("k").await.unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
        // Doubling from 10 ms up to 500 ms: about a dozen asks in 2 s. A
        // spin would make thousands.
        let n = asked.load(Ordering::SeqCst);
        assert!((3..=40).contains(&n), "{n} asks in 2 s");
        for s in servers {
            s.abort();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_forgets_the_leader_starts_every_request_at_its_own_node() {
        let follower = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let leader = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr_f, addr_l) = (follower.local_addr().unwrap().to_string(), leader.local_addr().unwrap().to_string());
        let (asked_f, asked_l) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut servers = Vec::new();
        for (listener, other, asked) in [(follower, Some(addr_l), asked_f.clone()), (leader, None, asked_l.clone())] {
            servers.push(tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(KvServer::new(Deflecting { other, asked }))
                    .serve_with_incoming(TcpListenerStream::new(listener)),
            ));
        }
        for (remember, follower_asked) in [(true, 1), (false, 3)] {
            let mut client = Client::new([addr_f.clone()]).unwrap();
            client.remember_leader = remember;
            asked_f.store(0, Ordering::SeqCst);
            asked_l.store(0, Ordering::SeqCst);
            for _ in 0..3 {
                assert_eq!(client.get("k").await.unwrap(), None);
            }
            assert_eq!(asked_l.load(Ordering::SeqCst), 3, "the leader answers every read");
            assert_eq!(asked_f.load(Ordering::SeqCst), follower_asked, "remember_leader = {remember}");
        }
        for s in servers {
            s.abort();
        }
    }
}
