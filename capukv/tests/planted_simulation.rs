//! The simulation against the planted bugs of the Raft core: each must make
//! some seeds break an invariant (the simulation's share of the detection
//! matrix; `capukv-planted simulate --planted-bug NAME` prints the figure),
//! while the same seeds pass without it. Built with `--features planted-bugs`.
#![cfg(feature = "planted-bugs")]

use capukv::planted::Bug;
use capukv::sim::{self, Scenario};

/// Seeds per bug: every fault kind 100 times over, both cluster sizes.
const SEEDS: u64 = 900;

/// How many of the seeds `0..SEEDS` break an invariant (or trip one of the
/// core's own assertions) with `bug` planted.
fn caught(bug: Option<Bug>) -> (u64, Option<String>) {
    let mut broken = 0;
    let mut first = None;
    for seed in 0..SEEDS {
        let mut scenario = Scenario::from_seed(seed);
        scenario.planted = bug;
        let outcome = std::panic::catch_unwind(move || sim::run_with(scenario));
        let violation = match outcome {
            Ok(Ok(_)) => continue,
            Ok(Err(v)) => v.to_string(),
            Err(_) => format!("seed {seed}: the core panicked"),
        };
        broken += 1;
        first.get_or_insert(violation);
    }
    (broken, first)
}

#[test]
fn every_planted_bug_of_the_core_breaks_an_invariant_in_some_seeds() {
    // The panics the core's assertions raise under a bug are expected here.
    std::panic::set_hook(Box::new(|_| {}));
    let (clean, first) = caught(None);
    assert_eq!(clean, 0, "the real core must pass these seeds: {first:?}");
    let mut missed = Vec::new();
    for bug in Bug::ALL.into_iter().filter(|b| b.in_core()) {
        let (broken, first) = caught(Some(bug));
        println!("{bug}: {broken} of {SEEDS} seeds caught; first: {}", first.as_deref().unwrap_or("-"));
        if broken == 0 {
            missed.push(bug.name());
        }
    }
    let _ = std::panic::take_hook();
    assert!(missed.is_empty(), "the simulation caught none of these planted bugs: {missed:?}");
}
