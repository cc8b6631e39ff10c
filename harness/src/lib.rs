//! The chaos harness: runs a CapuKV cluster, injects faults, records the
//! history and checks it. It composes `capukv`, `netem` and `checker`.
//!
//! - [`exit`]: the exit statuses every subcommand of `capukv-chaos` shares.

pub mod exit;
