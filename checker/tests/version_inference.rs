//! The version inference (keys of writes and appends, every read naming its
//! write and the appends after it) against the search, on random keys of
//! reads, writes, appends and deletes with unique elements, many info
//! operations, stale reads and lost writes: wherever both decide they must
//! agree, and the inference must decide every such key without deletes
//! itself, and nearly every one with deletes (where a read of an absent
//! key is often ambiguous).

use std::time::{Duration, Instant};

use checker::append_inference::{self, Inference};
use checker::model::Kv;
use checker::operation::pair;
use checker::search::{Limits, Outcome, search};
use checker::synth::{Synth, generate};
use checker::version_inference::decide;
use checker::{Budget, History, ModelKind, Operation, Verdict, check_history};

fn searched(ops: &[Operation]) -> Option<bool> {
    let limits = Limits::new(Instant::now() + Duration::from_secs(2), 1 << 30);
    match search(ops, Kv(None), &limits, false) {
        Outcome::Linearizable => Some(true),
        Outcome::NotLinearizable(_) => Some(false),
        Outcome::Unknown(_) => None,
    }
}

#[test]
fn inference_and_search_agree_on_6000_random_write_and_append_histories() {
    let mixes = ["rrwa", "rrrwaa", "rwaad", "rrwwa"];
    let mut verdicts = [0usize; 2];
    let mut disagreements = Vec::new();
    let mut unsearched = 0;
    let mut undecided = Vec::new();
    for seed in 0..6_000u64 {
        let mut cfg = Synth::new(seed, ModelKind::Kv);
        cfg.unique_values = true;
        cfg.mix = Some(mixes[(seed % 4) as usize].to_string());
        cfg.keys = 1 + (seed / 4 % 2) as usize;
        cfg.concurrency = 2 + (seed / 8 % 7) as usize;
        cfg.operations = 8 + (seed / 56 % 20) as usize;
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
                Inference::Undecided => {
                    undecided.push((seed, cfg.mix.clone(), searched(key_ops)));
                    continue;
                }
            };
            let Some(searched) = searched(key_ops) else {
                unsearched += 1;
                continue;
            };
            verdicts[usize::from(searched)] += 1;
            if inferred != searched {
                disagreements.push(seed);
            }
        }
    }
    assert!(disagreements.is_empty(), "the inference differs from the search for seeds {disagreements:?}");
    let [invalid, valid] = verdicts;
    println!(
        "{valid} valid and {invalid} invalid keys compared; {unsearched} the search could not decide; {} undecided ({} of them valid by the search)",
        undecided.len(),
        undecided.iter().filter(|(.., searched)| *searched == Some(true)).count()
    );
    assert!(valid > 1000 && invalid > 1000, "both verdicts must occur often ({valid} valid, {invalid} invalid)");
    // Only a read of an absent key (or of appends to one) that a delete and
    // the initial absence (or two deletes) could both explain may leave a
    // key to the search: when neither a guess of its base linearizes the
    // key nor a contradiction shows without such reads or with one of them.
    let without_deletes: Vec<_> =
        undecided.iter().filter(|(_, mix, _)| !mix.as_deref().unwrap_or("").contains('d')).collect();
    assert!(without_deletes.is_empty(), "keys without deletes are all decided: {without_deletes:?}");
    assert!(undecided.len() <= 20, "nearly every key with deletes is decided too: {undecided:?}");
}

/// The same with compare-and-set: cas that succeed (acknowledged, or info
/// ones whose value was seen), cas that report a mismatch, among reads,
/// writes, appends and deletes of unique elements, with info operations,
/// stale reads and lost writes. Wherever the inference decides it agrees
/// with the search, and it decides nearly every key.
#[test]
fn inference_and_search_agree_on_6000_random_histories_with_cas() {
    let mixes = ["rrwc", "rrwcc", "rrcca", "rrwcad", "rwcccd", "rrcc"];
    let mut verdicts = [0usize; 2];
    let mut disagreements = Vec::new();
    let (mut unsearched, mut keys, mut with_cas, mut cas_ok, mut cas_mismatch) = (0, 0, 0, 0, 0);
    let mut undecided = Vec::new();
    for seed in 0..6_000u64 {
        let mut cfg = Synth::new(seed + 500_000, ModelKind::Kv);
        cfg.unique_values = true;
        cfg.mix = Some(mixes[(seed % 6) as usize].to_string());
        cfg.keys = 1 + (seed / 6 % 2) as usize;
        cfg.concurrency = 2 + (seed / 12 % 7) as usize;
        cfg.operations = 8 + (seed / 84 % 20) as usize;
        cfg.info = [0.0, 0.1, 0.3][(seed / 5 % 3) as usize];
        if seed % 3 != 0 {
            cfg.stale_read = [0.2, 0.4][(seed / 7 % 2) as usize];
            cfg.lost_write = [0.1, 0.3][(seed / 11 % 2) as usize];
        }
        let ops = pair(&generate(&cfg)).expect("synthetic histories are well formed");
        for key_ops in ops.by_key.values() {
            keys += 1;
            let cas = |o: &&Operation| matches!(o.input, checker::Input::Cas(..));
            with_cas += usize::from(key_ops.iter().any(|o| cas(&o)));
            cas_ok += key_ops.iter().filter(cas).filter(|o| o.output == checker::Output::Cas).count();
            cas_mismatch += key_ops.iter().filter(cas).filter(|o| o.output == checker::Output::CasMismatch).count();
            let inferred = match decide(key_ops, &None) {
                Inference::Valid => true,
                Inference::Invalid { .. } => false,
                Inference::Undecided => {
                    undecided.push((seed, cfg.mix.clone(), searched(key_ops)));
                    continue;
                }
            };
            let Some(searched) = searched(key_ops) else {
                unsearched += 1;
                continue;
            };
            verdicts[usize::from(searched)] += 1;
            if inferred != searched {
                disagreements.push((seed, inferred, searched));
            }
        }
    }
    let [invalid, valid] = verdicts;
    println!(
        "{keys} keys ({with_cas} with cas: {cas_ok} cas succeeded, {cas_mismatch} mismatched); {valid} valid and {invalid} invalid compared; {unsearched} the search could not decide; {} undecided ({} of them valid by the search)",
        undecided.len(),
        undecided.iter().filter(|(.., searched)| *searched == Some(true)).count()
    );
    let mut by_mix = std::collections::BTreeMap::new();
    for (_, mix, _) in &undecided {
        *by_mix.entry(mix.clone().unwrap_or_default()).or_insert(0) += 1;
    }
    println!("undecided by mix: {by_mix:?}");
    assert!(
        disagreements.is_empty(),
        "the inference differs from the search (seed, inferred, searched): {disagreements:?}"
    );
    assert!(valid > 1000 && invalid > 1000, "both verdicts must occur often ({valid} valid, {invalid} invalid)");
    assert!(with_cas * 10 > keys * 9 && cas_ok > 4_000 && cas_mismatch > 4_000, "cas of both outcomes abound");
    // Left to the search: a cas that reported a mismatch with no place in
    // the order found where the value differs from what it expected, and
    // keys with deletes where neither guess of an ambiguous base works.
    assert!(undecided.len() * 100 <= keys, "nearly every key is decided: {} undecided", undecided.len());
}

/// On append-only keys the version inference must agree with the append
/// inference (which decides all of them).
#[test]
fn on_append_only_keys_it_agrees_with_the_append_inference() {
    for seed in 0..2_000u64 {
        let mut cfg = Synth::new(seed, ModelKind::Kv);
        cfg.mix = Some("rraa".to_string());
        cfg.concurrency = 2 + (seed % 8) as usize;
        cfg.operations = 8 + (seed / 8 % 40) as usize;
        cfg.info = [0.0, 0.1, 0.3][(seed / 5 % 3) as usize];
        if seed % 3 != 0 {
            (cfg.stale_read, cfg.lost_write) = (0.1, 0.1);
        }
        let ops = pair(&generate(&cfg)).expect("synthetic histories are well formed");
        for key_ops in ops.by_key.values() {
            let appends = append_inference::decide(key_ops, &None);
            let versions = decide(key_ops, &None);
            assert_eq!(
                appends == Inference::Valid,
                versions == Inference::Valid,
                "seed {seed}: {appends:?} / {versions:?}"
            );
            assert_ne!(versions, Inference::Undecided, "seed {seed}");
        }
    }
}

/// A one-key history from compact lines: `TYPE PROCESS F [VALUE]`, every
/// event one step of the history (positions 0, 1, 2, ...).
fn history(lines: &[&str]) -> History {
    let mut text = String::new();
    for (i, line) in lines.iter().enumerate() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let value = parts.get(3).copied().unwrap_or("null");
        // A failed cas reports a mismatch.
        let error = if parts[0] == "fail" { ",\"error\":\"mismatch\"" } else { "" };
        text += &format!(
            "{{\"index\":{i},\"type\":\"{}\",\"process\":{},\"f\":\"{}\",\"key\":\"k\",\"value\":{value},\"time\":{i}{error}}}\n",
            parts[0], parts[1], parts[2]
        );
    }
    History::read_jsonl(text.as_bytes(), "case").unwrap()
}

fn key_ops(lines: &[&str]) -> Vec<Operation> {
    pair(&history(lines)).unwrap().by_key.into_values().next().unwrap()
}

/// The inference's verdict, which the whole check must share (the search
/// decides keys this small).
fn inferred(lines: &[&str]) -> Inference {
    let inference = decide(&key_ops(lines), &None);
    let report = check_history(&history(lines), ModelKind::Kv, None, &Budget::default()).unwrap();
    let expected = match inference {
        Inference::Valid => Verdict::Valid,
        _ => Verdict::Invalid,
    };
    assert_eq!(report.verdict, expected, "{inference:?}");
    // The search alone agrees.
    assert_eq!(searched(&key_ops(lines)), Some(expected == Verdict::Valid), "{inference:?}");
    inference
}

fn refuted(lines: &[&str]) -> String {
    match inferred(lines) {
        Inference::Invalid { why, .. } => why,
        other => panic!("expected invalid, got {other:?}"),
    }
}

/// Writes reset the value, appends extend it; the reads fix one order:
/// 1, then 1,2 (the reads of 1 and of 1,2 overlap the append), then 3,
/// with the append 4, concurrent with the write 3 and seen by no read,
/// placed before it (the write erased it).
#[test]
fn reads_that_each_name_a_write_and_its_appends_in_one_real_time_order_are_valid() {
    let h = [
        "invoke 1 write \"1,\"",
        "ok 1 write \"1,\"",
        "invoke 2 append \"2,\"",
        "invoke 3 read",
        "ok 3 read \"1,\"",
        "invoke 4 read",
        "ok 2 append \"2,\"",
        "ok 4 read \"1,2,\"",
        "invoke 5 write \"3,\"",
        "invoke 6 append \"4,\"",
        "ok 6 append \"4,\"",
        "ok 5 write \"3,\"",
        "invoke 3 read",
        "ok 3 read \"3,\"",
        "invoke 7 append \"5,\"",
        "info 7 append \"5,\"",
        "invoke 8 write \"6,\"",
        "info 8 write \"6,\"",
    ];
    assert_eq!(inferred(&h), Inference::Valid);
}

/// No write and appends spell "1,9,": nothing appended 9.
#[test]
fn a_read_no_write_and_appends_spell_is_refuted() {
    let why = refuted(&["invoke 1 write \"1,\"", "ok 1 write \"1,\"", "invoke 2 read", "ok 2 read \"1,9,\""]);
    assert!(why.contains("no write, delete, cas or initial value followed by appends leaves"), "{why}");
}

/// One append happens once: "1,2,2," holds it twice.
#[test]
fn a_read_holding_an_append_twice_is_refuted() {
    let h = ["invoke 1 write \"1,\"", "ok 1 write \"1,\"", "invoke 2 append \"2,\"", "ok 2 append \"2,\""];
    let why = refuted(&[&h[..], &["invoke 3 read", "ok 3 read \"1,2,2,\""]].concat());
    assert!(why.contains("twice"), "{why}");
}

/// After the write 1, the appends 2 and 3 happen in one order; a read of
/// 1,2,3 and a read of 1,3 cannot both be right.
#[test]
fn reads_ordering_the_appends_after_one_write_differently_are_refuted() {
    let h = [
        "invoke 1 write \"1,\"",
        "ok 1 write \"1,\"",
        "invoke 2 append \"2,\"",
        "invoke 3 append \"3,\"",
        "ok 2 append \"2,\"",
        "ok 3 append \"3,\"",
        "invoke 4 read",
        "ok 4 read \"1,2,3,\"",
        "invoke 5 read",
        "ok 5 read \"1,3,\"",
    ];
    let why = refuted(&h);
    assert!(why.contains("orders neither of which extends the other"), "{why}");
}

/// The append 5 happened once, after one write: a read of 1,5 and a read
/// of 3,5 put it after two.
#[test]
fn an_append_seen_after_two_writes_is_refuted() {
    let h = [
        "invoke 1 write \"1,\"",
        "invoke 2 write \"3,\"",
        "invoke 3 append \"5,\"",
        "ok 1 write \"1,\"",
        "ok 2 write \"3,\"",
        "ok 3 append \"5,\"",
        "invoke 4 read",
        "ok 4 read \"1,5,\"",
        "invoke 5 read",
        "ok 5 read \"3,5,\"",
    ];
    let why = refuted(&h);
    assert!(why.contains("one append follows one write"), "{why}");
}

/// A stale read: the write 3 was invoked after the write 1 returned and
/// returned before a read of 1 was invoked, so it lies between them in
/// every order: the read cannot have seen 1.
#[test]
fn a_read_of_a_certainly_overwritten_value_is_refuted() {
    let h = [
        "invoke 1 write \"1,\"",
        "ok 1 write \"1,\"",
        "invoke 1 write \"3,\"",
        "ok 1 write \"3,\"",
        "invoke 2 read",
        "ok 2 read \"1,\"",
    ];
    let why = refuted(&h);
    assert!(why.contains("it overwrote it"), "{why}");
}

/// The write "a" is still in flight when the read begins, so nothing
/// certainly overwrote it; but the append "1," the read holds after it
/// returned before a delete was invoked that returned before the read was:
/// the delete erased it, and appends happen once. The read names the append
/// it cannot have seen.
#[test]
fn a_read_holding_a_certainly_overwritten_append_is_refuted() {
    let h = [
        "invoke 1 write \"a\"",
        "invoke 2 append \"1,\"",
        "ok 2 append \"1,\"",
        "invoke 2 delete",
        "ok 2 delete",
        "ok 1 write \"a\"",
        "invoke 3 read",
        "ok 3 read \"a1,\"",
    ];
    let why = refuted(&h);
    assert!(why.contains("holds [process 2: append") && why.contains("it overwrote it"), "{why}");
}

/// A read of "12," spelled two ways: the write 1 (still in flight) then
/// the append "2,", or the delete then the append "12,". The delete
/// certainly erased the append "2,", so only the second spelling is left,
/// and the inference decides the key without a guess (before, the two
/// spellings left it to the search).
#[test]
fn a_spelling_whose_append_was_certainly_erased_is_set_aside() {
    let h = [
        "invoke 1 write 1",
        "invoke 2 append \"2,\"",
        "ok 2 append \"2,\"",
        "invoke 2 delete",
        "ok 2 delete",
        "invoke 2 append \"12,\"",
        "ok 2 append \"12,\"",
        "ok 1 write 1",
        "invoke 3 read",
        "ok 3 read \"12,\"",
    ];
    let ops = key_ops(&h);
    let far = Instant::now() + Duration::from_secs(60);
    assert_eq!(checker::version_inference::decide_unguessed(&ops, &None, far), Some(Inference::Valid));
    assert_eq!(inferred(&h), Inference::Valid);
}

/// The writes 1 and 3 are concurrent and both completed; a read saw 3, and
/// a read invoked after it returned saw 1. Either order of the writes is
/// possible, but the write 1's block (the write and the read of 1) must
/// precede the write 3's (the write 1 returned before the read of 3 was
/// invoked) and follow it (the read of 3 returned before the read of 1 was
/// invoked): the second read goes back in real time.
#[test]
fn a_read_that_goes_back_in_real_time_is_refuted() {
    let h = [
        "invoke 1 write \"1,\"",
        "invoke 2 write \"3,\"",
        "ok 1 write \"1,\"",
        "ok 2 write \"3,\"",
        "invoke 3 read",
        "ok 3 read \"3,\"",
        "invoke 3 read",
        "ok 3 read \"1,\"",
    ];
    let why = refuted(&h);
    assert!(why.contains("must each come before the other"), "{why}");
}

/// A read of 1,2 returned, and a read invoked after it saw 1 alone: within
/// the write 1's block it must come before the append 2, which the first
/// read had seen already.
#[test]
fn a_read_that_unsees_an_append_is_refuted() {
    let h = [
        "invoke 1 write \"1,\"",
        "ok 1 write \"1,\"",
        "invoke 2 append \"2,\"",
        "invoke 3 read",
        "ok 3 read \"1,2,\"",
        "invoke 3 read",
        "ok 3 read \"1,\"",
        "ok 2 append \"2,\"",
    ];
    let why = refuted(&h);
    assert!(why.contains("returned before that was invoked"), "{why}");
}

/// An acknowledged append no read saw, completed after the write 1 did and
/// before a read of 1 alone began: the append must follow the write (it was
/// invoked after the write returned) and precede the read, so the read
/// would hold it. (Were the append concurrent with the write, it could go
/// first and be erased: the second history is valid.)
#[test]
fn a_completed_append_a_later_read_misses_is_refuted_unless_a_write_may_erase_it() {
    let h = [
        "invoke 1 write \"1,\"",
        "ok 1 write \"1,\"",
        "invoke 2 append \"2,\"",
        "ok 2 append \"2,\"",
        "invoke 3 read",
        "ok 3 read \"1,\"",
    ];
    let why = refuted(&h);
    assert!(why.contains("no read saw it"), "{why}");
    let erased = [
        "invoke 1 write \"1,\"",
        "invoke 2 append \"2,\"",
        "ok 2 append \"2,\"",
        "ok 1 write \"1,\"",
        "invoke 3 read",
        "ok 3 read \"1,\"",
    ];
    assert_eq!(inferred(&erased), Inference::Valid);
}

/// A read of the absent key after a write had completed: the write
/// certainly overwrote the initial absence. And with the write still in
/// flight, a read of the absent key invoked after a read of 1 returned:
/// the reads of the initial value come first, but the read of 1 returned
/// before this one was invoked.
#[test]
fn a_read_of_the_initial_value_after_a_write_was_seen_or_completed_is_refuted() {
    let h = ["invoke 1 write \"1,\"", "ok 1 write \"1,\"", "invoke 2 read", "ok 2 read null"];
    let why = refuted(&h);
    assert!(why.contains("can only have seen the initial value") && why.contains("had returned"), "{why}");
    let h = [
        "invoke 1 write \"1,\"",
        "invoke 2 read",
        "ok 2 read \"1,\"",
        "invoke 2 read",
        "ok 2 read null",
        "ok 1 write \"1,\"",
    ];
    let why = refuted(&h);
    assert!(why.contains("saw the initial value"), "{why}");
}

/// A written value that spells appended elements ("1,2,"), with appends
/// "1," and "2,", all concurrent with a read of "1,2,": the read names no
/// one write (the write, or the initial absence and both appends). Without
/// a guess the key is undecided; a guess of the spelling with the freshest
/// appends (the write's, which has none) finds the order the replay
/// accepts, and the search agrees.
#[test]
fn a_read_two_bases_spell_with_different_appends_is_linearized_by_a_guess() {
    let h = [
        "invoke 1 write \"1,2,\"",
        "invoke 2 append \"1,\"",
        "invoke 3 append \"2,\"",
        "ok 2 append \"1,\"",
        "ok 3 append \"2,\"",
        "invoke 4 read",
        "ok 4 read \"1,2,\"",
        "ok 1 write \"1,2,\"",
    ];
    let far = Instant::now() + Duration::from_secs(60);
    assert_eq!(checker::version_inference::decide_unguessed(&key_ops(&h), &None, far), None);
    assert_eq!(inferred(&h), Inference::Valid);
}

/// Issue #18's case: one key of a few hundred writes, appends and reads
/// from 50 clients. The search alone ends unknown on it (60 s and about 700
/// MiB: `examples/mixed_scale.rs`); the inference decides it at once, valid
/// as generated and invalid with stale reads.
#[test]
fn a_key_of_writes_and_appends_from_50_clients_is_decided_at_once() {
    let cases = [
        (1, "rrwa", 0.0, Verdict::Valid),
        (2, "rrwa", 0.0, Verdict::Valid),
        (1, "rrwa", 0.02, Verdict::Invalid),
        // With deletes, reads of the absent key are ambiguous: a guess of
        // their bases finds an order the replay accepts.
        (1, "rrwad", 0.0, Verdict::Valid),
        (3, "rrwad", 0.0, Verdict::Valid),
        (8, "rrwad", 0.0, Verdict::Valid),
    ];
    for (seed, mix, stale_read, expected) in cases {
        let mut cfg = Synth::new(seed, ModelKind::Kv);
        (cfg.unique_values, cfg.mix) = (true, Some(mix.to_string()));
        (cfg.concurrency, cfg.operations, cfg.info, cfg.stale_read) = (50, 400, 0.05, stale_read);
        let history = generate(&cfg);
        let started = Instant::now();
        let report = check_history(&history, ModelKind::Kv, None, &Budget::default()).unwrap();
        let elapsed = started.elapsed();
        assert_eq!((report.keys, report.verdict), (1, expected), "seed {seed}: {:?}", report.results[0].reason);
        assert!(report.operations > 350, "a few hundred operations ({})", report.operations);
        // The inference itself takes milliseconds; an invalid key's
        // counterexample search is given 300 ms more.
        assert!(elapsed < Duration::from_secs(3), "seed {seed}: {elapsed:?}");
        if expected == Verdict::Invalid {
            assert!(report.results[0].refuted_op.is_some(), "the inference names the operation");
        }
    }
}

/// The same shape with the written values repeated (integers 0..5), as in
/// Jepsen-style kv histories, beside deletes and appends: a read names no
/// one write (16 or so wrote its integer; 80 or so deletes leave the key
/// absent), and a value like "12," may be the write 1 and the append "2,"
/// or a delete and the append "12,". The search alone ends unknown on every
/// one of these (`bench/README.md`); guesses of the bases, with spellings
/// whose appends a base certainly erased set aside, decide each at once.
#[test]
fn a_key_of_repeated_writes_appends_and_deletes_from_50_clients_is_decided_at_once() {
    let mut invalid = 0;
    for (seed, faults) in (1..=6).flat_map(|seed| [(seed, 0.0), (seed, 0.02)]) {
        invalid += usize::from(decided_50_client_key("rrwad", seed, faults) == Verdict::Invalid);
    }
    assert!(invalid >= 2, "stale reads and lost writes are caught ({invalid} of 6)");
}

/// Checks one generated key of 50 clients, about 400 operations, written
/// values 0..5 and 5% info, with stale reads and lost writes at `faults`:
/// it must be decided within 3 s, and valid when no fault was planted.
fn fifty_client_key(mix: &str, seed: u64, faults: f64) -> Synth {
    let mut cfg = Synth::new(seed, ModelKind::Kv);
    (cfg.values, cfg.mix) = (5, Some(mix.to_string()));
    (cfg.concurrency, cfg.operations, cfg.info) = (50, 400, 0.05);
    (cfg.stale_read, cfg.lost_write) = (faults, faults);
    cfg
}

/// The version inference's own verdict on that key, within 10 s.
fn inferred_50_client_key(mix: &str, seed: u64, faults: f64) -> Inference {
    let ops = pair(&generate(&fifty_client_key(mix, seed, faults))).expect("well formed");
    let key_ops = ops.by_key.values().next().expect("one key");
    checker::version_inference::decide_within(key_ops, &None, Instant::now() + Duration::from_secs(10))
}

fn decided_50_client_key(mix: &str, seed: u64, faults: f64) -> Verdict {
    let cfg = fifty_client_key(mix, seed, faults);
    let started = Instant::now();
    let report = check_history(&generate(&cfg), ModelKind::Kv, None, &Budget::default()).unwrap();
    let elapsed = started.elapsed();
    let reason = &report.results[0].reason;
    assert_ne!(report.verdict, Verdict::Unknown, "{mix} seed {seed}, faults {faults}: {reason:?}");
    assert!(report.operations > 350, "a few hundred operations ({})", report.operations);
    if faults == 0.0 {
        assert_eq!(report.verdict, Verdict::Valid, "{mix} seed {seed}: as generated, {reason:?}");
    }
    assert!(elapsed < Duration::from_secs(3), "{mix} seed {seed}, faults {faults}: {elapsed:?}");
    report.verdict
}

/// The same with cas beside them (`rrrwcda`, the kv model's default mix):
/// keys on which the first guesses meet a contradiction, mended and run
/// again until an order replays (or, for the seed of 1 with faults, until
/// the reads that share a first append are refuted under each base, the
/// cas that several writes could have found taken as writes). Each of
/// these ran out of a 10 s budget before.
#[test]
fn a_key_of_repeated_writes_cas_appends_and_deletes_from_50_clients_is_decided_when_a_guess_is_mended() {
    for (seed, faults) in [(3, 0.0), (6, 0.0), (8, 0.0), (10, 0.0), (1, 0.02), (10, 0.02), (6, 0.05)] {
        decided_50_client_key("rrrwcda", seed, faults);
    }
}

/// Keys on which blaming the choice a contradiction names first rules out
/// the right base for another choice's fault, and runs out of choices:
/// backtracking over every choice each contradiction involves (never making
/// the same ones twice) finds the order. Each ran out of a 10 s budget
/// before. Both are as generated (no fault manifests in the second), so
/// valid.
#[test]
fn a_key_blaming_leaves_undecided_is_decided_by_backtracking_over_the_choices() {
    for (mix, seed, faults) in [("rrrwcda", 30, 0.0), ("rrwad", 2, 0.05)] {
        assert_eq!(decided_50_client_key(mix, seed, faults), Verdict::Valid);
        assert_eq!(inferred_50_client_key(mix, seed, faults), Inference::Valid, "{mix} seed {seed}");
    }
}

/// A key whose guesses led to orders the replay rejected (a read's base an
/// info cas whose expected value nothing checked): the operation that does
/// not fit, and the two placed before it, now mend the guess as a
/// contradiction would. It ran out of a 10 s budget before.
#[test]
fn an_order_the_replay_rejects_mends_the_guess_that_led_to_it() {
    assert_eq!(decided_50_client_key("rrrwcda", 40, 0.0), Verdict::Valid);
    assert_eq!(inferred_50_client_key("rrrwcda", 40, 0.0), Inference::Valid);
}

/// A read of the absent key while a delete is in flight: the delete or the
/// initial absence may be what it saw. Guessing either finds an order the
/// replay accepts.
#[test]
fn a_read_a_delete_or_the_initial_value_explains_is_linearized_by_a_guess() {
    let h = [
        "invoke 1 delete",
        "invoke 2 read",
        "ok 2 read null",
        "ok 1 delete",
        "invoke 3 append \"1,\"",
        "ok 3 append \"1,\"",
        "invoke 2 read",
        "ok 2 read \"1,\"",
    ];
    assert_eq!(inferred(&h), Inference::Valid);
}

/// The same ambiguous read, then a stale read of the write 1 after the
/// write 2 overwrote it: no guess linearizes the key, and with the
/// ambiguous read left out the stale read is refuted, which refutes the
/// whole key.
#[test]
fn a_contradiction_without_the_ambiguous_reads_refutes_the_key() {
    let h = [
        "invoke 1 delete",
        "invoke 2 read",
        "ok 2 read null",
        "ok 1 delete",
        "invoke 3 write \"1,\"",
        "ok 3 write \"1,\"",
        "invoke 3 write \"2,\"",
        "ok 3 write \"2,\"",
        "invoke 4 read",
        "ok 4 read \"1,\"",
    ];
    let why = refuted(&h);
    assert!(why.contains("it overwrote it") && why.contains("left out"), "{why}");
}

/// Two writes of 1 in flight together, so a read of 1 and appends names
/// neither; the append a, then b (info). A read of "1a," invoked after a
/// read of "1a,b," returned lacks b, which follows a after the same write:
/// under either write, taken by both reads that hold a first (one append
/// follows one write), the reads contradict each other. Neither read
/// alone does (without the other, b may never have happened).
#[test]
fn reads_that_share_a_first_append_are_refuted_together_under_each_base() {
    let h = [
        "invoke 1 write 1",
        "invoke 2 write 1",
        "ok 1 write 1",
        "ok 2 write 1",
        "invoke 3 append \"a,\"",
        "ok 3 append \"a,\"",
        "invoke 6 append \"b,\"",
        "invoke 5 read",
        "ok 5 read \"1a,b,\"",
        "invoke 4 read",
        "ok 4 read \"1a,\"",
        "info 6 append \"b,\"",
    ];
    let why = refuted(&h);
    assert!(why.contains("other read(s) that hold [process 3: append \"a,\"] first"), "{why}");
    assert!(why.contains("[process 1: write 1]") && why.contains("[process 2: write 1]"), "{why}");
}

/// A cas whose expected value two writes left (1, twice, in flight
/// together) names no one base. To refute, it is taken as the write it
/// also is: a read of its value 2 after a read of 3 returned, with the
/// write 3 in flight beside the cas, goes back in real time whichever 1 it
/// found.
#[test]
fn a_cas_several_writes_could_have_found_does_not_shield_a_contradiction() {
    let h = [
        "invoke 1 write 1",
        "invoke 2 write 1",
        "ok 1 write 1",
        "ok 2 write 1",
        "invoke 3 cas [1,2]",
        "invoke 6 write 3",
        "ok 3 cas [1,2]",
        "ok 6 write 3",
        "invoke 4 read",
        "ok 4 read 3",
        "invoke 5 read",
        "ok 5 read 2",
    ];
    let why = refuted(&h);
    assert!(why.contains("the block of [process 3: cas 1 -> 2]"), "{why}");
}

/// Writes of repeated integers (values drawn from a few), beside appends
/// and deletes: reads that several writes explain abound, so the guesses
/// and the refutations that must hold for every guess are what decide.
/// Wherever both decide, the inference and the search agree.
#[test]
fn with_repeated_values_the_guesses_never_contradict_the_search() {
    let campaign = Campaign {
        first_seed: 100_000,
        seeds: 4_000,
        mixes: ["rrwa", "rrwad", "rrw", "rrwd"],
        clients: 3,
        ops: (10, 30),
        faults: (0.1, 0.05),
    };
    let (keys, decided, compared, invalid) = campaign.compare();
    assert!(decided * 10 > keys * 8, "most are decided ({decided} of {keys})");
    assert!(compared > 2_000 && invalid > 300, "and compared ({compared}, {invalid} invalid)");
}

/// Random histories of repeated integer values, compared key by key with
/// the search wherever the inference decides.
struct Campaign {
    first_seed: u64,
    seeds: u64,
    mixes: [&'static str; 4],
    /// Fewest clients; up to 5 more.
    clients: usize,
    /// Fewest operations, and how many more at most (exclusive).
    ops: (usize, u64),
    /// Stale-read and lost-write chances in two of three seeds.
    faults: (f64, f64),
}

impl Campaign {
    /// (keys, decided, compared with the search, invalid among those); any
    /// disagreement fails the test.
    fn compare(&self) -> (usize, usize, usize, usize) {
        let (mut compared, mut decided, mut keys, mut invalid) = (0, 0, 0, 0);
        for seed in 0..self.seeds {
            let mut cfg = Synth::new(seed + self.first_seed, ModelKind::Kv);
            cfg.values = 2 + (seed % 4) as i64;
            cfg.mix = Some(self.mixes[(seed / 4 % 4) as usize].to_string());
            cfg.concurrency = self.clients + (seed / 3 % 6) as usize;
            cfg.operations = self.ops.0 + (seed / 7 % self.ops.1) as usize;
            cfg.info = [0.0, 0.1, 0.3][(seed / 5 % 3) as usize];
            if seed % 3 != 0 {
                (cfg.stale_read, cfg.lost_write) = self.faults;
            }
            let ops = pair(&generate(&cfg)).expect("synthetic histories are well formed");
            for key_ops in ops.by_key.values() {
                keys += 1;
                let inferred = match decide(key_ops, &None) {
                    Inference::Valid => true,
                    Inference::Invalid { .. } => false,
                    Inference::Undecided => continue,
                };
                decided += 1;
                if let Some(searched) = searched(key_ops) {
                    assert_eq!(inferred, searched, "seed {seed}");
                    compared += 1;
                    invalid += usize::from(!searched);
                }
            }
        }
        println!("{decided} of {keys} keys decided, {compared} compared with the search ({invalid} invalid)");
        (keys, decided, compared, invalid)
    }
}

#[test]
fn the_inference_gives_up_at_its_deadline_and_leaves_the_key_undecided() {
    // A key of deletes (ambiguous reads of an absent key) and info
    // operations, which the inference would otherwise guess and refute.
    let mut cfg = Synth::new(4, ModelKind::Kv);
    cfg.unique_values = true;
    cfg.mix = Some("rrwad".into());
    cfg.keys = 1;
    cfg.concurrency = 20;
    cfg.operations = 2_000;
    cfg.info = 0.2;
    let ops = pair(&generate(&cfg)).expect("well formed");
    let key_ops = ops.by_key.values().next().expect("one key");
    let past = Instant::now();
    assert_eq!(checker::version_inference::decide_within(key_ops, &None, past), Inference::Undecided);
    assert_ne!(decide(key_ops, &None), Inference::Undecided, "with time, this key is decided");
}

/// A chain of cas: the write 1, cas 1 -> 2 (seen by a read), cas 2 -> 3
/// and a concurrent cas 2 -> 4 that reported a mismatch (it went after the
/// first), an info cas 3 -> 5 whose value a read saw (it took effect), an
/// info cas 1 -> 6 no one saw (it never did), and a cas expecting a value
/// with an append (5 then 7) that took effect.
#[test]
fn a_chain_of_cas_is_valid() {
    let h = [
        "invoke 1 write \"1,\"",
        "ok 1 write \"1,\"",
        "invoke 2 cas [\"1,\",\"2,\"]",
        "ok 2 cas [\"1,\",\"2,\"]",
        "invoke 3 read",
        "ok 3 read \"2,\"",
        "invoke 2 cas [\"2,\",\"3,\"]",
        "invoke 4 cas [\"2,\",\"4,\"]",
        "ok 2 cas [\"2,\",\"3,\"]",
        "fail 4 cas [\"2,\",\"4,\"]",
        "invoke 5 read",
        "ok 5 read \"3,\"",
        "invoke 6 cas [\"3,\",\"5,\"]",
        "invoke 8 cas [\"1,\",\"6,\"]",
        "info 6 cas [\"3,\",\"5,\"]",
        "info 8 cas [\"1,\",\"6,\"]",
        "invoke 7 read",
        "ok 7 read \"5,\"",
        "invoke 9 append \"7,\"",
        "ok 9 append \"7,\"",
        "invoke 10 cas [\"5,7,\",\"8,\"]",
        "ok 10 cas [\"5,7,\",\"8,\"]",
        "invoke 11 read",
        "ok 11 read \"8,\"",
    ];
    assert_eq!(inferred(&h), Inference::Valid);
}

/// Two acknowledged cas from one value: each replaced the value 1 that the
/// write left, and only one can have found it.
#[test]
fn two_cas_from_one_value_are_refuted() {
    let h = [
        "invoke 1 write \"1,\"",
        "ok 1 write \"1,\"",
        "invoke 2 cas [\"1,\",\"2,\"]",
        "invoke 3 cas [\"1,\",\"3,\"]",
        "ok 2 cas [\"1,\",\"2,\"]",
        "ok 3 cas [\"1,\",\"3,\"]",
    ];
    let why = refuted(&h);
    assert!(why.contains("both replaced"), "{why}");
    // Were the second an info one nobody saw the value of, it never took
    // effect: valid.
    let h = [&h[..5], &["info 3 cas [\"1,\",\"3,\"]"]].concat();
    assert_eq!(inferred(&h), Inference::Valid);
}

/// A read saw 1 and then 2 appended; a cas invoked after it returned
/// expected 1 alone: the append is never undone, and the write 1 happened
/// once.
#[test]
fn a_cas_expecting_a_value_a_read_saw_appended_to_is_refuted() {
    let h = [
        "invoke 1 write \"1,\"",
        "ok 1 write \"1,\"",
        "invoke 2 append \"2,\"",
        "ok 2 append \"2,\"",
        "invoke 3 read",
        "ok 3 read \"1,2,\"",
        "invoke 4 cas [\"1,\",\"3,\"]",
        "ok 4 cas [\"1,\",\"3,\"]",
    ];
    let why = refuted(&h);
    assert!(why.contains("nothing brings it back"), "{why}");
}

/// Two cas each expecting the value the other wrote: neither can be first.
#[test]
fn cas_in_a_cycle_are_refuted() {
    let h = [
        "invoke 1 cas [\"3,\",\"4,\"]",
        "invoke 2 cas [\"4,\",\"3,\"]",
        "ok 1 cas [\"3,\",\"4,\"]",
        "ok 2 cas [\"4,\",\"3,\"]",
    ];
    let why = refuted(&h);
    assert!(why.contains("in a cycle"), "{why}");
}

/// A cas that reported a mismatch while the value was, all along, the one
/// it expected: the inference finds no place for it and must not call the
/// key valid; it leaves it to the search, which refutes it.
#[test]
fn a_mismatch_with_no_place_where_the_value_differs_is_left_to_the_search() {
    let h = [
        "invoke 1 write \"1,\"",
        "ok 1 write \"1,\"",
        "invoke 2 cas [\"1,\",\"2,\"]",
        "fail 2 cas [\"1,\",\"2,\"]",
        "invoke 3 read",
        "ok 3 read \"1,\"",
    ];
    assert_eq!(decide(&key_ops(&h), &None), Inference::Undecided);
    let report = check_history(&history(&h), ModelKind::Kv, None, &Budget::default()).unwrap();
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!(searched(&key_ops(&h)), Some(false));
    // With a write 5 concurrent with it, the mismatch fits after it.
    let h = [
        "invoke 1 write \"1,\"",
        "ok 1 write \"1,\"",
        "invoke 4 write \"5,\"",
        "invoke 2 cas [\"1,\",\"2,\"]",
        "fail 2 cas [\"1,\",\"2,\"]",
        "ok 4 write \"5,\"",
    ];
    assert_eq!(inferred(&h), Inference::Valid);
}

/// Issue #18's case with compare-and-set: one key of a few hundred reads,
/// writes and cas (expecting the value held at invocation half the time,
/// an older one else) from 50 clients, with unique values. The search
/// alone ends unknown on such keys; the inference decides them in
/// milliseconds, valid as generated and invalid with stale reads.
#[test]
fn a_key_with_cas_from_50_clients_is_decided_at_once() {
    let cases = [
        (1, "rrwwcc", 0.0, Verdict::Valid),
        (2, "rrwwcc", 0.0, Verdict::Valid),
        (1, "rrwwcc", 0.02, Verdict::Invalid),
        (2, "rrwwcc", 0.02, Verdict::Invalid),
        (3, "rrwcca", 0.0, Verdict::Valid),
        (2, "rrwcca", 0.02, Verdict::Invalid),
        (1, "rrwcad", 0.0, Verdict::Valid),
        (3, "rrwcad", 0.02, Verdict::Invalid),
    ];
    for (seed, mix, stale_read, expected) in cases {
        let mut cfg = Synth::new(seed, ModelKind::Kv);
        (cfg.unique_values, cfg.mix) = (true, Some(mix.to_string()));
        (cfg.concurrency, cfg.operations, cfg.info, cfg.stale_read) = (50, 400, 0.05, stale_read);
        let history = generate(&cfg);
        let ops = pair(&history).unwrap().by_key.into_values().next().unwrap();
        assert!(ops.iter().filter(|o| matches!(o.input, checker::Input::Cas(..))).count() > 50, "seed {seed}");
        let started = Instant::now();
        let inference = decide(&ops, &None);
        let elapsed = started.elapsed();
        assert_eq!(inference == Inference::Valid, expected == Verdict::Valid, "seed {seed} {mix}: {inference:?}");
        assert_ne!(inference, Inference::Undecided, "seed {seed} {mix}");
        assert!(elapsed < Duration::from_millis(500), "seed {seed} {mix}: {elapsed:?}");
        let report = check_history(&history, ModelKind::Kv, None, &Budget::default()).unwrap();
        assert_eq!((report.keys, report.verdict), (1, expected), "seed {seed}: {:?}", report.results[0].reason);
        assert!(report.operations > 350, "a few hundred operations ({})", report.operations);
    }
}

/// Keys with cas now reach the inference whatever their values: with
/// values drawn from a few integers (the synthesizer's cas of random
/// integers, some matching), reads and cas that several bases spell
/// abound, and are guessed or left to the search. Wherever both decide,
/// the inference and the search agree.
#[test]
fn with_repeated_values_and_cas_the_inference_never_contradicts_the_search() {
    let campaign = Campaign {
        first_seed: 900_000,
        seeds: 3_000,
        mixes: ["rrwc", "rrwcd", "rrwca", "rrcc"],
        clients: 2,
        ops: (8, 25),
        faults: (0.2, 0.1),
    };
    let (_, _, compared, invalid) = campaign.compare();
    assert!(compared > 500 && invalid > 50, "compared ({compared}, {invalid} invalid)");
}

/// Cas beside appends and deletes, with repeated values: the mended
/// guesses, and the refutations of reads sharing a first append with cas
/// that several bases could have found taken as writes, never contradict
/// the search.
#[test]
fn with_repeated_values_cas_appends_and_deletes_the_inference_never_contradicts_the_search() {
    let campaign = Campaign {
        first_seed: 2_000_000,
        seeds: 1_500,
        mixes: ["rrwcad", "rrrwcda", "rrwca", "rwcad"],
        clients: 2,
        ops: (8, 25),
        faults: (0.15, 0.1),
    };
    let (_, _, compared, invalid) = campaign.compare();
    assert!(compared > 1_000 && invalid > 150, "compared ({compared}, {invalid} invalid)");
}

/// The register and cas-register models (Knossos's, and a Jepsen
/// `history.edn`'s) run reads, writes and cas as the kv model does, so their
/// keys are decided by the inference too: a key of 50 clients and a few
/// hundred reads, writes and cas with unique values, which the search alone
/// leaves unknown, gets its verdict at once under each model, and on small
/// random keys the verdict is the search's under that model.
#[test]
fn register_models_are_decided_by_the_inference_as_the_search_decides_them() {
    use checker::model::{CasRegister, Register};
    for (model, mix) in [(ModelKind::Register, "rrww"), (ModelKind::CasRegister, "rrwwcc")] {
        for (seed, stale_read, expected) in [(1, 0.0, Verdict::Valid), (2, 0.02, Verdict::Invalid)] {
            let mut cfg = Synth::new(seed, model);
            (cfg.unique_values, cfg.mix) = (true, Some(mix.to_string()));
            (cfg.concurrency, cfg.operations, cfg.info, cfg.stale_read) = (50, 400, 0.05, stale_read);
            let budget = Budget { timeout: Duration::from_secs(20), ..Budget::default() };
            let report = check_history(&generate(&cfg), model, None, &budget).unwrap();
            let reason = &report.results[0].reason;
            assert_eq!((report.keys, report.verdict), (1, expected), "{model} seed {seed}: {reason:?}");
            assert!(
                report.elapsed_ms < 5_000,
                "{model} seed {seed}: decided without a search ({} ms)",
                report.elapsed_ms
            );
        }
        let (mut compared, mut invalid) = (0, 0);
        for seed in 0..600u64 {
            let mut cfg = Synth::new(seed + 700_000, model);
            (cfg.unique_values, cfg.mix) = (true, Some(mix.to_string()));
            (cfg.concurrency, cfg.operations, cfg.info) = (2 + (seed % 5) as usize, 8 + (seed / 5 % 16) as usize, 0.1);
            if seed % 2 == 0 {
                (cfg.stale_read, cfg.lost_write) = (0.3, 0.2);
            }
            let history = generate(&cfg);
            let ops = pair(&history).unwrap().by_key.into_values().next().unwrap();
            let limits = Limits::new(Instant::now() + Duration::from_secs(2), 1 << 30);
            let searched = match model {
                ModelKind::Register => search(&ops, Register(None), &limits, false),
                _ => search(&ops, CasRegister(None), &limits, false),
            };
            let searched = match searched {
                Outcome::Linearizable => Verdict::Valid,
                Outcome::NotLinearizable(_) => Verdict::Invalid,
                Outcome::Unknown(_) => continue,
            };
            let report = check_history(&history, model, None, &Budget::default()).unwrap();
            assert_eq!(report.verdict, searched, "{model} seed {seed}: {:?}", report.results[0].reason);
            compared += 1;
            invalid += usize::from(searched == Verdict::Invalid);
        }
        assert!(compared > 500 && invalid > 100, "{model}: both verdicts compared ({compared}, {invalid} invalid)");
    }
}
