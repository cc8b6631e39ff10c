//! Exactly-once that stays exactly-once: a write whose session the cluster
//! evicted is refused and applies nothing, never applied a second time.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use capukv::proto::{self, kv_client::KvClient};
use capukv::server::{self, ServerConfig};
use capukv::{Client, ClientError};

mod common;

use common::free_addr;

/// A one-node cluster in this process that keeps `max_sessions` sessions;
/// stopped, and its directory removed, on drop.
struct Node {
    api: String,
    dir: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    async fn start(max_sessions: usize) -> Node {
        let (api, raft) = (free_addr(), free_addr());
        let dir = std::env::temp_dir().join(format!("capukv-sessions-{}-{}", std::process::id(), api.port()));
        let mut cfg = ServerConfig::new(1, dir.clone(), api, raft, HashMap::from([(1, raft.to_string())]));
        cfg.max_sessions = max_sessions;
        cfg.tick = Duration::from_millis(20);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::run(cfg, async move {
                let _ = stopped.await;
            })
            .await
            .expect("the node runs");
        });
        let node = Node { api: api.to_string(), dir, stop: Some(stop), task: Some(task) };
        // Until it leads (a one-node cluster elects itself).
        let client = Client::new([node.api.clone()]).unwrap();
        client.set("ready", "1").await.expect("the node serves");
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn open_session(kv: &mut KvClient<tonic::transport::Channel>) -> u64 {
    kv.open_session(proto::OpenSessionRequest {}).await.unwrap().into_inner().session_id
}

fn append(session: u64, seq: u64, suffix: &str) -> proto::AppendRequest {
    proto::AppendRequest {
        key: "k".into(),
        suffix: Bytes::from(suffix.to_string()),
        id: Some(proto::WriteId { client_id: session, seq }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_whose_session_was_evicted_is_refused_and_applies_nothing() {
    let node = Node::start(2).await;
    let mut kv = KvClient::connect(format!("http://{}", node.api)).await.unwrap();
    let s = open_session(&mut kv).await;
    kv.append(append(s, 1, "a")).await.unwrap();
    // Two newer sessions: s, the least recently active, is evicted.
    open_session(&mut kv).await;
    open_session(&mut kv).await;
    // The retry of write 1 (its answer was lost): refused, not applied again.
    let refused = kv.append(append(s, 1, "a")).await.expect_err("the session expired");
    assert_eq!(refused.code(), tonic::Code::Aborted, "{refused}");
    assert_eq!(refused.metadata().get("x-capukv-session-expired").unwrap().to_str().unwrap(), s.to_string());
    assert!(refused.message().contains("nothing was applied"), "{}", refused.message());
    // A session id the cluster never issued cannot start a session either.
    let forged = kv.append(append(1 << 40, 1, "z")).await.expect_err("never opened");
    assert_eq!(forged.code(), tonic::Code::Aborted);
    let client = Client::new([node.api.clone()]).unwrap();
    assert_eq!(client.get("k").await.unwrap().unwrap().value, Bytes::from("a"), "applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reports_an_expired_session_as_certain_and_opens_a_new_one() {
    let node = Node::start(2).await;
    let client = Client::new([node.api.clone()]).unwrap();
    client.append("k", "a").await.unwrap();
    let (session, seq) = client.next_write_id().await.unwrap();
    assert_eq!(seq, 2, "the idle session is reused");
    let mut kv = KvClient::connect(format!("http://{}", node.api)).await.unwrap();
    open_session(&mut kv).await;
    open_session(&mut kv).await;
    let err = client.append("k", "b").await.expect_err("its session was evicted");
    assert!(matches!(&err, ClientError::SessionExpired { session: s, .. } if *s == session), "{err:?}");
    assert!(!err.is_indefinite(), "one attempt, refused before anything applied: certain");
    // The dead session is dropped; the next write opens a new one.
    client.append("k", "c").await.unwrap();
    assert_ne!(client.next_write_id().await.unwrap().0, session);
    assert_eq!(client.get("k").await.unwrap().unwrap().value, Bytes::from("ac"));
}
