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
    caught_in(SEEDS, bug, Scenario::from_seed)
}

/// How many of the scenarios `scenario(0..seeds)` break an invariant (or
/// trip one of the core's own assertions) with `bug` planted, and the first
/// violation.
fn caught_in(seeds: u64, bug: Option<Bug>, scenario: impl Fn(u64) -> Scenario) -> (u64, Option<String>) {
    let mut broken = 0;
    let mut first = None;
    for seed in 0..seeds {
        let mut scenario = scenario(seed);
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

/// Long runs under every fault at once: one cluster living through
/// thousands of leader changes, crashes, partitions and snapshots, as the
/// power suite runs them (`simulation_ticks`, `simulation_faults`).
const LONG_TICKS: u64 = 100_000;
const LONG_RUNS: u64 = 10;

fn caught_in_long_runs(bug: Option<Bug>) -> (u64, Option<String>) {
    caught_in(LONG_RUNS, bug, |seed| Scenario {
        chaos_ticks: LONG_TICKS,
        ..Scenario::from_seed(seed).with_faults(sim::FaultKind::All)
    })
}

#[test]
fn long_runs_under_every_fault_catch_the_replication_and_read_bugs_nearly_always() {
    std::panic::set_hook(Box::new(|_| {}));
    let (clean, first) = caught_in_long_runs(None);
    assert_eq!(clean, 0, "the real core must survive long runs: {first:?}");
    // The bugs a real cluster rarely shows (their window is a message or an
    // fsync wide) and the simulation's long runs catch: the bar of the
    // detection matrix, 9 of 10 runs.
    let mut weak = Vec::new();
    for bug in [
        Bug::ReadIndexBeforeTermCommit,
        Bug::AppendWithoutLogMatching,
        Bug::ApplyBeforeDurable,
        Bug::CommitAlone,
        Bug::AckOnSend,
    ] {
        let (broken, first) = caught_in_long_runs(Some(bug));
        println!("{bug}: {broken} of {LONG_RUNS} long runs caught; first: {}", first.as_deref().unwrap_or("-"));
        if broken < 9 {
            weak.push(format!("{bug}: {broken}/{LONG_RUNS}"));
        }
        // A long run is replayed with the flags that made it.
        if let Some(first) = first.filter(|f| !f.contains("panicked")) {
            let flags = format!("--ticks {LONG_TICKS} --faults all --planted-bug {}", bug.name());
            assert!(
                first.contains("capukv-planted simulate --seeds 1 --first-seed") && first.contains(&flags),
                "{first}"
            );
        }
    }
    let _ = std::panic::take_hook();
    assert!(weak.is_empty(), "long simulated runs missed these planted bugs too often: {weak:?}");
}
