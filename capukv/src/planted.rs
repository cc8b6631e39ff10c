//! Planted bugs: classic Raft and key-value store mistakes, each switched on
//! by name (`capukv server --planted-bug NAME`, or the simulation's
//! `planted` option) so that the chaos harness and the simulation can be
//! measured by what they catch. Compiled only with the cargo feature
//! `planted-bugs`; a normal build contains none of them, and refuses the
//! flag at startup.
//!
//! Each bug is a small change at the real code path, marked
//! `planted::Bug::Name` there, never a second code path. The bugs of the Raft
//! core are read from [`crate::raft::Config::planted`] (so one process can
//! simulate many clusters with different bugs); the server's own bugs from
//! the process-wide choice made at startup ([`set`]), since one server
//! process runs one node.
//!
//! | bug | what it breaks | where | meant to be caught by |
//! | --- | --- | --- | --- |
//! | `read-index-no-quorum` | a leader confirms ReadIndex reads alone, with no heartbeat round | core, `start_read_round` | a leader cut off from its peers but not from clients serves stale reads until CheckQuorum retires it: `partition` (isolate the leader) with a slow clock on it (`clock`), linearizability check |
//! | `read-index-before-term-commit` | a new leader serves reads before it committed an entry of its term (§6.4), at a commit index that may miss writes acknowledged by the old leader | core, `flush` | the simulation's read-safety invariant in long runs under every fault (`simulate --ticks 100000 --faults all`: 10 of 10); a real cluster's window is one fsync wide |
//! | `commit-alone` | the leader counts only its own log toward commit | core, `maybe_commit` | a leader cut off under load commits and answers alone: replica-convergence check, linearizability (`partition`) |
//! | `commit-old-term` | a leader commits entries of earlier terms by counting replicas (Figure 8) | core, `maybe_commit` | the simulation's leader completeness, in long runs under every fault (about 1 in 3); a real cluster almost never: the new leader's first entry of its term travels with the old ones |
//! | `ack-on-send` | the leader counts an entry as replicated on a follower once it is sent, before the follower made it durable | core, `send_append` | lost acknowledged writes when the followers never got it: `partition`, `netem` loss, linearizability and lost-append checks |
//! | `apply-before-durable` | committed entries are applied before they are on the node's own disk | core, `ready` (`persisted_index`) | the simulation's durability check (every run); a real cluster's window is one batch wide |
//! | `no-fsync` | the Raft log is never fsynced | server, `Storage::persist` | `power` (lose unsynced writes): lost acknowledged writes; never by `kill` (SIGKILL keeps the page cache) |
//! | `snapshot-one-entry-short` | a snapshot is labelled one entry past the state it holds | server, `state_machine::snapshot` | a follower catching up by snapshot lacks one write: replica-convergence check (`kill`, `partition`) |
//! | `append-without-log-matching` | a follower accepts an append without checking the previous entry's term | core, `handle_append` | divergent logs after leader changes: the simulation's log-matching and state-machine invariants in long runs under every fault (10 of 10); replica convergence on a real cluster, which rarely meets the two leader changes it needs |
//! | `follower-stale-reads` | a follower serves linearizable reads from its own state | server, KV API | stale reads on a lagging follower: `netem` slow links (the leader's messages to some followers arrive late; a cut-off follower gives up on its leader after one election timeout and stops serving), `partition`, `pause` |
//! | `no-sessions` | exactly-once sessions are off: a retried write applies again | server, state machine | a write whose answer was lost and that the client retried applies twice: `netem` lost answers (the leader's answers to clients dropped while it leads), `pause`; lost-append/linearizability checks |
//! | `vote-not-durable` | a vote is written but not synced before the vote is granted | server, `Storage::persist` | two leaders in a term after a power loss: `power` |
//! | `revision-from-keys` | the store revision is rebuilt on start from the keys' largest mod revision, forgetting revisions that deletes took: after a restart the node numbers changes again from a smaller revision, while every value stays right | server, `StateMachine::open` | `kill` with the `kv` workload (deletes): the revision check (a revision that goes back in real time, two changes at one revision), replica convergence |
//! | `txn-split` | a transaction is proposed as two commands (the first half of its branch, then the rest): another command can come between them, so the transaction is neither atomic nor isolated | server, KV API `txn` | the `txn` workload under any nemesis (load alone interleaves them): the transactional checker names the anomaly (G-single read skew, G2, G1c, an intermediate read) |
//! | `snapshot-without-history` | a follower that installs a snapshot keeps its current records and sessions but not the version history it carries: reads at past revisions on it find nothing | server, `StateMachine::restore` | a follower catching up by snapshot (`kill`, `partition` under load): replica-convergence check (the digest covers the history) |
//! | `compaction-drops-visible` | compaction at revision C also discards each key's newest version at or below C, the one reads at C and later still see: a read in the past finds the key absent. Every replica does the same, so their digests agree | server, `state_machine::mvcc` compaction | the version-history check (values the history saw read back at their revisions) under any nemesis, once the servers compact (the harness keeps 500 to 10,000 revisions) |
//! | `trust-damaged-log` | a node starts on whatever its damaged log still holds: RocksDB's default point-in-time WAL recovery (replay stops quietly at a bad record), and no durability-mark check | server, `Storage::open` | a node that lost synced entries votes and serves as if it had them: `corrupt`, lost-append/linearizability checks |

use std::fmt;
use std::sync::OnceLock;

/// One planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    ReadIndexNoQuorum,
    ReadIndexBeforeTermCommit,
    CommitAlone,
    CommitOldTerm,
    AckOnSend,
    ApplyBeforeDurable,
    NoFsync,
    SnapshotOneEntryShort,
    AppendWithoutLogMatching,
    FollowerStaleReads,
    NoSessions,
    VoteNotDurable,
    TrustDamagedLog,
    RevisionFromKeys,
    TxnSplit,
    SnapshotWithoutHistory,
    CompactionDropsVisible,
}

impl Bug {
    pub const ALL: [Bug; 17] = [
        Bug::ReadIndexNoQuorum,
        Bug::ReadIndexBeforeTermCommit,
        Bug::CommitAlone,
        Bug::CommitOldTerm,
        Bug::AckOnSend,
        Bug::ApplyBeforeDurable,
        Bug::NoFsync,
        Bug::SnapshotOneEntryShort,
        Bug::AppendWithoutLogMatching,
        Bug::FollowerStaleReads,
        Bug::NoSessions,
        Bug::VoteNotDurable,
        Bug::TrustDamagedLog,
        Bug::RevisionFromKeys,
        Bug::TxnSplit,
        Bug::SnapshotWithoutHistory,
        Bug::CompactionDropsVisible,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::ReadIndexNoQuorum => "read-index-no-quorum",
            Bug::ReadIndexBeforeTermCommit => "read-index-before-term-commit",
            Bug::CommitAlone => "commit-alone",
            Bug::CommitOldTerm => "commit-old-term",
            Bug::AckOnSend => "ack-on-send",
            Bug::ApplyBeforeDurable => "apply-before-durable",
            Bug::NoFsync => "no-fsync",
            Bug::SnapshotOneEntryShort => "snapshot-one-entry-short",
            Bug::AppendWithoutLogMatching => "append-without-log-matching",
            Bug::FollowerStaleReads => "follower-stale-reads",
            Bug::NoSessions => "no-sessions",
            Bug::VoteNotDurable => "vote-not-durable",
            Bug::TrustDamagedLog => "trust-damaged-log",
            Bug::RevisionFromKeys => "revision-from-keys",
            Bug::TxnSplit => "txn-split",
            Bug::SnapshotWithoutHistory => "snapshot-without-history",
            Bug::CompactionDropsVisible => "compaction-drops-visible",
        }
    }

    /// Whether the bug lives in the Raft core (and so can be simulated).
    pub fn in_core(self) -> bool {
        matches!(
            self,
            Bug::ReadIndexNoQuorum
                | Bug::ReadIndexBeforeTermCommit
                | Bug::CommitAlone
                | Bug::CommitOldTerm
                | Bug::AckOnSend
                | Bug::ApplyBeforeDurable
                | Bug::AppendWithoutLogMatching
        )
    }

    pub fn from_name(name: &str) -> Result<Bug, String> {
        Bug::ALL.into_iter().find(|b| b.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
            format!("unknown planted bug {name:?}; the catalogue: {}", names.join(", "))
        })
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

static PROCESS_BUG: OnceLock<Bug> = OnceLock::new();

/// Chooses this process's bug (once, at startup).
pub fn set(bug: Bug) {
    let _ = PROCESS_BUG.set(bug);
    tracing::warn!(bug = %bug, "PLANTED BUG active: this node is wrong on purpose");
}

/// Whether the server's bug `bug` is switched on in this process.
pub fn active(bug: Bug) -> bool {
    PROCESS_BUG.get() == Some(&bug)
}

/// This process's bug, if any.
pub fn current() -> Option<Bug> {
    PROCESS_BUG.get().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_catalogue() {
        for bug in Bug::ALL {
            assert_eq!(Bug::from_name(bug.name()), Ok(bug));
        }
        let err = Bug::from_name("nope").unwrap_err();
        assert!(err.contains("commit-alone") && err.contains("no-fsync"), "{err}");
    }
}
