//! `capukv-chaos check`: a history file in, a verdict out.

use std::path::PathBuf;
use std::time::Duration;

use checker::settlement::Settlement;
use checker::{Budget, History, HistoryError, ModelKind, Value, check_settled};
use clap::Args;
use harness::exit;

#[derive(Args)]
pub struct CheckArgs {
    /// The model to check against: register, cas-register or kv.
    #[arg(long)]
    model: ModelKind,
    /// The history: JSON Lines (docs/history-format.md), or Jepsen's
    /// history.edn (by its .edn extension). EDN is read by Knossos's rules:
    /// an :ok read of nil matches any value, every :fail is dropped, an
    /// :info or an :invoke never completed may have happened at any later
    /// time or never, and `[k v]` values make an independent-key history.
    /// Keys keep their type (1 and "1" differ) in both formats.
    history: PathBuf,
    /// Seconds the search may take before the verdict is `unknown`.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// MiB the search may hold in memory before the verdict is `unknown`.
    #[arg(long, default_value_t = 1024)]
    memory_mib: usize,
    /// Each key's value before the history (default: absent). Integers are
    /// read as integers, anything else as a string.
    #[arg(long)]
    initial: Option<String>,
    /// Search every key to the end for a full report. Without it the check
    /// stops at the first key proven not linearizable: that settles the
    /// verdict, and the keys not yet decided are listed as not searched.
    #[arg(long)]
    all_keys: bool,
    /// Take the info writes as this settlement says (a chaos run writes
    /// one, settlement.json, from the nodes' Raft logs): each either took
    /// effect before a later event, or never did.
    #[arg(long, value_name = "FILE")]
    settlement: Option<PathBuf>,
    /// Print the full result as JSON instead of the summary.
    #[arg(long)]
    json: bool,
    /// Also write an HTML report (index.html) into this directory.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

pub fn run(args: CheckArgs) -> i32 {
    if !(args.timeout.is_finite() && args.timeout >= 0.0) {
        eprintln!("error: --timeout must be a number of seconds, not {}", args.timeout);
        return exit::USAGE;
    }
    let history = match History::read_file(&args.history) {
        Ok(h) => h,
        Err(e @ HistoryError::Io { .. }) => {
            eprintln!("error: cannot read the history: {e}");
            return exit::NO_INPUT;
        }
        Err(e) => {
            eprintln!("error: malformed history: {e}");
            return exit::MALFORMED_INPUT;
        }
    };
    let budget = Budget {
        timeout: Duration::from_secs_f64(args.timeout),
        memory_bytes: args.memory_mib << 20,
        threads: 0,
        all_keys: args.all_keys,
    };
    let settlement = match args.settlement.as_deref().map(Settlement::read_file).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot read the settlement: {e}");
            return exit::NO_INPUT;
        }
    };
    let initial = args.initial.as_deref().map(Value::parse);
    let report = match check_settled(&history, args.model, initial, &budget, settlement.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: malformed history: {e}");
            return exit::MALFORMED_INPUT;
        }
    };
    if let Some(dir) = &args.report {
        let info = checker::report::RunInfo {
            title: format!("Linearizability check of {}", args.history.display()),
            fields: vec![
                ("history".into(), args.history.display().to_string()),
                ("model".into(), args.model.name().to_string()),
            ],
            replay: Some(format!("capukv-chaos check --model {} {}", args.model.name(), args.history.display())),
            failure: None,
            links: Vec::new(),
            ..Default::default()
        };
        let written =
            std::fs::create_dir_all(dir).and_then(|()| checker::report::write(dir, &history, Some(&report), &info));
        match written {
            Ok(path) => eprintln!("report: {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write the report into {}: {e}", dir.display());
                return exit::HARNESS_FAILED;
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
    } else {
        print!("{}", checker::summary::render(&report, &history.source));
    }
    exit::of_verdict(report.verdict)
}
