//! The nemesis: strikes the scheduled faults through the runtime (processes)
//! and `netem` (the network), records each fault and heal in the history,
//! and heals everything at the end. Each fault kind is one module
//! implementing [`kind::FaultKind`], registered in [`kind::KINDS`].

pub mod clock;
pub mod corrupt;
pub mod failpoint;
pub mod impairment;
pub mod kill;
pub mod kind;
pub mod member;
pub mod partition;
pub mod pause;
pub mod power;
pub mod schedule;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checker::{EventType, Process};
use netem::Netem;
use rand::Rng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use serde_json::json;
use tokio::sync::watch;

use crate::recorder::Recorder;
use crate::runtime::Runtime;
pub use clock::ClockFault;
pub use failpoint::{FailAction, FailTarget, FailpointFault};
pub use impairment::NetemFault;
use kind::names;
pub use schedule::{Fault, Schedule, Step};

/// Applies faults to a cluster. Dropping it heals the network (netem handles heal on drop).
pub struct Nemesis {
    pub(crate) runtime: Arc<dyn Runtime>,
    recorder: Arc<Recorder>,
    seed: u64,
    netems: Mutex<Vec<Option<Netem>>>,
    /// What is in force now, for the progress display.
    pub active: Mutex<Option<String>>,
    /// Failpoints armed and not yet disarmed: (node, failpoint).
    pub(crate) armed: Mutex<BTreeSet<(u64, String)>>,
    /// Nodes whose data directory was corrupted on purpose (their logs may
    /// report it), and those that then refused to start.
    pub corrupted: Mutex<BTreeSet<u64>>,
    pub refused: Mutex<BTreeSet<u64>>,
    /// Kinds that struck at least once.
    pub struck: Mutex<BTreeSet<String>>,
    /// Killed nodes held down until the leader compacts past them: the
    /// index each had applied when it was killed.
    pub(crate) applied_when_killed: Mutex<std::collections::BTreeMap<u64, u64>>,
    /// Network backends in use, by fault kind, for run.json.
    pub backends: Mutex<Vec<String>>,
    /// The Raft id the next replacement member gets: ids are never reused.
    pub(crate) next_member: std::sync::atomic::AtomicU64,
}

/// The node that leads, by the highest term any running node reports.
/// How long a fault aimed at the leader waits for one (an election may be
/// under way when it strikes) before it strikes without.
const LEADER_WAIT: Duration = Duration::from_secs(3);

/// The leader, asked every 200 ms until one answers or `within` passes.
async fn leader_within(runtime: &dyn Runtime, within: Duration) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(leader) = current_leader(runtime).await {
            return Some(leader);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Node `id`'s status, asked of it from a nemesis's blocking thread
/// (`None` if it does not answer within 500 ms).
pub(crate) fn status_of(n: &Nemesis, id: u64) -> Option<capukv::proto::StatusResponse> {
    let addr = n.runtime.nodes()[(id - 1) as usize].api_addr.clone();
    let mut client = n.runtime.access().client([addr.clone()]).ok()?;
    client.timeout = Duration::from_millis(500);
    tokio::runtime::Handle::current().block_on(client.status_of(&addr)).ok()
}

/// Waits (at most `within`) until `leader` (or, given none, whoever leads
/// at each look) has compacted its log past `applied`: a node that applied
/// no more can then catch up only by a snapshot. How long that took, or
/// `None` if it did not come to that. From a blocking thread.
pub(crate) fn wait_until_compacted_past(
    n: &Nemesis,
    leader: Option<u64>,
    applied: u64,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let leader = leader.or_else(|| tokio::runtime::Handle::current().block_on(current_leader(&*n.runtime)));
        if leader.and_then(|l| status_of(n, l)).is_some_and(|s| s.snapshot_index > applied) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// The node (the runtime's, which a replacement's new Raft id does not
/// change) that leads.
pub async fn current_leader(runtime: &dyn Runtime) -> Option<u64> {
    let mut best: Option<(u64, u64)> = None;
    for node in runtime.nodes() {
        let Ok(mut client) = runtime.access().client([node.api_addr.clone()]) else { continue };
        client.timeout = Duration::from_millis(500);
        if let Ok(status) = client.status_of(&node.api_addr).await
            && status.role == "leader"
            && best.is_none_or(|(term, _)| status.term > term)
        {
            best = Some((status.term, node.id));
        }
    }
    best.map(|(_, id)| id)
}

impl Nemesis {
    pub fn new(runtime: Arc<dyn Runtime>, recorder: Arc<Recorder>, seed: u64) -> Nemesis {
        let n = runtime.nodes().len();
        Nemesis {
            runtime,
            recorder,
            seed,
            netems: Mutex::new((0..n).map(|_| None).collect()),
            active: Mutex::new(None),
            armed: Mutex::new(BTreeSet::new()),
            corrupted: Mutex::new(BTreeSet::new()),
            refused: Mutex::new(BTreeSet::new()),
            struck: Mutex::new(BTreeSet::new()),
            applied_when_killed: Mutex::new(std::collections::BTreeMap::new()),
            backends: Mutex::new(Vec::new()),
            next_member: std::sync::atomic::AtomicU64::new(n as u64 + 1),
        }
    }

    pub(crate) fn addr(&self, id: u64) -> Ipv4Addr {
        self.runtime.nodes()[(id - 1) as usize].ip
    }

    /// Runs `f` on node `id`'s netem handle, opening it on first use;
    /// `None` when the node has no network now (a stopped container: there
    /// is nothing to impair, and its next namespace starts clean).
    pub(crate) fn with_netem<T>(
        &self,
        id: u64,
        f: impl FnOnce(&mut Netem) -> netem::Result<T>,
    ) -> anyhow::Result<Option<T>> {
        let mut netems = self.netems.lock().expect("not poisoned");
        let slot = &mut netems[(id - 1) as usize];
        let Some(target) = self.runtime.netns(id) else {
            tracing::info!(node = id, "no network to impair: the node's container is stopped");
            *slot = None;
            return Ok(None);
        };
        // A restarted container has a new namespace: the old handle is useless.
        if slot.as_ref().is_some_and(|h| *h.target() != target) {
            *slot = None;
        }
        if slot.is_none() {
            let options =
                netem::Options { iface: self.runtime.iface().to_string(), seed: self.seed ^ id, ..Default::default() };
            let handle = Netem::open(&target, options)?;
            let mut backends = self.backends.lock().expect("not poisoned");
            if backends.is_empty() {
                *backends = handle
                    .capabilities()
                    .describe()
                    .iter()
                    .map(|(kind, backend)| format!("{kind:?}: {backend}"))
                    .collect();
            }
            *slot = Some(handle);
        }
        Ok(Some(f(slot.as_mut().expect("opened"))?))
    }

    fn record(&self, kind: EventType, f: &str, value: serde_json::Value, error: Option<String>) {
        self.recorder.record(kind, Process::Nemesis, f, None, value, error);
    }

    /// Strikes `fault` through its kind; returns what it did.
    fn strike(&self, fault: &Fault, leader: Option<u64>) -> anyhow::Result<serde_json::Value> {
        kind::of(fault).strike(self, fault, leader)
    }

    /// Heals `fault` through its kind.
    fn heal(&self, fault: &Fault) -> anyhow::Result<serde_json::Value> {
        kind::of(fault).heal(self, fault)
    }

    /// Starts `nodes` again (after a kill or a power failure), but for
    /// those that refused their damaged data directory: they stay down.
    pub(crate) fn start_nodes(&self, nodes: &[u64]) -> anyhow::Result<serde_json::Value> {
        let refused = self.refused.lock().expect("not poisoned").clone();
        let started: Vec<u64> = nodes.iter().copied().filter(|id| !refused.contains(id)).collect();
        for &id in &started {
            self.runtime.start(id)?;
        }
        Ok(json!({"nodes": names(&started)}))
    }

    /// Cuts `node` off from every other node (clients still reach it).
    pub(crate) fn cut_off(&self, node: u64) -> anyhow::Result<()> {
        let n = self.runtime.nodes().len() as u64;
        for (from, cut) in partition::Partition::IsolateLeader.grudge(n, Some(node)) {
            if !cut.is_empty() {
                let peers: Vec<Ipv4Addr> = cut.iter().map(|&p| self.addr(p)).collect();
                self.with_netem(from, |h| h.partition(&peers))?;
            }
        }
        Ok(())
    }

    pub(crate) fn heal_clocks(&self) -> anyhow::Result<()> {
        if self.runtime.has_clocks() {
            for node in self.runtime.nodes() {
                self.runtime.set_clock(node.id, 0.0, 1.0)?;
            }
        }
        Ok(())
    }

    pub(crate) fn heal_network(&self) -> anyhow::Result<()> {
        let mut netems = self.netems.lock().expect("not poisoned");
        for handle in netems.iter_mut().flatten() {
            handle.heal()?;
        }
        Ok(())
    }

    /// Records the invocation `f`, carries out `op` off the async threads and
    /// records how it went; an error carries `what` it was doing.
    async fn act(
        self: &Arc<Self>,
        f: &str,
        invoked: serde_json::Value,
        mark: checker::FaultMark,
        what: String,
        op: impl FnOnce(&Nemesis) -> anyhow::Result<serde_json::Value> + Send + 'static,
    ) -> anyhow::Result<serde_json::Value> {
        self.recorder.record_marked(EventType::Invoke, Process::Nemesis, f, None, invoked, None, Some(mark));
        let me = self.clone();
        match tokio::task::spawn_blocking(move || op(&me)).await? {
            Ok(value) => {
                self.record(EventType::Info, f, value.clone(), None);
                Ok(value)
            }
            Err(e) => {
                self.record(EventType::Info, f, json!(null), Some(e.to_string()));
                Err(e.context(what))
            }
        }
    }

    /// Strikes and heals the schedule's faults at their times, until `stop`;
    /// faults may overlap (the schedule keeps those that would undo each
    /// other apart). A fault in force when `stop` comes is healed by
    /// [`Nemesis::heal_everything`].
    pub async fn run(
        self: Arc<Self>,
        schedule: Schedule,
        start: Instant,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut timeline: Vec<(f64, bool, usize)> = Vec::new();
        for (i, step) in schedule.steps.iter().enumerate() {
            timeline.push((step.at, true, i));
            timeline.push((step.heal_at, false, i));
        }
        // By time; at the same instant a heal goes before a strike.
        timeline.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut in_force: std::collections::BTreeMap<usize, String> = std::collections::BTreeMap::new();
        for (at, strike, i) in timeline {
            let step = &schedule.steps[i];
            if !sleep_until(start + Duration::from_secs_f64(at), &mut stop).await {
                return Ok(()); // the final heal takes it from here
            }
            let (strike_f, heal_f) = step.fault.event_names();
            let fault = step.fault.clone();
            if strike {
                let leader = if kind::of(&step.fault).needs_leader(&step.fault) {
                    leader_within(&*self.runtime, LEADER_WAIT).await
                } else {
                    None
                };
                let value = self
                    .act(
                        strike_f,
                        json!(step.fault),
                        step.fault.mark(true),
                        format!("striking {}", step.fault.kind()),
                        move |n| n.strike(&fault, leader),
                    )
                    .await?;
                in_force.insert(i, format!("{} {}", step.fault.kind(), value));
                self.struck.lock().expect("not poisoned").insert(step.fault.kind().to_string());
            } else {
                let healed = self
                    .act(
                        heal_f,
                        json!(null),
                        step.fault.mark(false),
                        format!("healing {}", step.fault.kind()),
                        move |n| n.heal(&fault),
                    )
                    .await;
                in_force.remove(&i);
                healed?;
            }
            let shown = in_force.values().cloned().collect::<Vec<_>>().join(" + ");
            *self.active.lock().expect("not poisoned") = (!shown.is_empty()).then_some(shown);
        }
        Ok(())
    }

    /// Heals the network, resumes every node and starts any that is down.
    pub fn heal_everything(&self) -> anyhow::Result<()> {
        self.record(EventType::Invoke, "heal-all", json!(null), None);
        let network = self.heal_network().and(self.heal_clocks());
        // Disarmed first, so that a node started below does not crash again.
        let failpoints = failpoint::disarm_all(self);
        let mut restarted = Vec::new();
        for node in self.runtime.nodes() {
            // Resuming a process that is not stopped is harmless.
            let _ = self.runtime.resume(node.id);
            // A node that refused its corrupted data directory stays down.
            if !self.runtime.is_running(node.id) && !self.refused.lock().expect("not poisoned").contains(&node.id) {
                self.runtime.start(node.id)?;
                restarted.push(node.id);
            }
        }
        // Only after the restarts: a learner must be up to catch up.
        let promoted = if self.struck.lock().expect("not poisoned").contains("member") {
            member::promote_all(self)?
        } else {
            Vec::new()
        };
        *self.active.lock().expect("not poisoned") = None;
        self.record(
            EventType::Info,
            "heal-all",
            json!({"restarted": names(&restarted), "promoted": names(&promoted)}),
            None,
        );
        network.and(failpoints.map(drop))
    }
}

/// The fault kinds in force at history time `at` (nanoseconds), or every
/// kind that struck when `at` is `None`, read back from the nemesis events.
pub fn kinds_in_force(events: &[checker::Event], at: Option<u64>) -> Vec<String> {
    let mut in_force: BTreeSet<String> = BTreeSet::new();
    let mut struck: BTreeSet<String> = BTreeSet::new();
    for e in events.iter().filter(|e| e.process == Process::Nemesis && e.kind == EventType::Invoke) {
        if at.is_some_and(|t| e.time > t) {
            break;
        }
        if let Some(kind) = Fault::kind_struck_by(&e.f) {
            in_force.insert(kind.to_string());
            struck.insert(kind.to_string());
        } else if let Some(kind) = Fault::kind_healed_by(&e.f) {
            in_force.remove(kind);
        } else if e.f == "heal-all" {
            in_force.clear();
        }
    }
    let kinds = if at.is_some() { in_force } else { struck };
    kinds.into_iter().collect()
}

/// A minority of the nodes, at least one, at random.
pub(crate) fn minority(nodes: u64, rng: &mut SmallRng) -> Vec<u64> {
    let most = ((nodes - 1) / 2).max(1);
    let count = rng.random_range(1..=most);
    let mut ids: Vec<u64> = (1..=nodes).collect();
    ids.shuffle(rng);
    let mut chosen = ids[..count as usize].to_vec();
    chosen.sort();
    chosen
}

/// Sleeps until `deadline`; false if `stop` came first.
pub async fn sleep_until(deadline: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    let stopped = tokio::select! {
        _ = tokio::time::sleep_until(deadline.into()) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    !stopped && !*stop.borrow()
}
