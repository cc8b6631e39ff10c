//! A real 3-node CapuKV cluster on 127.0.0.1: the operations users rely
//! on, and what must survive kill -9.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use capukv::client::ReadMode;
use capukv::proto::{self, kv_client::KvClient};
use capukv::{Client, ClientError};
use common::LocalCluster;

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_through_the_library() {
    let cluster = LocalCluster::start(3).await;
    let c = cluster.client();
    assert_eq!(c.get("a").await.unwrap(), None);
    assert_eq!(c.put("a", "1").await.unwrap(), None);
    let previous = c.put("a", "2").await.unwrap().unwrap();
    assert_eq!(previous.value, Bytes::from("1"));
    let kv = c.get("a").await.unwrap().unwrap();
    assert_eq!((kv.value.clone(), kv.version), (Bytes::from("2"), 2));
    assert!(kv.mod_revision > kv.create_revision);
    // `set` writes the same way and answers with the write's revision.
    let revision = c.set("b", "1").await.unwrap();
    let b = c.get("b").await.unwrap().unwrap();
    assert_eq!((b.value.clone(), b.mod_revision), (Bytes::from("1"), revision));
    assert_eq!(c.put("b", "2").await.unwrap().map(|kv| kv.mod_revision), Some(revision));

    let (ok, current) = c.cas("a", Some(Bytes::from("1")), "3").await.unwrap();
    assert!(!ok, "compare on a stale value fails");
    assert_eq!(current.unwrap().value, Bytes::from("2"));
    assert!(c.cas("a", Some(Bytes::from("2")), "3").await.unwrap().0);
    assert!(c.cas("fresh", None, "x").await.unwrap().0, "cas on an absent key");
    assert!(!c.cas("fresh", None, "y").await.unwrap().0);
    let rev = c.get("a").await.unwrap().unwrap().mod_revision;
    assert!(c.cas_revision("a", rev, "4").await.unwrap().0, "cas on the mod revision");

    assert_eq!(c.append("log", "x").await.unwrap().value, Bytes::from("x"));
    assert_eq!(c.append("log", "y").await.unwrap().value, Bytes::from("xy"));

    for k in ["s1", "s2", "s3", "t1"] {
        c.put(k, k).await.unwrap();
    }
    let (kvs, more) = c.scan("s", "t", 0).await.unwrap();
    let keys: Vec<Bytes> = kvs.into_iter().map(|kv| kv.key).collect();
    assert_eq!(keys, vec![Bytes::from("s1"), Bytes::from("s2"), Bytes::from("s3")]);
    assert!(!more);
    let (kvs, more) = c.scan("s", "t", 2).await.unwrap();
    assert_eq!((kvs.len(), more), (2, true));

    assert_eq!(c.delete_range("s", "t").await.unwrap(), 3);
    assert!(c.delete("a").await.unwrap().is_some());
    assert_eq!(c.get("a").await.unwrap(), None);
    assert!(c.delete("a").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_through_the_cli() {
    let cluster = LocalCluster::start(3).await;
    assert_eq!(cluster.cli(&["put", "k", "v1"]), (0, "OK\n".into(), String::new()));
    assert_eq!(cluster.cli(&["get", "k"]).1, "v1\n");
    let (code, out, _) = cluster.cli(&["get", "k", "--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((json["value"].as_str(), json["version"].as_u64()), (Some("v1"), Some(1)));

    let (code, _, err) = cluster.cli(&["get", "missing"]);
    assert_eq!(code, 1, "not found exits 1");
    assert!(err.contains("key not found"));

    assert_eq!(cluster.cli(&["cas", "k", "v1", "v2"]).0, 0);
    let (code, _, err) = cluster.cli(&["cas", "k", "v1", "v3"]);
    assert_eq!(code, 1, "a failed compare exits 1");
    assert!(err.contains("compare failed: the value is v2"), "{err}");
    assert_eq!(cluster.cli(&["cas", "--absent", "new", "n"]).0, 0);

    assert_eq!(cluster.cli(&["append", "l", "a"]).1, "a\n");
    assert_eq!(cluster.cli(&["append", "l", "b"]).1, "ab\n");
    assert_eq!(cluster.cli(&["scan", "k", "m"]).1, "k\tv2\nl\tab\n");
    assert_eq!(cluster.cli(&["delete", "k"]).0, 0);
    assert_eq!(cluster.cli(&["delete", "k"]).0, 1);

    let (code, out, _) = cluster.cli(&["status"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().filter(|l| l.contains("leader")).count(), 3);
    assert_eq!(out.matches("\tleader\t").count(), 1, "exactly one leader:\n{out}");

    let out = std::process::Command::new(common::BIN)
        .args(["--endpoints", "127.0.0.1:1", "--timeout", "1", "get", "k"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "an unreachable cluster is an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: no answer within"));
}

/// Writers put unique keys until `stop`, recording what was acknowledged.
fn spawn_writers(
    client: Arc<Client>,
    writers: usize,
    stop: Instant,
) -> (Arc<Mutex<BTreeSet<String>>>, Vec<tokio::task::JoinHandle<()>>) {
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let handles = (0..writers)
        .map(|w| {
            let (client, acked) = (client.clone(), acked.clone());
            tokio::spawn(async move {
                // Bounded in count and in time.
                for i in 0..100_000 {
                    if Instant::now() >= stop {
                        break;
                    }
                    let key = format!("w{w}-{i}");
                    match client.put(key.clone(), "v").await {
                        Ok(_) => {
                            acked.lock().unwrap().insert(key);
                        }
                        Err(e) if e.is_indefinite() => {}
                        Err(e) => panic!("write {key} failed for good: {e}"),
                    }
                }
            })
        })
        .collect();
    (acked, handles)
}

async fn assert_all_present(client: &Client, acked: &BTreeSet<String>) {
    let (kvs, _) = client.scan("w", "x", 0).await.unwrap();
    let present: BTreeSet<String> = kvs.into_iter().map(|kv| String::from_utf8(kv.key.to_vec()).unwrap()).collect();
    let lost: Vec<&String> = acked.difference(&present).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let mut cluster = LocalCluster::start(3).await;
    let mut client = cluster.client();
    client.timeout = Duration::from_secs(3);
    let client = Arc::new(client);
    let (acked, writers) = spawn_writers(client.clone(), 8, Instant::now() + Duration::from_secs(6));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Under load one round of status calls may land mid-election or time
    // out: ask until one names the leader.
    let old = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let before = acked.lock().unwrap().len();
    cluster.kill(old);
    let killed_at = Instant::now();
    let new = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let failover = killed_at.elapsed();
    assert_ne!(new, old);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > before + 10, "writes went on after the failover ({before} before, {} in all)", acked.len());
    println!("new leader {new} {failover:?} after kill -9 of {old}; {} writes acknowledged", acked.len());
    assert_all_present(&client, &acked).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_every_node_under_load_loses_no_acknowledged_write() {
    let mut cluster = LocalCluster::start(3).await;
    let mut client = cluster.client();
    client.timeout = Duration::from_secs(2);
    let client = Arc::new(client);
    let (acked, writers) = spawn_writers(client.clone(), 8, Instant::now() + Duration::from_secs(3));
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in 1..=3 {
        cluster.kill(id);
    }
    for w in writers {
        w.await.unwrap();
    }
    for id in 1..=3 {
        cluster.start_node(id);
    }
    cluster.wait_for_leader(Duration::from_secs(20)).await;
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "the load ran ({} acknowledged)", acked.len());
    let mut client = cluster.client();
    client.timeout = Duration::from_secs(10);
    assert_all_present(&client, &acked).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_write_is_applied_once() {
    let cluster = LocalCluster::start(3).await;
    let leader = cluster.leader().await.unwrap();
    let mut kv = KvClient::connect(format!("http://{}", cluster.node(leader).api)).await.unwrap();
    let session = kv.open_session(proto::OpenSessionRequest {}).await.unwrap().into_inner().session_id;
    let id = proto::WriteId { client_id: session, seq: 1 };
    let request = proto::AppendRequest { key: "once".into(), suffix: "x".into(), id: Some(id) };
    // The first answer is "lost"; the client sends the same write again.
    let first = kv.append(request.clone()).await.unwrap().into_inner();
    let retry = kv.append(request).await.unwrap().into_inner();
    assert_eq!(first.kv.as_ref().unwrap().value, Bytes::from("x"));
    assert_eq!(retry, first, "the retry gets the original answer");
    let value = cluster.client().get("once").await.unwrap().unwrap().value;
    assert_eq!(value, Bytes::from("x"), "applied once");
    // The next write of that client is applied as usual.
    let next = proto::AppendRequest {
        key: "once".into(),
        suffix: "y".into(),
        id: Some(proto::WriteId { client_id: session, seq: 2 }),
    };
    assert_eq!(kv.append(next).await.unwrap().into_inner().kv.unwrap().value, Bytes::from("xy"));
}

/// A write the cluster applied but whose answer the client could not take
/// (too large to decode: tonic's `OutOfRange`, produced on the client's
/// side) is indefinite, never a refusal: the harness records it as info.
#[tokio::test(flavor = "multi_thread")]
async fn an_applied_write_whose_answer_cannot_be_decoded_is_indefinite() {
    let cluster = LocalCluster::start(1).await;
    let mut small = cluster.client();
    small.max_response_bytes = 1024;
    small.set("big", vec![b'a'; 4096]).await.expect("a set answers with a revision only");
    // A put answers with the previous pair: 4 KiB, past the client's limit.
    let err = small.put("big", "b").await.expect_err("the answer is too large");
    assert!(err.is_indefinite(), "{err:?}");
    let ClientError::Indefinite { last, .. } = &err else { panic!("{err:?}") };
    assert!(matches!(&**last, ClientError::Rejected(s) if s.code() == tonic::Code::OutOfRange), "{last:?}");
    let value = cluster.client().get("big").await.unwrap().unwrap().value;
    assert_eq!(value, Bytes::from("b"), "the write took effect all the same");
    // A refusal by the server's validation, before anything was proposed, is certain.
    let err = small.set("", "x").await.expect_err("empty key");
    assert!(
        !err.is_indefinite() && matches!(&err, ClientError::Rejected(s) if s.code() == tonic::Code::InvalidArgument)
    );
}

/// An attempt that gets no answer in time is sent again with the same write
/// id, and the write applies once.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_retried_after_a_lost_answer_applies_once() {
    let cluster = LocalCluster::start(3).await;
    let leader = cluster.leader().await.unwrap();
    // Every attempt goes to the leader, which proposes each copy: all of them
    // commit once the followers are back, and the session answers the rest.
    let mut client = Client::new([cluster.node(leader).api.clone()]).unwrap();
    client.attempt_timeout = Some(Duration::from_millis(300));
    client.timeout = Duration::from_secs(20);
    // Stop the leader's followers: its attempts hang until they are back.
    let followers: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
    for &f in &followers {
        cluster.pause(f);
    }
    let writer = {
        let client = std::sync::Arc::new(client);
        let c = client.clone();
        (tokio::spawn(async move { c.append("once", "x").await }), client)
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    for &f in &followers {
        cluster.resume(f);
    }
    let appended = writer.0.await.unwrap().expect("the retried append succeeds");
    let value = writer.1.get("once").await.unwrap().unwrap().value;
    assert_eq!(value, Bytes::from("x"), "applied once, although sent several times: {appended:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_reads_are_served_by_a_follower() {
    let cluster = LocalCluster::start(3).await;
    cluster.client().put("s", "1").await.unwrap();
    let leader = cluster.leader().await.unwrap();
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
    let mut only_follower = Client::new([follower.api.clone()]).unwrap();
    only_follower.timeout = Duration::from_secs(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let kv = only_follower.get_with("s", ReadMode::Stale).await.unwrap();
        if kv.map(|kv| kv.value) == Some(Bytes::from("1")) {
            break;
        }
        assert!(Instant::now() < deadline, "the follower never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = only_follower.status_of(&follower.api).await.unwrap();
    assert_eq!(status.role, "follower", "served by the follower itself");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_keys_and_values_are_refused_with_the_limit() {
    let cluster = LocalCluster::start(3).await;
    let c = cluster.client();
    let err = c.put(vec![b'k'; 5000], "v").await.unwrap_err();
    let ClientError::Rejected(status) = err else { panic!("expected a rejection") };
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "the key is 5000 bytes; the limit is 4096 bytes");
    let err = c.put("k", vec![0u8; (1 << 20) + 1]).await.unwrap_err();
    assert!(err.to_string().contains("the limit is 1048576 bytes"), "{err}");
    c.put("k", "fine").await.expect("the node is still serving");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_or_corrupt_data_directory_is_refused() {
    let mut cluster = LocalCluster::start(3).await;
    cluster.client().put("x", "1").await.unwrap();
    cluster.kill(1);
    cluster.kill(2);
    // Node 2 started on node 1's directory.
    let out = cluster.server_command(2, &cluster.node(1).dir.clone()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to node 1, not node 2"), "{err}");

    // A directory whose database files are damaged.
    let dir = cluster.node(1).dir.clone();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("MANIFEST-") {
            std::fs::write(entry.path(), b"garbage").unwrap();
        }
    }
    let out = cluster.server_command(1, &dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&dir.display().to_string()) && err.contains("corrupt"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
