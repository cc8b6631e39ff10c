//! Transactions and batches on a real 3-node cluster, through the library
//! and the CLI: atomic at one revision, exactly-once, bounded.

mod common;

use bytes::Bytes;
use capukv::proto::{self, compare, txn_op_response};
use capukv::{ClientError, txn};
use common::LocalCluster;

fn value(r: &proto::TxnOpResponse) -> Option<Bytes> {
    match &r.result {
        Some(txn_op_response::Result::Get(g)) => g.kv.as_ref().map(|kv| kv.value.clone()),
        other => panic!("not a get: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_runs_one_branch_atomically_at_one_revision() {
    let cluster = LocalCluster::start(3).await;
    let c = cluster.client();
    let before = c.set("seed", "0").await.unwrap();
    let request = proto::TxnRequest {
        compares: vec![txn::absent("a"), txn::compare_value("seed", compare::Op::Equal, "0")],
        success: vec![txn::put("a", "1"), txn::append("log", "x,"), txn::append("log", "y,"), txn::get("log")],
        failure: vec![txn::get("a")],
        ..Default::default()
    };
    let r = c.txn(request.clone()).await.unwrap();
    assert!(r.succeeded);
    assert_eq!(r.revision, before + 1, "one revision for every change of the transaction");
    assert_eq!(value(&r.responses[3]), Some(Bytes::from("x,y,")), "a read sees the writes before it");
    let a = c.get("a").await.unwrap().unwrap();
    let log = c.get("log").await.unwrap().unwrap();
    assert_eq!((a.mod_revision, log.mod_revision, log.version), (r.revision, r.revision, 2));

    // Now `a` exists: the other branch runs, and changes nothing.
    let r = c.txn(request).await.unwrap();
    assert!(!r.succeeded);
    assert_eq!(value(&r.responses[0]), Some(Bytes::from("1")));
    assert_eq!(r.revision, before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_of_reads_takes_no_log_entry() {
    let cluster = LocalCluster::start(3).await;
    let c = cluster.client();
    let rev =
        c.put_batch(vec![(Bytes::from("r1"), Bytes::from("a")), (Bytes::from("r2"), Bytes::from("b"))]).await.unwrap();
    let leader = cluster.wait_for_leader(std::time::Duration::from_secs(10)).await;
    let addr = cluster.node(leader).api.to_string();
    let before = c.status_of(&addr).await.unwrap().commit_index;
    for _ in 0..5 {
        let (kvs, at) = c.get_batch(vec![Bytes::from("r1"), Bytes::from("r2")]).await.unwrap();
        assert_eq!(at, rev);
        assert_eq!(
            kvs.iter().map(|kv| kv.as_ref().map(|kv| kv.value.clone())).collect::<Vec<_>>(),
            vec![Some(Bytes::from("a")), Some(Bytes::from("b"))]
        );
    }
    assert_eq!(c.status_of(&addr).await.unwrap().commit_index, before, "served by ReadIndex, not the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_and_the_batch_cas() {
    let cluster = LocalCluster::start(3).await;
    let c = cluster.client();
    let pairs = |v: &str| {
        vec![(Bytes::from("b1"), Bytes::from(v.to_string())), (Bytes::from("b2"), Bytes::from(v.to_string()))]
    };
    let rev = c.put_batch(pairs("1")).await.unwrap();
    let (kvs, at) = c.get_batch(vec![Bytes::from("b1"), Bytes::from("b2"), Bytes::from("none")]).await.unwrap();
    assert_eq!(at, rev);
    assert_eq!(
        kvs.iter().map(|kv| kv.as_ref().map(|kv| kv.mod_revision)).collect::<Vec<_>>(),
        vec![Some(rev), Some(rev), None]
    );
    // Nothing changed since `rev`: the batch applies; then it is stale.
    let (done, newer) = c.put_batch_if_unchanged(pairs("2"), rev).await.unwrap();
    assert!(done && newer == rev + 1);
    let (done, _) = c.put_batch_if_unchanged(pairs("3"), rev).await.unwrap();
    assert!(!done, "b1 and b2 changed after {rev}");
    assert_eq!(c.get("b1").await.unwrap().unwrap().value, Bytes::from("2"));
    assert_eq!(c.delete_batch(vec![Bytes::from("b1"), Bytes::from("b2"), Bytes::from("none")]).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversize_transactions_are_refused_with_the_reason() {
    let cluster = LocalCluster::start(3).await;
    let c = cluster.client();
    let refused = |e: ClientError| match e {
        ClientError::Rejected(s) if s.code() == tonic::Code::InvalidArgument => s.message().to_string(),
        other => panic!("expected INVALID_ARGUMENT, got {other}"),
    };
    let many = proto::TxnRequest { success: vec![txn::get("k"); 129], ..Default::default() };
    assert!(refused(c.txn(many).await.unwrap_err()).contains("129 success operations; the limit is 128"));
    let big = proto::TxnRequest { success: vec![txn::put("k", vec![0u8; 1 << 20]); 2], ..Default::default() };
    assert!(refused(c.txn(big).await.unwrap_err()).contains("the limit is 1572864 bytes"));
    let empty_key = proto::TxnRequest { compares: vec![txn::absent("")], ..Default::default() };
    assert!(refused(c.txn(empty_key).await.unwrap_err()).contains("compare 0: the key is empty"));
    assert_eq!(c.get("k").await.unwrap(), None, "nothing was applied");
}

#[test]
fn the_txn_cli_reads_arguments_and_json() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(LocalCluster::start(3));
    let (code, out, err) =
        cluster.cli(&["txn", "--if", "absent(k)", "--then", "put k v 1", "--then", "get k", "--else", "get k"]);
    assert_eq!(code, 0, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["succeeded"], true);
    assert_eq!(answer["responses"][1]["get"]["value"], "v 1");
    // Again: the compare fails, the else branch answers, exit 1.
    let (code, out, _) = cluster.cli(&["txn", "--if", "absent(k)", "--then", "put k w", "--else", "get k"]);
    assert_eq!(code, 1);
    assert!(out.contains("\"succeeded\":false"), "{out}");
    let file = std::env::temp_dir().join(format!("capukv-txn-{}.json", std::process::id()));
    std::fs::write(&file, r#"{"if": ["mod(k) > 0", "version(k) = 1"], "then": ["append k !", "range a z"]}"#).unwrap();
    let (code, out, err) = cluster.cli(&["txn", "--file", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"v 1!\""), "{out}");
    let (code, _, err) = cluster.cli(&["txn", "--if", "mod(k) ~ 3"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown comparison"), "{err}");
}
