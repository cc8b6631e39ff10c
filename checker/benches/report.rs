//! Report rendering speed (`cargo bench -p checker --bench report`): the
//! whole index.html (plots, timeline data, summary) of a 100,000-operation
//! history over 60 seconds with faults. The target is under 5 s.

use std::time::Duration;

use checker::report::{self, RunInfo};
use checker::synth::{Synth, generate};
use checker::{Budget, History, ModelKind, check_history};
use criterion::{Criterion, criterion_group, criterion_main};

/// 100,000 operations on 100 keys by 20 clients, 10% info, stretched over
/// 60 s, with a fault window every 10 s.
pub fn history() -> History {
    let mut cfg = Synth::new(3, ModelKind::CasRegister);
    (cfg.operations, cfg.keys, cfg.concurrency, cfg.info, cfg.values) = (100_000, 100, 20, 0.1, 5);
    let mut h = generate(&cfg);
    let last = h.events.last().map_or(1, |e| e.time.max(1));
    for e in &mut h.events {
        e.time = (e.time as u128 * 60_000_000_000 / last as u128) as u64;
    }
    let mut events = Vec::with_capacity(h.events.len() + 12);
    let mut next_fault = 5_000_000_000u64;
    let mut striking = true;
    for e in h.events.drain(..) {
        if e.time >= next_fault {
            let f = if striking { "start-partition" } else { "stop-partition" };
            let value = serde_json::json!(null);
            events.push(checker::Event {
                f: f.into(),
                process: checker::Process::Nemesis,
                key: None,
                value,
                ..e.clone()
            });
            striking = !striking;
            next_fault += 5_000_000_000;
        }
        events.push(e);
    }
    for (i, e) in events.iter_mut().enumerate() {
        e.index = i as u64;
    }
    h.events = events;
    h.lines = (1..=h.events.len()).collect();
    h
}

fn benches(c: &mut Criterion) {
    let h = history();
    let check = check_history(&h, ModelKind::CasRegister, None, &Budget::default()).unwrap();
    let info = RunInfo { title: "bench".into(), ..RunInfo::default() };
    let html = report::render(&h, Some(&check), &info);
    println!("report of {} events: {:.1} MB", h.events.len(), html.len() as f64 / 1e6);
    let mut group = c.benchmark_group("report");
    group.sample_size(10).measurement_time(Duration::from_secs(30));
    group.bench_function("render index.html, 100k ops", |b| b.iter(|| report::render(&h, Some(&check), &info)));
    group.finish();
}

criterion_group!(report_benches, benches);
criterion_main!(report_benches);
