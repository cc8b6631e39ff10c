//! Which mechanism serves each fault kind in a given namespace.

use std::fmt;

use crate::fault::{FaultKind, Scope};

/// A mechanism that implements faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `sch_netem` qdiscs (with prio and u32 filters per destination), over rtnetlink.
    KernelNetem,
    /// Rules in our nftables table.
    Nftables,
    /// The userspace shaper reading an NFQUEUE.
    NfqueueShaper,
    /// A `tbf` qdisc over rtnetlink.
    Tbf,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::KernelNetem => "kernel netem (rtnetlink)",
            Backend::Nftables => "nftables",
            Backend::NfqueueShaper => "NFQUEUE shaper",
            Backend::Tbf => "tbf (rtnetlink)",
        })
    }
}

/// What a namespace's kernel offers, found by trying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub kernel_netem: bool,
}

impl Capabilities {
    /// The backend that serves `kind` for `scope`.
    pub fn backend(&self, kind: FaultKind, scope: &Scope) -> Backend {
        match (kind, self.kernel_netem) {
            (FaultKind::Partition, _) => Backend::Nftables,
            (_, true) => Backend::KernelNetem,
            (FaultKind::Loss | FaultKind::Duplicate, false) => Backend::Nftables,
            (FaultKind::Rate, false) if *scope == Scope::All => Backend::Tbf,
            (FaultKind::Rate, false) => Backend::Nftables,
            (FaultKind::Delay | FaultKind::Reorder | FaultKind::Corrupt, false) => Backend::NfqueueShaper,
        }
    }

    /// One line per fault kind, for logs and `--help`-like output.
    pub fn describe(&self) -> Vec<(FaultKind, Backend)> {
        FaultKind::ALL.iter().map(|&k| (k, self.backend(k, &Scope::Peers(Vec::new())))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_kernel_netem_every_kind_still_has_a_backend() {
        let c = Capabilities { kernel_netem: false };
        assert_eq!(c.backend(FaultKind::Delay, &Scope::All), Backend::NfqueueShaper);
        assert_eq!(c.backend(FaultKind::Loss, &Scope::All), Backend::Nftables);
        assert_eq!(c.backend(FaultKind::Rate, &Scope::All), Backend::Tbf);
        assert_eq!(c.backend(FaultKind::Rate, &Scope::Peers(vec![])), Backend::Nftables);
        let k = Capabilities { kernel_netem: true };
        assert_eq!(k.backend(FaultKind::Reorder, &Scope::All), Backend::KernelNetem);
        assert_eq!(k.backend(FaultKind::Partition, &Scope::All), Backend::Nftables);
    }
}
