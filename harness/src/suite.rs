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
//!
//! simulation_seeds = 600     # planted bugs of the Raft core also run in the simulation
//! simulation_ticks = 10000   # ticks of faults per simulated run (default 1000)
//! simulation_faults = "all"  # one fault family for every seed (default: seeds cycle)
//!
//! [[planted]]                # a planted bug under the nemeses meant for it: expected invalid
//! bug = "commit-alone"
//! nemesis = ["partition", "all"]
//! workload = "cas-register-unique"  # default
//! until_caught = true        # seeds in turn until one catches it (CI gates)
//! corrupt_nodes = 5          # --corrupt-nodes for these runs
//! ```
//!
//! Runs with planted bugs fill the summary's detection matrix: bug ×
//! nemesis → caught k of n runs, with the median and worst time from the
//! first fault to the first operation the checker could not place.

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

/// A planted bug and the nemeses meant to catch it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlantedRuns {
    pub bug: String,
    pub nemesis: Vec<NemesisChoice>,
    /// Default `cas-register-unique`: with every written value new a lost
    /// or stale value is never the current one by chance (over 8 seeds of 4
    /// bugs it caught 22 runs where `cas-register` caught 18, and no row
    /// fewer), and every key is decided without a search.
    #[serde(default = "cas_register_unique")]
    pub workload: WorkloadKind,
    pub seeds: Option<Seeds>,
    pub nodes: Option<usize>,
    /// Seconds of workload for these runs (default: the suite's).
    pub time_limit: Option<f64>,
    /// Try the seeds in turn until one catches the bug: the runs pass
    /// together when any does, and the seeds after it do not run. For CI
    /// gates, where one seed's miss of a bug caught 9 times in 10 must not
    /// fail the build; the misses still count in the detection matrix.
    #[serde(default)]
    pub until_caught: bool,
    /// `--corrupt-nodes` for these runs (default 1).
    pub corrupt_nodes: Option<usize>,
}

fn cas_register_unique() -> WorkloadKind {
    WorkloadKind::CasRegisterUnique
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
    #[serde(default)]
    pub planted: Vec<PlantedRuns>,
    /// Seeds of the Raft core's simulation per planted bug that lives in
    /// the core (0 or absent: none).
    #[serde(default)]
    pub simulation_seeds: u64,
    /// Ticks of faults and load per simulated run (absent: the
    /// simulation's own 1,000): a long run lives through many leader
    /// changes, as a real night's run does.
    #[serde(default)]
    pub simulation_ticks: Option<u64>,
    /// One fault family for every simulated run (`capukv simulate
    /// --faults`; absent: each seed cycles to its own).
    #[serde(default)]
    pub simulation_faults: Option<String>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planted_bug: Option<String>,
    /// This run's time limit, when not the suite's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<f64>,
    /// One of a group of seeds tried until one catches the planted bug.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub until_caught: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrupt_nodes: Option<usize>,
}

impl Planned {
    pub fn label(&self) -> String {
        let bug = self.planted_bug.as_ref().map_or(String::new(), |b| format!(" bug={b}"));
        format!(
            "{} {} {} {} n={} seed={}{bug}",
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
            planted_bug: self.planted_bug.clone(),
            time_limit: self.time_limit.unwrap_or(base.time_limit),
            corrupt_nodes: self.corrupt_nodes.unwrap_or(base.corrupt_nodes),
            ..base.clone()
        }
    }
}

impl Suite {
    pub fn read(path: &Path) -> Result<Suite, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let suite: Suite = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if suite.matrix.is_none() && suite.extra.is_empty() && suite.planted.is_empty() {
            return Err(format!("{}: neither a [matrix] nor any [[extra]] or [[planted]] run", path.display()));
        }
        if let Some(p) = suite.planted.iter().find(|p| p.nemesis.is_empty()) {
            return Err(format!("{}: planted bug {}: name at least one nemesis", path.display(), p.bug));
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
                                        planted_bug: None,
                                        time_limit: None,
                                        until_caught: false,
                                        corrupt_nodes: None,
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
                    planted_bug: None,
                    time_limit: None,
                    until_caught: false,
                    corrupt_nodes: None,
                });
            }
        }
        for p in &self.planted {
            let seeds = p.seeds.as_ref().unwrap_or(&self.seeds).list();
            for &nemesis in &p.nemesis {
                for &seed in &seeds {
                    runs.push(Planned {
                        workload: p.workload,
                        nemesis,
                        read_mode: ReadModeChoice::Linearizable,
                        runtime: RuntimeKind::Netns,
                        nodes: p.nodes.unwrap_or(self.nodes[0]),
                        seed,
                        expect: Expect::Invalid,
                        planted_bug: Some(p.bug.clone()),
                        time_limit: p.time_limit,
                        until_caught: p.until_caught,
                        corrupt_nodes: p.corrupt_nodes,
                    });
                }
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
    /// Why an invalid run is invalid, short, the same for the same cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Seconds from the first fault to the first operation the checker could
    /// not place, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detect_s: Option<f64>,
    /// Successful operations per second of the workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops_per_s: Option<f64>,
    /// Seconds the checker took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checker_s: Option<f64>,
}

/// Outcome of a run left out because an earlier seed of its
/// `until_caught` group already caught the bug.
pub const NOT_NEEDED: &str = "not-needed";

impl RunResult {
    /// Whether this run's verdict took place (neither skipped nor not needed).
    pub fn ran(&self) -> bool {
        self.outcome != "skipped" && self.outcome != NOT_NEEDED
    }

    /// A run that did not take place.
    pub fn skipped(planned: &Planned, reason: String) -> RunResult {
        RunResult {
            planned: planned.clone(),
            outcome: "skipped".into(),
            passed: false,
            dir: None,
            replay: None,
            duration_s: 0.0,
            reason: Some(reason),
            signature: None,
            detect_s: None,
            ops_per_s: None,
            checker_s: None,
        }
    }
}

/// Whether `p` belongs to an `until_caught` group that an earlier result
/// already caught.
pub fn caught_already(results: &[RunResult], p: &Planned) -> bool {
    p.until_caught && results.iter().any(|r| same_group(&r.planned, p) && r.outcome == "invalid")
}

fn same_group(a: &Planned, b: &Planned) -> bool {
    a.until_caught && b.until_caught && a.planted_bug == b.planted_bug && a.nemesis == b.nemesis
}

/// The run left out because its group caught the bug already.
pub fn not_needed(p: &Planned) -> RunResult {
    RunResult {
        outcome: NOT_NEEDED.into(),
        passed: true,
        reason: Some("an earlier seed caught the bug".into()),
        ..RunResult::skipped(p, String::new())
    }
}

/// The misses of an `until_caught` group pass when another seed of the
/// group caught the bug; their outcome stays what it was.
pub fn settle_until_caught(results: &mut [RunResult]) {
    let caught: Vec<Planned> = results
        .iter()
        .filter(|r| r.planned.until_caught && r.outcome == "invalid")
        .map(|r| r.planned.clone())
        .collect();
    for r in results.iter_mut().filter(|r| !r.passed && r.outcome == "valid") {
        if caught.iter().any(|c| same_group(c, &r.planned)) {
            r.passed = true;
            r.reason = Some("missed; another seed of its group caught the bug".into());
        }
    }
}

/// A bug's simulation figures in a few words: "19/20 seeds of 10000 ticks,
/// all faults".
pub fn simulation_cell(r: &serde_json::Value) -> String {
    let mut cell = format!("{}/{} seeds", r["broken"], r["seeds"]);
    if let Some(ticks) = r["ticks"].as_u64() {
        cell.push_str(&format!(" of {ticks} ticks"));
    }
    if let Some(faults) = r["faults"].as_str() {
        cell.push_str(&format!(", {faults} faults"));
    }
    cell
}

/// One cell of the detection matrix: a planted bug under one nemesis, with
/// one workload (so that a suite can set two workloads side by side).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Detection {
    pub bug: String,
    pub nemesis: String,
    pub workload: String,
    pub runs: usize,
    pub caught: usize,
    /// Median and worst time to detect over the caught runs whose time is
    /// known (a lost write found by the final reads has none).
    pub median_detect_s: Option<f64>,
    pub worst_detect_s: Option<f64>,
    /// The caught runs' failure signatures.
    pub signatures: Vec<String>,
}

/// The detection matrix of the runs with planted bugs, bug by bug in the
/// order they ran. Runs that did not take place do not count.
pub fn detection_matrix(results: &[RunResult]) -> Vec<Detection> {
    let mut cells: Vec<Detection> = Vec::new();
    let mut times: Vec<Vec<f64>> = Vec::new();
    for r in results.iter().filter(|r| r.ran()) {
        let Some(bug) = &r.planned.planted_bug else { continue };
        let (nemesis, workload) = (name(&r.planned.nemesis), name(&r.planned.workload));
        let i = match cells.iter().position(|c| &c.bug == bug && c.nemesis == nemesis && c.workload == workload) {
            Some(i) => i,
            None => {
                cells.push(Detection {
                    bug: bug.clone(),
                    nemesis,
                    workload,
                    runs: 0,
                    caught: 0,
                    median_detect_s: None,
                    worst_detect_s: None,
                    signatures: Vec::new(),
                });
                times.push(Vec::new());
                cells.len() - 1
            }
        };
        cells[i].runs += 1;
        if r.outcome == "invalid" {
            cells[i].caught += 1;
            times[i].extend(r.detect_s);
            if let Some(s) = &r.signature
                && !cells[i].signatures.contains(s)
            {
                cells[i].signatures.push(s.clone());
            }
        }
    }
    for (cell, mut t) in cells.iter_mut().zip(times) {
        t.sort_by(f64::total_cmp);
        cell.median_detect_s = t.get(t.len() / 2).copied();
        cell.worst_detect_s = t.last().copied();
    }
    cells
}

/// JUnit XML of a suite's runs (one test case per run), for CI test tabs.
pub fn junit(suite: &str, results: &[RunResult], duration_s: f64) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
    };
    let failures = results.iter().filter(|r| !r.passed && r.ran()).count();
    let skipped = results.iter().filter(|r| !r.ran()).count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{duration_s:.1}\">\n",
        esc(suite),
        results.len()
    );
    for r in results {
        let expect = if r.planned.expect == Expect::Invalid { "invalid" } else { "valid" };
        xml.push_str(&format!(
            "  <testcase classname=\"capukv-chaos.{}\" name=\"{}\" time=\"{:.1}\">",
            esc(suite),
            esc(&r.planned.label()),
            r.duration_s
        ));
        if !r.ran() {
            xml.push_str(&format!("<skipped message=\"{}\"/>", esc(r.reason.as_deref().unwrap_or("skipped"))));
        } else if !r.passed {
            let mut text = format!("expected {expect}, got {}", r.outcome);
            for (label, v) in [("reason", &r.reason), ("signature", &r.signature), ("replay", &r.replay)] {
                if let Some(v) = v {
                    text.push_str(&format!("\n{label}: {v}"));
                }
            }
            xml.push_str(&format!(
                "<failure message=\"expected {expect}, got {}\">{}</failure>",
                esc(&r.outcome),
                esc(&text)
            ));
        }
        xml.push_str("</testcase>\n");
    }
    xml.push_str("</testsuite>\n</testsuites>\n");
    xml
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
            planted_bug: None,
            time_limit: None,
            until_caught: false,
            corrupt_nodes: None,
        };
        let passed = matches!((outcome, expect), ("valid", Expect::Valid) | ("invalid", Expect::Invalid));
        RunResult { outcome: outcome.into(), passed, reason: None, ..RunResult::skipped(&planned, String::new()) }
    }

    fn planted(bug: &str, nemesis: NemesisChoice, outcome: &str, detect_s: Option<f64>) -> RunResult {
        let mut r = result(outcome, Expect::Invalid);
        r.planned.planted_bug = Some(bug.into());
        r.planned.nemesis = nemesis;
        r.detect_s = detect_s;
        r.signature = (outcome == "invalid").then(|| "linearizability[read] under partition".to_string());
        r
    }

    #[test]
    fn the_detection_matrix_counts_catches_per_bug_and_nemesis() {
        use NemesisChoice::{Kill, Partition};
        let runs = [
            planted("commit-alone", Partition, "invalid", Some(4.0)),
            planted("commit-alone", Partition, "invalid", Some(1.0)),
            planted("commit-alone", Partition, "valid", None),
            planted("commit-alone", Kill, "valid", None),
            planted("no-fsync", Kill, "invalid", None),
            planted("no-fsync", Kill, "skipped", None),
            result("valid", Expect::Valid),
        ];
        let m = detection_matrix(&runs);
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[0].bug.as_str(), m[0].nemesis.as_str(), m[0].runs, m[0].caught),
            ("commit-alone", "partition", 3, 2)
        );
        assert_eq!((m[0].median_detect_s, m[0].worst_detect_s), (Some(4.0), Some(4.0)));
        assert_eq!(m[0].signatures, vec!["linearizability[read] under partition".to_string()]);
        assert_eq!((m[1].runs, m[1].caught, m[1].median_detect_s), (1, 0, None));
        assert_eq!((m[2].runs, m[2].caught, m[2].median_detect_s), (1, 1, None), "a skipped run does not count");

        let mut unique = planted("commit-alone", Partition, "invalid", Some(2.0));
        unique.planned.workload = WorkloadKind::CasRegisterUnique;
        let m = detection_matrix(&[runs[0].clone(), unique, runs[1].clone()]);
        let cells: Vec<_> = m.iter().map(|c| (c.workload.as_str(), c.runs)).collect();
        assert_eq!(cells, [("register", 2), ("cas-register-unique", 1)], "one cell per workload");
    }

    #[test]
    fn an_until_caught_group_passes_when_any_seed_catches_and_stops_there() {
        let member = |outcome: &str, seed: u64| {
            let mut r = planted("no-fsync", NemesisChoice::Power, outcome, None);
            r.planned.until_caught = true;
            r.planned.seed = seed;
            r
        };
        let mut results = vec![member("valid", 1), member("invalid", 2)];
        assert!(caught_already(&results, &member("valid", 3).planned));
        let mut other = member("valid", 3).planned;
        other.nemesis = NemesisChoice::Kill;
        assert!(!caught_already(&results, &other), "another nemesis is another group");
        results.push(not_needed(&member("valid", 3).planned));
        settle_until_caught(&mut results);
        assert!(results.iter().all(|r| r.passed), "{results:?}");
        assert_eq!(exit_status(&results), 0);
        let m = detection_matrix(&results);
        assert_eq!((m[0].runs, m[0].caught), (2, 1), "the miss counts; the run that did not take place does not");

        let mut missed = vec![member("valid", 1), member("valid", 2)];
        settle_until_caught(&mut missed);
        assert_eq!(exit_status(&missed), 1, "no seed caught it: the gate fails");
        let mut plain = vec![planted("no-fsync", NemesisChoice::Power, "valid", None), member("invalid", 2)];
        settle_until_caught(&mut plain);
        assert!(!plain[0].passed, "a run outside the group is not excused");
    }

    #[test]
    fn junit_has_a_case_per_run_and_a_failure_with_the_replay_command() {
        let mut bad = result("valid", Expect::Invalid);
        bad.replay = Some("capukv-chaos replay reports/x".into());
        let xml = junit("power <1>", &[result("valid", Expect::Valid), bad, result("skipped", Expect::Valid)], 3.0);
        assert!(xml.contains("tests=\"3\" failures=\"1\" skipped=\"1\""), "{xml}");
        assert!(xml.contains("name=\"power &lt;1&gt;\""), "{xml}");
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert!(xml.contains("expected invalid, got valid") && xml.contains("replay: capukv-chaos replay reports/x"));
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
        let bugs: std::collections::BTreeSet<_> = planned.iter().filter_map(|p| p.planted_bug.as_deref()).collect();
        assert!(bugs.len() >= 3, "smoke's power subset: at least three planted bugs that must be caught: {bugs:?}");
        assert!(planned.iter().filter(|p| p.planted_bug.is_some()).all(|p| p.expect == Expect::Invalid));
        let estimate: f64 = planned.iter().map(|p| p.time_limit.unwrap_or(smoke.time_limit) + RUN_OVERHEAD_S).sum();
        assert!(estimate <= smoke.budget_minutes * 60.0, "smoke must fit its budget: {estimate} s");
        let nightly = Suite::read(&root.join("nightly.toml")).unwrap();
        assert!(nightly.plan().len() >= 20);
        let power = Suite::read(&root.join("power.toml")).unwrap();
        assert_eq!(power.simulation_faults.as_deref(), Some("all"));
        assert!(power.simulation_ticks.is_some_and(|t| t >= 10_000), "long simulated runs");
        let runs = power.plan();
        assert!(runs.iter().all(|p| p.planted_bug.is_some() && p.expect == Expect::Invalid));
        let commit_alone = runs.iter().find(|p| p.planted_bug.as_deref() == Some("commit-alone")).unwrap();
        assert_eq!(commit_alone.workload, WorkloadKind::CasRegisterUnique, "a planted row's default workload");
        let estimate: f64 = runs.len() as f64 * (power.time_limit + RUN_OVERHEAD_S);
        assert!(estimate <= power.budget_minutes * 60.0, "power must fit its budget: {estimate} s");
        let values = Suite::read(&root.join("values.toml")).unwrap().plan();
        let workloads: std::collections::BTreeSet<_> = values.iter().map(|p| name(&p.workload)).collect();
        assert_eq!(workloads.into_iter().collect::<Vec<_>>(), ["cas-register", "cas-register-unique"]);
        let bad = std::env::temp_dir().join(format!("capukv-bad-suite-{}.toml", std::process::id()));
        std::fs::write(&bad, "name = \"x\"\nbudget_minutes = 1\ntime_limit = 5\nseeds = 1\n[matrix]\nworkload = [\"nope\"]\nnemesis = [\"kill\"]\n").unwrap();
        let err = Suite::read(&bad).unwrap_err();
        std::fs::remove_file(&bad).unwrap();
        assert!(err.contains("nope"), "{err}");
    }
}
