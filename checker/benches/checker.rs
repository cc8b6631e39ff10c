//! Checker speed on generated histories (`cargo bench -p checker`):
//!
//! - one key, 10 clients, 20% info operations (10,000 operations);
//! - 1,000,000 operations over 1,000 keys with 50 clients, both the search
//!   alone and reading the JSON Lines plus the search (what `capukv-chaos
//!   check` does);
//! - kv histories with 50 clients over 10 keys and stale reads, every key
//!   searched (the invalid, high-concurrency case);
//! - one key, 10 clients, 100,000 operations;
//! - an append-only key (unique elements, as the append workload's) with 50
//!   clients and 20% info: the check (the append inference decides it) beside
//!   the search alone on the same operations.
//!
//! Values are drawn from 0..5, as in Jepsen's register tests, so cas often
//! matches and reads are ambiguous: the hard case for the search.

use std::time::Duration;

use checker::model::Kv;
use checker::operation::pair;
use checker::search::{Limits, Outcome, search};
use checker::synth::{Synth, generate};
use checker::{Budget, History, ModelKind, Verdict, check_history};
use criterion::{Criterion, criterion_group, criterion_main};

fn history(operations: usize, keys: usize, clients: usize, info: f64) -> History {
    let mut cfg = Synth::new(1, ModelKind::CasRegister);
    (cfg.operations, cfg.keys, cfg.concurrency, cfg.info, cfg.values) = (operations, keys, clients, info, 5);
    generate(&cfg)
}

fn check_valid(h: &History) {
    let report = check_history(h, ModelKind::CasRegister, None, &Budget::default()).unwrap();
    assert_eq!(report.verdict, Verdict::Valid);
}

fn stale_kv(seed: u64, clients: usize, info: f64) -> History {
    let mut cfg = Synth::new(seed, ModelKind::Kv);
    (cfg.operations, cfg.keys, cfg.concurrency, cfg.info, cfg.values) = (2_000, 10, clients, info, 5);
    cfg.stale_read = 0.01;
    generate(&cfg)
}

fn check_invalid_all_keys(h: &History) {
    let budget = Budget { all_keys: true, ..Budget::default() };
    let report = check_history(h, ModelKind::Kv, None, &budget).unwrap();
    assert_eq!((report.verdict, report.unknown_keys), (Verdict::Invalid, 0));
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("checker");
    group.sample_size(10).measurement_time(Duration::from_secs(20));

    let small = history(10_000, 1, 10, 0.2);
    group.bench_function("1 key, 10 clients, 20% info, 10k ops", |b| b.iter(|| check_valid(&small)));

    let big = history(1_000_000, 1_000, 50, 0.2);
    group.bench_function("1000 keys, 50 clients, 1M ops: search", |b| b.iter(|| check_valid(&big)));
    let mut jsonl = Vec::new();
    for e in &big.events {
        serde_json::to_writer(&mut jsonl, e).unwrap();
        jsonl.push(b'\n');
    }
    drop(big);
    group.bench_function("1000 keys, 50 clients, 1M ops: read JSON Lines + search", |b| {
        b.iter(|| check_valid(&History::read_jsonl(&jsonl[..], "bench").unwrap()))
    });
    drop(jsonl);

    // Jepsen-style kv histories with 50 clients over 10 keys (about 200
    // operations a key, values 0..5, cas and delete, 10% info), each with a
    // few stale reads: every key searched to the end (--all-keys), as a
    // chaos run's report does. One iteration checks all five.
    let hard: Vec<History> = (1..=5).map(|seed| stale_kv(seed, 50, 0.1)).collect();
    group.bench_function("kv, 50 clients, 10 keys, 2k ops, 10% info, stale reads: 5 histories, all keys", |b| {
        b.iter(|| hard.iter().for_each(check_invalid_all_keys))
    });

    let mut cfg = Synth::new(3, ModelKind::Kv);
    (cfg.concurrency, cfg.keys, cfg.operations, cfg.info) = (50, 1, 5_000, 0.2);
    cfg.mix = Some("rraa".to_string());
    let appends = generate(&cfg);
    group.bench_function("append key, 50 clients, 20% info, 5k ops: check (inference)", |b| {
        b.iter(|| {
            let report = check_history(&appends, ModelKind::Kv, None, &Budget::default()).unwrap();
            assert_eq!(report.verdict, Verdict::Valid);
        })
    });
    let ops = pair(&appends).unwrap().by_key.into_values().next().unwrap();
    group.bench_function("append key, 50 clients, 20% info, 5k ops: search alone", |b| {
        b.iter(|| {
            let limits = Limits::new(std::time::Instant::now() + Duration::from_secs(60), 1 << 30);
            assert_eq!(search(&ops, Kv(None), &limits, false), Outcome::Linearizable);
        })
    });

    let long = history(100_000, 1, 10, 0.2);
    group.measurement_time(Duration::from_secs(60));
    group.bench_function("1 key, 10 clients, 20% info, 100k ops", |b| b.iter(|| check_valid(&long)));
    group.finish();
}

criterion_group!(checker_benches, benches);
criterion_main!(checker_benches);
