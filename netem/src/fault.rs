//! What a caller asks for: impairments of a node's outgoing traffic, on all
//! destinations or on a set of peers, and partitions.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::error::{NetemError, Result};

/// Which outgoing traffic a fault applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything leaving the interface.
    All,
    /// Only packets to these addresses (one link or several).
    Peers(Vec<Ipv4Addr>),
}

/// Impairments of outgoing traffic, netem's vocabulary; percentages are 0 to 100.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Impairment {
    pub delay: Duration,
    pub jitter: Duration,
    pub delay_correlation: f64,
    pub loss: f64,
    pub loss_correlation: f64,
    pub duplicate: f64,
    /// Share of packets sent at once, ahead of delayed ones (needs a delay).
    pub reorder: f64,
    pub corrupt: f64,
    /// Bytes per second.
    pub rate: Option<u64>,
}

impl Impairment {
    pub fn delay(delay: Duration, jitter: Duration) -> Impairment {
        Impairment { delay, jitter, ..Default::default() }
    }

    pub fn loss(percent: f64) -> Impairment {
        Impairment { loss: percent, ..Default::default() }
    }

    pub fn duplicate(percent: f64) -> Impairment {
        Impairment { duplicate: percent, ..Default::default() }
    }

    pub fn reorder(percent: f64, delay: Duration) -> Impairment {
        Impairment { reorder: percent, delay, ..Default::default() }
    }

    pub fn corrupt(percent: f64) -> Impairment {
        Impairment { corrupt: percent, ..Default::default() }
    }

    pub fn rate(bytes_per_sec: u64) -> Impairment {
        Impairment { rate: Some(bytes_per_sec), ..Default::default() }
    }

    pub fn validate(&self) -> Result<()> {
        let percents = [
            ("delay correlation", self.delay_correlation),
            ("loss", self.loss),
            ("loss correlation", self.loss_correlation),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
            ("corrupt", self.corrupt),
        ];
        for (name, value) in percents {
            if !(0.0..=100.0).contains(&value) {
                return Err(NetemError::InvalidFault(format!("{name} {value}% is outside 0..=100")));
            }
        }
        if self.reorder > 0.0 && self.delay.is_zero() {
            return Err(NetemError::InvalidFault("reordering needs a delay to reorder around".into()));
        }
        if self.jitter > self.delay {
            return Err(NetemError::InvalidFault(format!("jitter {:?} exceeds delay {:?}", self.jitter, self.delay)));
        }
        if self.rate == Some(0) {
            return Err(NetemError::InvalidFault("a rate of 0 bytes/s would be a partition; use partition".into()));
        }
        if *self == Impairment::default() {
            return Err(NetemError::InvalidFault("no impairment given".into()));
        }
        Ok(())
    }

    /// The kinds of fault this impairment contains.
    pub fn kinds(&self) -> Vec<FaultKind> {
        let mut kinds = Vec::new();
        if !self.delay.is_zero() && self.reorder < 100.0 {
            kinds.push(FaultKind::Delay);
        }
        if self.loss > 0.0 {
            kinds.push(FaultKind::Loss);
        }
        if self.duplicate > 0.0 {
            kinds.push(FaultKind::Duplicate);
        }
        if self.reorder > 0.0 {
            kinds.push(FaultKind::Reorder);
        }
        if self.corrupt > 0.0 {
            kinds.push(FaultKind::Corrupt);
        }
        if self.rate.is_some() {
            kinds.push(FaultKind::Rate);
        }
        kinds
    }
}

impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.delay.is_zero() {
            parts.push(format!("delay {:?} ±{:?} ({}% corr)", self.delay, self.jitter, self.delay_correlation));
        }
        if self.loss > 0.0 {
            parts.push(format!("loss {}%", self.loss));
        }
        if self.duplicate > 0.0 {
            parts.push(format!("duplicate {}%", self.duplicate));
        }
        if self.reorder > 0.0 {
            parts.push(format!("reorder {}%", self.reorder));
        }
        if self.corrupt > 0.0 {
            parts.push(format!("corrupt {}%", self.corrupt));
        }
        if let Some(rate) = self.rate {
            parts.push(format!("rate {rate} B/s"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// A kind of fault, for [`crate::Capabilities`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    Delay,
    Loss,
    Duplicate,
    Reorder,
    Corrupt,
    Rate,
    Partition,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Delay,
        FaultKind::Loss,
        FaultKind::Duplicate,
        FaultKind::Reorder,
        FaultKind::Corrupt,
        FaultKind::Rate,
        FaultKind::Partition,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        let bad = [
            (Impairment::loss(130.0), "outside"),
            (Impairment { reorder: 10.0, ..Default::default() }, "needs a delay"),
            (Impairment::delay(Duration::from_millis(1), Duration::from_millis(5)), "exceeds"),
            (Impairment::rate(0), "partition"),
            (Impairment::default(), "no impairment"),
        ];
        for (impairment, reason) in bad {
            let err = impairment.validate().unwrap_err().to_string();
            assert!(err.contains(reason), "{err}");
        }
        assert!(Impairment::delay(Duration::from_millis(50), Duration::from_millis(10)).validate().is_ok());
    }
}
