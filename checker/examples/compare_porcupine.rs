//! The CapuKV checker's half of bench/compare-porcupine.sh: generates
//! key-value histories (read, write and append, so Porcupine's kv model can
//! check them too; 1 to 50 clients; valid, and invalid from stale reads),
//! checks each, and writes each as Porcupine's kv log into DIR.
//!
//! Usage: cargo run --release -p checker --example compare_porcupine -- DIR
//! Prints one line per history: NAME VERDICT SECONDS VERDICT_ALL SECONDS_ALL
//! (the second pair with --all-keys: every key searched to the end).

use std::time::{Duration, Instant};

use checker::synth::{Synth, generate};
use checker::{Budget, History, ModelKind, Verdict, check_history};

fn check(history: &History, all_keys: bool) -> (Verdict, f64) {
    let budget = Budget { timeout: Duration::from_secs(60), all_keys, ..Budget::default() };
    let started = Instant::now();
    let report = check_history(history, ModelKind::Kv, None, &budget).expect("generated histories are well formed");
    (report.verdict, started.elapsed().as_secs_f64())
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: compare_porcupine DIR");
    std::fs::create_dir_all(&dir).expect("DIR can be made");
    for clients in [1, 5, 10, 20, 50] {
        for stale_read in [0.0, 0.02] {
            for seed in 1..=3 {
                let mut cfg = Synth::new(seed, ModelKind::Kv);
                (cfg.concurrency, cfg.keys, cfg.operations, cfg.values, cfg.info) = (clients, 10, 2_000, 5, 0.1);
                cfg.stale_read = stale_read;
                cfg.mix = Some("rrrwwa".to_string());
                let history = generate(&cfg);
                let kind = if stale_read > 0.0 { "stale" } else { "clean" };
                let name = format!("c{clients:02}-{kind}-s{seed}");
                let log = checker::porcupine::kv_log(&history).expect("read, write and append only");
                std::fs::write(format!("{dir}/{name}.txt"), log).expect("the log can be written");
                let (verdict, seconds) = check(&history, false);
                let (verdict_all, seconds_all) = check(&history, true);
                println!("{name} {verdict:?} {seconds:.6} {verdict_all:?} {seconds_all:.6}");
            }
        }
    }
}
