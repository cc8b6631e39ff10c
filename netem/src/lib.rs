//! Network fault injection into one node's network namespace.
//!
//! A [`Netem`] enters a namespace (named, or a process's, e.g. a container's)
//! from a thread of its own, and impairs the node's outgoing traffic: delay
//! with jitter, loss, duplication, reordering, corruption, rate limits, for
//! all destinations or for chosen peers, and partitions from peers.
//!
//! Two backends do the work, found by trying what the kernel accepts:
//! kernel netem over rtnetlink (a prio qdisc with netem children and u32
//! filters per destination, as Jepsen sets it up), or, where `sch_netem` is
//! missing, nftables (partitions, loss, duplication, per-peer rate), a tbf
//! qdisc (rate of all traffic) and a userspace shaper on NFQUEUE (delay,
//! jitter, reordering, corruption). [`Netem::capabilities`] says which serves
//! what. Every object is named so [`cleanup()`] finds it after a crash.
//!
//! The crate knows nothing of what runs in the namespace.

mod capabilities;
mod cleanup;
mod command;
mod error;
mod fault;
mod injector;
mod namespace;
mod netlink;
mod nfqueue;
mod nft;
pub mod probe;
pub mod route;
mod shaper;
pub mod tc;
pub mod topology;

pub use capabilities::{Backend, Capabilities};
pub use cleanup::{Leftovers, cleanup, inspect};
pub use error::{NetemError, Result};
pub use fault::{FaultKind, Impairment, Scope};
pub use injector::{BackendChoice, Netem, Options};
pub use namespace::{NETNS_DIR, NetNs, NsWorker, create_named, delete_named, list_named};
pub use shaper::ShaperStats;
pub use topology::{Host, Topology, cleanup_prefix};
