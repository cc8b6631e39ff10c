//! The transactional checker at scale: `gen` writes a generated list-append
//! history of N transactions to a file; `check`, in a process of its own,
//! reads it back line by line and checks it as `capukv-chaos check --model
//! txn` does, printing the time and the peak memory. `bench/txn-checker.sh`
//! runs both.
//!
//! Usage: txn_scale gen N FILE [--split] | txn_scale check FILE

mod common;

use std::time::Instant;

use checker::txn::synth::{TxnSynth, generate};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2), args.get(3)) {
        (Some("gen"), Some(n), Some(path)) => {
            let n: usize = n.parse().expect("N is a number");
            let split = args.iter().any(|a| a == "--split");
            let history = generate(&TxnSynth { transactions: n, concurrency: 10, split, ..TxnSynth::new(1) });
            let file = std::fs::File::create(path).expect("create the history file");
            history.write_jsonl(std::io::BufWriter::new(file)).expect("write the history");
        }
        (Some("check"), Some(path), None) => {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let started = Instant::now();
            let h = checker::txn::read_file(std::path::Path::new(path)).expect("a readable history");
            let read_s = started.elapsed().as_secs_f64();
            let report = checker::txn::check_transactions(&h, started).expect("checkable");
            println!(
                "{} transactions ({:.0} MiB of JSON Lines): read in {read_s:.2} s, checked in {:.2} s in all, peak {:.0} MiB; {} dependency edges; {}",
                h.txns.len(),
                size as f64 / (1 << 20) as f64,
                started.elapsed().as_secs_f64(),
                common::peak_mib(),
                report.edges,
                report.summary()
            );
        }
        _ => {
            eprintln!("usage: txn_scale gen N FILE [--split] | txn_scale check FILE");
            std::process::exit(64);
        }
    }
}
