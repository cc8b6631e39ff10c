//! The version history on a real cluster: reads at past revisions and named
//! snapshots through the library and the CLI, compaction (requested and
//! automatic) refusing what it discarded with the compacted revision, and a
//! follower that catches up by a Raft snapshot receiving the history too.

mod common;

use std::time::Duration;

use bytes::Bytes;
use capukv::client::{ClientError, ReadAt};
use common::{LocalCluster, eventually};

fn value(kv: Option<capukv::client::KeyValue>) -> Option<Bytes> {
    kv.map(|kv| kv.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_at_past_revisions_and_snapshots_until_compacted() {
    let cluster = LocalCluster::start(3).await;
    let c = cluster.client();
    let r1 = c.set("k", "one").await.unwrap();
    let r2 = c.set("k", "two").await.unwrap();
    let (_, r3) = c.delete_at("k").await.unwrap();
    c.set("other", "x").await.unwrap();
    let at = |r| ReadAt::Revision(r);
    assert_eq!(value(c.get_as_of("k", &at(r1)).await.unwrap().0), Some(Bytes::from("one")));
    assert_eq!(value(c.get_as_of("k", &at(r2)).await.unwrap().0), Some(Bytes::from("two")));
    assert_eq!(c.get_as_of("k", &at(r3)).await.unwrap().0, None, "deleted at r3");
    match c.get_as_of("k", &at(0)).await {
        Err(ClientError::Rejected(s)) => assert!(s.message().contains("revision 0 is the empty store"), "{s}"),
        other => panic!("revision 0 is no past revision a request can name: {other:?}"),
    }
    let (kvs, _) = c.scan_as_of("", "", 0, &at(r2)).await.unwrap();
    assert_eq!(kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), [Bytes::from("k")], "'other' came later");

    // Through the CLI, as a user reads the past.
    let (code, out, err) = cluster.cli(&["get", "k", "--rev", &r1.to_string()]);
    assert_eq!((code, out.trim()), (0, "one"), "{err}");
    let (code, _, err) = cluster.cli(&["get", "k", "--rev", "999999"]);
    assert_eq!(code, 2);
    assert!(err.contains("in the future"), "{err}");

    // A snapshot pins r2; compaction stops there.
    let (code, out, err) = cluster.cli(&["--json", "snapshot", "create", "before", "--rev", &r2.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("\"revision\":{r2}")), "{out}");
    let head = c.set("k", "three").await.unwrap();
    assert_eq!(c.compact(head).await.unwrap(), r2, "never past the oldest named snapshot");
    match c.get_as_of("k", &at(r1)).await {
        Err(ClientError::Compacted { compacted, message }) => {
            assert_eq!(compacted, r2);
            assert!(message.contains(&format!("revision {r1} was compacted")), "{message}");
        }
        other => panic!("a read below the compacted revision answered {other:?}"),
    }
    let snapshot = ReadAt::Snapshot("before".into());
    assert_eq!(value(c.get_as_of("k", &snapshot).await.unwrap().0), Some(Bytes::from("two")));
    let (code, out, _) = cluster.cli(&["get", "k", "--snapshot", "before"]);
    assert_eq!((code, out.trim()), (0, "two"));
    let (code, out, _) = cluster.cli(&["--json", "snapshot", "list"]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(list["compacted"], r2);
    assert_eq!(list["snapshots"][0]["name"], "before");
    assert!(list["snapshots"][0]["created_unix_ms"].as_u64().unwrap() > 1_700_000_000_000);

    // A name is taken once; the batch CAS can name the snapshot.
    assert!(
        matches!(c.snapshot_create("before", 0).await, Err(ClientError::Rejected(s)) if s.code() == tonic::Code::AlreadyExists)
    );
    let pairs = vec![(Bytes::from("k"), Bytes::from("four"))];
    let (written, _) = c.put_batch_if_unchanged_since_snapshot(pairs, "before").await.unwrap();
    assert!(!written, "k changed after the snapshot");

    // Deleted, the snapshot no longer holds compaction back.
    assert!(c.snapshot_delete("before").await.unwrap());
    let (code, _, err) = cluster.cli(&["snapshot", "delete", "before"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(c.compact(head).await.unwrap(), head);
    assert!(
        matches!(c.get_as_of("k", &snapshot).await, Err(ClientError::Rejected(s)) if s.code() == tonic::Code::NotFound)
    );
    let (code, _, err) = cluster.cli(&["get", "k", "--rev", &r2.to_string()]);
    assert_eq!(code, 2);
    assert!(err.contains("was compacted: the oldest readable revision is"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catching_up_by_snapshot_gets_the_history_and_replicas_agree() {
    // Tests run with --snapshot-every 500: 700 writes while node 3 is down
    // make it catch up from a snapshot.
    let mut cluster = LocalCluster::start(3).await;
    let c = cluster.client();
    let first = c.set("k", "v0").await.unwrap();
    cluster.kill(3);
    for i in 1..=700 {
        c.set(format!("k{}", i % 7), format!("v{i}")).await.unwrap();
    }
    cluster.start_node(3);
    let leader_status = c.status_of(&cluster.node(1).api).await.unwrap();
    let target = leader_status.commit_index;
    let api3 = cluster.node(3).api.clone();
    eventually(Duration::from_secs(30), "node 3 catches up", || {
        let (c, api3) = (&c, api3.clone());
        async move { c.status_of(&api3).await.is_ok_and(|s| s.applied_index >= target) }
    })
    .await;
    let status3 = c.status_of(&api3).await.unwrap();
    assert!(status3.snapshot_index > 0, "node 3 installed a snapshot: {status3:?}");
    // Every replica at the same index holds the same state, history included.
    let apis = cluster.endpoints();
    eventually(Duration::from_secs(20), "the replicas' digests agree at one index", || {
        let (c, apis) = (&c, apis.clone());
        async move {
            let mut hashes = Vec::new();
            for api in &apis {
                match c.state_hash_of(api).await {
                    Ok(h) => hashes.push((h.applied_index, h.hash)),
                    Err(_) => return false,
                }
            }
            hashes.windows(2).all(|w| w[0] == w[1])
        }
    })
    .await;
    // Node 3 answers a read at the first revision from its own copy.
    let mut alone = capukv::Client::new([api3]).unwrap();
    alone.read_mode = capukv::client::ReadMode::Stale;
    let (kv, _) = alone.get_as_of("k", &ReadAt::Revision(first)).await.unwrap();
    assert_eq!(value(kv), Some(Bytes::from("v0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_compact_on_their_own_keeping_the_retention() {
    let cluster = LocalCluster::start_with_args(3, &["--auto-compaction-retention", "10"]).await;
    let c = cluster.client();
    let mut last = 0;
    for i in 0..30 {
        last = c.set("k", format!("v{i}")).await.unwrap();
    }
    eventually(Duration::from_secs(20), "the leader compacts to 10 revisions behind", || {
        let c = &c;
        async move { c.snapshot_list().await.is_ok_and(|l| l.compacted >= last - 10) }
    })
    .await;
    assert!(matches!(c.get_as_of("k", &ReadAt::Revision(1)).await, Err(ClientError::Compacted { .. })));
    assert_eq!(value(c.get_as_of("k", &ReadAt::Revision(last - 5)).await.unwrap().0), Some(Bytes::from("v24")));
}
