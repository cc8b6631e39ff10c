//! Linearizability checking of recorded client histories.
//!
//! This crate knows nothing of CapuKV: it reads histories in the format of
//! `shared/history-format.md` and searches them for a linearization. The search
//! itself arrives with the checker issue; the crate exists now so the workspace
//! has its final shape.
