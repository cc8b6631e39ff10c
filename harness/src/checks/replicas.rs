//! Replica convergence: after the final heal and recovery, every node's
//! state machine (keys, values, revisions, client sessions) must be the same
//! at the same applied index. The harness waits until every reachable node
//! applied what the leader committed, then compares their digests (the
//! `StateHash` Cluster RPC, `capukv status --hash`).
//!
//! Linearizability sees only what clients read; a replica that applied an
//! entry the cluster never committed (a leader that commits alone), or
//! missed one (a snapshot one entry short), may never be read before the run
//! ends. Its digest differs all the same.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::runtime::Access;

use super::{Finding, Outcome};
use crate::runtime::Runtime;

/// One node's answer.
#[derive(Clone, Debug, PartialEq)]
struct Replica {
    role: String,
    term: u64,
    commit: u64,
    applied: u64,
    hash: u64,
    keys: u64,
}

async fn ask(access: &Access, addr: &str) -> Option<Replica> {
    let mut client = access.client([addr.to_string()]).ok()?;
    client.timeout = Duration::from_secs(2);
    let status = client.status_of(addr).await.ok()?;
    let digest = client.state_hash_of(addr).await.ok()?;
    // The digest is taken after the status: its applied index is the one
    // that counts.
    Some(Replica {
        role: status.role,
        term: status.term,
        commit: status.commit_index,
        applied: digest.applied_index,
        hash: digest.hash,
        keys: digest.keys,
    })
}

/// The leader's commit index (the leader of the highest term).
fn leader_commit(replicas: &BTreeMap<u64, Replica>) -> Option<u64> {
    replicas.values().filter(|r| r.role == "leader").max_by_key(|r| r.term).map(|r| r.commit)
}

/// Whether every replica applied exactly what the leader committed.
fn settled(replicas: &BTreeMap<u64, Replica>) -> bool {
    leader_commit(replicas).is_some_and(|c| replicas.values().all(|r| r.applied == c))
}

/// Waits up to `within` for the replicas to settle, then compares them.
pub async fn check(runtime: &dyn Runtime, within: Duration) -> Finding {
    let deadline = Instant::now() + within;
    let mut previous: Option<BTreeMap<u64, Replica>> = None;
    let replicas = loop {
        let mut now = BTreeMap::new();
        for node in runtime.nodes() {
            if runtime.is_running(node.id)
                && let Some(r) = ask(runtime.access(), &node.api_addr).await
            {
                now.insert(node.id, r);
            }
        }
        // Settled twice in a row with nothing moving: nothing is in flight.
        let stable = previous.as_ref().is_some_and(|p| p == &now);
        if (stable && settled(&now)) || Instant::now() >= deadline {
            break now;
        }
        previous = Some(now);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    judge(runtime.nodes().len(), &replicas)
}

fn judge(nodes: usize, replicas: &BTreeMap<u64, Replica>) -> Finding {
    const CHECK: &str = "replica-convergence";
    let mut details: Vec<String> = replicas
        .iter()
        .map(|(id, r)| {
            format!(
                "n{id}: {} term {}, commit {}, applied {}, state {:016x} ({} keys)",
                r.role, r.term, r.commit, r.applied, r.hash, r.keys
            )
        })
        .collect();
    if replicas.len() < nodes {
        details.push(format!("{} of {nodes} nodes did not answer", nodes - replicas.len()));
    }
    let Some(commit) = leader_commit(replicas) else {
        return Finding::new(CHECK, Outcome::Skipped, "no leader at the end: replicas not compared", details);
    };
    let ahead: Vec<String> =
        replicas.iter().filter(|(_, r)| r.applied > commit).map(|(id, _)| format!("n{id}")).collect();
    if !ahead.is_empty() {
        let summary = format!(
            "{} applied entries beyond the leader's commit index {commit}: entries the cluster never committed",
            ahead.join(", ")
        );
        return Finding::new(CHECK, Outcome::Failed, summary, details);
    }
    let at_commit: Vec<(u64, &Replica)> =
        replicas.iter().filter(|(_, r)| r.applied == commit).map(|(&id, r)| (id, r)).collect();
    let mut by_hash: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (id, r) in &at_commit {
        by_hash.entry(r.hash).or_default().push(format!("n{id}"));
    }
    if by_hash.len() > 1 {
        let groups: Vec<String> =
            by_hash.iter().map(|(hash, ids)| format!("{} have {hash:016x}", ids.join(", "))).collect();
        let summary = format!("replicas differ at applied index {commit}: {}", groups.join("; "));
        return Finding::new(CHECK, Outcome::Failed, summary, details);
    }
    // Everything healed long ago and no client writes: a replica that has
    // still not applied what the leader committed cannot follow its log
    // (it diverged, or replication is stuck).
    let behind: Vec<String> =
        replicas.iter().filter(|(_, r)| r.applied < commit).map(|(id, r)| format!("n{id} at {}", r.applied)).collect();
    if !behind.is_empty() {
        let summary = format!(
            "{} never caught up with the leader's commit index {commit} after the final heal",
            behind.join(", ")
        );
        return Finding::new(CHECK, Outcome::Failed, summary, details);
    }
    if at_commit.len() < 2 {
        return Finding::new(CHECK, Outcome::Skipped, "fewer than two replicas answered", details);
    }
    let summary = format!("all {} replicas agree at applied index {commit}", at_commit.len());
    Finding::new(CHECK, Outcome::Passed, summary, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(role: &str, commit: u64, applied: u64, hash: u64) -> Replica {
        Replica { role: role.into(), term: 2, commit, applied, hash, keys: 3 }
    }

    #[test]
    fn replicas_that_differ_at_one_index_fail() {
        let same = BTreeMap::from([(1, replica("leader", 10, 10, 7)), (2, replica("follower", 10, 10, 7))]);
        assert_eq!(judge(2, &same).outcome, Outcome::Passed);
        let differ = BTreeMap::from([
            (1, replica("leader", 10, 10, 7)),
            (2, replica("follower", 10, 10, 7)),
            (3, replica("follower", 10, 10, 8)),
        ]);
        let f = judge(3, &differ);
        assert_eq!(f.outcome, Outcome::Failed);
        assert!(f.summary.contains("n3 have"), "{}", f.summary);
    }

    #[test]
    fn a_replica_that_applied_past_the_commit_index_fails() {
        let r = BTreeMap::from([(1, replica("leader", 10, 10, 7)), (2, replica("follower", 12, 12, 9))]);
        let f = judge(2, &r);
        assert_eq!(f.outcome, Outcome::Failed);
        assert!(f.summary.starts_with("n2 applied entries beyond"), "{}", f.summary);
        let stuck = BTreeMap::from([(1, replica("leader", 10, 10, 7)), (2, replica("follower", 8, 8, 9))]);
        let f = judge(2, &stuck);
        assert_eq!(f.outcome, Outcome::Failed);
        assert!(f.summary.contains("n2 at 8 never caught up"), "{}", f.summary);
        let no_leader = BTreeMap::from([(2, replica("follower", 12, 12, 9))]);
        assert_eq!(judge(2, &no_leader).outcome, Outcome::Skipped);
    }
}
