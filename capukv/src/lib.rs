//! CapuKV: a small, strongly consistent key-value store on its own Raft.
//!
//! - [`raft`]: the consensus core, a pure deterministic state machine.
//! - [`sim`]: a seeded, deterministic simulation of whole clusters of the
//!   core under a hostile network and crashes, checking Raft's invariants.
//! - [`storage`]: the node's RocksDB (log, hard state, snapshot, identity).
//! - [`state_machine`]: the replicated key-value map with revisions and
//!   exactly-once client sessions.
//! - [`server`]: a node: the Raft loop, the transport and the gRPC services.
//! - [`client`]: the client library; [`bench`]: the load generator.
//! - [`tls`]: optional mutual TLS on both ports.
//! - [`failpoints`]: named crash, stall and error windows in the server
//!   (working with the feature `failpoints` only).
//! - `planted` (feature `planted-bugs` only): bugs planted on purpose, to
//!   measure what the harness and the simulation catch.

pub mod bench;
pub mod client;
mod coalesce;
mod convert;
pub mod failpoints;
#[cfg(feature = "planted-bugs")]
pub mod planted;
pub mod proto;
pub mod raft;
pub mod server;
pub mod sim;
pub mod state_machine;
pub mod storage;
pub mod tls;
pub mod txn;

pub use client::{Client, ClientError};
