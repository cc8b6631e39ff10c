//! CapuKV: a small, strongly consistent key-value store on its own Raft.
//!
//! - [`raft`]: the consensus core, a pure deterministic state machine.
//! - [`sim`]: a seeded, deterministic simulation of whole clusters of the
//!   core under a hostile network and crashes, checking Raft's invariants.

pub mod raft;
pub mod sim;
