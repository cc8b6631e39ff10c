//! CapuKV's Raft core: a deterministic state machine in the style of
//! etcd-io/raft and tikv/raft-rs. It does no I/O, reads no clock, spawns
//! nothing and draws randomness only from the seed in its [`Config`].
//!
//! # Inputs
//!
//! - [`Raft::tick`]: one unit of logical time. Election and heartbeat
//!   timeouts are counted in ticks.
//! - [`Raft::step`]: a message from a peer.
//! - [`Raft::propose`], [`Raft::read_index`], [`Raft::transfer_leader`]:
//!   client requests (the leader takes them; others answer `NotLeader`).
//! - [`Raft::propose_membership`]: a membership change (one voter at a
//!   time; the rules are in the `membership` module).
//! - [`Raft::compact`]: the caller snapshotted its state machine.
//! - [`Raft::new`]: what storage held at start ([`PersistedState`]).
//!
//! # Output and the caller's contract
//!
//! After any input, the caller drains [`Raft::ready`] and must handle the
//! [`Ready`] batch in this order:
//!
//! 1. **Persist first.** Make the snapshot, the entries and the hard state
//!    (term, vote, commit) durable *before* sending any message of the batch:
//!    a vote or an acknowledgement promises that its state survives a crash.
//!    An entry at index `i` replaces every persisted entry from `i` on. Then
//!    report it with [`Raft::persisted`]: the core assumes nothing is on
//!    disk that it was not told of, and the leader counts its own log toward
//!    commit only that far.
//! 2. **Then send** the messages, in any order, over any transport that may
//!    lose, duplicate or reorder them. When [`Ready::send_first`] is set (a
//!    leader whose term and vote are durable), the messages may go out
//!    before step 1, so the leader's fsync overlaps its followers'.
//! 3. **Apply in order**: restore the snapshot (if any), then apply the
//!    committed entries by increasing index, each exactly once; those up to
//!    [`Ready::persisted_index`] may be applied while step 1 runs, the rest
//!    only after it.
//! 4. **Reads**: answer a [`ReadState`] once the state machine's applied index
//!    reaches its index; fail the `dropped_reads`.
//!
//! A proposal returned index `i` in term `t`: it succeeded if and only if the
//! entry applied at `i` has term `t`.
//!
//! # Where each rule lives
//!
//! - `step.rs`: term comparison, the CheckQuorum lease, one step function per
//!   role (`step_leader`, `step_candidate`, `step_follower`).
//! - `election.rs`: ticks, PreVote and elections, vote granting, CheckQuorum.
//! - `replication.rs`: appends, conflict hints, pipelining, snapshots,
//!   commit, heartbeats, ReadIndex rounds, and the follower's side of each.
//! - `membership.rs`: configurations, how they change, and every quorum
//!   question (majorities, commit index, election tallies).
//! - `log.rs`, `progress.rs`, `read_index.rs`: the data structures.

mod config;
mod election;
mod error;
mod log;
mod membership;
mod message;
mod node;
mod progress;
mod read_index;
mod ready;
mod replication;
mod rng;
mod step;
mod types;

pub use config::Config;
pub use error::RaftError;
pub use membership::{Membership, MembershipChange, VoteResult};
pub use message::{AppendResponse, Message, MessageBody};
pub use node::Raft;
pub use ready::{ReadState, Ready, Role, SoftState};
pub use rng::SplitMix64;
pub use types::{Entry, EntryKind, HardState, Index, NodeId, PersistedState, Snapshot, SnapshotMeta, Term};
