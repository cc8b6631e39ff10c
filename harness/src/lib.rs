//! The chaos harness: runs a CapuKV cluster, injects faults, records the
//! history and checks it. It composes `capukv`, `netem` and `checker`.
