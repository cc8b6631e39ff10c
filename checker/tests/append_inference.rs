//! The append inference against the search: on random append-only keys
//! (unique `N,` elements, many clients, info appends, stale reads and lost
//! appends) both must reach the same verdict, and the inference must decide
//! every such key itself. The search cannot decide every one of them within
//! its time (the reason the inference exists); those few are counted, not compared.

use std::time::{Duration, Instant};

use checker::append_inference::{Inference, decide};
use checker::model::Kv;
use checker::operation::pair;
use checker::search::{Limits, Outcome, search};
use checker::synth::{Synth, generate};
use checker::{ModelKind, Operation};

fn searched(ops: &[Operation]) -> Option<bool> {
    let limits = Limits::new(Instant::now() + Duration::from_secs(2), 1 << 30);
    match search(ops, Kv(None), &limits, false) {
        Outcome::Linearizable => Some(true),
        Outcome::NotLinearizable(_) => Some(false),
        Outcome::Unknown(_) => None,
    }
}

#[test]
fn inference_and_search_agree_on_10000_random_append_histories() {
    let mut verdicts = [0usize; 2];
    let mut disagreements = Vec::new();
    let mut unsearched = Vec::new();
    for seed in 0..10_000u64 {
        let mut cfg = Synth::new(seed, ModelKind::Kv);
        cfg.mix = Some("rraa".to_string());
        cfg.keys = 1 + (seed % 2) as usize;
        cfg.concurrency = 2 + (seed / 2 % 8) as usize;
        cfg.operations = 8 + (seed / 16 % 24) as usize;
        cfg.info = [0.0, 0.1, 0.3][(seed / 5 % 3) as usize];
        if seed % 3 != 0 {
            cfg.stale_read = [0.05, 0.2][(seed / 7 % 2) as usize];
            cfg.lost_write = [0.05, 0.2][(seed / 11 % 2) as usize];
        }
        let ops = pair(&generate(&cfg)).expect("synthetic histories are well formed");
        for key_ops in ops.by_key.values() {
            let inferred = match decide(key_ops, &None) {
                Inference::Valid => true,
                Inference::Invalid { .. } => false,
                Inference::Undecided => panic!("seed {seed}: an append-only key of unique elements is decided"),
            };
            let Some(searched) = searched(key_ops) else {
                unsearched.push((seed, inferred));
                continue;
            };
            verdicts[usize::from(searched)] += 1;
            if inferred != searched {
                disagreements.push(seed);
            }
        }
    }
    assert!(disagreements.is_empty(), "the inference differs from the search for seeds {disagreements:?}");
    println!(
        "{} valid and {} invalid keys compared; the search could not decide {unsearched:?}",
        verdicts[1], verdicts[0]
    );
    assert!(unsearched.len() <= 20, "the search decides all but a few: {unsearched:?}");
    let [invalid, valid] = verdicts;
    assert!(valid > 1000 && invalid > 1000, "both verdicts must occur often ({valid} valid, {invalid} invalid)");
}
