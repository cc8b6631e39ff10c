//! Membership changes as a fault: a voter (the leader every other time) is
//! made a learner, so the cluster runs one voter short, the old leader
//! steps down, and quorums are counted over a changed configuration while
//! other faults strike; the heal promotes it back once it has caught up.
//! Demotion keeps the node's id and data: a removed id is retired for good
//! (see `capukv::raft::membership`), and the harness's nodes are fixed.

use std::time::{Duration, Instant};

use capukv::proto::{MemberChangeRequest, member_change_request::Kind};
use rand::Rng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::kind::{Draw, FaultKind};
use super::{Fault, Nemesis};
use crate::options::{NemesisChoice, RunOptions};

/// Which voter a membership fault demotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberFault {
    /// Whoever leads when it strikes.
    DemoteLeader,
    DemoteNode {
        node: u64,
    },
}

/// How long the heal keeps asking to promote a learner that has not yet
/// caught up (the server refuses until it has).
const PROMOTE_WITHIN: Duration = Duration::from_secs(30);

pub struct MemberKind;

impl FaultKind for MemberKind {
    fn choice(&self) -> NemesisChoice {
        NemesisChoice::Member
    }
    fn name(&self) -> &'static str {
        "member"
    }
    fn events(&self) -> (&'static str, &'static str) {
        ("demote", "promote")
    }
    fn colour(&self) -> &'static str {
        "#2a9d8f"
    }
    fn network(&self) -> bool {
        false
    }
    fn in_all(&self, _: &RunOptions) -> bool {
        true
    }
    fn draw(&self, ctx: &Draw, turn: usize, rng: &mut SmallRng) -> Fault {
        let member = if turn.is_multiple_of(2) {
            MemberFault::DemoteLeader
        } else {
            MemberFault::DemoteNode { node: rng.random_range(1..=ctx.nodes) }
        };
        Fault::Member { member }
    }
    fn needs_leader(&self, fault: &Fault) -> bool {
        matches!(fault, Fault::Member { member: MemberFault::DemoteLeader })
    }
    fn strike(&self, n: &Nemesis, fault: &Fault, leader: Option<u64>) -> anyhow::Result<Value> {
        let Some(node) = victim(fault, leader) else {
            return Ok(json!({"node": Value::Null, "note": "no leader to demote"}));
        };
        // Demoting a live voter must leave a majority of live voters, or
        // the cluster could never promote it back (say, with a node down
        // for good after refusing its corrupted data).
        let list = list(n)?;
        let voters: Vec<u64> = list.members.iter().filter(|m| m.role == "voter").map(|m| m.id).collect();
        let live_after = voters.iter().filter(|&&v| v != node && n.runtime.is_running(v)).count();
        if !voters.contains(&node) || !n.runtime.is_running(node) || live_after < voters.len().saturating_sub(1) / 2 + 1
        {
            return Ok(
                json!({"node": format!("n{node}"), "note": "not demoted: not a live voter, or too few live voters would remain", "members": members(&list)}),
            );
        }
        let list = change(n, Kind::Demote, node, Duration::from_secs(10))?;
        Ok(json!({"node": format!("n{node}"), "leader": leader.map(|l| format!("n{l}")), "members": members(&list)}))
    }
    fn heal(&self, n: &Nemesis, fault: &Fault) -> anyhow::Result<Value> {
        // The node the strike demoted: for "the leader", whichever voter of
        // the fixed set is a learner now.
        let learners = learners(&list(n)?);
        let node = match fault {
            Fault::Member { member: MemberFault::DemoteNode { node } } => Some(*node),
            _ => learners.first().copied(),
        };
        let Some(node) = node.filter(|id| learners.contains(id)) else {
            return Ok(
                json!({"node": Value::Null, "note": "no learner to promote (the demotion did not take effect)"}),
            );
        };
        let list = change(n, Kind::Promote, node, PROMOTE_WITHIN)?;
        Ok(json!({"node": format!("n{node}"), "members": members(&list)}))
    }
}

fn victim(fault: &Fault, leader: Option<u64>) -> Option<u64> {
    match fault {
        Fault::Member { member: MemberFault::DemoteLeader } => leader,
        Fault::Member { member: MemberFault::DemoteNode { node } } => Some(*node),
        _ => unreachable!("a membership fault"),
    }
}

/// One change through the leader, retried (the server asks to retry while
/// a change commits or a learner catches up) until `within` passes; done
/// already (an attempt whose answer was lost took effect) counts as done.
/// From a blocking thread.
fn change(n: &Nemesis, kind: Kind, id: u64, within: Duration) -> anyhow::Result<capukv::proto::MemberListResponse> {
    let client = client(n, Duration::from_secs(5))?;
    let request = MemberChangeRequest { kind: kind as i32, id, raft_addr: String::new(), api_addr: String::new() };
    let target = if kind == Kind::Promote { "voter" } else { "learner" };
    let started = Instant::now();
    loop {
        match tokio::runtime::Handle::current().block_on(client.member_change(request.clone())) {
            Ok(list) => return Ok(list),
            Err(e) => {
                if let Ok(list) = list(n)
                    && list.members.iter().any(|m| m.id == id && m.role == target)
                {
                    return Ok(list);
                }
                if started.elapsed() >= within {
                    anyhow::bail!("{kind:?} n{id}: {e}");
                }
                tracing::debug!(node = id, error = %e, "membership change not made yet");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

fn client(n: &Nemesis, timeout: Duration) -> anyhow::Result<capukv::Client> {
    let endpoints: Vec<String> = n.runtime.nodes().iter().map(|node| node.api_addr.clone()).collect();
    let mut client = n.runtime.access().client(endpoints)?;
    client.timeout = timeout;
    Ok(client)
}

/// The configuration as the leader sees it. From a blocking thread.
fn list(n: &Nemesis) -> anyhow::Result<capukv::proto::MemberListResponse> {
    Ok(tokio::runtime::Handle::current().block_on(client(n, Duration::from_secs(10))?.member_list())?)
}

fn learners(list: &capukv::proto::MemberListResponse) -> Vec<u64> {
    list.members.iter().filter(|m| m.role == "learner").map(|m| m.id).collect()
}

/// Promotes back every learner among the run's nodes (a membership fault
/// still in force when the run ends), for the final heal; what it promoted.
pub(crate) fn promote_all(n: &Nemesis) -> anyhow::Result<Vec<u64>> {
    let learners = learners(&list(n)?);
    for &id in &learners {
        change(n, Kind::Promote, id, PROMOTE_WITHIN)?;
    }
    Ok(learners)
}

/// The configuration as the history records it: `{"n1": "voter", ...}`.
fn members(list: &capukv::proto::MemberListResponse) -> Value {
    list.members
        .iter()
        .map(|m| (format!("n{}", m.id), Value::from(m.role.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}
