//! One simulated run: the tick loop, the nemesis, the clients, and the
//! handling of each node's output exactly as the core's contract demands.

use std::hash::{DefaultHasher, Hash, Hasher};

use bytes::Bytes;

use crate::raft::{
    Config, Entry, EntryKind, Index, MembershipChange, NodeId, Raft, RaftError, Ready, Role, SplitMix64, Term,
};

use super::RECOVERY_BOUND_TICKS;
use super::invariants::{Invariants, Violation};
use super::network::Network;
use super::node::{Disk, SimNode, StateMachine, entry_hash};
use super::scenario::{Faults, MAX_IDS, MAX_NODES, Scenario};

/// Nodes compact their log every this many applied entries (snapshot runs).
const COMPACT_EVERY: Index = 16;
/// How far behind the leader's log a learner may be to be promoted.
pub const PROMOTE_LAG: Index = 16;
/// Ticks a client waits for an answer before it gives up on a request.
const CLIENT_TIMEOUT: u64 = 30;

/// What a run that broke no invariant did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Hash of every output of every node, in order: equal for equal runs.
    pub trace_hash: u64,
    /// Ticks from the final heal until a new proposal committed.
    pub recovery_ticks: u64,
    pub stats: Stats,
}

/// Counts that show a run exercised what it meant to.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub leaders_elected: u64,
    pub writes_acknowledged: u64,
    pub writes_lost: u64,
    pub reads_served: u64,
    pub reads_dropped: u64,
    pub crashes: u64,
    pub pauses: u64,
    pub partitions: u64,
    pub transfers: u64,
    pub compactions: u64,
    pub snapshots_installed: u64,
    pub messages_delivered: u64,
    /// Membership changes a leader accepted (churn runs).
    pub membership_changes: u64,
    /// Nodes wiped after their removal committed (churn runs).
    pub nodes_wiped: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.leaders_elected += o.leaders_elected;
        self.writes_acknowledged += o.writes_acknowledged;
        self.writes_lost += o.writes_lost;
        self.reads_served += o.reads_served;
        self.reads_dropped += o.reads_dropped;
        self.crashes += o.crashes;
        self.pauses += o.pauses;
        self.partitions += o.partitions;
        self.transfers += o.transfers;
        self.compactions += o.compactions;
        self.snapshots_installed += o.snapshots_installed;
        self.messages_delivered += o.messages_delivered;
        self.membership_changes += o.membership_changes;
        self.nodes_wiped += o.nodes_wiped;
    }
}

/// Runs the scenario a seed stands for.
pub fn run(seed: u64) -> Result<Outcome, Violation> {
    run_with(Scenario::from_seed(seed))
}

pub fn run_with(scenario: Scenario) -> Result<Outcome, Violation> {
    let replay_flags = scenario.replay_flags();
    Cluster::new(scenario).and_then(Cluster::run).map_err(|v| Violation { replay_flags, ..v })
}

#[derive(Clone, Copy)]
enum Pending {
    Write { node: NodeId, index: Index, term: Term, deadline: u64 },
    Read { node: NodeId, request: u64, required: Index, deadline: u64 },
}

struct Client {
    pending: Option<Pending>,
    /// The node this client believes leads.
    guess: NodeId,
    writes: u64,
}

struct Cluster {
    scenario: Scenario,
    faults: Faults,
    rng: SplitMix64,
    now: u64,
    nodes: Vec<SimNode>,
    net: Network,
    clients: Vec<Client>,
    inv: Invariants,
    trace: DefaultHasher,
    stats: Stats,
    partition_until: u64,
    next_request: u64,
    /// Recovery phase: proposals made to prove liveness, as (node, index, term).
    markers: Vec<(NodeId, Index, Term)>,
    recovered_at: Option<u64>,
    /// Churn: nodes to wipe once the change removing them, proposed at
    /// (index, term), is committed.
    wipes: Vec<(NodeId, Index, Term)>,
}

impl Cluster {
    fn new(scenario: Scenario) -> Result<Cluster, Violation> {
        let mut cluster = Cluster {
            faults: scenario.faults,
            rng: SplitMix64::new(scenario.seed),
            now: 0,
            nodes: Vec::new(),
            net: Network::default(),
            clients: Vec::new(),
            inv: Invariants::new(scenario.seed, scenario.churn),
            trace: DefaultHasher::new(),
            stats: Stats::default(),
            partition_until: 0,
            next_request: 0,
            markers: Vec::new(),
            recovered_at: None,
            wipes: Vec::new(),
            scenario,
        };
        let founders: Vec<NodeId> = (1..=cluster.scenario.nodes as NodeId).collect();
        for &id in &founders {
            let node = SimNode::new(id, founders.clone());
            cluster.nodes.push(node);
            cluster.start(id)?;
        }
        for c in 0..cluster.scenario.clients {
            let guess = 1 + (c % cluster.scenario.nodes) as NodeId;
            cluster.clients.push(Client { pending: None, guess, writes: 0 });
        }
        Ok(cluster)
    }

    fn violation(&self, invariant: &'static str, detail: String) -> Violation {
        Violation {
            seed: self.scenario.seed,
            tick: self.now,
            invariant,
            detail,
            churn: self.scenario.churn,
            replay_flags: Vec::new(),
        }
    }

    fn node(&mut self, id: NodeId) -> &mut SimNode {
        &mut self.nodes[(id - 1) as usize]
    }

    fn up_nodes(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|n| n.is_running(self.now)).map(|n| n.id).collect()
    }

    fn leader_of_highest_term(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| n.raft.as_ref().filter(|r| r.role() == Role::Leader).map(|r| (r.term(), n.id)))
            .max()
            .map(|(_, id)| id)
    }

    fn run(mut self) -> Result<Outcome, Violation> {
        let heal_at = self.scenario.chaos_ticks + 1;
        let last_tick = heal_at + RECOVERY_BOUND_TICKS;
        while self.now < last_tick {
            self.now += 1;
            self.inv.tick = self.now;
            if self.now == heal_at {
                self.heal_everything()?;
            }
            self.restart_due()?;
            self.deliver();
            let now = self.now;
            for node in self.nodes.iter_mut().filter(|n| n.is_running(now)) {
                node.raft.as_mut().expect("running").tick();
            }
            self.clients_act();
            if self.now < heal_at {
                self.nemesis()?;
            } else {
                self.propose_markers();
            }
            for id in 1..=self.nodes.len() as NodeId {
                self.handle_ready(id)?;
            }
            if let Some(at) = self.recovered_at {
                return Ok(Outcome {
                    trace_hash: self.trace.finish(),
                    recovery_ticks: at - heal_at,
                    stats: self.stats,
                });
            }
        }
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| {
                let r = n.raft.as_ref()?;
                let (conf, at) = r.membership();
                let matched: Vec<(NodeId, Index)> =
                    conf.members().filter_map(|id| r.match_index(id).map(|m| (id, m))).collect();
                Some(format!(
                    "node {}: {:?} term {} commit {} last {} voters {:?} learners {:?} (set at {at}) matched {matched:?}",
                    n.id,
                    r.role(),
                    r.term(),
                    r.commit_index(),
                    r.last_index(),
                    conf.voters,
                    conf.learners
                ))
            })
            .collect();
        Err(self.violation(
            "Liveness",
            format!(
                "no proposal committed within {RECOVERY_BOUND_TICKS} ticks of the final heal; {}",
                nodes.join("; ")
            ),
        ))
    }

    // --- Nodes ---------------------------------------------------------------

    fn start(&mut self, id: NodeId) -> Result<(), Violation> {
        let seed = self.scenario.seed;
        let node = &mut self.nodes[(id - 1) as usize];
        let voters = node.bootstrap.clone();
        node.sm = node.disk.snapshot.as_ref().map(|s| StateMachine::decode(&s.data)).unwrap_or_default();
        let (applied, digest) = (node.sm.applied, node.sm.digest);
        node.boots += 1;
        let mut cfg = Config::new(id, voters);
        cfg.applied = applied;
        cfg.seed = seed.wrapping_mul(0x9E37_79B9).wrapping_add(id * 1_000 + node.boots);
        // Small, seed-chosen batches and windows split a backlog over many
        // messages, which is where replication bugs hide.
        cfg.max_entries_per_message = self.scenario.max_entries_per_message;
        cfg.max_inflight_messages = self.scenario.max_inflight_messages;
        #[cfg(feature = "planted-bugs")]
        {
            cfg.planted = self.scenario.planted;
        }
        let raft = Raft::new(cfg, node.disk.persisted());
        let raft = raft.map_err(|e| self.violation("Restart", format!("node {id} cannot restart: {e}")))?;
        self.nodes[(id - 1) as usize].raft = Some(raft);
        self.nodes[(id - 1) as usize].restart_at = None;
        self.inv.snapshot_restored(id, applied, digest)
    }

    fn crash(&mut self, id: NodeId) {
        let restart_at = self.now + self.rng.range(5, 120);
        let node = self.node(id);
        node.raft = None;
        node.reads.clear();
        node.late_report = None;
        node.restart_at = Some(restart_at);
        // Whatever was asked of the node is now of unknown outcome.
        for c in &mut self.clients {
            if matches!(c.pending, Some(Pending::Write { node, .. } | Pending::Read { node, .. }) if node == id) {
                c.pending = None;
            }
        }
        self.stats.crashes += 1;
        ("crash", id, self.now).hash(&mut self.trace);
    }

    fn restart_due(&mut self) -> Result<(), Violation> {
        for id in 1..=self.nodes.len() as NodeId {
            if self.node(id).restart_at.is_some_and(|at| at <= self.now) {
                self.start(id)?;
            }
        }
        Ok(())
    }

    fn deliver(&mut self) {
        for msg in self.net.due(self.now) {
            let node = &mut self.nodes[(msg.to - 1) as usize];
            if let Some(until) = node.paused_until.filter(|&until| until > self.now) {
                let at = until + self.rng.range(0, 3);
                self.net.hold(msg, at);
            } else if let Some(raft) = node.raft.as_mut() {
                self.stats.messages_delivered += 1;
                raft.step(msg);
            }
        }
    }

    /// Handles a node's output in the order the core's contract demands,
    /// checking the invariants as state becomes durable and is applied.
    fn handle_ready(&mut self, id: NodeId) -> Result<(), Violation> {
        let idx = (id - 1) as usize;
        if !self.nodes[idx].is_running(self.now) {
            return Ok(());
        }
        if self.nodes[idx].raft.is_none() {
            return Ok(());
        }
        // A report held back from the last batch arrives first: everything
        // stepped since met a core that did not know its own write was done.
        if let Some((index, term)) = self.nodes[idx].late_report.take() {
            self.nodes[idx].raft.as_mut().expect("running").persisted(index, term);
        }
        let raft = self.nodes[idx].raft.as_mut().expect("running");
        if !raft.has_ready() {
            return Ok(());
        }
        let mut ready: Ready = raft.ready();
        (self.now, id, &ready).hash(&mut self.trace);
        // 3, early: what earlier batches made durable, applied (and
        // answered) before this batch is persisted, as the server does.
        self.apply_entries(id, ready.take_committed_persisted())?;
        let Ready {
            soft_state,
            hard_state,
            snapshot,
            entries,
            messages,
            send_first,
            committed_entries,
            persisted_index: _,
            read_states,
            dropped_reads,
        } = ready;

        // A leader may send before persisting; a crash in between loses its
        // unsynced entries after its followers have seen them.
        let (before, after) = if send_first { (messages, Vec::new()) } else { (Vec::new(), messages) };
        for msg in before {
            self.net.send(msg, self.now, &self.faults, &mut self.rng);
        }
        if send_first && self.faults.crashes && self.rng.chance(0.02) {
            self.crash(id);
            return Ok(());
        }

        // 1. Persist.
        if let Some(snap) = &snapshot {
            let prefix = self.inv.prefix_of(snap.meta.index, snap.meta.term).ok_or_else(|| {
                self.violation("Log Matching", format!("node {id} got a snapshot at an entry no node ever held"))
            })?;
            self.nodes[idx].disk.write_snapshot(snap.clone(), prefix, false);
            self.stats.snapshots_installed += 1;
        }
        let durable =
            entries.last().map(|e| (e.index, e.term)).or(snapshot.as_ref().map(|s| (s.meta.index, s.meta.term)));
        let changes: Vec<(Index, Term, MembershipChange)> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Membership)
            .map(|e| {
                (e.index, e.term, MembershipChange::decode(&e.data).expect("the simulation proposes readable changes"))
            })
            .collect();
        for (index, term, prefix) in self.nodes[idx].disk.write_entries(entries) {
            self.inv.entry_persisted(id, index, term, prefix)?;
        }
        if let Some(hs) = hard_state {
            let disk = &mut self.nodes[idx].disk;
            let from = disk.hard_state.commit.max(disk.snapshot_index()) + 1;
            disk.hard_state = hs;
            for index in from..=hs.commit {
                let disk = &self.nodes[idx].disk;
                let (term, prefix) = match (disk.entry(index), disk.prefix_at(index)) {
                    (Some(e), Some(p)) => (e.term, p),
                    _ => {
                        return Err(
                            self.violation("Durability", format!("node {id} committed {index}, not on its disk"))
                        );
                    }
                };
                self.inv.entry_committed(id, hs.term, index, term, prefix)?;
            }
        }
        for (index, term, change) in changes {
            let node = &self.nodes[idx];
            let prev = node.disk.membership_before(index, &node.bootstrap);
            let raft = node.raft.as_ref().expect("running");
            let proposer = raft.role() == Role::Leader && raft.term() == term;
            self.inv.membership_persisted(id, (index, term), (&prev.0, prev.1), &change.membership, proposer)?;
        }
        if let (Some(report), Some(raft)) = (durable, self.nodes[idx].raft.as_mut()) {
            // With `late_reports`, now and then a leader hears of its own
            // write late, after its followers' acknowledgements: it may count
            // itself only then.
            if self.scenario.late_reports && raft.role() == Role::Leader && self.rng.chance(0.2) {
                self.nodes[idx].late_report = Some(report);
            } else {
                raft.persisted(report.0, report.1);
            }
        }
        if let Some(ss) = soft_state
            && ss.role == Role::Leader
        {
            self.stats.leaders_elected += 1;
            self.inv.leader_elected(id, ss.term, &self.nodes[idx].disk)?;
            let node = &self.nodes[idx];
            let raft = node.raft.as_ref().expect("running");
            let (conf, at) = raft.membership();
            let pending = (at > raft.commit_index()).then(|| node.disk.membership_before(at, &node.bootstrap).0);
            self.inv.leader_is_voter(id, ss.term, conf, pending.as_ref())?;
        }

        // 2. Send (unless sent first).
        for msg in after {
            self.net.send(msg, self.now, &self.faults, &mut self.rng);
        }

        // 3. Apply.
        if let Some(snap) = snapshot {
            let sm = StateMachine::decode(&snap.data);
            if sm.applied != snap.meta.index {
                return Err(self.violation("Snapshot", format!("node {id}: snapshot data does not match its index")));
            }
            self.nodes[idx].sm = sm;
            self.inv.snapshot_restored(id, sm.applied, sm.digest)?;
        }
        self.apply_entries(id, committed_entries)?;

        // 4. Reads.
        self.nodes[idx].reads.extend(read_states);
        self.serve_reads(id)?;
        for request in dropped_reads {
            self.stats.reads_dropped += 1;
            self.finish_read(request);
        }

        if self.faults.snapshots {
            self.maybe_compact(id);
        }
        // A leader whose removal committed steps down in the batch after
        // (its last commit index goes out first): once it has nothing more
        // to hand over, it must not lead.
        if let Some(raft) = self.nodes[idx].raft.as_ref()
            && raft.role() == Role::Leader
            && !raft.has_ready()
        {
            let (conf, at) = raft.membership();
            self.inv.removed_leader_stepped_down(id, conf, at, raft.commit_index())?;
        }
        Ok(())
    }

    /// Applies committed entries in order and answers the writes they carry.
    fn apply_entries(&mut self, id: NodeId, entries: Vec<Entry>) -> Result<(), Violation> {
        let idx = (id - 1) as usize;
        for entry in entries {
            let node = &mut self.nodes[idx];
            if entry.index != node.sm.applied + 1 {
                let detail = format!("node {id} applied {} after {}", entry.index, node.sm.applied);
                return Err(self.violation("State Machine Safety", detail));
            }
            // Applying answers clients: what is applied must survive a crash.
            if node.disk.entry(entry.index).is_none_or(|e| e.term != entry.term) {
                let detail = format!("node {id} applied {} before persisting it", entry.index);
                return Err(self.violation("Durability", detail));
            }
            node.sm.apply(&entry);
            let digest = node.sm.digest;
            self.inv.entry_applied(id, entry.index, entry_hash(&entry), digest)?;
            self.resolve_writes(id, entry.index, entry.term);
        }
        Ok(())
    }

    fn maybe_compact(&mut self, id: NodeId) {
        let node = &mut self.nodes[(id - 1) as usize];
        let applied = node.sm.applied;
        if applied < node.disk.snapshot_index() + COMPACT_EVERY {
            return;
        }
        let raft = node.raft.as_mut().expect("node is up");
        raft.compact(applied, node.sm.encode()).expect("compacting at the applied index");
        let snapshot = raft.snapshot().expect("just made").clone();
        let prefix = node.disk.prefix_at(applied).expect("applied entries are on disk");
        node.disk.write_snapshot(snapshot, prefix, true);
        self.stats.compactions += 1;
    }

    // --- Clients -------------------------------------------------------------

    fn clients_act(&mut self) {
        let up = self.up_nodes();
        for c in 0..self.clients.len() {
            if let Some(p) = self.clients[c].pending {
                let deadline = match p {
                    Pending::Write { deadline, .. } | Pending::Read { deadline, .. } => deadline,
                };
                if self.now < deadline {
                    continue;
                }
                // Gave up: the outcome is unknown. Try elsewhere next time,
                // as a real client would after a deadline.
                self.clients[c].pending = None;
                if !up.is_empty() {
                    self.clients[c].guess = up[self.rng.below(up.len() as u64) as usize];
                }
            }
            if up.is_empty() || !self.rng.chance(0.25) {
                continue;
            }
            let mut target = self.clients[c].guess;
            if self.node(target).raft.is_some() && !up.contains(&target) {
                continue; // paused: the request would sit in its socket
            }
            if !up.contains(&target) {
                target = up[self.rng.below(up.len() as u64) as usize];
            }
            let write = self.rng.chance(0.7);
            let deadline = self.now + CLIENT_TIMEOUT;
            let required = self.inv.max_acked;
            let request = self.next_request;
            let client = &mut self.clients[c];
            let raft = self.nodes[(target - 1) as usize].raft.as_mut().expect("target is up");
            let result = if write {
                client.writes += 1;
                let data = Bytes::from(format!("client {c} write {}", client.writes));
                raft.propose(data).map(|index| Pending::Write { node: target, index, term: raft.term(), deadline })
            } else {
                self.next_request += 1;
                raft.read_index(request).map(|()| Pending::Read { node: target, request, required, deadline })
            };
            match result {
                Ok(p) => client.pending = Some(p),
                Err(RaftError::NotLeader { leader }) => {
                    client.guess = leader.unwrap_or_else(|| up[self.rng.below(up.len() as u64) as usize]);
                }
                Err(_) => {}
            }
        }
    }

    /// The entry at `index` of `term` was applied on `node`: writes proposed
    /// there at that index succeeded if the term matches, else were lost.
    fn resolve_writes(&mut self, node: NodeId, index: Index, term: Term) {
        for c in &mut self.clients {
            if let Some(Pending::Write { node: n, index: i, term: t, .. }) = c.pending
                && n == node
                && i == index
            {
                c.pending = None;
                if t == term {
                    self.stats.writes_acknowledged += 1;
                    self.inv.write_acknowledged(index);
                } else {
                    self.stats.writes_lost += 1;
                }
            }
        }
        if self.markers.iter().any(|&(n, i, t)| n == node && i == index && t == term) {
            self.recovered_at.get_or_insert(self.now);
        }
    }

    fn serve_reads(&mut self, id: NodeId) -> Result<(), Violation> {
        let node = &mut self.nodes[(id - 1) as usize];
        let applied = node.sm.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = node.reads.drain(..).partition(|r| r.index <= applied);
        node.reads = waiting;
        for read in ready {
            let required = self.clients.iter().find_map(|c| match c.pending {
                Some(Pending::Read { node, request, required, .. }) if node == id && request == read.request => {
                    Some(required)
                }
                _ => None,
            });
            // A read whose client gave up is still checked against nothing.
            if let Some(required) = required {
                self.inv.read_served(id, read.request, applied, required)?;
                self.stats.reads_served += 1;
                self.finish_read(read.request);
            }
        }
        Ok(())
    }

    fn finish_read(&mut self, request: u64) {
        for c in &mut self.clients {
            if matches!(c.pending, Some(Pending::Read { request: r, .. }) if r == request) {
                c.pending = None;
            }
        }
    }

    // --- Faults --------------------------------------------------------------

    fn nemesis(&mut self) -> Result<(), Violation> {
        let n = self.nodes.len();
        if self.faults.partitions {
            if self.net.is_partitioned() {
                if self.now >= self.partition_until {
                    self.net.heal();
                    ("heal", self.now).hash(&mut self.trace);
                }
            } else if self.rng.chance(0.01) {
                let groups = self.partition_groups(n);
                (&groups, self.now).hash(&mut self.trace);
                self.net.partition(groups);
                self.partition_until = self.now + self.rng.range(20, 200);
                self.stats.partitions += 1;
            }
        }
        if self.faults.crashes && self.rng.chance(0.008) {
            let up = self.up_nodes();
            // Half the time the leader: its uncommitted tail is what a
            // crash puts at risk.
            let leader = self.leader_of_highest_term().filter(|_| self.rng.chance(0.5));
            if let Some(victim) =
                leader.or_else(|| (!up.is_empty()).then(|| up[self.rng.below(up.len() as u64) as usize]))
            {
                self.crash(victim);
            }
        }
        if self.faults.pauses && self.rng.chance(0.006) {
            let up = self.up_nodes();
            let leader = self.leader_of_highest_term().filter(|_| self.rng.chance(0.5));
            if let Some(victim) =
                leader.or_else(|| (!up.is_empty()).then(|| up[self.rng.below(up.len() as u64) as usize]))
            {
                let until = self.now + self.rng.range(10, 80);
                self.node(victim).paused_until = Some(until);
                self.stats.pauses += 1;
                ("pause", victim, until).hash(&mut self.trace);
            }
        }
        if self.scenario.churn {
            self.churn()?;
        }
        if self.faults.transfers
            && self.rng.chance(0.01)
            && let Some(leader) = self.leader_of_highest_term()
        {
            let target = 1 + self.rng.below(n as u64);
            let raft = self.node(leader).raft.as_mut().expect("leader is up");
            if raft.transfer_leader(target).is_ok() {
                self.stats.transfers += 1;
            }
        }
        Ok(())
    }

    /// Membership churn: now and then the leader of the highest term is
    /// asked to add a learner (a new, empty node with a new id), promote
    /// one, or remove a voter (itself too) or a learner; half the removed
    /// nodes are wiped once their removal committed (a replaced machine),
    /// the others stay up, removed, as a forgotten process would.
    fn churn(&mut self) -> Result<(), Violation> {
        self.wipe_removed();
        if !self.rng.chance(0.01) {
            return Ok(());
        }
        let Some(leader) = self.leader_of_highest_term() else { return Ok(()) };
        let (conf, _) = self.node(leader).raft.as_ref().expect("leader is up").membership();
        let conf = conf.clone();
        let learners: Vec<NodeId> = conf.learners.iter().copied().collect();
        let voters: Vec<NodeId> = conf.voters.iter().copied().collect();
        let mut next = conf.clone();
        let mut wipe = None;
        let pick = |rng: &mut SplitMix64, of: &[NodeId]| of[rng.below(of.len() as u64) as usize];
        match self.rng.below(5) {
            0 if conf.members().count() < MAX_NODES && self.nodes.len() < MAX_IDS => {
                // A new, empty node that knows no configuration.
                let id = self.nodes.len() as NodeId + 1;
                self.nodes.push(SimNode::new(id, Vec::new()));
                self.start(id)?;
                next.learners.insert(id);
            }
            1 if !learners.is_empty() => {
                // As an operator would (and CapuKV's server insists): only
                // a learner that has caught up is promoted.
                let raft = self.node(leader).raft.as_ref().expect("leader is up");
                let last = raft.last_index();
                let ready: Vec<NodeId> = learners
                    .iter()
                    .copied()
                    .filter(|&l| raft.match_index(l).is_some_and(|m| m + PROMOTE_LAG >= last))
                    .collect();
                if ready.is_empty() {
                    return Ok(());
                }
                let id = pick(&mut self.rng, &ready);
                next.learners.remove(&id);
                next.voters.insert(id);
            }
            2 | 4 if voters.len() > 1 => {
                // Half the time the leader itself.
                let id = if self.rng.chance(0.5) { leader } else { pick(&mut self.rng, &voters) };
                next.voters.remove(&id);
                wipe = self.rng.chance(0.5).then_some(id);
            }
            3 if !learners.is_empty() => {
                let id = pick(&mut self.rng, &learners);
                next.learners.remove(&id);
                wipe = self.rng.chance(0.5).then_some(id);
            }
            _ => return Ok(()),
        }
        let raft = self.node(leader).raft.as_mut().expect("leader is up");
        let term = raft.term();
        let next = conf.next(next.voters, next.learners);
        if let Ok(index) = raft.propose_membership(next.clone(), Bytes::new()) {
            self.stats.membership_changes += 1;
            ("membership", leader, index, &next.voters, &next.learners).hash(&mut self.trace);
            if let Some(id) = wipe {
                self.wipes.push((id, index, term));
            }
        }
        Ok(())
    }

    /// Wipes the nodes whose removal is now committed, and forgets those
    /// whose removal was lost.
    fn wipe_removed(&mut self) {
        let mut pending = std::mem::take(&mut self.wipes);
        pending.retain(|&(id, index, term)| match self.inv.committed_term(index) {
            None => true,
            Some(t) if t != term => false,
            Some(_) => {
                if self.nodes[(id - 1) as usize].present {
                    self.wipe(id);
                }
                false
            }
        });
        self.wipes = pending;
    }

    /// The node's disk dies, and the machine is gone for good.
    fn wipe(&mut self, id: NodeId) {
        if self.node(id).raft.is_some() {
            self.crash(id);
        }
        let node = self.node(id);
        node.disk = Disk::default();
        node.sm = StateMachine::default();
        node.restart_at = None;
        node.paused_until = None;
        node.present = false;
        self.stats.nodes_wiped += 1;
        ("wipe", id, self.now).hash(&mut self.trace);
    }

    /// A partition, as a group number per node: isolate one node, isolate
    /// the leader, or split the cluster in two at random.
    fn partition_groups(&mut self, n: usize) -> Vec<usize> {
        let mut groups = vec![0; n];
        match self.rng.below(3) {
            0 => groups[self.rng.below(n as u64) as usize] = 1,
            1 => {
                let victim = self.leader_of_highest_term().map_or(0, |id| (id - 1) as usize);
                groups[victim] = 1;
            }
            _ => {
                for g in groups.iter_mut() {
                    *g = self.rng.below(2) as usize;
                }
            }
        }
        groups
    }

    /// The end of the chaos: the network is whole and fault-free again and
    /// every node is up.
    fn heal_everything(&mut self) -> Result<(), Violation> {
        self.net.heal();
        // No more crashes either (the leader's crash between sending and
        // persisting is drawn in `handle_ready`, not by the nemesis).
        self.faults = Faults {
            drop: 0.0,
            duplicate: 0.0,
            spike: 0.0,
            crashes: false,
            max_delay: self.faults.max_delay.min(3),
            ..self.faults
        };
        for id in 1..=self.nodes.len() as NodeId {
            self.node(id).paused_until = None;
            if self.node(id).present && self.node(id).raft.is_none() {
                self.start(id)?;
            }
        }
        ("heal everything", self.now).hash(&mut self.trace);
        Ok(())
    }

    /// After the heal, each leader (once per term) proposes a marker; the
    /// cluster has recovered when one is applied on its leader.
    fn propose_markers(&mut self) {
        for node in &mut self.nodes {
            let Some(raft) = node.raft.as_mut() else { continue };
            if raft.role() != Role::Leader || self.markers.iter().any(|&(n, _, t)| n == node.id && t == raft.term()) {
                continue;
            }
            if let Ok(index) = raft.propose(Bytes::from_static(b"recovery marker")) {
                self.markers.push((node.id, index, raft.term()));
            }
        }
    }
}
