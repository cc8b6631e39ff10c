//! `capukv-chaos run`: a chaos run, from cluster start to verdict.

use clap::Args;
use harness::exit;
use harness::options::RunOptions;
use harness::run::{RunOutcome, RunSettings, run};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub options: RunOptions,
    /// No progress display; print results.json to stdout at the end.
    #[arg(long)]
    pub json: bool,
}

/// Prints the outcome the way both `run` and `replay` do.
pub fn report(outcome: &RunOutcome, json: bool) {
    if json {
        println!("{}", serde_json::to_string(&outcome.results).expect("results serialize"));
        return;
    }
    let r = &outcome.results;
    let ops = &r["operations"];
    let verdict = r["verdict"].as_str().unwrap_or("none");
    println!("verdict: {verdict}");
    if let Some(reason) = r["harness_failure"].as_str() {
        println!("harness failure: {reason}");
    }
    println!("operations: {} invoked, {} ok, {} fail, {} info", ops["invoked"], ops["ok"], ops["fail"], ops["info"]);
    println!("faults struck: {}", r["nemesis"]["struck"]);
    if let Some(lost) = r["lost_appends"].as_object().filter(|l| !l.is_empty()) {
        println!("lost acknowledged appends: {}", serde_json::Value::Object(lost.clone()));
    }
    if let Some(t) = r["transactions"].as_object() {
        let counts: Vec<String> =
            t["counts"].as_object().map(|c| c.iter().map(|(k, n)| format!("{n} × {k}")).collect()).unwrap_or_default();
        println!(
            "checked {} committed transactions on {} keys in {:.2} s: strongest model {}{}",
            t["txns"]["ok"],
            t["keys"],
            t["elapsed_s"].as_f64().unwrap_or(0.0),
            t["strongest"].as_str().unwrap_or("none of the models checked"),
            if counts.is_empty() { String::new() } else { format!(" ({})", counts.join(", ")) }
        );
    } else if let Some(check) = r["check"].as_object() {
        println!(
            "checked {} operations on {} keys in {} ms: {} invalid, {} unknown",
            check["operations"], check["keys"], check["elapsed_ms"], check["invalid_keys"], check["unknown_keys"]
        );
    }
    println!("seed: {}  replay: {}", r["seed"], r["replay"].as_str().unwrap_or(""));
    println!("run directory: {}", outcome.dir.display());
}

pub fn main(args: RunArgs) -> i32 {
    let settings = RunSettings {
        schedule: None,
        progress: !args.json,
        dir_suffix: String::new(),
        command: std::env::args().collect(),
    };
    execute(args.options, settings, args.json)
}

pub fn execute(options: RunOptions, settings: RunSettings, json: bool) -> i32 {
    if let Err(e) = options.validate() {
        eprintln!("error: {e}");
        return exit::USAGE;
    }
    let runtime = match super::async_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(run(options, settings)) {
        Ok(outcome) => {
            report(&outcome, json);
            outcome.exit_code
        }
        Err(e) => {
            eprintln!("error: the harness failed: {e:#}");
            exit::HARNESS_FAILED
        }
    }
}
