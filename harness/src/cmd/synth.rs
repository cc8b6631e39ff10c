//! `capukv-chaos synth`: a random concurrent history from a simulated store,
//! linearizable unless told to serve stale reads or lose writes. For trying
//! the checker on histories of a chosen shape (clients, keys, info rate),
//! and for timing it against another checker on the same files.

use std::path::PathBuf;

use checker::ModelKind;
use checker::synth::{Synth, generate_with_log};
use clap::Args;
use harness::exit;

#[derive(Args)]
pub struct SynthArgs {
    /// The operations drawn: register (read, write), cas-register (and cas)
    /// or kv (and delete, append).
    #[arg(long, default_value = "kv")]
    model: ModelKind,
    /// Clients in flight at once.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    keys: usize,
    /// Operations invoked in all.
    #[arg(long, default_value_t = 2_000)]
    ops: usize,
    /// Written values are drawn from 0 to VALUES - 1 (few values: ambiguous
    /// reads, as in Jepsen's register tests).
    #[arg(long, default_value_t = 5)]
    values: i64,
    /// Chance that an operation ends `info` (may take effect late, or never).
    #[arg(long, default_value_t = 0.1)]
    info: f64,
    /// Chance that a read returns an older value: makes the history invalid.
    #[arg(long, default_value_t = 0.0)]
    stale_read: f64,
    /// Chance that a write is acknowledged without taking effect.
    #[arg(long, default_value_t = 0.0)]
    lost_write: f64,
    /// Only these kinds of operation, one letter each, repeated for weight:
    /// r read, w write, c cas, d delete, a append (e.g. rrrwwa).
    #[arg(long)]
    mix: Option<String>,
    /// Writes (and the new values of cas) are unique elements `N,` drawn
    /// from the counter appends draw theirs from, and a cas expects a value
    /// the key held (--values then plays no part): every read names its
    /// write and the appends since, as the harness's workloads guarantee.
    #[arg(long)]
    unique_values: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Completions carry the store's revisions, etcd-style (stale reads and
    /// lost writes carry none).
    #[arg(long)]
    revisions: bool,
    /// Also write the settlement an exact log of the store gives the info
    /// writes (for `check --settlement`).
    #[arg(long, value_name = "FILE")]
    settlement: Option<PathBuf>,
    /// Also write the history as Porcupine's kv log (read, write and append only).
    #[arg(long, value_name = "FILE")]
    porcupine: Option<PathBuf>,
    /// List-append transactions instead (checked with `check --model
    /// txn`): --ops transactions of up to 4 micro-operations on --keys keys
    /// at a time (each retired after 16 appends), by --clients clients.
    #[arg(long)]
    txn: bool,
    /// With --txn: the store runs each transaction in two halves, so that
    /// others come between (anomalies appear).
    #[arg(long, requires = "txn")]
    split: bool,
    /// Where the history goes (JSON Lines, docs/history-format.md).
    out: PathBuf,
}

pub fn run(args: SynthArgs) -> i32 {
    let chances = [("--info", args.info), ("--stale-read", args.stale_read), ("--lost-write", args.lost_write)];
    for (flag, p) in chances {
        if !(0.0..=1.0).contains(&p) {
            eprintln!("error: {flag} is a chance from 0 to 1, not {p}");
            return exit::USAGE;
        }
    }
    if args.clients == 0 || args.keys == 0 || args.values < 1 {
        eprintln!("error: --clients, --keys and --values must be at least 1");
        return exit::USAGE;
    }
    if let Some(Err(e)) = args.mix.as_deref().map(|mix| checker::synth::check_mix(mix, args.model)) {
        eprintln!("error: --mix: {e}");
        return exit::USAGE;
    }
    if args.txn {
        let cfg = checker::txn::synth::TxnSynth {
            transactions: args.ops,
            concurrency: args.clients,
            keys: args.keys,
            info: args.info,
            split: args.split,
            ..checker::txn::synth::TxnSynth::new(args.seed)
        };
        let history = checker::txn::synth::generate(&cfg);
        return write_history(&history, &args.out);
    }
    let mut cfg = Synth::new(args.seed, args.model);
    (cfg.concurrency, cfg.keys, cfg.operations, cfg.values) = (args.clients, args.keys, args.ops, args.values);
    (cfg.info, cfg.stale_read, cfg.lost_write, cfg.mix) = (args.info, args.stale_read, args.lost_write, args.mix);
    cfg.revisions = args.revisions;
    cfg.unique_values = args.unique_values;
    let (history, log) = generate_with_log(&cfg);
    if let Some(path) = &args.settlement
        && let Err(e) = std::fs::write(path, serde_json::to_string(&log).expect("settlements serialize") + "\n")
    {
        eprintln!("error: cannot write {}: {e}", path.display());
        return exit::HARNESS_FAILED;
    }
    let written = write_history(&history, &args.out);
    if written != exit::VALID {
        return written;
    }
    if let Some(path) = &args.porcupine {
        let log = match checker::porcupine::kv_log(&history) {
            Ok(log) => log,
            Err(e) => {
                eprintln!("error: no Porcupine log: {e} (use --mix with r, w and a only)");
                return exit::USAGE;
            }
        };
        if let Err(e) = std::fs::write(path, log) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return exit::HARNESS_FAILED;
        }
    }
    exit::VALID
}

fn write_history(history: &checker::History, out: &std::path::Path) -> i32 {
    let file = match std::fs::File::create(out) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", out.display());
            return exit::HARNESS_FAILED;
        }
    };
    if let Err(e) = history.write_jsonl(std::io::BufWriter::with_capacity(1 << 20, file)) {
        eprintln!("error: cannot write {}: {e}", out.display());
        return exit::HARNESS_FAILED;
    }
    eprintln!("{} events written to {}", history.events.len(), out.display());
    exit::VALID
}
