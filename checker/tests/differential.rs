//! The checker against stateright's own `LinearizabilityTester` on 10,000
//! random small concurrent histories (stale reads, lost writes, info
//! operations that take effect late or never): the verdicts must agree.

use checker::model::KvStore;
use checker::operation::pair;
use checker::synth::{Synth, generate};
use checker::{Budget, History, ModelKind, Verdict, check_history};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

/// Stateright's verdict, fed the same operations in history order.
fn stateright_valid(history: &History) -> bool {
    let ops = pair(history).expect("synthetic histories are well formed");
    let mut events: Vec<(u64, bool, &checker::Operation)> = Vec::new();
    for op in ops.by_key.values().flatten() {
        events.push((op.call, true, op));
        if let Some(ret) = op.ret {
            events.push((ret, false, op));
        }
    }
    events.sort_by_key(|&(at, _, _)| at);
    let mut tester: LinearizabilityTester<u64, KvStore> = LinearizabilityTester::new(KvStore::default());
    for (_, is_call, op) in events {
        if is_call {
            tester.on_invoke(op.process, (op.key.clone(), op.input.clone())).expect("one call per process");
        } else {
            tester.on_return(op.process, op.output.clone()).expect("returns follow calls");
        }
    }
    tester.serialized_history().is_some()
}

#[test]
fn verdicts_match_stateright_on_10000_random_histories() {
    let models = [ModelKind::Register, ModelKind::CasRegister, ModelKind::Kv];
    let mut split = [[0usize; 2]; 3];
    let mut disagreements = Vec::new();
    for seed in 0..10_000u64 {
        let model = models[(seed % 3) as usize];
        let mut cfg = Synth::new(seed, model);
        cfg.concurrency = 2 + (seed / 3 % 3) as usize;
        cfg.keys = 1 + (seed / 9 % 2) as usize;
        cfg.operations = 4 + (seed / 18 % 6) as usize;
        cfg.info = 0.15;
        cfg.values = 6;
        // Most histories come from a store that misbehaves.
        if seed % 5 != 0 {
            cfg.stale_read = 0.6;
            cfg.lost_write = 0.5;
        }
        let history = generate(&cfg);
        let ours = check_history(&history, model, None, &Budget { threads: 1, ..Budget::default() }).unwrap();
        assert_ne!(ours.verdict, Verdict::Unknown, "seed {seed}: a tiny history must not exhaust the budget");
        let ours_valid = ours.verdict == Verdict::Valid;
        if ours_valid != stateright_valid(&history) {
            disagreements.push(seed);
        }
        split[(seed % 3) as usize][usize::from(ours_valid)] += 1;
    }
    for (model, [invalid, valid]) in models.iter().zip(split) {
        println!("{model}: {valid} valid, {invalid} invalid");
    }
    assert!(disagreements.is_empty(), "verdicts differ from stateright for seeds {disagreements:?}");
    for (model, [invalid, valid]) in models.iter().zip(split) {
        let tenth = (valid + invalid) / 10;
        assert!(
            valid > tenth && invalid > tenth,
            "{model}: both verdicts must occur often ({valid} valid, {invalid} invalid)"
        );
    }
}
