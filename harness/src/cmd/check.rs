//! `capukv-chaos check`: a history file in, a verdict out.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use checker::settlement::Settlement;
use checker::{Budget, History, HistoryError, ModelKind, Value, check_settled};
use clap::Args;
use harness::exit;

/// What a history is checked against.
#[derive(Clone, Copy, Debug)]
pub enum CheckModel {
    /// Linearizability, per key, against a sequential model.
    Linear(ModelKind),
    /// Strict serializability of list-append transactions (`"f": "txn"`).
    Txn,
}

impl FromStr for CheckModel {
    type Err = String;
    fn from_str(s: &str) -> Result<CheckModel, String> {
        match s {
            "txn" => Ok(CheckModel::Txn),
            other => ModelKind::from_str(other).map(CheckModel::Linear).map_err(|e| format!("{e}, or txn")),
        }
    }
}

#[derive(Args)]
pub struct CheckArgs {
    /// The model to check against: register, cas-register or kv
    /// (linearizability), or txn (strict serializability of list-append
    /// transactions, with every anomaly named as Elle does).
    #[arg(long)]
    model: CheckModel,
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
    if let CheckModel::Txn = args.model {
        return check_transactions(&args);
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
    let CheckModel::Linear(model) = args.model else { unreachable!("transactions are checked above") };
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
    let report = match check_settled(&history, model, initial, &budget, settlement.as_ref()) {
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
                ("model".into(), model.name().to_string()),
            ],
            replay: Some(format!("capukv-chaos check --model {} {}", model.name(), args.history.display())),
            failure: None,
            links: Vec::new(),
            ..Default::default()
        };
        if let Err(code) = write_report(dir, &history, Some(&report), &info) {
            return code;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
    } else {
        print!("{}", checker::summary::render(&report, &history.source));
    }
    exit::of_verdict(report.verdict)
}

fn read_error(e: HistoryError) -> i32 {
    match e {
        e @ HistoryError::Io { .. } => {
            eprintln!("error: cannot read the history: {e}");
            exit::NO_INPUT
        }
        e => {
            eprintln!("error: malformed history: {e}");
            exit::MALFORMED_INPUT
        }
    }
}

/// `--model txn`: the transactional check, its summary or JSON, its report.
/// The history is read line by line (a million transactions fit in a few
/// hundred MiB); it is read whole only to draw a report.
fn check_transactions(args: &CheckArgs) -> i32 {
    if args.history.extension().is_some_and(|e| e == "edn") {
        eprintln!("error: --model txn reads JSON Lines histories (docs/history-format.md), not EDN");
        return exit::USAGE;
    }
    let started = std::time::Instant::now();
    let report =
        match checker::txn::read_file(&args.history).and_then(|h| checker::txn::check_transactions(&h, started)) {
            Ok(r) => r,
            Err(e) => return read_error(e),
        };
    if let Some(dir) = &args.report {
        let history = match History::read_file(&args.history) {
            Ok(h) => h,
            Err(e) => return read_error(e),
        };
        let history = &history;
        let info = checker::report::RunInfo {
            title: format!("Transactional check of {}", args.history.display()),
            fields: vec![("history".into(), args.history.display().to_string()), ("model".into(), "txn".into())],
            replay: Some(format!("capukv-chaos check --model txn {}", args.history.display())),
            transactions: Some(report.clone()),
            ..Default::default()
        };
        if let Err(code) = write_report(dir, history, None, &info) {
            return code;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
    } else {
        println!("{}: {}", args.history.display(), report.summary());
        for a in &report.anomalies {
            println!("  {}: {}", a.kind.name(), a.explanation);
            for s in &a.cycle {
                println!("    {} -{}-> ({})", s.describe, s.edge, s.why);
            }
        }
        println!(
            "  {} transactions, {} keys, {} edges, checked in {:.2} s",
            report.txns.ok + report.txns.fail + report.txns.info,
            report.keys,
            report.edges,
            report.elapsed_s
        );
    }
    exit::of_verdict(if report.valid { checker::Verdict::Valid } else { checker::Verdict::Invalid })
}

/// Writes `dir/index.html`, saying where; the exit code when it cannot.
fn write_report(
    dir: &std::path::Path,
    history: &History,
    check: Option<&checker::CheckReport>,
    info: &checker::report::RunInfo,
) -> Result<(), i32> {
    match std::fs::create_dir_all(dir).and_then(|()| checker::report::write(dir, history, check, info)) {
        Ok(path) => {
            eprintln!("report: {}", path.display());
            Ok(())
        }
        Err(e) => {
            eprintln!("error: cannot write the report into {}: {e}", dir.display());
            Err(exit::HARNESS_FAILED)
        }
    }
}
