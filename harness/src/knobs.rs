//! The servers' Raft knobs for a run: the defaults, or drawn from the seed
//! within ranges the server is safe in (`--server-knobs random`), so that
//! nightly runs cover timings and snapshot rates no one picked by hand, as
//! etcd's robustness suite randomizes its cluster settings. Recorded in
//! run.json; `replay` draws the same ones from the same seed.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::options::{KnobsChoice, RunOptions};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerKnobs {
    pub tick_ms: u64,
    /// Ticks before a follower with no word from a leader stands for election.
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    /// Applied entries between snapshots (and log compactions).
    pub snapshot_every: u64,
    /// The servers keep the log their snapshots cover, so that after the
    /// run the harness settles info writes from the whole log
    /// ([`crate::checks::raft_log`]). Off in run.json files from before it.
    #[serde(default)]
    pub keep_compacted_log: bool,
    /// Revisions of version history the servers keep
    /// (`--auto-compaction-retention`): small, so that compactions (one
    /// replicated command each) run under the faults and the replica check
    /// compares the histories they leave. 0 in run.json files from before
    /// it: the server's default.
    #[serde(default)]
    pub history_retention: u64,
}

impl ServerKnobs {
    /// The harness's defaults: a 50 ms tick (as --tick-ms says), an election
    /// timeout of 10 ticks, a heartbeat every tick, a snapshot every 1000
    /// entries, the last 2000 revisions of history kept.
    pub fn fixed(tick_ms: u64) -> ServerKnobs {
        ServerKnobs {
            tick_ms,
            election_ticks: 10,
            heartbeat_ticks: 1,
            snapshot_every: 1000,
            keep_compacted_log: true,
            history_retention: 2000,
        }
    }

    /// The run's knobs, a pure function of its options and seed.
    pub fn for_run(options: &RunOptions, seed: u64) -> ServerKnobs {
        match options.server_knobs {
            KnobsChoice::Fixed => ServerKnobs::fixed(options.tick_ms),
            KnobsChoice::Random => {
                let mut rng = SmallRng::seed_from_u64(seed ^ 0x6b6e_6f62_7300_0000);
                // Ticks from 0.6 to 1.5 times --tick-ms; an election timeout
                // of 8 to 20 ticks, always at least four heartbeats long (a
                // follower must miss several before it stands).
                let tick_ms = ((options.tick_ms as f64) * rng.random_range(0.6..=1.5)).round().max(1.0) as u64;
                let heartbeat_ticks = rng.random_range(1..=2);
                let election_ticks = rng.random_range(8..=20).max(4 * heartbeat_ticks);
                // Small thresholds make snapshots (and catching up by them)
                // happen within a short run.
                let snapshot_every = [100, 250, 500, 1000, 2000][rng.random_range(0..5)];
                let history_retention = [500, 2000, 10_000][rng.random_range(0..3)];
                ServerKnobs {
                    tick_ms,
                    election_ticks,
                    heartbeat_ticks,
                    snapshot_every,
                    keep_compacted_log: true,
                    history_retention,
                }
            }
        }
    }

    /// The `capukv server` arguments that set them.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--tick-ms".to_string(),
            self.tick_ms.to_string(),
            "--snapshot-every".to_string(),
            self.snapshot_every.to_string(),
        ];
        args.extend(self.args_besides_tick_and_snapshot());
        args
    }

    /// [`ServerKnobs::args`] but `--tick-ms` and `--snapshot-every`, for a
    /// runtime that passes those two itself.
    pub fn args_besides_tick_and_snapshot(&self) -> Vec<String> {
        let mut args = vec![
            "--election-ticks".to_string(),
            self.election_ticks.to_string(),
            "--heartbeat-ticks".to_string(),
            self.heartbeat_ticks.to_string(),
        ];
        if self.keep_compacted_log {
            args.push("--keep-compacted-log".into());
        }
        if self.history_retention > 0 {
            args.extend(["--auto-compaction-retention".to_string(), self.history_retention.to_string()]);
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_knobs_follow_the_seed_and_stay_in_safe_ranges() {
        let o = RunOptions::from_args(&["--server-knobs", "random", "--tick-ms", "50"]);
        let drawn: Vec<ServerKnobs> = (0..200).map(|seed| ServerKnobs::for_run(&o, seed)).collect();
        assert_eq!(drawn[7], ServerKnobs::for_run(&o, 7), "same seed, same knobs");
        for k in &drawn {
            assert!((30..=75).contains(&k.tick_ms), "{k:?}");
            assert!(k.election_ticks >= 4 * k.heartbeat_ticks && k.election_ticks <= 20, "{k:?}");
            assert!((100..=2000).contains(&k.snapshot_every), "{k:?}");
            assert!([500, 2000, 10_000].contains(&k.history_retention), "{k:?}");
            let args = k.args();
            let flag = args.iter().position(|a| a == "--auto-compaction-retention").expect("the retention is passed");
            assert_eq!(args[flag + 1], k.history_retention.to_string());
        }
        let distinct: std::collections::BTreeSet<_> = drawn.iter().map(|k| (k.tick_ms, k.snapshot_every)).collect();
        assert!(distinct.len() > 20, "the seed must vary them: {distinct:?}");
        let fixed = RunOptions::from_args(&["--server-knobs", "fixed", "--tick-ms", "40"]);
        assert_eq!(ServerKnobs::for_run(&fixed, 3), ServerKnobs::fixed(40));
        assert_eq!(ServerKnobs::fixed(40).args()[..2], ["--tick-ms".to_string(), "40".to_string()]);
    }

    #[test]
    fn a_run_json_from_before_knobs_replays_with_the_fixed_ones() {
        let mut old = serde_json::to_value(RunOptions::from_args(&[])).unwrap();
        old.as_object_mut().unwrap().remove("server_knobs");
        let options: RunOptions = serde_json::from_value(old).unwrap();
        assert_eq!(options.server_knobs, KnobsChoice::Fixed);
    }
}
