//! ReadIndex (thesis §6.4): a leader answers a linearizable read at its
//! commit index once a heartbeat round shows a quorum still follows it.
//!
//! Reads that arrive between two flushes share one round. Rounds are
//! numbered; a follower's answer to round `r` was sent after every round up
//! to `r` began, so it confirms all of them. Confirmed rounds are therefore
//! always a prefix of the rounds in flight.

use std::collections::VecDeque;

use super::ready::ReadState;
use super::types::{Index, NodeId};

#[derive(Debug, Default, Clone)]
pub struct ReadIndexRounds {
    /// Requests not yet in a round (waiting for a flush, or for the leader's
    /// first commit in its term).
    waiting: Vec<u64>,
    rounds: VecDeque<Round>,
    last_round: u64,
}

#[derive(Debug, Clone)]
struct Round {
    id: u64,
    index: Index,
    requests: Vec<u64>,
    acks: Vec<NodeId>,
}

impl ReadIndexRounds {
    pub fn enqueue(&mut self, request: u64) {
        self.waiting.push(request);
    }

    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The newest round begun; heartbeats carry it so that every heartbeat
    /// answer confirms the rounds before it.
    pub fn last_round(&self) -> u64 {
        self.last_round
    }

    /// Puts every waiting request in a new round at `index`, acknowledged by
    /// `self_id`. Returns the round's id.
    pub fn start_round(&mut self, index: Index, self_id: NodeId) -> u64 {
        self.last_round += 1;
        let requests = std::mem::take(&mut self.waiting);
        self.rounds.push_back(Round { id: self.last_round, index, requests, acks: vec![self_id] });
        self.last_round
    }

    /// Records `from`'s answer to round `round` and returns the reads whose
    /// rounds now have a quorum (`is_quorum` of their acknowledgements,
    /// the leader's included).
    pub fn acknowledge(&mut self, from: NodeId, round: u64, is_quorum: impl Fn(&[NodeId]) -> bool) -> Vec<ReadState> {
        for r in self.rounds.iter_mut().take_while(|r| r.id <= round) {
            if !r.acks.contains(&from) {
                r.acks.push(from);
            }
        }
        let mut ready = Vec::new();
        while self.rounds.front().is_some_and(|r| is_quorum(&r.acks)) {
            let r = self.rounds.pop_front().expect("front exists");
            ready.extend(r.requests.into_iter().map(|request| ReadState { request, index: r.index }));
        }
        ready
    }

    /// Forgets every read (leadership lost) and returns their request ids.
    pub fn drop_all(&mut self) -> Vec<u64> {
        let mut dropped = std::mem::take(&mut self.waiting);
        dropped.extend(self.rounds.drain(..).flat_map(|r| r.requests));
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_to_a_later_round_confirms_the_earlier_ones() {
        let mut reads = ReadIndexRounds::default();
        reads.enqueue(1);
        reads.enqueue(2);
        let first = reads.start_round(5, 1);
        reads.enqueue(3);
        let second = reads.start_round(7, 1);
        let two = |acks: &[NodeId]| acks.len() >= 2;
        assert!(reads.acknowledge(2, first - 1, two).is_empty(), "answer to an older round confirms nothing");
        let ready = reads.acknowledge(3, second, two);
        assert_eq!(
            ready,
            vec![
                ReadState { request: 1, index: 5 },
                ReadState { request: 2, index: 5 },
                ReadState { request: 3, index: 7 }
            ]
        );
    }

    #[test]
    fn dropping_returns_every_pending_request() {
        let mut reads = ReadIndexRounds::default();
        reads.enqueue(1);
        reads.start_round(1, 1);
        reads.enqueue(2);
        let mut dropped = reads.drop_all();
        dropped.sort();
        assert_eq!(dropped, vec![1, 2]);
        assert!(reads.acknowledge(2, 10, |_| true).is_empty());
    }
}
