//! Who is in the cluster, changed while it serves: a learner added and
//! started with `--join` catches up and is promoted, a voter (the leader)
//! is removed, removed ids are never reused, and a founder whose disk was
//! lost is refused before it can vote again.

mod common;

use std::time::Duration;

use common::{LocalCluster, eventually};

fn member_json(cluster: &LocalCluster, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "member"];
    all.extend_from_slice(args);
    let (code, out, err) = cluster.cli(&all);
    assert_eq!(code, 0, "member {args:?}: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("member {args:?} printed {out:?}: {e}"))
}

fn roles(list: &serde_json::Value) -> Vec<(u64, String)> {
    list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_u64().unwrap(), m["role"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_learner_joins_catches_up_is_promoted_and_the_leader_is_removed() {
    let mut cluster = LocalCluster::start(3).await;
    let client = cluster.client();
    for i in 0..50 {
        client.put(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    let id = cluster.new_node();
    let (raft, api) = (cluster.node(id).raft.clone(), cluster.node(id).api.clone());
    let list = member_json(&cluster, &["add-learner", &id.to_string(), "--raft-addr", &raft, "--api-addr", &api]);
    assert!(roles(&list).contains(&(id, "learner".into())), "{list}");
    cluster.start_node(id);
    // It catches up from the leader, as a learner.
    let leader_commit =
        client.status_of(&cluster.node(cluster.leader().await.unwrap()).api).await.unwrap().commit_index;
    let client = std::sync::Arc::new(client);
    eventually(Duration::from_secs(20), "the learner applies what the leader committed", || {
        let (client, api) = (client.clone(), api.clone());
        async move { client.status_of(&api).await.is_ok_and(|s| s.applied_index >= leader_commit) }
    })
    .await;
    let status = client.status_of(&api).await.unwrap();
    assert_eq!(status.role, "follower");
    assert!(status.members.iter().any(|m| m.id == id && m.role == "learner"), "{status:?}");
    let list = member_json(&cluster, &["list"]);
    let learner = list["members"].as_array().unwrap().iter().find(|m| m["id"] == id).unwrap().clone();
    assert!(learner["match_index"].as_u64().unwrap() >= leader_commit, "the leader reports its progress: {list}");

    let list = member_json(&cluster, &["promote", &id.to_string()]);
    assert!(roles(&list).contains(&(id, "voter".into())), "{list}");

    // The leader removes itself: it steps down once that is committed, and
    // the four... three voters left elect another.
    let old = cluster.leader().await.unwrap();
    let list = member_json(&cluster, &["remove", &old.to_string()]);
    assert!(!roles(&list).iter().any(|(m, _)| *m == old), "{list}");
    let client = std::sync::Arc::new(
        capukv::Client::new(cluster.nodes.iter().filter(|n| n.id != old).map(|n| n.api.clone()).collect::<Vec<_>>())
            .unwrap(),
    );
    eventually(Duration::from_secs(20), "the remaining voters elect a leader and serve", || {
        let client = client.clone();
        async move { client.put("after", "removal").await.is_ok() }
    })
    .await;
    let status = client.status_of(&cluster.node(old).api).await.unwrap();
    assert_ne!(status.role, "leader", "the removed node leads no more");
    let log = std::fs::read_to_string(&cluster.node(old).log).unwrap();
    assert!(log.contains("stepping down: the change removing this node from the voters is committed"), "says why");
    // The new member serves the data written before it joined.
    assert_eq!(client.get("k7").await.unwrap().map(|v| v.value), Some("v7".into()));

    // A removed id never comes back, not even as a learner.
    let (raft, api) = (cluster.node(old).raft.clone(), cluster.node(old).api.clone());
    let mut args = vec!["--endpoints".to_string(), cluster.node(id).api.clone()];
    args.extend(
        ["member", "add-learner", &old.to_string(), "--raft-addr", &raft, "--api-addr", &api].map(String::from),
    );
    let out = std::process::Command::new(common::BIN).args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("never reused"), "{err}");

    // The member that joined is a voter now: should its disk die, it may
    // not come back empty under its id, --join or not (the old leader, which
    // saw it acknowledge, is gone: no one could vouch for it either way).
    cluster.kill(id);
    let dir = cluster.node(id).dir.clone();
    std::fs::remove_dir_all(&dir).unwrap();
    let out = common::output_within(&mut cluster.server_command(id, &dir), Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused: {err}");
    assert!(err.contains("is a voter") && err.contains("new id") && err.contains("member demote"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_founder_that_lost_its_disk_is_refused_and_told_how_to_come_back() {
    let mut cluster = LocalCluster::start(3).await;
    cluster.client().put("acknowledged", "by all three").await.unwrap();
    let leader = cluster.leader().await.unwrap();
    let victim = if leader == 3 { 2 } else { 3 };
    // Let every node acknowledge something, so the leader saw it take part.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill(victim);
    let dir = cluster.node(victim).dir.clone();
    std::fs::remove_dir_all(&dir).unwrap();
    let out = common::output_within(&mut cluster.server_command(victim, &dir), Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused: {err}");
    assert!(err.contains("took part in this cluster before"), "{err}");
    assert!(err.contains("--join") && err.contains("member remove"), "says what to do: {err}");
    cluster.client().put("still", "serving").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn joining_needs_the_node_to_be_added_first() {
    let mut cluster = LocalCluster::start(3).await;
    let id = cluster.new_node();
    let dir = cluster.node(id).dir.clone();
    let out = common::output_within(&mut cluster.server_command(id, &dir), Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is not a member") && err.contains("member add-learner"), "{err}");
}

/// The operator's way back for a node whose disk died, end to end with the
/// CLI: it is refused under its old id, removed, and its machine joins
/// again under a new id as a learner, is promoted, and the cluster has its
/// size back and serves what was written before.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_disk_died_is_replaced_under_a_new_id_with_the_cli() {
    let mut cluster = LocalCluster::start(3).await;
    let client = cluster.client();
    for i in 0..20 {
        client.put(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    let leader = cluster.leader().await.unwrap();
    let dead = if leader == 3 { 2 } else { 3 };
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill(dead);
    std::fs::remove_dir_all(&cluster.node(dead).dir).unwrap();
    let dir = cluster.node(dead).dir.clone();
    let out = common::output_within(&mut cluster.server_command(dead, &dir), Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "the old id may not come back empty");

    member_json(&cluster, &["remove", &dead.to_string()]);
    let new = cluster.new_node();
    let (raft, api) = (cluster.node(new).raft.clone(), cluster.node(new).api.clone());
    member_json(&cluster, &["add-learner", &new.to_string(), "--raft-addr", &raft, "--api-addr", &api]);
    cluster.start_node(new);
    // Promotion is refused (and retried by the client) until it caught up.
    let promote = ["member", "promote", &new.to_string()].map(String::from);
    eventually(Duration::from_secs(30), "the new node was promoted once it caught up", || {
        let code = cluster.cli(&promote.iter().map(String::as_str).collect::<Vec<_>>()).0;
        async move { code == 0 }
    })
    .await;
    let list = member_json(&cluster, &["list"]);
    let mut voters: Vec<u64> = roles(&list).into_iter().filter(|(_, role)| role == "voter").map(|(id, _)| id).collect();
    voters.sort();
    let mut want: Vec<u64> = [1, 2, 3, new].into_iter().filter(|&id| id != dead).collect();
    want.sort();
    assert_eq!(voters, want, "three voters again, the new one among them: {list}");
    // With the dead id's endpoint gone, the cluster serves, old data included.
    let client =
        capukv::Client::new(cluster.nodes.iter().filter(|n| n.id != dead).map(|n| n.api.clone()).collect::<Vec<_>>())
            .unwrap();
    client.put("after", "replacement").await.unwrap();
    assert_eq!(client.get("k3").await.unwrap().map(|v| v.value), Some("v3".into()));
    let status = client.status_of(&api).await.unwrap();
    assert!(status.applied_index > 20, "the new node applied the old writes: {status:?}");
    assert!(status.members.iter().any(|m| m.id == new && m.role == "voter"), "{status:?}");
}
