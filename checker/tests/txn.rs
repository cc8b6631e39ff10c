//! The transactional checker on hand-built histories, one per anomaly,
//! each written from its definition (Adya 1999; Elle's list-append
//! inference), and on generated ones: strictly serializable by
//! construction, or from a store that runs transactions in two halves.

use checker::History;
use checker::txn::synth::{TxnSynth, generate};
use checker::txn::{AnomalyKind, Model, TxnReport, check};
use serde_json::{Value, json};

/// A transaction of a hand-built history: its process, when it was invoked
/// and completed (in ms; equal times never happen), how it ended, and its
/// micro-operations as completed (the invocation gets the reads as null).
struct T(u64, u64, u64, &'static str, Value);

fn history(txns: &[T]) -> History {
    let mut events: Vec<(u64, String)> = Vec::new();
    for T(process, start, end, outcome, mops) in txns {
        let invoked: Vec<Value> = mops
            .as_array()
            .unwrap()
            .iter()
            .map(|m| if m[0] == "r" { json!(["r", m[1], null]) } else { m.clone() })
            .collect();
        let invoke =
            json!({"type": "invoke", "process": process, "f": "txn", "value": invoked, "time": start * 1_000_000});
        events.push((*start, invoke.to_string()));
        if *outcome != "none" {
            let value = if *outcome == "ok" { mops.clone() } else { json!(invoked) };
            let done =
                json!({"type": outcome, "process": process, "f": "txn", "value": value, "time": end * 1_000_000});
            events.push((*end, done.to_string()));
        }
    }
    events.sort_by_key(|e| e.0);
    let text: Vec<String> = events
        .into_iter()
        .enumerate()
        .map(|(i, (_, line))| line.replacen('{', &format!("{{\"index\":{i},"), 1))
        .collect();
    History::read_jsonl(text.join("\n").as_bytes(), "t.jsonl").expect("a well-formed history")
}

fn checked(txns: &[T]) -> TxnReport {
    check(&history(txns)).expect("checkable")
}

fn assert_found(r: &TxnReport, kind: AnomalyKind, strongest: Option<Model>) {
    assert!(!r.valid, "{}", r.summary());
    assert!(r.counts.contains_key(&kind), "expected {}: {}", kind.name(), r.summary());
    assert_eq!(r.strongest, strongest, "{}", r.summary());
    let example = r.anomalies.iter().find(|a| a.kind == kind).expect("an example is kept");
    assert!(!example.explanation.is_empty());
}

#[test]
fn a_serial_history_is_strict_serializable() {
    let r = checked(&[
        T(0, 1, 2, "ok", json!([["append", "x", 1]])),
        T(1, 3, 4, "ok", json!([["r", "x", [1]], ["append", "y", 2]])),
        T(0, 5, 6, "ok", json!([["r", "y", [2]], ["r", "x", [1]], ["append", "x", 3], ["r", "x", [1, 3]]])),
        // A read of a key nobody wrote: null is the empty list.
        T(2, 7, 8, "ok", json!([["r", "z", null]])),
    ]);
    assert!(r.valid, "{}", r.summary());
    assert_eq!(r.strongest, Some(Model::StrictSerializable));
    assert_eq!((r.txns.ok, r.keys), (4, 3));
    assert!(r.summary().starts_with("strict-serializable"));
}

#[test]
fn g0_write_cycle() {
    // x's order says T1 then T2; y's says T2 then T1: each overwrote the other.
    let r = checked(&[
        T(1, 1, 10, "ok", json!([["append", "x", 1], ["append", "y", 4]])),
        T(2, 2, 11, "ok", json!([["append", "x", 2], ["append", "y", 3]])),
        T(3, 20, 21, "ok", json!([["r", "x", [1, 2]], ["r", "y", [3, 4]]])),
    ]);
    assert_found(&r, AnomalyKind::G0, None);
    let g0 = r.anomalies.iter().find(|a| a.kind == AnomalyKind::G0).unwrap();
    assert_eq!(g0.cycle.len(), 2);
    assert!(g0.cycle.iter().all(|s| s.edge == "ww"), "{:?}", g0.cycle);
    assert!(g0.cycle[0].why.contains("right after it in the key's order"), "{}", g0.cycle[0].why);
    assert!(g0.svg.as_deref().is_some_and(|s| s.contains(">ww<")));
}

#[test]
fn g1a_aborted_read() {
    let r = checked(&[T(1, 1, 2, "fail", json!([["append", "x", 1]])), T(2, 3, 4, "ok", json!([["r", "x", [1]]]))]);
    assert_found(&r, AnomalyKind::G1a, Some(Model::ReadUncommitted));
    assert!(r.anomalies[0].explanation.contains("which failed"));
}

#[test]
fn g1b_intermediate_read() {
    let r = checked(&[
        T(1, 1, 10, "ok", json!([["append", "x", 1], ["append", "x", 2]])),
        T(2, 2, 11, "ok", json!([["r", "x", [1]]])),
        T(3, 20, 21, "ok", json!([["r", "x", [1, 2]]])),
    ]);
    assert_found(&r, AnomalyKind::G1b, Some(Model::ReadUncommitted));
}

#[test]
fn g1c_circular_information_flow() {
    // Each saw the other's write.
    let r = checked(&[
        T(1, 1, 10, "ok", json!([["append", "x", 1], ["r", "y", [2]]])),
        T(2, 2, 11, "ok", json!([["append", "y", 2], ["r", "x", [1]]])),
    ]);
    assert_found(&r, AnomalyKind::G1c, Some(Model::ReadUncommitted));
    let c = &r.anomalies.iter().find(|a| a.kind == AnomalyKind::G1c).unwrap().cycle;
    assert!(c.iter().all(|s| s.edge == "wr"), "{c:?}");
    assert!(c[0].why.contains("saw T"), "{}", c[0].why);
}

#[test]
fn g_single_read_skew() {
    // T2 saw T1's y but not T1's x.
    let r = checked(&[
        T(1, 1, 10, "ok", json!([["append", "x", 1], ["append", "y", 1]])),
        T(2, 2, 11, "ok", json!([["r", "x", []], ["r", "y", [1]]])),
        T(3, 20, 21, "ok", json!([["r", "x", [1]], ["r", "y", [1]]])),
    ]);
    assert_found(&r, AnomalyKind::GSingle, Some(Model::ReadCommitted));
    let c = &r.anomalies.iter().find(|a| a.kind == AnomalyKind::GSingle).unwrap().cycle;
    assert_eq!(c.iter().filter(|s| s.edge == "rw").count(), 1, "{c:?}");
    let rw = c.iter().find(|s| s.edge == "rw").unwrap();
    assert!(rw.why.contains("read \"x\" = [], without 1"), "{}", rw.why);
}

#[test]
fn g_single_is_found_from_a_write_nobody_read() {
    // As above, but no later read shows x: the order of x is known empty,
    // and T1 is the one committed writer of what nobody read.
    let r = checked(&[
        T(1, 1, 10, "ok", json!([["append", "x", 1], ["append", "y", 1]])),
        T(2, 2, 11, "ok", json!([["r", "x", []], ["r", "y", [1]]])),
    ]);
    assert_found(&r, AnomalyKind::GSingle, Some(Model::ReadCommitted));
}

#[test]
fn g2_write_skew() {
    // Both read both keys empty, then each appended to a different one.
    let r = checked(&[
        T(1, 1, 10, "ok", json!([["r", "x", []], ["r", "y", []], ["append", "x", 1]])),
        T(2, 2, 11, "ok", json!([["r", "x", []], ["r", "y", []], ["append", "y", 2]])),
        T(3, 20, 21, "ok", json!([["r", "x", [1]], ["r", "y", [2]]])),
    ]);
    assert_found(&r, AnomalyKind::G2, Some(Model::SnapshotIsolation));
    let c = &r.anomalies.iter().find(|a| a.kind == AnomalyKind::G2).unwrap().cycle;
    assert_eq!(c.iter().filter(|s| s.edge == "rw").count(), 2, "{c:?}");
}

#[test]
fn realtime_cycles_break_strict_serializability_only() {
    // T2 began after T1 completed, yet missed T1's append: a stale read.
    let stale = checked(&[
        T(1, 1, 2, "ok", json!([["append", "x", 1]])),
        T(2, 3, 4, "ok", json!([["r", "x", []]])),
        T(3, 5, 6, "ok", json!([["r", "x", [1]]])),
    ]);
    assert_found(&stale, AnomalyKind::GSingleRealtime, Some(Model::Serializable));
    assert_found(&stale, AnomalyKind::LostAppend, Some(Model::Serializable));
    assert_eq!(stale.violated, vec![Model::StrictSerializable]);
    let rt = stale.anomalies.iter().find(|a| a.kind == AnomalyKind::GSingleRealtime).unwrap();
    assert!(rt.cycle.iter().any(|s| s.edge == "rt" && s.why.contains("before T1 was invoked")), "{:?}", rt.cycle);

    // T1 completed before T2 began, yet saw T2's append: a read from the future.
    let future = checked(&[T(1, 1, 2, "ok", json!([["r", "x", [7]]])), T(2, 3, 4, "ok", json!([["append", "x", 7]]))]);
    assert_found(&future, AnomalyKind::G1cRealtime, Some(Model::Serializable));
}

#[test]
fn internal_inconsistency() {
    let r = checked(&[T(1, 1, 2, "ok", json!([["append", "x", 5], ["r", "x", []]]))]);
    assert_found(&r, AnomalyKind::Internal, None);
    let r = checked(&[
        T(1, 1, 2, "ok", json!([["append", "x", 1]])),
        T(2, 3, 4, "ok", json!([["r", "x", [1]], ["append", "x", 2], ["r", "x", [1]]])),
    ]);
    assert_found(&r, AnomalyKind::Internal, None);
    assert!(r.anomalies.iter().any(|a| a.explanation.contains("must be [1 2]")), "{r:?}");
}

#[test]
fn duplicate_phantom_and_incompatible_reads() {
    let dup = checked(&[T(1, 1, 2, "ok", json!([["append", "x", 1]])), T(2, 3, 4, "ok", json!([["r", "x", [1, 1]]]))]);
    assert_found(&dup, AnomalyKind::DuplicateElements, None);
    let phantom = checked(&[T(1, 1, 2, "ok", json!([["r", "x", [9]]]))]);
    assert_found(&phantom, AnomalyKind::PhantomElement, None);
    let incompatible = checked(&[
        T(1, 1, 10, "ok", json!([["append", "x", 1]])),
        T(2, 2, 11, "ok", json!([["append", "x", 2]])),
        T(3, 20, 21, "ok", json!([["r", "x", [1, 2]]])),
        T(4, 22, 23, "ok", json!([["r", "x", [2, 1]]])),
    ]);
    assert_found(&incompatible, AnomalyKind::IncompatibleOrder, None);
}

#[test]
fn info_and_failed_transactions_are_read_as_they_may_be() {
    // An info append seen later took effect; one nobody saw constrains
    // nothing; a failed one nobody saw did not happen; an invocation the
    // run never completed is an info.
    let r = checked(&[
        T(1, 1, 2, "info", json!([["append", "x", 1]])),
        T(2, 3, 4, "ok", json!([["r", "x", [1]]])),
        T(3, 5, 6, "info", json!([["append", "x", 2], ["r", "y", null]])),
        T(4, 7, 8, "fail", json!([["append", "y", 3]])),
        T(5, 9, 0, "none", json!([["append", "y", 4]])),
        T(6, 10, 11, "ok", json!([["r", "x", [1]], ["r", "y", []]])),
    ]);
    assert!(r.valid, "{}", r.summary());
    assert_eq!((r.txns.ok, r.txns.info, r.txns.fail), (2, 3, 1));
}

#[test]
fn histories_the_checker_cannot_read_are_errors_naming_the_line() {
    let bad = "{\"index\":0,\"type\":\"invoke\",\"process\":1,\"f\":\"txn\",\"value\":[[\"incr\",\"x\",1]],\"time\":1}";
    let err = check(&History::read_jsonl(bad.as_bytes(), "t.jsonl").unwrap()).unwrap_err().to_string();
    assert!(err.starts_with("t.jsonl:1:") && err.contains("f must be \"append\" or \"r\""), "{err}");
    let twice =
        history(&[T(1, 1, 2, "ok", json!([["append", "x", 1]])), T(2, 3, 4, "ok", json!([["append", "x", 1]]))]);
    let err = check(&twice).unwrap_err().to_string();
    assert!(err.contains("both append 1 to \"x\""), "{err}");
    let shape = "{\"index\":0,\"type\":\"invoke\",\"process\":1,\"f\":\"txn\",\"value\":[[\"r\",\"x\",null]],\"time\":1}\n{\"index\":1,\"type\":\"ok\",\"process\":1,\"f\":\"txn\",\"value\":[[\"r\",\"y\",[]]],\"time\":2}";
    let err = check(&History::read_jsonl(shape.as_bytes(), "t.jsonl").unwrap()).unwrap_err().to_string();
    assert!(err.starts_with("t.jsonl:2:") && err.contains("differ from its invocation"), "{err}");
}

#[test]
fn generated_atomic_histories_are_always_valid() {
    for seed in 0..300 {
        let cfg = TxnSynth { transactions: 300, concurrency: 1 + (seed as usize % 8), ..TxnSynth::new(seed) };
        let r = check(&generate(&cfg)).unwrap();
        assert!(r.valid, "seed {seed}: {}", r.summary());
    }
}

#[test]
fn generated_split_histories_are_caught() {
    let mut caught = 0;
    let seeds = 100;
    for seed in 0..seeds {
        let cfg = TxnSynth { transactions: 300, concurrency: 6, keys: 3, split: true, ..TxnSynth::new(seed) };
        let r = check(&generate(&cfg)).unwrap();
        if !r.valid {
            caught += 1;
            assert!(r.anomalies.iter().all(|a| !a.explanation.is_empty()));
        }
    }
    assert!(caught >= seeds * 9 / 10, "only {caught} of {seeds} split histories were caught");
}

#[test]
fn generated_stale_reads_are_serializable_but_not_strictly() {
    let mut caught = 0;
    let seeds = 100;
    for seed in 0..seeds {
        let cfg = TxnSynth { transactions: 300, concurrency: 6, keys: 3, stale: 0.3, ..TxnSynth::new(seed) };
        let r = check(&generate(&cfg)).unwrap();
        if !r.valid {
            caught += 1;
            // A consistent state, only old: nothing but real time is broken.
            assert_eq!(r.strongest, Some(Model::Serializable), "seed {seed}: {}", r.summary());
        }
    }
    assert!(caught >= seeds * 9 / 10, "only {caught} of {seeds} stale histories were caught");
}
