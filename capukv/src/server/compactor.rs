//! Automatic compaction of the version history, as etcd's
//! `--auto-compaction-mode`: every node watches its own revision and
//! proposes a `Compact`; only the leader's proposal gets into the log, so
//! followers' attempts are refused as "not the leader" and cost nothing.
//! Compaction itself is a replicated command (see `state_machine::mvcc`),
//! so every replica discards the same versions.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::api::Api;
use crate::proto::{self, command};
use crate::state_machine;

/// How much history a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Only what `Compact` requests discard.
    Off,
    /// The last this many revisions.
    Revisions(u64),
    /// What was written within this long.
    Period(Duration),
}

impl AutoCompaction {
    /// From `--auto-compaction-mode` and `--auto-compaction-retention` (a
    /// count of revisions, or a duration such as `90s`, `30m`, `1h`; `0`
    /// switches it off).
    pub fn parse(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
        if retention.trim() == "0" {
            return Ok(AutoCompaction::Off);
        }
        match mode {
            "revision" => retention.trim().parse::<u64>().map(AutoCompaction::Revisions).map_err(|_| {
                format!("--auto-compaction-retention {retention:?}: revision mode keeps a number of revisions")
            }),
            "periodic" => parse_period(retention).map(AutoCompaction::Period),
            other => Err(format!("--auto-compaction-mode {other:?}: `revision` or `periodic`")),
        }
    }

    /// How often to look.
    fn interval(self) -> Option<Duration> {
        match self {
            AutoCompaction::Off => None,
            AutoCompaction::Revisions(_) => Some(Duration::from_secs(5)),
            // Ten looks per period (etcd samples the same way), at least
            // one a second.
            AutoCompaction::Period(p) => Some((p / 10).max(Duration::from_secs(1))),
        }
    }
}

fn parse_period(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("--auto-compaction-retention {s:?}: e.g. 90s, 30m, 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" | "" => n * 3600,
        _ => return Err(format!("--auto-compaction-retention {s:?}: the unit is s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

/// Runs until the node stops (the task is dropped with the runtime).
pub async fn run(api: Api, policy: AutoCompaction) {
    let Some(interval) = policy.interval() else { return };
    // Revisions seen, oldest first, for the periodic mode.
    let mut seen: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Ok((compacted, revision)) = state_machine::compaction_state(&api.storage) else { continue };
        let target = match policy {
            AutoCompaction::Off => return,
            AutoCompaction::Revisions(keep) => revision.saturating_sub(keep),
            AutoCompaction::Period(period) => {
                let now = Instant::now();
                seen.push_back((now, revision));
                let mut target = 0;
                while let Some(&(at, r)) = seen.front() {
                    if now.duration_since(at) < period {
                        break;
                    }
                    target = r;
                    seen.pop_front();
                }
                target
            }
        };
        if target <= compacted {
            continue;
        }
        match api.write(command::Op::Compact(proto::CompactRequest { revision: target }), None).await {
            Ok(_) => tracing::info!(node = api.id, below = target, ?policy, "auto-compaction proposed and applied"),
            // A follower's proposal is refused: the leader compacts.
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {}
            Err(status) => tracing::debug!(node = api.id, below = target, %status, "auto-compaction not applied"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_reads_as_etcd_reads_it() {
        assert_eq!(AutoCompaction::parse("revision", "1000"), Ok(AutoCompaction::Revisions(1000)));
        assert_eq!(AutoCompaction::parse("periodic", "90s"), Ok(AutoCompaction::Period(Duration::from_secs(90))));
        assert_eq!(AutoCompaction::parse("periodic", "2"), Ok(AutoCompaction::Period(Duration::from_secs(7200))));
        assert_eq!(AutoCompaction::parse("revision", "0"), Ok(AutoCompaction::Off));
        assert!(AutoCompaction::parse("revision", "1h").is_err());
        assert!(AutoCompaction::parse("periodic", "1d").is_err());
        assert!(AutoCompaction::parse("hourly", "1").is_err());
    }
}
