//! `capukv-chaos suite SUITE.toml`: a matrix of runs within a time budget,
//! a summary table, summary.json, and an exit status for the whole.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use harness::exit;
use harness::options::RunOptions;
use harness::run::{RunSettings, run};
use harness::suite::{Expect, RUN_OVERHEAD_S, RunResult, Suite, exit_status};

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
        let elapsed = started.elapsed().as_secs_f64();
        let estimate = suite.time_limit + RUN_OVERHEAD_S;
        if elapsed + estimate > budget {
            results.push(RunResult {
                planned: p.clone(),
                outcome: "skipped".into(),
                passed: false,
                dir: None,
                replay: None,
                duration_s: 0.0,
                reason: Some(format!("would end past the {} min budget ({elapsed:.0} s used)", suite.budget_minutes)),
            });
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
        let (outcome, dir, replay, reason) = match runtime.block_on(run(options, settings)) {
            Ok(o) => {
                let verdict = o.results["verdict"].as_str().unwrap_or("harness-failed").to_string();
                let reason = o.results["harness_failure"].as_str().map(String::from);
                let replay = o.results["replay"].as_str().map(String::from);
                (verdict, Some(o.dir.display().to_string()), replay, reason)
            }
            Err(e) => ("harness-failed".to_string(), None, None, Some(format!("{e:#}"))),
        };
        let passed = matches!((outcome.as_str(), p.expect), ("valid", Expect::Valid) | ("invalid", Expect::Invalid));
        results.push(RunResult {
            planned: p.clone(),
            outcome,
            passed,
            dir,
            replay,
            duration_s: t.elapsed().as_secs_f64(),
            reason,
        });
        let interrupted = results.last().and_then(|r| r.reason.as_deref()).is_some_and(|r| r.contains("interrupted"));
        if interrupted {
            eprintln!("interrupted: the remaining runs are skipped");
            break;
        }
    }
    let code = exit_status(&results);
    let passed = results.iter().filter(|r| r.passed).count();
    let summary = serde_json::json!({
        "suite": suite.name,
        "file": args.suite,
        "started_at": stamp,
        "duration_s": started.elapsed().as_secs_f64(),
        "budget_s": budget,
        "runs": results.len(),
        "passed": passed,
        "skipped": results.iter().filter(|r| r.outcome == "skipped").count(),
        "exit_code": code,
        "results": results,
    });
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
        println!("summary: {}", path.display());
    }
    code
}
