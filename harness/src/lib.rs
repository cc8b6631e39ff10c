//! The chaos harness: runs a CapuKV cluster, injects faults, records the
//! history and checks it. It composes `capukv`, `netem` and `checker`.
//!
//! - [`options`]: what defines a run (and run.json's record of it);
//!   [`knobs`]: the servers' Raft knobs, fixed or drawn from the seed.
//! - [`runtime`]: where nodes run ([`runtime::netns`]: namespaces on a bridge).
//! - [`nemesis`]: the seeded fault schedule and the faults themselves.
//! - [`workload`]: what clients ask of the store, and the model that judges it.
//! - [`recorder`]: the history, streamed to disk as it happens.
//! - [`run`]: one run from start to verdict; [`rundir`]: its files;
//!   [`report`]: its index.html; [`site`]: the index of many runs.
//! - [`checks`]: end-of-run checks beside the checker's (replicas, logs, statistics).
//! - [`suite`]: suites of runs from a TOML matrix; [`trend`]: suites over time.
//! - [`exit`]: the exit statuses every subcommand of `capukv-chaos` shares.

pub mod checks;
pub mod exit;
pub mod knobs;
pub mod nemesis;
pub mod options;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod run;
pub mod rundir;
pub mod runtime;
pub mod site;
pub mod suite;
pub mod trend;
pub mod workload;
