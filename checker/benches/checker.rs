//! Checker speed on generated histories (`cargo bench -p checker`):
//!
//! - one key, 10 clients, 20% info operations (10,000 operations);
//! - 1,000,000 operations over 1,000 keys with 50 clients, both the search
//!   alone and reading the JSON Lines plus the search (what `capukv-chaos
//!   check` does);
//! - one key, 10 clients, 100,000 operations.
//!
//! Values are drawn from 0..5, as in Jepsen's register tests, so cas often
//! matches and reads are ambiguous: the hard case for the search.

use std::time::Duration;

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

    let long = history(100_000, 1, 10, 0.2);
    group.measurement_time(Duration::from_secs(60));
    group.bench_function("1 key, 10 clients, 20% info, 100k ops", |b| b.iter(|| check_valid(&long)));
    group.finish();
}

criterion_group!(checker_benches, benches);
criterion_main!(checker_benches);
