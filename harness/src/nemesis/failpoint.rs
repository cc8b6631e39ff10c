//! Failpoints (`--nemesis failpoint`): one armed at a time in the leader or
//! a follower of a server built with the `failpoints` feature, through its
//! Cluster service: a crash exactly in a window (after the leader sent
//! entries it has not written, after persisting and before applying, in a
//! snapshot's save, send or install), a stall there, or a failed write. The
//! snapshot windows are reached by cutting a follower off until the leader
//! compacted its log past it, then letting it back to catch up by snapshot.
//! The heal disarms it and starts the node again if it crashed.

use std::time::Duration;

use rand::Rng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::kind::{Draw, FaultKind, names};
use super::{Fault, Nemesis, status_of, wait_until_compacted_past};
use crate::options::{NemesisChoice, RunOptions};

/// What a failpoint fault arms, where, and after what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailpointFault {
    /// The failpoint's name (`capukv failpoints` lists them).
    pub point: String,
    pub action: FailAction,
    pub target: FailTarget,
    /// Isolate a follower until the leader has compacted past it, so that
    /// it must catch up by snapshot, then heal: the snapshot failpoints are
    /// reached only that way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub snapshot_catch_up: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum FailAction {
    /// Crash exactly there (once).
    Panic,
    /// Stall there every time it is passed: a slow disk or a stuck thread.
    Sleep { ms: u64 },
    /// Fail there once as a failed disk would (the node stops).
    Error,
}

impl FailAction {
    /// The `fail` crate's action string.
    pub fn actions(&self) -> String {
        match self {
            FailAction::Panic => "1*panic".into(),
            FailAction::Sleep { ms } => format!("sleep({ms})"),
            FailAction::Error => "1*return".into(),
        }
    }
}

/// Which node a failpoint is armed in, resolved when it strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailTarget {
    Leader,
    /// A follower, the one whose id comes first after the leader's.
    Follower,
}

/// A failpoint fault: the crash windows in turn (each run sees several),
/// now and then a stall or a failed write instead.
fn draw(turn: usize, rng: &mut SmallRng) -> FailpointFault {
    use FailTarget::{Follower, Leader};
    use capukv::failpoints as fp;
    // (failpoint, where, reached only by a snapshot catch-up)
    const CRASHES: [(&str, FailTarget, bool); 12] = [
        (fp::RAFT_AFTER_SEND_BEFORE_PERSIST, Leader, false),
        (fp::RAFT_BEFORE_PERSIST, Follower, false),
        (fp::RAFT_AFTER_PERSIST, Leader, false),
        (fp::RAFT_AFTER_PERSIST, Follower, false),
        (fp::APPLY_BEFORE_ENTRIES, Leader, false),
        (fp::APPLY_AFTER_ENTRIES, Leader, false),
        (fp::SNAPSHOT_BEFORE_INSTALL, Follower, true),
        (fp::SNAPSHOT_AFTER_INSTALL, Follower, true),
        (fp::SNAPSHOT_AFTER_RECEIVE, Follower, true),
        (fp::SNAPSHOT_BEFORE_SEND, Leader, true),
        (fp::SNAPSHOT_AFTER_SAVE, Leader, false),
        (fp::RAFT_BEFORE_COMPACT, Follower, false),
    ];
    let either = |rng: &mut SmallRng| if rng.random_bool(0.5) { Leader } else { Follower };
    match rng.random_range(0..6) {
        // A slow disk, or slow reads, on the leader or a follower.
        0 => {
            let point =
                [fp::RAFT_BEFORE_PERSIST, fp::READ_BEFORE_ANSWER, fp::APPLY_BEFORE_ENTRIES][rng.random_range(0..3)];
            FailpointFault {
                point: point.into(),
                action: FailAction::Sleep { ms: rng.random_range(50..=1500) },
                target: either(rng),
                snapshot_catch_up: false,
            }
        }
        // A write that fails on one node's disk.
        1 => FailpointFault {
            point: fp::RAFT_BEFORE_PERSIST.into(),
            action: FailAction::Error,
            target: either(rng),
            snapshot_catch_up: false,
        },
        _ => {
            let (point, target, snapshot_catch_up) = CRASHES[(turn + rng.random_range(0..2)) % CRASHES.len()];
            FailpointFault { point: point.into(), action: FailAction::Panic, target, snapshot_catch_up }
        }
    }
}

/// The node a failpoint goes to: the leader, or the follower whose id
/// comes first after the leader's (so that the seed's choice repeats).
fn target(n: &Nemesis, target: FailTarget, leader: Option<u64>) -> Option<u64> {
    let count = n.runtime.nodes().len() as u64;
    let leader = leader?;
    Some(match target {
        FailTarget::Leader => leader,
        FailTarget::Follower if count > 1 => leader % count + 1,
        FailTarget::Follower => return None,
    })
}

/// One Failpoint call to node `id`, from the nemesis's blocking thread.
fn ask(n: &Nemesis, id: u64, point: &str, actions: &str) -> anyhow::Result<Vec<(String, String)>> {
    let addr = n.runtime.nodes()[(id - 1) as usize].api_addr.clone();
    let mut client = n.runtime.access().client([addr.clone()])?;
    client.timeout = Duration::from_secs(2);
    Ok(tokio::runtime::Handle::current().block_on(client.failpoint(&addr, point, actions))?)
}

/// Disarms every failpoint armed, and starts again the nodes that crashed.
pub fn disarm_all(n: &Nemesis) -> anyhow::Result<Value> {
    let armed: Vec<(u64, String)> = std::mem::take(&mut *n.armed.lock().expect("not poisoned")).into_iter().collect();
    let mut restarted = Vec::new();
    for (node, point) in armed {
        if n.runtime.is_running(node) {
            if let Err(e) = ask(n, node, &point, "off") {
                tracing::warn!(node, point, error = %e, "could not disarm the failpoint");
            }
        } else {
            // A node that crashed there has nothing armed any more.
            n.runtime.start(node)?;
            restarted.push(node);
        }
    }
    Ok(json!({"restarted": names(&restarted)}))
}

pub struct FailpointKind;

impl FaultKind for FailpointKind {
    fn choice(&self) -> NemesisChoice {
        NemesisChoice::Failpoint
    }
    fn name(&self) -> &'static str {
        "failpoint"
    }
    fn events(&self) -> (&'static str, &'static str) {
        ("start-failpoint", "stop-failpoint")
    }
    fn colour(&self) -> &'static str {
        "#d4a017"
    }
    fn network(&self) -> bool {
        false
    }
    fn overlaps(&self) -> bool {
        // A snapshot catch-up cuts and heals the network itself, and a
        // crash needs its node up: it strikes alone.
        false
    }
    fn in_all(&self, options: &RunOptions) -> bool {
        options.failpoints()
    }
    fn draw(&self, _: &Draw, turn: usize, rng: &mut SmallRng) -> Fault {
        Fault::Failpoint { failpoint: draw(turn, rng) }
    }
    fn needs_leader(&self, _: &Fault) -> bool {
        true
    }
    /// Arms the failpoint in its target; with a snapshot catch-up, first
    /// cuts a follower off until the leader compacted its log past the
    /// follower's applied index (bounded), then lets it back.
    fn strike(&self, n: &Nemesis, fault: &Fault, leader: Option<u64>) -> anyhow::Result<Value> {
        let Fault::Failpoint { failpoint: f } = fault else { unreachable!("a failpoint fault") };
        let Some(node) = target(n, f.target, leader) else {
            return Ok(json!({"skipped": "no leader to aim at"}));
        };
        if !n.runtime.is_running(node) {
            return Ok(json!({"skipped": format!("n{node} is down")}));
        }
        let actions = f.action.actions();
        let mut done = json!({"node": format!("n{node}"), "point": f.point, "actions": actions});
        n.armed.lock().expect("not poisoned").insert((node, f.point.clone()));
        if let Err(e) = ask(n, node, &f.point, &actions) {
            // A failpoint on a hot path may crash its node before the answer
            // is out; any other failure to arm is recorded, not fatal.
            std::thread::sleep(Duration::from_millis(500));
            if n.runtime.is_running(node) {
                done["skipped"] = json!(format!("arming failed: {e}"));
                return Ok(done);
            }
            done["crashed_before_answering"] = json!(true);
        }
        if f.snapshot_catch_up {
            let (leader, follower) = match f.target {
                FailTarget::Leader => (node, target(n, FailTarget::Follower, Some(node))),
                FailTarget::Follower => (leader.expect("resolved above"), Some(node)),
            };
            if let Some(follower) = follower {
                n.cut_off(follower)?;
                // Read once, just after the cut: it cannot move while cut off.
                let applied = status_of(n, follower).map_or(0, |s| s.applied_index);
                let due = wait_until_compacted_past(n, Some(leader), applied, Duration::from_secs(8)).is_some();
                n.heal_network()?;
                done["cut_off"] = json!(format!("n{follower}"));
                done["snapshot_due"] = json!(due);
            }
        }
        Ok(done)
    }
    fn heal(&self, n: &Nemesis, _: &Fault) -> anyhow::Result<Value> {
        disarm_all(n)
    }
}
