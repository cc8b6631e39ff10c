//! `capukv-chaos replay RUN_DIR`: the same options, seed and fault schedule
//! again, and whether the verdict matches.

use std::path::PathBuf;

use clap::Args;
use harness::exit;
use harness::run::RunSettings;
use harness::rundir::{RESULTS_JSON, RunRecord};

#[derive(Args)]
pub struct ReplayArgs {
    /// A run directory (holding run.json).
    pub run_dir: PathBuf,
    /// No progress display; print results.json to stdout at the end.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: ReplayArgs) -> i32 {
    let record = match RunRecord::read(&args.run_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::NO_INPUT;
        }
    };
    let original = std::fs::read_to_string(args.run_dir.join(RESULTS_JSON))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["verdict"].as_str().map(String::from));
    let mut options = record.options.clone();
    options.seed = Some(record.seed);
    // A new directory beside the original, never over it.
    options.out = None;
    if let Some(parent) = args.run_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        options.reports = parent.to_path_buf();
    }
    let settings = RunSettings {
        schedule: Some(record.schedule.clone()),
        progress: !args.json,
        dir_suffix: "-replay".into(),
        command: std::env::args().collect(),
    };
    let code = super::run::execute(options, settings, args.json);
    let replayed = match code {
        exit::VALID => Some("valid"),
        exit::INVALID => Some("invalid"),
        exit::UNKNOWN => Some("unknown"),
        _ => None,
    };
    if !args.json {
        match (original.as_deref(), replayed) {
            (Some(o), Some(r)) if o == r => println!("replay: verdict {r} matches the original run"),
            (Some(o), Some(r)) => println!("replay: verdict {r} differs from the original run's {o}"),
            (None, Some(r)) => println!("replay: verdict {r}; the original run has no verdict to compare"),
            (_, None) => println!("replay: no verdict (the harness failed)"),
        }
    }
    code
}
