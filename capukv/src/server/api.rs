//! The client-facing gRPC services, KV and Cluster, on `--api-addr`.
//!
//! Writes become commands proposed to the Raft loop; linearizable reads wait
//! for a ReadIndex confirmation and then read the local state machine;
//! stale reads read it at once. A follower answers writes and linearizable
//! reads with `FailedPrecondition` naming the leader's client address in the
//! `x-capukv-leader` metadata, which the client library follows.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::Sender;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use super::members::{Addresses, SharedDirectory};
use super::raft_loop::{Event, MemberChange, MemberView, Rejection, Reply};
use super::transport::ApiAddrs;
use crate::proto::{self, command, command_response};
use crate::raft::{NodeId, Role};
use crate::state_machine::{self, ApplyError, ReadAt, ReadError};
use crate::storage::Storage;

pub const LEADER_HEADER: &str = "x-capukv-leader";
/// On a write refused because its session is unknown (never opened, or
/// evicted): the session's id. Nothing was applied.
pub const SESSION_EXPIRED_HEADER: &str = "x-capukv-session-expired";
/// On a read (or snapshot) below the compacted revision: the oldest
/// readable revision.
pub const COMPACTED_HEADER: &str = "x-capukv-compacted-revision";

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
}

#[derive(Clone)]
pub struct Api {
    pub id: NodeId,
    pub events: Sender<Event>,
    pub storage: Arc<Storage>,
    pub api_addrs: ApiAddrs,
    /// The membership and addresses, kept by the Raft loop.
    pub directory: SharedDirectory,
    pub limits: Limits,
    pub request_timeout: Duration,
}

impl Api {
    /// Sends an event to the Raft loop and waits for its answer.
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Event) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.events.send(make(tx)).map_err(|_| Status::unavailable("the node is shutting down"))?;
        match tokio::time::timeout(self.request_timeout, rx).await {
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {:?}; a write may still take effect",
                self.request_timeout
            ))),
            Ok(Err(_)) => Err(Status::unavailable("the node stopped before answering")),
            Ok(Ok(answer)) => answer.map_err(|r| self.status_of(r)),
        }
    }

    fn status_of(&self, rejection: Rejection) -> Status {
        match rejection {
            Rejection::NotLeader(Some(leader)) => {
                let addr = self.api_addrs.read().expect("not poisoned").get(&leader).cloned();
                match addr {
                    Some(addr) => {
                        let mut status = Status::failed_precondition(format!(
                            "not the leader; the leader is node {leader} at {addr}"
                        ));
                        if let Ok(v) = addr.parse() {
                            status.metadata_mut().insert(LEADER_HEADER, v);
                        }
                        status
                    }
                    None => Status::unavailable(format!(
                        "not the leader; the leader is node {leader}, address not yet known"
                    )),
                }
            }
            Rejection::NotLeader(None) => {
                Status::unavailable("no leader: an election is under way or there is no quorum")
            }
            Rejection::Unavailable(m) => Status::unavailable(m),
            Rejection::Applied(e @ (ApplyError::StaleSequence { .. } | ApplyError::ValueTooLarge { .. })) => {
                Status::invalid_argument(e.to_string())
            }
            Rejection::Applied(e @ ApplyError::SessionExpired { client, .. }) => {
                let mut status = Status::aborted(e.to_string());
                status.metadata_mut().insert(SESSION_EXPIRED_HEADER, client.to_string().parse().expect("digits"));
                status
            }
            Rejection::Applied(ApplyError::Compacted { requested, compacted }) => {
                compacted_status(requested, compacted)
            }
            Rejection::Applied(e @ ApplyError::FutureRevision { .. }) => Status::out_of_range(e.to_string()),
            Rejection::Applied(e @ ApplyError::SnapshotExists { .. }) => Status::already_exists(e.to_string()),
            Rejection::Applied(e) => Status::internal(e.to_string()),
            Rejection::Invalid(m) => Status::invalid_argument(m),
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), Status> {
        state_machine::check_key(key, self.limits.max_key_bytes).map_err(Status::invalid_argument)
    }

    fn check_value(&self, value: &[u8]) -> Result<(), Status> {
        state_machine::check_size("value", value, self.limits.max_value_bytes).map_err(Status::invalid_argument)
    }

    pub(super) async fn write(
        &self,
        op: command::Op,
        id: Option<proto::WriteId>,
    ) -> Result<command_response::Result, Status> {
        let id = id.unwrap_or_default();
        let cmd = proto::Command { client_id: id.client_id, seq: id.seq, op: Some(op) };
        let command = Bytes::from(prost::Message::encode_to_vec(&cmd));
        let response = self.ask(|reply| Event::Propose { command, reply }).await?;
        response.result.ok_or_else(|| Status::internal("the state machine gave no result"))
    }

    /// Waits until a read from the local state machine is linearizable
    /// (ReadIndex), unless the client asked for a stale read.
    async fn read_barrier(&self, mode: i32) -> Result<(), Status> {
        if mode == proto::ReadMode::Stale as i32 {
            return Ok(());
        }
        let confirmed = self.ask(|reply| Event::Read { reply }).await;
        // Planted: a follower serves the read from its own state.
        #[cfg(feature = "planted-bugs")]
        if crate::planted::active(crate::planted::Bug::FollowerStaleReads)
            && confirmed.as_ref().is_err_and(|s| s.code() == tonic::Code::FailedPrecondition)
        {
            return Ok(());
        }
        confirmed?;
        crate::failpoints::pass(crate::failpoints::READ_BEFORE_ANSWER).await.map_err(Status::unavailable)
    }
}

fn storage_status(e: crate::storage::StorageError) -> Status {
    tracing::error!(error = %e, "storage failure");
    Status::internal(e.to_string())
}

fn compacted_status(requested: u64, compacted: u64) -> Status {
    let e = ApplyError::Compacted { requested, compacted };
    let mut status = Status::out_of_range(e.to_string());
    status.metadata_mut().insert(COMPACTED_HEADER, compacted.to_string().parse().expect("digits"));
    status
}

fn read_status(e: ReadError) -> Status {
    match e {
        ReadError::Compacted { requested, compacted } => compacted_status(requested, compacted),
        e @ ReadError::Future { .. } => Status::out_of_range(e.to_string()),
        e @ ReadError::NoSnapshot(_) => Status::not_found(e.to_string()),
        e @ ReadError::Invalid(_) => Status::invalid_argument(e.to_string()),
        ReadError::Storage(e) => storage_status(e),
    }
}

/// Where a request reads: now, a past revision or a named snapshot.
fn read_at(revision: u64, snapshot: &str) -> Result<ReadAt, Status> {
    if !snapshot.is_empty() {
        state_machine::validate_snapshot_name(snapshot).map_err(Status::invalid_argument)?;
    }
    ReadAt::of(revision, snapshot).map_err(Status::invalid_argument)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

macro_rules! expect_result {
    ($result:expr, $variant:ident) => {
        match $result {
            command_response::Result::$variant(r) => Ok(Response::new(r)),
            _ => Err(Status::internal("the state machine answered another command")),
        }
    };
}

#[tonic::async_trait]
impl proto::kv_server::Kv for Api {
    async fn get(&self, request: Request<proto::GetRequest>) -> Result<Response<proto::GetResponse>, Status> {
        let r = request.into_inner();
        self.check_key(&r.key)?;
        let at = read_at(r.revision, &r.snapshot)?;
        self.read_barrier(r.mode).await?;
        let (kv, revision) = state_machine::get(&self.storage, &r.key, &at).map_err(read_status)?;
        Ok(Response::new(proto::GetResponse { kv, revision }))
    }

    async fn put(&self, request: Request<proto::PutRequest>) -> Result<Response<proto::PutResponse>, Status> {
        let mut r = request.into_inner();
        self.check_key(&r.key)?;
        self.check_value(&r.value)?;
        let id = r.id.take();
        expect_result!(self.write(command::Op::Put(r), id).await?, Put)
    }

    async fn delete(&self, request: Request<proto::DeleteRequest>) -> Result<Response<proto::DeleteResponse>, Status> {
        let mut r = request.into_inner();
        self.check_key(&r.key)?;
        let id = r.id.take();
        expect_result!(self.write(command::Op::Delete(r), id).await?, Delete)
    }

    async fn cas(&self, request: Request<proto::CasRequest>) -> Result<Response<proto::CasResponse>, Status> {
        let mut r = request.into_inner();
        self.check_key(&r.key)?;
        self.check_value(&r.new_value)?;
        if let Some(v) = &r.expected_value {
            self.check_value(v)?;
        }
        let id = r.id.take();
        expect_result!(self.write(command::Op::Cas(r), id).await?, Cas)
    }

    async fn append(
        &self,
        request: Request<proto::AppendRequest>,
    ) -> Result<Response<proto::AppendValueResponse>, Status> {
        let mut r = request.into_inner();
        self.check_key(&r.key)?;
        self.check_value(&r.suffix)?;
        let id = r.id.take();
        expect_result!(self.write(command::Op::Append(r), id).await?, Append)
    }

    async fn scan(&self, request: Request<proto::ScanRequest>) -> Result<Response<proto::ScanResponse>, Status> {
        let r = request.into_inner();
        let at = read_at(r.revision, &r.snapshot)?;
        self.read_barrier(r.mode).await?;
        let (kvs, more, revision) =
            state_machine::scan(&self.storage, (&r.start, &r.end), r.limit, &at).map_err(read_status)?;
        Ok(Response::new(proto::ScanResponse { kvs, more, revision }))
    }

    async fn delete_range(
        &self,
        request: Request<proto::DeleteRangeRequest>,
    ) -> Result<Response<proto::DeleteRangeResponse>, Status> {
        let mut r = request.into_inner();
        let id = r.id.take();
        expect_result!(self.write(command::Op::DeleteRange(r), id).await?, DeleteRange)
    }

    async fn open_session(
        &self,
        request: Request<proto::OpenSessionRequest>,
    ) -> Result<Response<proto::OpenSessionResponse>, Status> {
        expect_result!(self.write(command::Op::OpenSession(request.into_inner()), None).await?, OpenSession)
    }

    async fn txn(&self, request: Request<proto::TxnRequest>) -> Result<Response<proto::TxnResponse>, Status> {
        let mut r = request.into_inner();
        state_machine::validate_txn(&r, self.limits.max_key_bytes, self.limits.max_value_bytes)
            .map_err(Status::invalid_argument)?;
        if state_machine::reads_only(&r) {
            self.read_barrier(proto::ReadMode::Linearizable as i32).await?;
            let storage = self.storage.clone();
            let answer = tokio::task::spawn_blocking(move || state_machine::read_txn(&storage, &r))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(read_status)?;
            return Ok(Response::new(answer));
        }
        let id = r.id.take();
        // Planted: the transaction goes to the log as two commands, the
        // first half of its branch (not deduplicated) and then the rest.
        #[cfg(feature = "planted-bugs")]
        if crate::planted::active(crate::planted::Bug::TxnSplit) && r.compares.is_empty() && r.success.len() > 1 {
            let rest = r.success.split_off(r.success.len() / 2);
            let first = expect_result!(self.write(command::Op::Txn(r), None).await?, Txn)?.into_inner();
            let second = proto::TxnRequest { success: rest, ..Default::default() };
            let mut answer = expect_result!(self.write(command::Op::Txn(second), id).await?, Txn)?.into_inner();
            answer.responses.splice(0..0, first.responses);
            return Ok(Response::new(answer));
        }
        expect_result!(self.write(command::Op::Txn(r), id).await?, Txn)
    }

    async fn compact(
        &self,
        request: Request<proto::CompactRequest>,
    ) -> Result<Response<proto::CompactResponse>, Status> {
        let r = request.into_inner();
        if r.revision == 0 {
            return Err(Status::invalid_argument("compact needs a revision above 0"));
        }
        expect_result!(self.write(command::Op::Compact(r), None).await?, Compact)
    }

    async fn snapshot_create(
        &self,
        request: Request<proto::SnapshotCreateRequest>,
    ) -> Result<Response<proto::SnapshotCreateResponse>, Status> {
        let mut r = request.into_inner();
        state_machine::validate_snapshot_name(&r.name).map_err(Status::invalid_argument)?;
        r.created_unix_ms = unix_ms();
        let id = r.id.take();
        expect_result!(self.write(command::Op::SnapshotCreate(r), id).await?, SnapshotCreate)
    }

    async fn snapshot_list(
        &self,
        request: Request<proto::SnapshotListRequest>,
    ) -> Result<Response<proto::SnapshotListResponse>, Status> {
        self.read_barrier(request.into_inner().mode).await?;
        let (snapshots, compacted, revision) = state_machine::list_snapshots(&self.storage).map_err(storage_status)?;
        Ok(Response::new(proto::SnapshotListResponse { snapshots, revision, compacted }))
    }

    async fn snapshot_delete(
        &self,
        request: Request<proto::SnapshotDeleteRequest>,
    ) -> Result<Response<proto::SnapshotDeleteResponse>, Status> {
        let mut r = request.into_inner();
        state_machine::validate_snapshot_name(&r.name).map_err(Status::invalid_argument)?;
        let id = r.id.take();
        expect_result!(self.write(command::Op::SnapshotDelete(r), id).await?, SnapshotDelete)
    }

    async fn snapshot_purge(
        &self,
        request: Request<proto::SnapshotPurgeRequest>,
    ) -> Result<Response<proto::SnapshotPurgeResponse>, Status> {
        let mut r = request.into_inner();
        let id = r.id.take();
        expect_result!(self.write(command::Op::SnapshotPurge(r), id).await?, SnapshotPurge)
    }
}

impl Api {
    /// The configuration in force on this node, with each member's progress
    /// when it leads.
    async fn member_view(&self) -> Result<MemberView, Status> {
        let (tx, rx) = oneshot::channel();
        self.events
            .send(Event::MemberList { reply: tx })
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        rx.await.map_err(|_| Status::unavailable("the node stopped before answering"))
    }

    fn member_list_of(&self, view: MemberView) -> proto::MemberListResponse {
        let directory = self.directory.read().expect("not poisoned");
        let api = self.api_addrs.read().expect("not poisoned");
        let members = view
            .membership
            .members()
            .map(|id| proto::MemberStatus {
                id,
                raft_addr: directory.book.get(&id).map(|a| a.raft.clone()).unwrap_or_default(),
                api_addr: api.get(&id).cloned().unwrap_or_default(),
                role: if view.membership.is_voter(id) { "voter" } else { "learner" }.into(),
                match_index: view.progress.get(&id).copied().unwrap_or(0),
            })
            .collect();
        proto::MemberListResponse {
            id: self.id,
            leader: view.leader.unwrap_or(0),
            config_index: view.config_index,
            members,
            cluster_id: self.storage.identity().cluster_id,
        }
    }
}

#[tonic::async_trait]
impl proto::cluster_server::Cluster for Api {
    async fn status(&self, _: Request<proto::StatusRequest>) -> Result<Response<proto::StatusResponse>, Status> {
        let (tx, rx) = oneshot::channel();
        self.events.send(Event::Status { reply: tx }).map_err(|_| Status::unavailable("the node is shutting down"))?;
        let s = rx.await.map_err(|_| Status::unavailable("the node stopped before answering"))?;
        let view = self.member_view().await?;
        let api = self.api_addrs.read().expect("not poisoned").clone();
        let role = match s.role {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::PreCandidate => "pre-candidate",
        };
        Ok(Response::new(proto::StatusResponse {
            id: s.id,
            role: role.into(),
            term: s.term,
            leader: s.leader.unwrap_or(0),
            leader_api_addr: s.leader.and_then(|l| api.get(&l).cloned()).unwrap_or_default(),
            commit_index: s.commit,
            applied_index: s.applied,
            snapshot_index: s.snapshot_index,
            members: self.member_list_of(view).members,
            log_syncs: self.storage.syncs.load(Ordering::Relaxed),
            log_entries_synced: self.storage.entries_synced.load(Ordering::Relaxed),
            ticks: s.ticks,
            cluster_id: self.storage.identity().cluster_id,
        }))
    }

    async fn state_hash(
        &self,
        _: Request<proto::StateHashRequest>,
    ) -> Result<Response<proto::StateHashResponse>, Status> {
        let storage = self.storage.clone();
        let d = tokio::task::spawn_blocking(move || state_machine::digest(&storage))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(storage_status)?;
        Ok(Response::new(proto::StateHashResponse {
            id: self.id,
            applied_index: d.applied,
            hash: d.hash,
            keys: d.keys,
            sessions: d.sessions,
            revision: d.revision,
        }))
    }

    async fn failpoint(
        &self,
        request: Request<proto::FailpointRequest>,
    ) -> Result<Response<proto::FailpointResponse>, Status> {
        use crate::failpoints::{self, FailpointError};
        let r = request.into_inner();
        if !r.name.is_empty() {
            failpoints::arm(&r.name, &r.actions).map_err(|e| match e {
                FailpointError::NotCompiled => Status::failed_precondition(e.to_string()),
                _ => Status::invalid_argument(e.to_string()),
            })?;
        } else if !failpoints::compiled() {
            return Err(Status::failed_precondition(FailpointError::NotCompiled.to_string()));
        }
        let armed =
            failpoints::armed().into_iter().map(|(name, actions)| proto::ArmedFailpoint { name, actions }).collect();
        Ok(Response::new(proto::FailpointResponse { id: self.id, armed }))
    }

    async fn log(&self, request: Request<proto::LogRequest>) -> Result<Response<proto::LogResponse>, Status> {
        const PAGE: u64 = 10_000;
        let r = request.into_inner();
        let max = if r.max == 0 { PAGE } else { r.max.min(PAGE) } as usize;
        // The commit index written with the log, read before the entries:
        // on disk, entries up to it are committed and never replaced.
        let commit_index = self.storage.written_commit();
        let storage = self.storage.clone();
        let (first_index, entries) = tokio::task::spawn_blocking(move || storage.read_log(r.from, max))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(storage_status)?;
        let entries = entries
            .into_iter()
            .map(|e| {
                // A no-op, or data that is no command (which apply refuses too), names no write.
                let cmd = <proto::Command as prost::Message>::decode(&e.data[..]).unwrap_or_default();
                let opens_session = matches!(cmd.op, Some(command::Op::OpenSession(_)));
                proto::LoggedWrite {
                    index: e.index,
                    term: e.term,
                    client_id: cmd.client_id,
                    seq: cmd.seq,
                    opens_session,
                }
            })
            .collect();
        let last_index = self.storage.last_index();
        Ok(Response::new(proto::LogResponse { id: self.id, first_index, last_index, commit_index, entries }))
    }

    async fn member_list(
        &self,
        request: Request<proto::MemberListRequest>,
    ) -> Result<Response<proto::MemberListResponse>, Status> {
        let view = self.member_view().await?;
        if !request.get_ref().local && view.leader != Some(self.id) {
            return Err(self.status_of(Rejection::NotLeader(view.leader)));
        }
        Ok(Response::new(self.member_list_of(view)))
    }

    async fn member_change(
        &self,
        request: Request<proto::MemberChangeRequest>,
    ) -> Result<Response<proto::MemberListResponse>, Status> {
        use proto::member_change_request::Kind;
        let r = request.into_inner();
        if r.id == 0 {
            return Err(Status::invalid_argument("node id 0 is reserved; ids start at 1"));
        }
        let kind =
            Kind::try_from(r.kind).map_err(|_| Status::invalid_argument(format!("unknown change kind {}", r.kind)))?;
        let change = match kind {
            Kind::Add | Kind::AddLearner => {
                for (what, addr) in [("raft_addr", &r.raft_addr), ("api_addr", &r.api_addr)] {
                    if addr.parse::<std::net::SocketAddr>().is_err() && !addr.contains(':') {
                        return Err(Status::invalid_argument(format!("{what} {addr:?} is not HOST:PORT")));
                    }
                }
                let addrs = Addresses { raft: r.raft_addr, api: r.api_addr };
                MemberChange::Add { id: r.id, addrs, learner: kind == Kind::AddLearner }
            }
            Kind::Promote => MemberChange::Promote(r.id),
            Kind::Remove => MemberChange::Remove(r.id),
            Kind::Demote => MemberChange::Demote(r.id),
        };
        self.ask(|reply| Event::MemberChange { change, reply }).await?;
        Ok(Response::new(self.member_list_of(self.member_view().await?)))
    }

    async fn transfer_leader(
        &self,
        request: Request<proto::TransferLeaderRequest>,
    ) -> Result<Response<proto::TransferLeaderResponse>, Status> {
        let target = request.into_inner().target;
        self.ask(|reply| Event::Transfer { target, reply }).await?;
        Ok(Response::new(proto::TransferLeaderResponse {}))
    }
}
