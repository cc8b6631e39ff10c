//! Membership changes as a fault, in turn:
//!
//! - the leader demoted to a learner (it steps down once that commits);
//! - another voter demoted;
//! - a voter replaced by a wiped one: removed (its id retires for good, see
//!   `capukv::raft::membership`), its machine's data directory wiped, and
//!   the machine added back under a new id as a learner, started with
//!   `--join` (where the runtime can: the netns runtime without TLS).
//!
//! Each leaves the cluster a voter short while other faults strike; the
//! heal promotes the learner once it has caught up, restoring the size.

use std::time::{Duration, Instant};

use capukv::proto::{MemberChangeRequest, MemberListResponse, member_change_request::Kind};
use rand::Rng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::kind::{Draw, FaultKind};
use super::{Fault, Nemesis};
use crate::options::{NemesisChoice, RunOptions};

/// What a membership fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberFault {
    /// Demote whoever leads when it strikes.
    DemoteLeader,
    /// Demote the member on the runtime's node `node`.
    DemoteNode { node: u64 },
    /// Remove the member on node `node`, wipe the node, and add it back as
    /// a new member.
    Replace { node: u64 },
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
        let node = rng.random_range(1..=ctx.nodes);
        let member = match turn % 3 {
            0 => MemberFault::DemoteLeader,
            1 => MemberFault::DemoteNode { node },
            _ => MemberFault::Replace { node },
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
        // Taking a live voter away must leave a majority of live voters, or
        // the cluster could never promote one back (say, with a node down
        // for good after refusing its corrupted data).
        let list = list(n)?;
        let Some(member) = member_on(n, &list, node) else {
            return Ok(json!({"node": format!("n{node}"), "note": "no member runs on this node"}));
        };
        let voters: Vec<u64> = list.members.iter().filter(|m| m.role == "voter").map(|m| m.id).collect();
        let live = |id: u64| node_of(n, &list, id).is_some_and(|slot| n.runtime.is_running(slot));
        let live_after = voters.iter().filter(|&&v| v != member && live(v)).count();
        if !voters.contains(&member) || !live(member) || live_after < voters.len().saturating_sub(1) / 2 + 1 {
            let note = "left alone: not a live voter, or too few live voters would remain";
            return Ok(json!({"node": format!("n{node}"), "note": note, "members": members(n, &list)}));
        }
        if let Fault::Member { member: MemberFault::Replace { .. } } = fault {
            return replace(n, node, member);
        }
        let list = change(n, Kind::Demote, member, Duration::from_secs(10), None)?;
        let leader = leader.map(|l| format!("n{l}"));
        Ok(json!({"node": format!("n{node}"), "member": member, "leader": leader, "members": members(n, &list)}))
    }
    fn heal(&self, n: &Nemesis, fault: &Fault) -> anyhow::Result<Value> {
        // The member the strike made a learner: on its node, or (for "the
        // leader") whichever learner there is.
        let list = list(n)?;
        let learners = learners(&list);
        let wanted = match fault {
            Fault::Member { member: MemberFault::DemoteNode { node } | MemberFault::Replace { node } } => {
                member_on(n, &list, *node)
            }
            _ => learners.first().copied(),
        };
        let Some(member) = wanted.filter(|id| learners.contains(id)) else {
            return Ok(json!({"node": Value::Null, "note": "no learner to promote (the change did not take effect)"}));
        };
        let list = change(n, Kind::Promote, member, PROMOTE_WITHIN, None)?;
        let node = node_of(n, &list, member).map(|slot| format!("n{slot}"));
        Ok(json!({"node": node, "member": member, "members": members(n, &list)}))
    }
}

fn victim(fault: &Fault, leader: Option<u64>) -> Option<u64> {
    match fault {
        Fault::Member { member: MemberFault::DemoteLeader } => leader,
        Fault::Member { member: MemberFault::DemoteNode { node } | MemberFault::Replace { node } } => Some(*node),
        _ => unreachable!("a membership fault"),
    }
}

/// The Raft id of the member running on the runtime's node `node` (by its
/// Raft address: a replacement runs a new id on the same node).
fn member_on(n: &Nemesis, list: &MemberListResponse, node: u64) -> Option<u64> {
    let addr = &n.runtime.nodes()[(node - 1) as usize].raft_addr;
    list.members.iter().find(|m| &m.raft_addr == addr).map(|m| m.id)
}

/// The runtime's node that member `id` runs on.
fn node_of(n: &Nemesis, list: &MemberListResponse, id: u64) -> Option<u64> {
    let addr = &list.members.iter().find(|m| m.id == id)?.raft_addr;
    n.runtime.nodes().iter().find(|node| &node.raft_addr == addr).map(|node| node.id)
}

/// Removes `member` from node `node` (still up, so that the removal can
/// commit under the configuration that counts it), then stops and wipes the
/// node and adds it back as a learner under a new id, started with `--join`;
/// the heal promotes it. Where the runtime cannot run a new member (Docker,
/// TLS), the member is only demoted.
fn replace(n: &Nemesis, node: u64, member: u64) -> anyhow::Result<Value> {
    if !n.runtime.can_replace() {
        let list = change(n, Kind::Demote, member, Duration::from_secs(10), None)?;
        let note = "demoted instead of replaced: this run cannot start a new member";
        return Ok(json!({"node": format!("n{node}"), "member": member, "note": note, "members": members(n, &list)}));
    }
    let info = n.runtime.nodes()[(node - 1) as usize].clone();
    let new = n.next_member.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    change(n, Kind::Remove, member, Duration::from_secs(10), None)?;
    n.runtime.replace(node, new)?;
    let list = change(n, Kind::AddLearner, new, Duration::from_secs(10), Some((&info.raft_addr, &info.api_addr)))?;
    n.runtime.start(node)?;
    Ok(json!({"node": format!("n{node}"), "removed": member, "added": new, "members": members(n, &list)}))
}

/// One change through the leader, retried (the server asks to retry while
/// a change commits or a learner catches up) until `within` passes; done
/// already (an attempt whose answer was lost took effect) counts as done.
/// From a blocking thread.
fn change(
    n: &Nemesis,
    kind: Kind,
    id: u64,
    within: Duration,
    addrs: Option<(&str, &str)>,
) -> anyhow::Result<MemberListResponse> {
    let client = client(n, Duration::from_secs(5))?;
    let (raft_addr, api_addr) = addrs.map_or((String::new(), String::new()), |(r, a)| (r.into(), a.into()));
    let request = MemberChangeRequest { kind: kind as i32, id, raft_addr, api_addr };
    // What the member is once the change took effect (`None`: gone).
    let target = match kind {
        Kind::Promote | Kind::Add => Some("voter"),
        Kind::Demote | Kind::AddLearner => Some("learner"),
        Kind::Remove => None,
    };
    let started = Instant::now();
    loop {
        match tokio::runtime::Handle::current().block_on(client.member_change(request.clone())) {
            Ok(list) => return Ok(list),
            Err(e) => {
                // A demotion the leader refuses because the member is no
                // voter is done: an attempt whose answer was lost made it
                // (or the configuration moved on). Only the list is wanted.
                let done = kind == Kind::Demote
                    && matches!(&e, capukv::ClientError::Rejected(s)
                        if s.code() == tonic::Code::InvalidArgument && s.message().contains("is not a voter"));
                if let Ok(list) = list(n)
                    && (done || list.members.iter().find(|m| m.id == id).map(|m| m.role.as_str()) == target)
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
fn list(n: &Nemesis) -> anyhow::Result<MemberListResponse> {
    Ok(tokio::runtime::Handle::current().block_on(client(n, Duration::from_secs(10))?.member_list())?)
}

fn learners(list: &MemberListResponse) -> Vec<u64> {
    list.members.iter().filter(|m| m.role == "learner").map(|m| m.id).collect()
}

/// Promotes back every learner among the run's nodes (a membership fault
/// still in force when the run ends), for the final heal: every one whose
/// node runs, each tried; what it promoted.
pub(crate) fn promote_all(n: &Nemesis) -> anyhow::Result<Vec<u64>> {
    let list = list(n)?;
    let mut promoted = Vec::new();
    let mut failed = Vec::new();
    for id in learners(&list) {
        if !node_of(n, &list, id).is_some_and(|node| n.runtime.is_running(node)) {
            continue;
        }
        match change(n, Kind::Promote, id, PROMOTE_WITHIN, None) {
            Ok(_) => promoted.push(id),
            Err(e) => failed.push(e.to_string()),
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("promoting learners back: {}", failed.join("; "));
    }
    Ok(promoted)
}

/// The configuration as the history records it, by the runtime's node
/// names: `{"n1": "voter", "n3 (id 6)": "learner", ...}` (a replacement
/// runs a new Raft id on its node).
fn members(n: &Nemesis, list: &MemberListResponse) -> Value {
    list.members
        .iter()
        .map(|m| {
            let name = match node_of(n, list, m.id) {
                Some(node) if node == m.id => format!("n{node}"),
                Some(node) => format!("n{node} (id {})", m.id),
                None => format!("id {}", m.id),
            };
            (name, Value::from(m.role.clone()))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
