//! `capukv-chaos suite SUITE.toml`: a matrix of runs within a time budget,
//! a summary table, summary.json, and an exit status for the whole.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use harness::exit;
use harness::options::RunOptions;
use harness::run::{RunSettings, run};
use harness::suite::{
    Detection, Expect, RUN_OVERHEAD_S, RunResult, Suite, caught_already, detection_matrix, exit_status, junit,
    not_needed, settle_until_caught,
};

#[derive(Args)]
pub struct SuiteArgs {
    /// The suite file (see suites/smoke.toml).
    pub suite: PathBuf,
    /// Where run directories and the suite's summary go.
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// The `capukv` binary (default: next to capukv-chaos, then PATH).
    #[arg(long)]
    pub capukv_bin: Option<PathBuf>,
    /// Print summary.json to stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the results as JUnit XML (one test case per run).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

fn base_options(suite: &Suite, args: &SuiteArgs) -> RunOptions {
    let mut base = RunOptions::from_args(&[]);
    base.time_limit = suite.time_limit;
    if let Some(interval) = suite.nemesis_interval {
        base.nemesis_interval = interval;
    }
    base.reports = args.reports.clone();
    base.capukv_bin = args.capukv_bin.clone();
    base
}

pub fn main(args: SuiteArgs) -> i32 {
    let suite = match Suite::read(&args.suite) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let base = base_options(&suite, &args);
    let planned = suite.plan();
    let budget = suite.budget_minutes * 60.0;
    let started = Instant::now();
    let runtime = match super::async_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let stamp = harness::rundir::timestamp(std::time::SystemTime::now());
    let summary_dir = args.reports.join("suites").join(format!("{stamp}-{}", suite.name));
    if let Err(e) = std::fs::create_dir_all(&summary_dir) {
        eprintln!("error: cannot create {}: {e}", summary_dir.display());
        return exit::HARNESS_FAILED;
    }
    let mut results: Vec<RunResult> = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        if caught_already(&results, p) {
            results.push(not_needed(p));
            continue;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let estimate = p.time_limit.unwrap_or(suite.time_limit) + RUN_OVERHEAD_S;
        if elapsed + estimate > budget {
            let why = format!("would end past the {} min budget ({elapsed:.0} s used)", suite.budget_minutes);
            results.push(RunResult::skipped(p, why));
            continue;
        }
        if !args.json {
            eprintln!("[{}/{}] {}", i + 1, planned.len(), p.label());
        }
        let options = p.options(&base);
        if let Err(e) = options.validate() {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
        let settings = RunSettings { schedule: None, progress: false, dir_suffix: String::new(), command: vec![] };
        let t = Instant::now();
        let mut r = RunResult::skipped(p, String::new());
        r.outcome = "harness-failed".into();
        match runtime.block_on(run(options, settings)) {
            Ok(o) => {
                let text = |k: &str| o.results[k].as_str().map(String::from);
                r.outcome = text("verdict").unwrap_or_else(|| "harness-failed".into());
                r.reason = text("harness_failure").or_else(|| {
                    let reasons = o.results["invalid_reasons"].as_array()?;
                    let reasons: Vec<&str> = reasons.iter().filter_map(|v| v.as_str()).collect();
                    (!reasons.is_empty()).then(|| reasons.join("; "))
                });
                r.replay = text("replay");
                r.signature = text("signature");
                let d = &o.results["detection"];
                r.detect_s =
                    d["first_unplaced_s"].as_f64().map(|u| (u - d["first_fault_s"].as_f64().unwrap_or(0.0)).max(0.0));
                r.ops_per_s = o.results["throughput"]["ok_per_s"].as_f64();
                r.checker_s = o.results["check"]["elapsed_ms"].as_f64().map(|ms| ms / 1000.0);
                r.dir = Some(o.dir.display().to_string());
            }
            Err(e) => r.reason = Some(format!("{e:#}")),
        }
        r.passed = matches!((r.outcome.as_str(), p.expect), ("valid", Expect::Valid) | ("invalid", Expect::Invalid));
        r.duration_s = t.elapsed().as_secs_f64();
        results.push(r);
        let interrupted = results.last().and_then(|r| r.reason.as_deref()).is_some_and(|r| r.contains("interrupted"));
        if interrupted {
            eprintln!("interrupted: the remaining runs are skipped");
            break;
        }
    }
    settle_until_caught(&mut results);
    let code = exit_status(&results);
    let passed = results.iter().filter(|r| r.passed).count();
    let matrix = detection_matrix(&results);
    let simulation = simulate_planted(&suite, &base, args.json);
    let summary = serde_json::json!({
        "suite": suite.name,
        "file": args.suite,
        "started_at": stamp,
        // What was tested: the commit this harness (and the server beside it) was built from.
        "git_commit": env!("CAPUKV_GIT_COMMIT"),
        "duration_s": started.elapsed().as_secs_f64(),
        "budget_s": budget,
        "runs": results.len(),
        "passed": passed,
        "skipped": results.iter().filter(|r| r.outcome == "skipped").count(),
        "exit_code": code,
        "detection_matrix": matrix,
        "simulation": simulation,
        "results": results,
    });
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, junit(&suite.name, &results, started.elapsed().as_secs_f64()))
    {
        eprintln!("error: cannot write {}: {e}", path.display());
    }
    let path = summary_dir.join("summary.json");
    if let Err(e) = std::fs::write(&path, serde_json::to_string_pretty(&summary).expect("serializes") + "\n") {
        eprintln!("error: cannot write {}: {e}", path.display());
    }
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "suite {}: {passed} of {} runs passed in {:.0} s",
            suite.name,
            results.len(),
            started.elapsed().as_secs_f64()
        );
        println!("{:<62} {:<8} {:<15} {:>7}", "run", "expect", "outcome", "seconds");
        for r in &results {
            let expect = if r.planned.expect == Expect::Invalid { "invalid" } else { "valid" };
            let mark = if r.passed { "" } else { "  <- FAILED" };
            println!("{:<62} {:<8} {:<15} {:>7.0}{mark}", r.planned.label(), expect, r.outcome, r.duration_s);
            if !r.passed {
                if let Some(replay) = &r.replay {
                    println!("    replay: {replay}");
                }
                if let Some(reason) = &r.reason {
                    println!("    reason: {reason}");
                }
            }
        }
        print_matrix(&matrix, &simulation);
        println!("summary: {}", path.display());
    }
    code
}

/// The detection matrix as a table, with the simulation's column.
fn print_matrix(matrix: &[Detection], simulation: &serde_json::Value) {
    if matrix.is_empty() && simulation.as_object().is_none_or(|s| s.is_empty()) {
        return;
    }
    println!("\ndetection matrix (planted bug x nemesis: caught runs, time from first fault to detection)");
    println!("{:<30} {:<10} {:>8} {:>11} {:>10}  workload", "bug", "nemesis", "caught", "median s", "worst s");
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.1}"));
    for c in matrix {
        println!(
            "{:<30} {:<10} {:>8} {:>11} {:>10}  {}",
            c.bug,
            c.nemesis,
            format!("{}/{}", c.caught, c.runs),
            secs(c.median_detect_s),
            secs(c.worst_detect_s),
            c.workload
        );
    }
    if let Some(sim) = simulation.as_object().filter(|s| !s.is_empty()) {
        println!("\nsimulation of the Raft core (seeds that broke an invariant)");
        for (bug, r) in sim {
            match r["error"].as_str() {
                Some(e) => println!("{bug:<30} error: {e}"),
                None => println!("{bug:<30} {}", harness::suite::simulation_cell(r)),
            }
        }
    }
}

/// Runs the simulation with each planted bug of the suite that lives in the
/// Raft core (`capukv-planted simulate`), `simulation_seeds` seeds each.
fn simulate_planted(suite: &Suite, base: &RunOptions, quiet: bool) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if suite.simulation_seeds == 0 || suite.planted.is_empty() {
        return serde_json::Value::Object(out);
    }
    let binary = match harness::runtime::netns::planted_binary(base.capukv_bin.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            out.insert("*".into(), serde_json::json!({"error": e}));
            return serde_json::Value::Object(out);
        }
    };
    let listed = std::process::Command::new(&binary).args(["planted-bugs", "--json"]).output();
    let in_core: Vec<String> = listed
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["in_core"] == true)
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect();
    let mut bugs: Vec<&str> = suite.planted.iter().map(|p| p.bug.as_str()).collect();
    bugs.dedup();
    for bug in bugs.into_iter().filter(|b| in_core.iter().any(|c| c == b)) {
        if !quiet {
            eprintln!("simulation: {bug}, {} seeds", suite.simulation_seeds);
        }
        let seeds = suite.simulation_seeds.to_string();
        let mut args = vec!["simulate".to_string(), "--json".into(), "--seeds".into(), seeds, "--planted-bug".into()];
        args.push(bug.to_string());
        if let Some(ticks) = suite.simulation_ticks {
            args.extend(["--ticks".to_string(), ticks.to_string()]);
        }
        if let Some(faults) = &suite.simulation_faults {
            args.extend(["--faults".to_string(), faults.clone()]);
        }
        let ran = std::process::Command::new(&binary)
            .args(&args)
            // The core logs every election at warn; only the verdict matters here.
            .env("RUST_LOG", "error")
            .output();
        let value = match ran {
            Ok(o) => serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap_or_else(
                |_| serde_json::json!({"error": String::from_utf8_lossy(&o.stderr).trim().to_string()}),
            ),
            Err(e) => serde_json::json!({"error": e.to_string()}),
        };
        out.insert(bug.to_string(), value);
    }
    serde_json::Value::Object(out)
}
