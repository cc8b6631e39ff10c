//! Info writes settled from the store's log: the verdict changes only where
//! the log takes away a choice the history alone left open.

use checker::settlement::{Settled, Settlement};
use checker::synth::{Synth, generate_with_log};
use checker::{Budget, History, ModelKind, Verdict, check_history, check_settled};

fn history(text: &str) -> History {
    History::read_jsonl(text.as_bytes(), "h.jsonl").unwrap()
}

fn verdict(h: &History, settlement: Option<&Settlement>) -> Verdict {
    check_settled(h, ModelKind::Kv, None, &Budget::default(), settlement).unwrap().verdict
}

fn settle(invoke_index: u64, before_index: Option<u64>) -> Settlement {
    Settlement { source: "test".into(), settled: vec![Settled { invoke_index, before_index }] }
}

/// An info write of 2; an acknowledged write of 3, read back; then a read
/// of 2: fine if the info write took effect late, after the first read.
const LATE: &str = r#"{"index":0,"type":"invoke","process":1,"f":"write","key":"a","value":2,"time":0,"write_id":{"client":7,"seq":1}}
{"index":1,"type":"info","process":1,"f":"write","key":"a","value":2,"time":10}
{"index":2,"type":"invoke","process":2,"f":"write","key":"a","value":3,"time":20}
{"index":3,"type":"ok","process":2,"f":"write","key":"a","value":3,"time":30}
{"index":4,"type":"invoke","process":3,"f":"read","key":"a","value":null,"time":40}
{"index":5,"type":"ok","process":3,"f":"read","key":"a","value":3,"time":50}
{"index":6,"type":"invoke","process":3,"f":"read","key":"a","value":null,"time":60}
{"index":7,"type":"ok","process":3,"f":"read","key":"a","value":2,"time":70}"#;

#[test]
fn a_write_the_log_puts_before_a_later_acknowledged_one_can_no_longer_take_effect_late() {
    let h = history(LATE);
    assert_eq!(verdict(&h, None), Verdict::Valid, "the info write may take effect after the first read");
    // The log: the info write committed before the write of 3, which
    // completed at event 3. The read of 3 then follows both.
    assert_eq!(verdict(&h, Some(&settle(0, Some(3)))), Verdict::Invalid);
    // Bounded by the last read's completion instead, it may still go late.
    assert_eq!(verdict(&h, Some(&settle(0, Some(7)))), Verdict::Valid);
    let report = check_settled(&h, ModelKind::Kv, None, &Budget::default(), Some(&settle(0, Some(3)))).unwrap();
    let effect = report.settlement.unwrap();
    assert_eq!((effect.info_writes, effect.matched, effect.took_effect, effect.never), (1, 1, 1, 0));
}

#[test]
fn a_write_the_log_never_committed_explains_nothing() {
    let h = history(LATE);
    assert_eq!(verdict(&h, Some(&settle(0, None))), Verdict::Invalid, "nothing else wrote 2");
    let report = check_settled(&h, ModelKind::Kv, None, &Budget::default(), Some(&settle(0, None))).unwrap();
    assert_eq!(report.settlement.unwrap().never, 1);
    assert_eq!(report.operations, 3, "the write that never happened is removed");
}

#[test]
fn a_committed_cas_stays_in_doubt_and_foreign_entries_are_ignored() {
    let text = r#"{"index":0,"type":"invoke","process":1,"f":"cas","key":"a","value":[1,2],"time":0}
{"index":1,"type":"info","process":1,"f":"cas","key":"a","value":[1,2],"time":10}
{"index":2,"type":"invoke","process":2,"f":"write","key":"a","value":3,"time":20}
{"index":3,"type":"ok","process":2,"f":"write","key":"a","value":3,"time":30}"#;
    let h = history(text);
    let mut s = settle(0, Some(3));
    s.settled.push(Settled { invoke_index: 2, before_index: None });
    let report = check_settled(&h, ModelKind::Kv, None, &Budget::default(), Some(&s)).unwrap();
    let effect = report.settlement.unwrap();
    assert_eq!((effect.matched, effect.took_effect, effect.never), (1, 0, 0), "{effect:?}");
    assert_eq!(report.verdict, Verdict::Valid);
}

#[test]
fn a_bound_before_the_invocation_cannot_come_from_a_log() {
    let h = history(LATE);
    let err = check_settled(&h, ModelKind::Kv, None, &Budget::default(), Some(&settle(0, Some(0)))).unwrap_err();
    assert!(err.to_string().contains("does not follow the invocation"), "{err}");
    // An entry naming an acknowledged write settles nothing.
    let report = check_settled(&h, ModelKind::Kv, None, &Budget::default(), Some(&settle(2, None))).unwrap();
    assert_eq!(report.settlement.unwrap().matched, 0);
    assert_eq!(report.operations, 4);
}

/// The exact log of a simulated store, over 3,000 random histories: a
/// linearizable store stays valid when settled; a store that serves stale
/// reads or loses writes is never made valid by settling (settling only
/// takes choices away); and settling settles most info writes.
#[test]
fn an_exact_log_keeps_the_truth_on_random_histories() {
    let (mut info, mut settled, mut newly_invalid) = (0, 0, 0);
    for seed in 0..3_000u64 {
        let mut cfg = Synth::new(seed, ModelKind::Kv);
        cfg.concurrency = 1 + (seed % 6) as usize;
        cfg.keys = 1 + (seed % 2) as usize;
        cfg.operations = 40;
        cfg.info = 0.25;
        cfg.mix = Some("rrwwcda".into());
        let buggy = seed % 3 == 0;
        if buggy {
            cfg.stale_read = 0.1;
            cfg.lost_write = 0.05;
        }
        let (h, log) = generate_with_log(&cfg);
        let plain = check_history(&h, ModelKind::Kv, None, &Budget::default()).unwrap().verdict;
        let report = check_settled(&h, ModelKind::Kv, None, &Budget::default(), Some(&log)).unwrap();
        let effect = report.settlement.unwrap();
        info += effect.info_writes;
        settled += effect.took_effect + effect.never;
        if !buggy {
            assert_eq!((plain, report.verdict), (Verdict::Valid, Verdict::Valid), "seed {seed}");
        } else if report.verdict == Verdict::Valid {
            assert_eq!(plain, Verdict::Valid, "seed {seed}: settling made an invalid history valid");
        } else if plain == Verdict::Valid {
            newly_invalid += 1;
        }
    }
    assert!(settled * 2 > info, "settled {settled} of {info} info writes");
    // The log proves some buggy stores wrong that the history alone could not.
    assert!(newly_invalid > 0, "no history's verdict changed");
    eprintln!("settled {settled} of {info} info writes; {newly_invalid} buggy histories newly invalid");
}
