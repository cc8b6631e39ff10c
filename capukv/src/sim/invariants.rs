//! Raft's safety properties, checked as the simulation runs.
//!
//! - **Election Safety**: at most one leader per term.
//! - **Log Matching**: entries with the same index and term have identical
//!   prefixes (checked on every persisted entry through prefix hashes).
//! - **Leader Completeness**: a new leader of term `t` holds every entry
//!   committed in a term before `t`.
//! - **State Machine Safety**: replicas that applied the same index applied
//!   the same command there, and hold the same state.
//! - **Read Safety**: a ReadIndex read reflects every write acknowledged
//!   before the read was requested.
//! - **Configuration Safety** (churn runs): every configuration's quorums
//!   overlap the one before it in the log; a leader proposes a change only
//!   once the previous change and an entry of its own term are committed;
//!   and every leader is a voter of the configuration it leads with (or of
//!   the one before, while the change removing it is not committed).

use std::collections::HashMap;
use std::fmt;

use crate::raft::{Index, Membership, NodeId, Term};

use super::node::Disk;

/// A broken property, with what is needed to reproduce it.
#[derive(Debug, Clone)]
pub struct Violation {
    pub seed: u64,
    pub tick: u64,
    pub invariant: &'static str,
    pub detail: String,
    /// The run had membership churn on (its replay needs it too).
    pub churn: bool,
    /// `capukv simulate` flags the replay needs beyond seed and churn (a
    /// longer run, one fault family, a planted bug); empty for a seed's
    /// own scenario.
    pub replay_flags: Vec<String>,
}

impl Violation {
    /// The one command that replays this seed alone.
    pub fn rerun_command(&self) -> String {
        if self.replay_flags.is_empty() {
            let churn = if self.churn { " CAPUKV_SIM_CHURN=1" } else { "" };
            return format!(
                "CAPUKV_SIM_SEED={}{churn} cargo test -p capukv --test raft_simulation -- one_seed --nocapture",
                self.seed
            );
        }
        let binary = if self.replay_flags.iter().any(|f| f == "--planted-bug") { "capukv-planted" } else { "capukv" };
        let churn = if self.churn { " --churn" } else { "" };
        format!("{binary} simulate --seeds 1 --first-seed {}{churn} {}", self.seed, self.replay_flags.join(" "))
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at tick {} of seed {}: {}\n  rerun: {}",
            self.invariant,
            self.tick,
            self.seed,
            self.detail,
            self.rerun_command()
        )
    }
}

impl std::error::Error for Violation {}

struct Committed {
    term: Term,
    prefix: u64,
    /// The term in which it was first seen committed.
    commit_term: Term,
}

pub struct Invariants {
    seed: u64,
    churn: bool,
    pub tick: u64,
    leaders: HashMap<Term, NodeId>,
    prefix_at: HashMap<(Index, Term), u64>,
    /// Entry `i` at position `i - 1`.
    committed: Vec<Committed>,
    /// (entry hash, state digest after it) of the entry applied at `i`.
    applied: Vec<(u64, u64)>,
    /// Highest index of a write acknowledged to a client.
    pub max_acked: Index,
}

type Check = Result<(), Violation>;

impl Invariants {
    pub fn new(seed: u64, churn: bool) -> Invariants {
        Invariants {
            seed,
            churn,
            tick: 0,
            leaders: HashMap::new(),
            prefix_at: HashMap::new(),
            committed: Vec::new(),
            applied: Vec::new(),
            max_acked: 0,
        }
    }

    fn fail(&self, invariant: &'static str, detail: String) -> Check {
        Err(Violation {
            seed: self.seed,
            tick: self.tick,
            invariant,
            detail,
            churn: self.churn,
            replay_flags: Vec::new(),
        })
    }

    pub fn leader_elected(&mut self, node: NodeId, term: Term, disk: &Disk) -> Check {
        if let Some(&other) = self.leaders.get(&term)
            && other != node
        {
            return self.fail("Election Safety", format!("nodes {other} and {node} both led term {term}"));
        }
        self.leaders.insert(term, node);
        // The newest entry committed before this term must be in the new
        // leader's log with the same prefix (so must everything before it).
        let Some(index) = self.committed.iter().rposition(|c| c.commit_term < term).map(|p| p as Index + 1) else {
            return Ok(());
        };
        if index < disk.snapshot_index() {
            return Ok(()); // covered by its snapshot, checked on apply
        }
        if disk.prefix_at(index) != Some(self.committed[(index - 1) as usize].prefix) {
            return self.fail(
                "Leader Completeness",
                format!("node {node} leads term {term} without the entry committed at index {index}"),
            );
        }
        Ok(())
    }

    pub fn entry_persisted(&mut self, node: NodeId, index: Index, term: Term, prefix: u64) -> Check {
        match self.prefix_at.insert((index, term), prefix) {
            Some(seen) if seen != prefix => self.fail(
                "Log Matching",
                format!(
                    "node {node} holds entry {index} of term {term} after a different log prefix than another node"
                ),
            ),
            _ => Ok(()),
        }
    }

    /// The prefix hash recorded for (index, term), needed when a node
    /// installs a snapshot that ends there.
    pub fn prefix_of(&self, index: Index, term: Term) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.prefix_at.get(&(index, term)).copied()
    }

    /// `node`, in `node_term`, learned that its entry at `index` is committed.
    pub fn entry_committed(&mut self, node: NodeId, node_term: Term, index: Index, term: Term, prefix: u64) -> Check {
        let pos = (index - 1) as usize;
        if let Some(c) = self.committed.get(pos) {
            if c.term != term || c.prefix != prefix {
                return self.fail(
                    "State Machine Safety",
                    format!("node {node} committed entry {index} of term {term}, but entry {index} of term {} was committed before", c.term),
                );
            }
            return Ok(());
        }
        if pos != self.committed.len() {
            return self.fail("Log Matching", format!("node {node} committed index {index} before index {}", pos));
        }
        self.committed.push(Committed { term, prefix, commit_term: node_term });
        Ok(())
    }

    pub fn entry_applied(&mut self, node: NodeId, index: Index, entry: u64, digest: u64) -> Check {
        let pos = (index - 1) as usize;
        if let Some(&(seen_entry, seen_digest)) = self.applied.get(pos) {
            if seen_entry != entry {
                return self
                    .fail("State Machine Safety", format!("node {node} applied a different command at index {index}"));
            }
            if seen_digest != digest {
                return self
                    .fail("State Machine Safety", format!("node {node} holds a different state after index {index}"));
            }
            return Ok(());
        }
        if pos != self.applied.len() {
            return self
                .fail("State Machine Safety", format!("node {node} applied index {index} with a gap before it"));
        }
        self.applied.push((entry, digest));
        Ok(())
    }

    /// A state machine restored from a snapshot must equal what replicas
    /// held after applying that index.
    pub fn snapshot_restored(&mut self, node: NodeId, index: Index, digest: u64) -> Check {
        match self.applied.get((index.max(1) - 1) as usize) {
            Some(&(_, seen)) if index > 0 && seen != digest => self.fail(
                "State Machine Safety",
                format!("node {node} restored a snapshot at {index} unlike the applied state"),
            ),
            None if index > 0 => {
                self.fail("State Machine Safety", format!("node {node} restored a snapshot at {index} nobody applied"))
            }
            _ => Ok(()),
        }
    }

    /// The term of the entry committed at `index`, if one is known to be.
    pub fn committed_term(&self, index: Index) -> Option<Term> {
        index.checked_sub(1).and_then(|pos| self.committed.get(pos as usize)).map(|c| c.term)
    }

    /// `node` persisted a configuration `next` at (`index`, `term`), after
    /// `prev` set at `prev_index`; `proposer` when it is the leader that
    /// appended it.
    pub fn membership_persisted(
        &self,
        node: NodeId,
        (index, term): (Index, Term),
        (prev, prev_index): (&Membership, Index),
        next: &Membership,
        proposer: bool,
    ) -> Check {
        // A node that joined knows nothing before its first configuration.
        if !prev.voters.is_empty() && !prev.quorums_overlap(next) {
            return self.fail(
                "Configuration Safety",
                format!(
                    "node {node} holds configuration {:?} at {index}, whose majorities need not meet those of {:?} before it",
                    next.voters, prev.voters
                ),
            );
        }
        // The rules below are for changes; a leader's first entry may restate
        // the configuration unchanged, as the entry of its term.
        if !proposer || prev == next {
            return Ok(());
        }
        if prev_index > self.committed.len() as Index {
            return self.fail(
                "Configuration Safety",
                format!("leader {node} proposed a change at {index} while the change at {prev_index} was uncommitted"),
            );
        }
        if !self.committed.iter().any(|c| c.term == term) {
            return self.fail(
                "Configuration Safety",
                format!("leader {node} proposed a change at {index} before committing an entry of its term {term}"),
            );
        }
        Ok(())
    }

    /// No node leads once the change removing it from the voters, set at
    /// `at`, is committed (`commit`): it must have stepped down.
    pub fn removed_leader_stepped_down(&self, node: NodeId, conf: &Membership, at: Index, commit: Index) -> Check {
        if !conf.is_voter(node) && at <= commit {
            return self.fail(
                "Configuration Safety",
                format!("node {node} still leads after the change at {at} removing it committed (commit {commit})"),
            );
        }
        Ok(())
    }

    /// A leader of `term` must be a voter of its configuration, or of the
    /// one before when an entry not yet committed removed it (`pending`).
    pub fn leader_is_voter(&self, node: NodeId, term: Term, conf: &Membership, pending: Option<&Membership>) -> Check {
        if !conf.is_voter(node) && !pending.is_some_and(|before| before.is_voter(node)) {
            return self.fail(
                "Configuration Safety",
                format!("node {node} leads term {term} but is not a voter of {:?}", conf.voters),
            );
        }
        Ok(())
    }

    pub fn write_acknowledged(&mut self, index: Index) {
        self.max_acked = self.max_acked.max(index);
    }

    /// A read requested when writes up to `required` were acknowledged was
    /// served from a state machine at `served`.
    pub fn read_served(&self, node: NodeId, request: u64, served: Index, required: Index) -> Check {
        if served < required {
            return self.fail(
                "Read Safety",
                format!(
                    "node {node} served read {request} at index {served}, missing the write acknowledged at {required}"
                ),
            );
        }
        Ok(())
    }
}
