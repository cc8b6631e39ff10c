//! Network fault injection into a network namespace (delay, loss,
//! duplication, reordering, partitions). It knows nothing of Raft. The
//! backends arrive with the netem issue.
