//! Suites: a matrix of chaos runs from a TOML file, run one after another
//! within a total time budget, with expectations (a run with stale reads
//! under partitions is expected to be invalid, and passes only if caught).
//!
//! ```toml
//! name = "smoke"
//! budget_minutes = 10        # runs that would not fit are skipped, and reported
//! time_limit = 20            # seconds of workload per run
//! nodes = [3]
//! seeds = 1                  # a count (seeds 1..=n), or a list: [7, 42]
//!
//! [matrix]                   # every combination runs
//! workload = ["cas-register", "append"]
//! nemesis = ["partition", "kill"]
//! read_mode = ["linearizable"]
//! runtime = ["netns"]
//!
//! [[extra]]                  # single runs beside the matrix
//! workload = "cas-register"
//! nemesis = "partition"
//! read_mode = "stale"
//! expect = "invalid"
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::options::{NemesisChoice, ReadModeChoice, RunOptions, RuntimeKind, WorkloadKind, name};

/// Seconds a run takes beyond its time limit: cluster start, recovery,
/// final reads, teardown, check. Used to keep within the budget.
pub const RUN_OVERHEAD_S: f64 = 20.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    #[default]
    Valid,
    /// The run is unsafe on purpose; it passes only when the checker catches it.
    Invalid,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Seeds {
    Count(u64),
    List(Vec<u64>),
}

impl Seeds {
    pub fn list(&self) -> Vec<u64> {
        match self {
            Seeds::Count(n) => (1..=*n).collect(),
            Seeds::List(l) => l.clone(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    pub workload: Vec<WorkloadKind>,
    pub nemesis: Vec<NemesisChoice>,
    #[serde(default = "linearizable")]
    pub read_mode: Vec<ReadModeChoice>,
    #[serde(default = "netns")]
    pub runtime: Vec<RuntimeKind>,
    #[serde(default)]
    pub expect: Expect,
}

fn linearizable() -> Vec<ReadModeChoice> {
    vec![ReadModeChoice::Linearizable]
}

fn netns() -> Vec<RuntimeKind> {
    vec![RuntimeKind::Netns]
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extra {
    pub workload: WorkloadKind,
    pub nemesis: NemesisChoice,
    #[serde(default = "linearizable_one")]
    pub read_mode: ReadModeChoice,
    #[serde(default = "netns_one")]
    pub runtime: RuntimeKind,
    #[serde(default)]
    pub expect: Expect,
    pub seeds: Option<Seeds>,
    pub nodes: Option<usize>,
}

fn linearizable_one() -> ReadModeChoice {
    ReadModeChoice::Linearizable
}

fn netns_one() -> RuntimeKind {
    RuntimeKind::Netns
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub name: String,
    pub budget_minutes: f64,
    pub time_limit: f64,
    #[serde(default = "three")]
    pub nodes: Vec<usize>,
    pub seeds: Seeds,
    #[serde(default)]
    pub nemesis_interval: Option<f64>,
    pub matrix: Option<Matrix>,
    #[serde(default)]
    pub extra: Vec<Extra>,
}

fn three() -> Vec<usize> {
    vec![3]
}

/// One run the suite will attempt.
#[derive(Clone, Debug, Serialize)]
pub struct Planned {
    pub workload: WorkloadKind,
    pub nemesis: NemesisChoice,
    pub read_mode: ReadModeChoice,
    pub runtime: RuntimeKind,
    pub nodes: usize,
    pub seed: u64,
    pub expect: Expect,
}

impl Planned {
    pub fn label(&self) -> String {
        format!(
            "{} {} {} {} n={} seed={}",
            name(&self.workload),
            name(&self.nemesis),
            name(&self.read_mode),
            name(&self.runtime),
            self.nodes,
            self.seed
        )
    }

    /// The run's options, from `base` (time limit, reports directory, binary...).
    pub fn options(&self, base: &RunOptions) -> RunOptions {
        RunOptions {
            workload: self.workload,
            nemesis: self.nemesis,
            read_mode: self.read_mode,
            runtime: self.runtime,
            nodes: self.nodes,
            seed: Some(self.seed),
            out: None,
            ..base.clone()
        }
    }
}

impl Suite {
    pub fn read(path: &Path) -> Result<Suite, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let suite: Suite = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if suite.matrix.is_none() && suite.extra.is_empty() {
            return Err(format!("{}: neither a [matrix] nor any [[extra]] run", path.display()));
        }
        if !(suite.budget_minutes > 0.0 && suite.time_limit > 0.0) {
            return Err(format!("{}: budget_minutes and time_limit must be positive", path.display()));
        }
        Ok(suite)
    }

    /// Every run, matrix first, in a fixed order.
    pub fn plan(&self) -> Vec<Planned> {
        let mut runs = Vec::new();
        if let Some(m) = &self.matrix {
            for &nodes in &self.nodes {
                for &workload in &m.workload {
                    for &nemesis in &m.nemesis {
                        for &read_mode in &m.read_mode {
                            for &runtime in &m.runtime {
                                for seed in self.seeds.list() {
                                    runs.push(Planned {
                                        workload,
                                        nemesis,
                                        read_mode,
                                        runtime,
                                        nodes,
                                        seed,
                                        expect: m.expect,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        for x in &self.extra {
            let seeds = x.seeds.as_ref().unwrap_or(&self.seeds).list();
            for seed in seeds {
                runs.push(Planned {
                    workload: x.workload,
                    nemesis: x.nemesis,
                    read_mode: x.read_mode,
                    runtime: x.runtime,
                    nodes: x.nodes.unwrap_or(self.nodes[0]),
                    seed,
                    expect: x.expect,
                });
            }
        }
        runs
    }
}

/// How one planned run went.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    #[serde(flatten)]
    pub planned: Planned,
    /// `valid`, `invalid`, `unknown`, `harness-failed` or `skipped`.
    pub outcome: String,
    pub passed: bool,
    pub dir: Option<String>,
    pub replay: Option<String>,
    pub duration_s: f64,
    pub reason: Option<String>,
}

/// The suite's exit status: 0 every run passed; 1 a run was invalid against
/// expectation (or an expected-invalid run was not caught); 2 otherwise not
/// all passed (unknown, harness failure, skipped).
pub fn exit_status(results: &[RunResult]) -> i32 {
    let failed_verdict = results.iter().any(|r| !r.passed && matches!(r.outcome.as_str(), "valid" | "invalid"));
    if failed_verdict {
        crate::exit::INVALID
    } else if results.iter().any(|r| !r.passed) {
        crate::exit::UNKNOWN
    } else {
        crate::exit::VALID
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcome: &str, expect: Expect) -> RunResult {
        let planned = Planned {
            workload: WorkloadKind::Register,
            nemesis: NemesisChoice::Partition,
            read_mode: ReadModeChoice::Stale,
            runtime: RuntimeKind::Netns,
            nodes: 3,
            seed: 1,
            expect,
        };
        let passed = matches!((outcome, expect), ("valid", Expect::Valid) | ("invalid", Expect::Invalid));
        RunResult { planned, outcome: outcome.into(), passed, dir: None, replay: None, duration_s: 0.0, reason: None }
    }

    #[test]
    fn an_expected_invalid_run_passes_only_when_caught() {
        assert_eq!(exit_status(&[result("valid", Expect::Valid), result("invalid", Expect::Invalid)]), 0);
        assert_eq!(exit_status(&[result("valid", Expect::Valid), result("valid", Expect::Invalid)]), 1, "not caught");
        assert_eq!(exit_status(&[result("invalid", Expect::Valid)]), 1);
        assert_eq!(exit_status(&[result("unknown", Expect::Valid), result("valid", Expect::Valid)]), 2);
        assert_eq!(exit_status(&[result("skipped", Expect::Valid)]), 2);
    }

    #[test]
    fn the_shipped_suites_parse_and_plan() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites");
        let smoke = Suite::read(&root.join("smoke.toml")).unwrap();
        let planned = smoke.plan();
        assert!(planned.iter().any(|p| p.expect == Expect::Invalid), "smoke checks that the unsafe run is caught");
        let estimate: f64 = planned.len() as f64 * (smoke.time_limit + RUN_OVERHEAD_S);
        assert!(estimate <= smoke.budget_minutes * 60.0, "smoke must fit its budget: {estimate} s");
        let nightly = Suite::read(&root.join("nightly.toml")).unwrap();
        assert!(nightly.plan().len() >= 20);
        let bad = std::env::temp_dir().join(format!("capukv-bad-suite-{}.toml", std::process::id()));
        std::fs::write(&bad, "name = \"x\"\nbudget_minutes = 1\ntime_limit = 5\nseeds = 1\n[matrix]\nworkload = [\"nope\"]\nnemesis = [\"kill\"]\n").unwrap();
        let err = Suite::read(&bad).unwrap_err();
        std::fs::remove_file(&bad).unwrap();
        assert!(err.contains("nope"), "{err}");
    }
}
