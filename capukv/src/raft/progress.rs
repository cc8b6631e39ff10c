//! What a leader knows about each follower's log, and the flow control that
//! keeps replication pipelined without flooding a slow or lost follower.

use super::types::Index;

/// How the leader is currently replicating to a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// Where the follower's log matches is unknown: send one `Append` at a
    /// time and wait for its answer (or a heartbeat answer) before the next.
    Probe,
    /// The follower's log matches up to `match_index`: stream `Append`s
    /// optimistically, up to the in-flight window.
    Replicate,
    /// A snapshot at `index` is on its way; send nothing until it lands.
    Snapshot { index: Index },
}

#[derive(Debug, Clone)]
pub struct Progress {
    /// Highest index known to be replicated on the follower.
    pub match_index: Index,
    /// Next index to send.
    pub next_index: Index,
    pub state: ProgressState,
    /// In `Probe`: an `Append` was sent and is unanswered.
    pub probe_sent: bool,
    /// Last index of each unacknowledged `Append` in `Replicate`, oldest first.
    pub inflight: std::collections::VecDeque<Index>,
    /// Heard from since the leader last checked its quorum.
    pub recent_active: bool,
    /// Ticks since a snapshot was sent; one lost on the way is sent again
    /// after an election timeout.
    pub snapshot_ticks: u32,
}

impl Progress {
    pub fn new(next_index: Index) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: Default::default(),
            recent_active: true,
            snapshot_ticks: 0,
        }
    }

    /// Whether another `Append` may be sent now.
    pub fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= max_inflight,
            ProgressState::Snapshot { .. } => true,
        }
    }

    pub fn become_probe(&mut self) {
        // After a snapshot, resume right after it.
        if let ProgressState::Snapshot { index } = self.state {
            self.next_index = self.next_index.max(index + 1).max(self.match_index + 1);
        } else {
            self.next_index = self.match_index + 1;
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    pub fn become_snapshot(&mut self, index: Index) {
        self.state = ProgressState::Snapshot { index };
        self.probe_sent = false;
        self.inflight.clear();
        self.snapshot_ticks = 0;
    }

    /// Records that an `Append` ending at `last` was sent.
    pub fn sent_append(&mut self, last: Index) {
        match self.state {
            ProgressState::Replicate => {
                if last >= self.next_index {
                    self.next_index = last + 1;
                    self.inflight.push_back(last);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot { .. } => {}
        }
    }

    /// An acknowledgement up to `index`. Returns whether it told the leader
    /// something new; old acknowledgements (reordered or duplicated) do not.
    pub fn ack(&mut self, index: Index) -> bool {
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        while self.inflight.front().is_some_and(|&last| last <= index) {
            self.inflight.pop_front();
        }
        advanced
    }

    /// A rejection of the `Append` whose previous index was `rejected`; the
    /// leader's own search says probing at `probe_at` is worthwhile. Returns
    /// false for a stale rejection that must be ignored.
    pub fn reject(&mut self, rejected: Index, probe_at: Index) -> bool {
        match self.state {
            ProgressState::Replicate => {
                // Stale: the entries it rejected are already known matched.
                if rejected <= self.match_index {
                    return false;
                }
                self.become_probe();
                self.next_index = (probe_at + 1).min(rejected).max(self.match_index + 1);
                true
            }
            ProgressState::Probe => {
                // Only the answer to the probe in flight counts.
                if self.next_index == 0 || rejected != self.next_index - 1 {
                    return false;
                }
                self.next_index = (probe_at + 1).min(rejected).max(self.match_index + 1);
                self.probe_sent = false;
                true
            }
            ProgressState::Snapshot { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_window_fills_and_drains_with_acks() {
        let mut p = Progress::new(1);
        p.become_replicate();
        for last in [5, 10, 15] {
            p.sent_append(last);
        }
        assert!(p.is_paused(3));
        assert_eq!(p.next_index, 16);
        assert!(p.ack(10));
        assert!(!p.is_paused(3));
        assert_eq!(p.inflight.len(), 1);
        // A duplicated, older ack changes nothing.
        assert!(!p.ack(5));
        assert_eq!(p.match_index, 10);
    }

    #[test]
    fn stale_rejections_are_ignored() {
        let mut p = Progress::new(11);
        p.ack(8);
        p.become_replicate();
        p.sent_append(12);
        assert!(!p.reject(7, 3), "rejection below match is stale");
        assert!(p.reject(10, 9));
        assert_eq!(p.state, ProgressState::Probe);
        assert_eq!(p.next_index, 10);
        assert!(!p.reject(5, 2), "not the probe in flight");
        assert!(p.reject(9, 2));
        assert_eq!(p.next_index, 9, "never below match + 1");
    }
}
