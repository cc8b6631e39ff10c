//! The long simulation: `cargo bench -p capukv --bench raft_sim` runs
//! 100,000 seeds (or `CAPUKV_SIM_SEEDS`, from `CAPUKV_SIM_FIRST_SEED`) across
//! both cluster sizes and every fault kind, on every core, and prints
//! seeds/s and the worst ticks-to-recover after the final heal.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use capukv::sim::{self, Scenario};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

fn main() {
    let count = env_u64("CAPUKV_SIM_SEEDS", 100_000);
    let first = env_u64("CAPUKV_SIM_FIRST_SEED", 0);
    let next = AtomicU64::new(first);
    let end = first + count;
    let worst = Mutex::new((0u64, first));
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    match sim::run_with(Scenario::from_seed(seed)) {
                        Ok(o) => {
                            let mut w = worst.lock().unwrap();
                            if o.recovery_ticks > w.0 {
                                *w = (o.recovery_ticks, seed);
                            }
                        }
                        Err(v) => {
                            eprintln!("{v}");
                            failures.lock().unwrap().push(seed);
                        }
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let (worst_ticks, worst_seed) = *worst.lock().unwrap();
    let failures = failures.into_inner().unwrap();
    println!(
        "raft simulation: {count} seeds in {:.1?} on {threads} threads = {:.0} seeds/s; worst recovery {worst_ticks} ticks (seed {worst_seed}, bound {}); {} failing seeds",
        elapsed,
        count as f64 / elapsed.as_secs_f64(),
        sim::RECOVERY_BOUND_TICKS,
        failures.len()
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
