//! Who is in the cluster, and the quorum arithmetic over it (as etcd-raft's
//! `quorum/`): every "is this a majority" question the core asks is answered
//! here and nowhere else.
//!
//! # How membership changes
//!
//! One server at a time (Raft thesis §4.1), not joint consensus: each change
//! adds or removes at most one *voter* (learners come and go freely, and
//! promoting a learner adds one voter). Any majority of the old voters then
//! shares a node with any majority of the new ones, so no two leaders can be
//! elected by disjoint quorums while the change spreads. We chose it over
//! joint consensus because every change CapuKV needs (grow, shrink, replace a
//! node) is a sequence of single changes, and it keeps one configuration in
//! force at a time, which the simulation's invariants can check directly.
//!
//! Its rules, enforced by [`Raft::propose_membership`](super::Raft::propose_membership):
//!
//! - A configuration takes effect on every node as soon as its entry is in
//!   the node's log, committed or not (§4.1); a node whose log loses the
//!   entry (a conflicting append, a snapshot) goes back to the one before.
//! - At most one change is in flight: a leader accepts a change only once
//!   the previous one is committed.
//! - A leader accepts a change only once it has committed an entry of its
//!   own term. Without this rule (Ongaro's 2015 correction of the thesis's
//!   algorithm) a change appended by a leader of an old configuration and a
//!   different change by a newer leader can both commit on disjoint quorums.
//!
//! A removed node's id is retired for good: it is kept in every later
//! configuration and can never be added again. A node that comes back after
//! losing its disk under its old id could otherwise vote a second time in a
//! term it already voted in (its old votes are forgotten, and stale vote
//! requests of that term may still be on the way), and elect a second
//! leader of that term; the simulation found exactly that. A replacement
//! is a new member with a new id, as in etcd.
//!
//! Learners receive the log and snapshots but never vote, never campaign and
//! never count toward a quorum. A node that is not in its configuration
//! (removed, or joining and not yet told) never campaigns either, with one
//! exception: while the entry that removed it is not known committed, it
//! may be the only node that can finish the change (see `may_campaign`).

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes};

use super::error::RaftError;
use super::types::{Index, NodeId};

/// One configuration: the voters and the learners, disjoint sets, and the
/// ids removed before, which may never come back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    pub retired: BTreeSet<NodeId>,
}

/// How an election stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}

impl Membership {
    pub fn new(voters: impl IntoIterator<Item = NodeId>, learners: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            learners: learners.into_iter().collect(),
            retired: BTreeSet::new(),
        }
    }

    /// The configuration `voters` and `learners` make after this one: every
    /// member that leaves retires.
    pub fn next(&self, voters: BTreeSet<NodeId>, learners: BTreeSet<NodeId>) -> Membership {
        let mut retired = self.retired.clone();
        retired.extend(self.members().filter(|id| !voters.contains(id) && !learners.contains(id)));
        Membership { voters, learners, retired }
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Voters and learners, in id order.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        let mut all: Vec<NodeId> = self.voters.iter().chain(&self.learners).copied().collect();
        all.sort_unstable();
        all.into_iter()
    }

    /// How many voters make a majority.
    pub fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether the voters for which `has` holds are a majority. An empty
    /// configuration has no majority.
    pub fn has_quorum(&self, has: impl Fn(NodeId) -> bool) -> bool {
        !self.voters.is_empty() && self.voters.iter().filter(|&&v| has(v)).count() >= self.majority()
    }

    /// The highest index that a majority of voters hold, given each voter's
    /// acknowledged index (0 for an empty configuration).
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Index) -> Index {
        if self.voters.is_empty() {
            return 0;
        }
        let mut matched: Vec<Index> = self.voters.iter().map(|&v| acked(v)).collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        matched[self.majority() - 1]
    }

    /// An election's state from the answers so far (answers from non-voters
    /// count for nothing).
    pub fn vote_result(&self, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        let granted = self.voters.iter().filter(|v| votes.get(v) == Some(&true)).count();
        let refused = self.voters.iter().filter(|v| votes.get(v) == Some(&false)).count();
        if self.voters.is_empty() {
            VoteResult::Lost
        } else if granted >= self.majority() {
            VoteResult::Won
        } else if refused > self.voters.len() - self.majority() {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }

    /// Whether every majority of this configuration's voters shares a node
    /// with every majority of `other`'s: the property a change must keep so
    /// that two leaders of one term can never be elected by disjoint quorums.
    pub fn quorums_overlap(&self, other: &Membership) -> bool {
        if self.voters.is_empty() || other.voters.is_empty() {
            return false;
        }
        // The most disjoint pair of majorities takes as much as it can from
        // the voters only its own side has; the rest must come from the
        // shared voters, and overlap when they cannot both fit there.
        let shared = self.voters.intersection(&other.voters).count();
        let need = |c: &Membership, only: usize| c.majority().saturating_sub(only);
        let mine_only = self.voters.len() - shared;
        let theirs_only = other.voters.len() - shared;
        need(self, mine_only) + need(other, theirs_only) > shared
    }

    /// Whether `next` may follow this configuration: well formed, and at
    /// most one voter added or removed.
    pub fn check_change(&self, next: &Membership) -> Result<(), RaftError> {
        let bad = |why: String| Err(RaftError::BadMembershipChange(why));
        if next.voters.is_empty() {
            return bad("a cluster needs at least one voter".into());
        }
        if next.voters.contains(&0) || next.learners.contains(&0) {
            return bad("node id 0 is reserved".into());
        }
        if let Some(both) = next.voters.intersection(&next.learners).next() {
            return bad(format!("node {both} cannot be both a voter and a learner"));
        }
        if let Some(back) = next.members().find(|id| self.retired.contains(id) || next.retired.contains(id)) {
            return bad(format!(
                "node {back} was removed before; ids are never reused: add the replacement under a new id"
            ));
        }
        if let Some(kept) = self.retired.iter().find(|id| !next.retired.contains(id)) {
            return bad(format!("the change forgets that node {kept} was removed"));
        }
        let changed = self.voters.symmetric_difference(&next.voters).count();
        if changed > 1 {
            return bad(format!(
                "voters {:?} -> {:?} changes {changed} voters; change one at a time",
                self.voters, next.voters
            ));
        }
        Ok(())
    }

    /// The wire form inside a membership entry and a snapshot.
    pub fn encode(&self, out: &mut impl BufMut) {
        for set in [&self.voters, &self.learners, &self.retired] {
            out.put_u32_le(set.len() as u32);
            for &id in set {
                out.put_u64_le(id);
            }
        }
    }

    /// Reads what [`Membership::encode`] wrote from the front of `buf`,
    /// leaving the rest.
    pub fn decode(buf: &mut impl Buf) -> Result<Membership, RaftError> {
        let short = || RaftError::CorruptState("membership record is truncated".into());
        let mut sets = [BTreeSet::new(), BTreeSet::new(), BTreeSet::new()];
        for set in &mut sets {
            if buf.remaining() < 4 {
                return Err(short());
            }
            let n = buf.get_u32_le() as usize;
            if buf.remaining() < n.saturating_mul(8) {
                return Err(short());
            }
            for _ in 0..n {
                set.insert(buf.get_u64_le());
            }
        }
        let [voters, learners, retired] = sets;
        Ok(Membership { voters, learners, retired })
    }
}

/// What a membership entry carries: the whole new configuration (so a node
/// that loses later entries knows at once which one is in force) and the
/// caller's context for it, opaque to the core (CapuKV's server puts the
/// members' addresses there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipChange {
    pub membership: Membership,
    pub context: Bytes,
}

impl MembershipChange {
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        self.membership.encode(&mut out);
        out.extend_from_slice(&self.context);
        Bytes::from(out)
    }

    pub fn decode(data: &Bytes) -> Result<MembershipChange, RaftError> {
        let mut buf = data.clone();
        let membership = Membership::decode(&mut buf)?;
        Ok(MembershipChange { membership, context: buf })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(voters: &[NodeId], learners: &[NodeId]) -> Membership {
        Membership::new(voters.iter().copied(), learners.iter().copied())
    }

    #[test]
    fn committed_index_is_what_a_majority_of_voters_holds() {
        // (voters, learners, acked index per node id 1.., expected)
        type Row = (&'static [NodeId], &'static [NodeId], &'static [Index], Index);
        let table: &[Row] = &[
            (&[1], &[], &[7], 7),
            (&[1, 2], &[], &[7, 3], 3),
            (&[1, 2, 3], &[], &[7, 3, 5], 5),
            (&[1, 2, 3], &[4], &[7, 3, 0, 9], 3),
            (&[1, 2, 3, 4], &[], &[9, 8, 1, 1], 1),
            (&[1, 2, 3, 4, 5], &[], &[9, 8, 7, 1, 1], 7),
            // A learner far ahead never lifts the commit index.
            (&[1, 2, 3], &[4, 5], &[2, 2, 1, 9, 9], 2),
            (&[], &[1], &[5], 0),
        ];
        for &(voters, learners, acked, want) in table {
            let c = conf(voters, learners);
            let got = c.committed_index(|id| acked[(id - 1) as usize]);
            assert_eq!(got, want, "voters {voters:?} learners {learners:?} acked {acked:?}");
        }
    }

    #[test]
    fn votes_count_only_from_voters() {
        use VoteResult::*;
        // (voters, learners, granted, refused, expected)
        type Row = (&'static [NodeId], &'static [NodeId], &'static [NodeId], &'static [NodeId], VoteResult);
        let table: &[Row] = &[
            (&[1], &[], &[1], &[], Won),
            (&[1, 2, 3], &[], &[1], &[], Pending),
            (&[1, 2, 3], &[], &[1, 3], &[], Won),
            (&[1, 2, 3], &[], &[1], &[2, 3], Lost),
            (&[1, 2, 3], &[4, 5], &[1, 4, 5], &[], Pending),
            (&[1, 2, 3, 4], &[], &[1, 2], &[3], Pending),
            (&[1, 2, 3, 4], &[], &[1, 2], &[3, 4], Lost),
            (&[1, 2, 3, 4], &[], &[1, 2, 4], &[3], Won),
            // An answer from a node outside the configuration is ignored.
            (&[1, 2, 3], &[], &[1, 9], &[], Pending),
            (&[], &[], &[1], &[], Lost),
        ];
        for &(voters, learners, granted, refused, want) in table {
            let c = conf(voters, learners);
            let votes: BTreeMap<NodeId, bool> =
                granted.iter().map(|&v| (v, true)).chain(refused.iter().map(|&v| (v, false))).collect();
            assert_eq!(c.vote_result(&votes), want, "voters {voters:?} granted {granted:?} refused {refused:?}");
        }
    }

    #[test]
    fn has_quorum_needs_a_majority_of_voters() {
        let c = conf(&[1, 2, 3, 4, 5], &[6]);
        assert!(!c.has_quorum(|id| id <= 2 || id == 6));
        assert!(c.has_quorum(|id| id <= 3));
        assert!(!conf(&[], &[1]).has_quorum(|_| true));
    }

    #[test]
    fn quorums_overlap_exactly_when_no_two_majorities_can_be_disjoint() {
        // (old voters, new voters, overlap)
        let table: &[(&[NodeId], &[NodeId], bool)] = &[
            (&[1, 2, 3], &[1, 2, 3], true),
            (&[1, 2, 3], &[1, 2, 3, 4], true),
            (&[1, 2, 3], &[1, 2], true),
            (&[1], &[1, 2], true),
            (&[1, 2], &[1], true),
            (&[1, 2, 3], &[1, 2, 3, 4, 5], false), // {1,2} and {3,4,5}
            (&[1, 2, 3], &[1, 4, 5], false),
            (&[1, 2, 3, 4], &[1, 2, 3, 4, 5, 6], true), // 3 of the 4 and 2 of them: 5 > 4
            (&[1, 2], &[1, 2, 3, 4], true),             // both of 1,2 and 3 of 4
            (&[1, 2, 3, 4, 5], &[1, 2, 3, 4, 5, 6], true),
            (&[1, 2, 3, 4], &[1, 2, 3], true),
            (&[1], &[2], false),
        ];
        for &(old, new, want) in table {
            let (a, b) = (conf(old, &[]), conf(new, &[]));
            assert_eq!(a.quorums_overlap(&b), want, "{old:?} vs {new:?}");
            assert_eq!(b.quorums_overlap(&a), want, "symmetric: {new:?} vs {old:?}");
        }
        // Brute force over every pair of configurations drawn from 1..=5:
        // the formula agrees with enumerating majorities.
        let sets: Vec<Vec<NodeId>> =
            (1u32..32).map(|m| (1..=5).filter(|i| m & (1 << (i - 1)) != 0).collect()).collect();
        let majorities = |v: &[NodeId]| -> Vec<Vec<NodeId>> {
            let need = v.len() / 2 + 1;
            (0u32..(1 << v.len()))
                .filter(|m| m.count_ones() as usize == need)
                .map(|m| v.iter().enumerate().filter(|(i, _)| m & (1 << i) != 0).map(|(_, &id)| id).collect())
                .collect()
        };
        for a in &sets {
            for b in &sets {
                let brute =
                    majorities(a).iter().all(|qa| majorities(b).iter().all(|qb| qa.iter().any(|x| qb.contains(x))));
                assert_eq!(conf(a, &[]).quorums_overlap(&conf(b, &[])), brute, "{a:?} vs {b:?}");
                if conf(a, &[]).check_change(&conf(b, &[])).is_ok() {
                    assert!(brute, "a change the rule allows must keep quorums overlapping: {a:?} -> {b:?}");
                }
            }
        }
    }

    #[test]
    fn a_change_moves_at_most_one_voter() {
        let three = conf(&[1, 2, 3], &[]);
        // (next voters, next learners, allowed)
        let table: &[(&[NodeId], &[NodeId], bool)] = &[
            (&[1, 2, 3], &[4], true),       // add a learner
            (&[1, 2, 3, 4], &[], true),     // add (or promote) a voter
            (&[1, 2], &[], true),           // remove a voter
            (&[1, 2], &[3], true),          // demote a voter to learner
            (&[1, 2, 3, 4, 5], &[], false), // two voters at once
            (&[1, 4], &[], false),          // replace in one step
            (&[1, 2, 3], &[3], false),      // both voter and learner
            (&[], &[1], false),             // no voters
            (&[1, 2, 3], &[0], false),      // reserved id
        ];
        for &(voters, learners, ok) in table {
            let next = conf(voters, learners);
            assert_eq!(three.check_change(&next).is_ok(), ok, "{three:?} -> {next:?}");
        }
        assert!(conf(&[1], &[]).check_change(&conf(&[1, 2], &[])).is_ok(), "one voter grows to two");
        // A removed id retires: it can never come back, and stays retired.
        let two = three.next([1, 2].into(), [].into());
        assert_eq!(two.retired, [3].into());
        assert!(three.check_change(&two).is_ok());
        let back = two.next([1, 2, 3].into(), [].into());
        assert!(two.check_change(&back).unwrap_err().to_string().contains("never reused"));
        let back_as_learner = two.next([1, 2].into(), [3].into());
        assert!(two.check_change(&back_as_learner).is_err());
        assert!(two.check_change(&conf(&[1, 2], &[4])).unwrap_err().to_string().contains("forgets"));
        assert!(two.check_change(&two.next([1, 2].into(), [4].into())).is_ok(), "a new id is welcome");
    }

    #[test]
    fn a_change_round_trips_through_its_encoding_and_refuses_a_short_one() {
        let change = MembershipChange { membership: conf(&[1, 2, 7], &[9]), context: Bytes::from_static(b"ctx") };
        let data = change.encode();
        assert_eq!(MembershipChange::decode(&data).unwrap(), change);
        assert!(MembershipChange::decode(&data.slice(..10)).is_err());
        assert!(MembershipChange::decode(&Bytes::new()).is_err());
    }
}
