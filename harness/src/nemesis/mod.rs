//! The nemesis: strikes the scheduled faults through the runtime (processes)
//! and `netem` (the network), records each fault and heal in the history,
//! and heals everything at the end.

pub mod partition;
pub mod schedule;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checker::{EventType, Process};
use netem::{Netem, Scope};
use serde_json::json;
use tokio::sync::watch;

use crate::recorder::Recorder;
use crate::runtime::Runtime;
pub use schedule::{ClockFault, Fault, Schedule, Step};

/// Applies faults to a cluster. Dropping it heals the network (netem handles heal on drop).
pub struct Nemesis {
    runtime: Arc<dyn Runtime>,
    recorder: Arc<Recorder>,
    seed: u64,
    netems: Mutex<Vec<Option<Netem>>>,
    /// What is in force now, for the progress display.
    pub active: Mutex<Option<String>>,
    /// Kinds that struck at least once.
    pub struck: Mutex<BTreeSet<String>>,
    /// Network backends in use, by fault kind, for run.json.
    pub backends: Mutex<Vec<String>>,
}

/// The node that leads, by the highest term any running node reports.
pub async fn current_leader(runtime: &dyn Runtime) -> Option<u64> {
    let mut best: Option<(u64, u64)> = None;
    for node in runtime.nodes() {
        let Ok(mut client) = capukv::Client::new([node.api_addr.clone()]) else { continue };
        client.timeout = Duration::from_millis(500);
        if let Ok(status) = client.status_of(&node.api_addr).await
            && status.role == "leader"
            && best.is_none_or(|(term, _)| status.term > term)
        {
            best = Some((status.term, status.id));
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
            struck: Mutex::new(BTreeSet::new()),
            backends: Mutex::new(Vec::new()),
        }
    }

    fn addr(&self, id: u64) -> Ipv4Addr {
        self.runtime.nodes()[(id - 1) as usize].ip
    }

    /// Runs `f` on node `id`'s netem handle, opening it on first use.
    fn with_netem<T>(&self, id: u64, f: impl FnOnce(&mut Netem) -> netem::Result<T>) -> anyhow::Result<T> {
        let mut netems = self.netems.lock().expect("not poisoned");
        let slot = &mut netems[(id - 1) as usize];
        // A restarted container has a new namespace: the old handle is useless.
        let target = self.runtime.netns(id);
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
        Ok(f(slot.as_mut().expect("opened"))?)
    }

    fn record(&self, kind: EventType, f: &str, value: serde_json::Value, error: Option<String>) {
        self.recorder.record(kind, Process::Nemesis, f, None, value, error);
    }

    /// Strikes `fault`; returns what it did, with node names resolved.
    fn strike(&self, fault: &Fault, leader: Option<u64>) -> anyhow::Result<serde_json::Value> {
        let n = self.runtime.nodes().len() as u64;
        match fault {
            Fault::Partition { partition } => {
                let grudge = partition.grudge(n, leader);
                for (node, cut) in &grudge {
                    if !cut.is_empty() {
                        let peers: Vec<Ipv4Addr> = cut.iter().map(|&p| self.addr(p)).collect();
                        self.with_netem(*node, |h| h.partition(&peers))?;
                    }
                }
                let cuts: serde_json::Map<String, serde_json::Value> = grudge
                    .iter()
                    .map(|(node, cut)| {
                        (format!("n{node}"), json!(cut.iter().map(|c| format!("n{c}")).collect::<Vec<_>>()))
                    })
                    .collect();
                Ok(json!({"shape": partition.name(), "leader": leader.map(|l| format!("n{l}")), "cuts": cuts}))
            }
            Fault::Kill { nodes } => {
                for &id in nodes {
                    self.runtime.kill(id)?;
                }
                Ok(json!({"nodes": names(nodes)}))
            }
            Fault::Pause { nodes } => {
                for &id in nodes {
                    self.runtime.pause(id)?;
                }
                Ok(json!({"nodes": names(nodes)}))
            }
            Fault::Power { nodes } => {
                let mut lost = serde_json::Map::new();
                for &id in nodes {
                    self.runtime.kill(id)?;
                }
                // Only once every node of the group is down: a power failure
                // takes them at one instant.
                for &id in nodes {
                    lost.insert(format!("n{id}"), self.runtime.lose_unsynced(id)?);
                }
                Ok(json!({"nodes": names(nodes), "lost": lost}))
            }
            Fault::Clock { clock } => match clock {
                ClockFault::Rate { nodes, rate } => {
                    for &id in nodes {
                        self.runtime.set_clock(id, 0.0, *rate)?;
                    }
                    Ok(json!({"nodes": names(nodes), "rate": rate}))
                }
                ClockFault::Bump { nodes, offset_s } => {
                    for &id in nodes {
                        self.runtime.set_clock(id, *offset_s, 1.0)?;
                    }
                    Ok(json!({"nodes": names(nodes), "offset_s": offset_s}))
                }
                ClockFault::SlowLeader { rate, cut } => {
                    let Some(leader) = leader else {
                        return Ok(json!({"skipped": "no leader to slow down"}));
                    };
                    self.runtime.set_clock(leader, 0.0, *rate)?;
                    if *cut {
                        // Cut only once the slow clock is in force: until then
                        // the leader's CheckQuorum runs at full speed.
                        std::thread::sleep(crate::runtime::CLOCK_TAKES_EFFECT);
                        self.cut_off(leader)?;
                    }
                    Ok(json!({"leader": format!("n{leader}"), "rate": rate, "cut": cut}))
                }
            },
            Fault::Netem { nodes, fault } => {
                let impairment = fault.impairment();
                for &id in nodes {
                    self.with_netem(id, |h| h.impair(&Scope::All, &impairment))?;
                }
                Ok(json!({"nodes": names(nodes), "impairment": fault}))
            }
        }
    }

    /// Cuts `node` off from every other node (clients still reach it).
    fn cut_off(&self, node: u64) -> anyhow::Result<()> {
        let n = self.runtime.nodes().len() as u64;
        for (from, cut) in partition::Partition::IsolateLeader.grudge(n, Some(node)) {
            if !cut.is_empty() {
                let peers: Vec<Ipv4Addr> = cut.iter().map(|&p| self.addr(p)).collect();
                self.with_netem(from, |h| h.partition(&peers))?;
            }
        }
        Ok(())
    }

    fn heal_clocks(&self) -> anyhow::Result<()> {
        if self.runtime.has_clocks() {
            for node in self.runtime.nodes() {
                self.runtime.set_clock(node.id, 0.0, 1.0)?;
            }
        }
        Ok(())
    }

    fn heal(&self, fault: &Fault) -> anyhow::Result<serde_json::Value> {
        match fault {
            Fault::Clock { clock } => {
                self.heal_clocks()?;
                if matches!(clock, ClockFault::SlowLeader { cut: true, .. }) {
                    self.heal_network()?;
                }
                Ok(json!("clocks reset"))
            }
            Fault::Partition { .. } | Fault::Netem { .. } => {
                self.heal_network()?;
                Ok(json!("healed"))
            }
            Fault::Kill { nodes } | Fault::Power { nodes } => {
                for &id in nodes {
                    self.runtime.start(id)?;
                }
                Ok(json!({"nodes": names(nodes)}))
            }
            Fault::Pause { nodes } => {
                for &id in nodes {
                    self.runtime.resume(id)?;
                }
                Ok(json!({"nodes": names(nodes)}))
            }
        }
    }

    fn heal_network(&self) -> anyhow::Result<()> {
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
        what: String,
        op: impl FnOnce(&Nemesis) -> anyhow::Result<serde_json::Value> + Send + 'static,
    ) -> anyhow::Result<serde_json::Value> {
        self.record(EventType::Invoke, f, invoked, None);
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

    /// Strikes and heals the schedule's faults at their times, until `stop`.
    /// A fault in force when `stop` comes is healed by [`Nemesis::heal_everything`].
    pub async fn run(
        self: Arc<Self>,
        schedule: Schedule,
        start: Instant,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        for step in schedule.steps {
            let (strike_f, heal_f) = step.fault.event_names();
            if !sleep_until(start + Duration::from_secs_f64(step.at), &mut stop).await {
                return Ok(());
            }
            let leader = match &step.fault {
                Fault::Partition {
                    partition: partition::Partition::IsolateLeader | partition::Partition::LeaderMinority { .. },
                }
                | Fault::Clock { clock: ClockFault::SlowLeader { .. } } => current_leader(&*self.runtime).await,
                _ => None,
            };
            let fault = step.fault.clone();
            let value = self
                .act(strike_f, json!(step.fault), format!("striking {}", step.fault.kind()), move |n| {
                    n.strike(&fault, leader)
                })
                .await?;
            *self.active.lock().expect("not poisoned") = Some(format!("{} {}", step.fault.kind(), value));
            self.struck.lock().expect("not poisoned").insert(step.fault.kind().to_string());
            let on_time = sleep_until(start + Duration::from_secs_f64(step.heal_at), &mut stop).await;
            if !on_time {
                return Ok(()); // the final heal takes it from here
            }
            let fault = step.fault.clone();
            let healed =
                self.act(heal_f, json!(null), format!("healing {}", step.fault.kind()), move |n| n.heal(&fault)).await;
            *self.active.lock().expect("not poisoned") = None;
            healed?;
        }
        Ok(())
    }

    /// Heals the network, resumes every node and starts any that is down.
    pub fn heal_everything(&self) -> anyhow::Result<()> {
        self.record(EventType::Invoke, "heal-all", json!(null), None);
        let network = self.heal_network().and(self.heal_clocks());
        let mut restarted = Vec::new();
        for node in self.runtime.nodes() {
            // Resuming a process that is not stopped is harmless.
            let _ = self.runtime.resume(node.id);
            if !self.runtime.is_running(node.id) {
                self.runtime.start(node.id)?;
                restarted.push(node.id);
            }
        }
        *self.active.lock().expect("not poisoned") = None;
        self.record(EventType::Info, "heal-all", json!({"restarted": names(&restarted)}), None);
        network
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

fn names(nodes: &[u64]) -> Vec<String> {
    nodes.iter().map(|n| format!("n{n}")).collect()
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
