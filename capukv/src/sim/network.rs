//! The simulated network: every message gets a delivery tick drawn from the
//! seed; some are lost, some duplicated, some held back. Partitions are
//! applied when a message would arrive, as a cut cable would.

use std::collections::BTreeMap;

use crate::raft::{Message, NodeId, SplitMix64};

use super::scenario::Faults;

#[derive(Default)]
pub struct Network {
    /// In flight, by (delivery tick, send order): a deterministic order.
    in_flight: BTreeMap<(u64, u64), Message>,
    sent: u64,
    /// Partition group of each node (index = id - 1); messages cross only
    /// within a group. Empty when the network is whole.
    groups: Vec<usize>,
}

impl Network {
    pub fn send(&mut self, msg: Message, now: u64, faults: &Faults, rng: &mut SplitMix64) {
        if rng.chance(faults.drop) {
            return;
        }
        let copies = if rng.chance(faults.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let mut delay = rng.range(1, faults.max_delay + 1);
            if rng.chance(faults.spike) {
                delay += rng.range(20, 60);
            }
            self.sent += 1;
            self.in_flight.insert((now + delay, self.sent), msg.clone());
        }
    }

    /// Holds a message for a paused node until `at`, as its socket would.
    pub fn hold(&mut self, msg: Message, at: u64) {
        self.sent += 1;
        self.in_flight.insert((at, self.sent), msg);
    }

    /// Messages due by `now` that the partition lets through.
    pub fn due(&mut self, now: u64) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let msg = entry.remove();
            if self.connected(msg.from, msg.to) {
                out.push(msg);
            }
        }
        out
    }

    pub fn connected(&self, a: NodeId, b: NodeId) -> bool {
        // A node added after the partition began is on the first side.
        let group = |id: NodeId| self.groups.get((id - 1) as usize).copied().unwrap_or(0);
        self.groups.is_empty() || group(a) == group(b)
    }

    pub fn partition(&mut self, groups: Vec<usize>) {
        self.groups = groups;
    }

    pub fn heal(&mut self) {
        self.groups.clear();
    }

    pub fn is_partitioned(&self) -> bool {
        !self.groups.is_empty()
    }
}
