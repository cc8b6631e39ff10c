//! Writes a random concurrent history as JSON Lines to standard output, for
//! benchmarks and for trying `capukv-chaos check` on large inputs:
//!
//! `cargo run --release -p checker --example synth_history -- OPS KEYS CLIENTS INFO [MODEL] [VALUES] [SEED]`
//!
//! e.g. `... -- 1000000 1000 50 0.2 cas-register 1000 1 > big.jsonl`

use std::io::{BufWriter, Write};

use checker::ModelKind;
use checker::synth::{Synth, generate};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let number = |i: usize, default: &str| -> f64 {
        arg(i, default).parse().unwrap_or_else(|_| panic!("argument {} must be a number", i + 1))
    };
    let model: ModelKind = arg(4, "cas-register").parse().unwrap_or_else(|e: String| panic!("{e}"));
    let mut cfg = Synth::new(number(6, "1") as u64, model);
    cfg.operations = number(0, "10000") as usize;
    cfg.keys = number(1, "1") as usize;
    cfg.concurrency = number(2, "10") as usize;
    cfg.info = number(3, "0.2");
    cfg.values = number(5, "5") as i64;
    let history = generate(&cfg);
    let mut out = BufWriter::new(std::io::stdout().lock());
    for e in &history.events {
        serde_json::to_writer(&mut out, e).expect("stdout");
        out.write_all(b"\n").expect("stdout");
    }
}
