//! Hand-written histories, one per rule a checker must get right.

use std::time::Duration;

use checker::{Budget, History, ModelKind, Value, Verdict, check_history};

/// Builds a history from compact lines: `TYPE PROCESS F [KEY=k] [VALUE]`,
/// e.g. `invoke 1 write 5`, `ok 1 read 5`, `fail 2 cas [1,2] mismatch`.
fn history(lines: &[&str]) -> History {
    let mut text = String::new();
    for (i, line) in lines.iter().enumerate() {
        let mut parts: Vec<&str> = line.split_whitespace().collect();
        let error = match parts.last() {
            Some(&"mismatch") => {
                parts.pop();
                ",\"error\":\"mismatch\""
            }
            _ => "",
        };
        let (kind, process, f) = (parts[0], parts[1], parts[2]);
        let mut key = String::new();
        let mut rest = &parts[3..];
        if let Some(k) = rest.first().and_then(|p| p.strip_prefix("key=")) {
            key = format!(",\"key\":\"{k}\"");
            rest = &rest[1..];
        }
        let value = rest.first().copied().unwrap_or("null");
        text += &format!(
            "{{\"index\":{i},\"type\":\"{kind}\",\"process\":{process},\"f\":\"{f}\"{key},\"value\":{value},\"time\":{}{error}}}\n",
            i * 10
        );
    }
    History::read_jsonl(text.as_bytes(), "case").unwrap()
}

fn verdict(model: ModelKind, lines: &[&str]) -> Verdict {
    check_history(&history(lines), model, None, &Budget::default()).unwrap().verdict
}

use ModelKind::{CasRegister, Kv, Register};
use Verdict::{Invalid, Valid};

#[test]
fn sequential_reads_see_the_last_write() {
    let base = ["invoke 1 write 1", "ok 1 write 1", "invoke 2 read null"];
    assert_eq!(verdict(Register, &[&base[..], &["ok 2 read 1"]].concat()), Valid);
    assert_eq!(verdict(Register, &[&base[..], &["ok 2 read 2"]].concat()), Invalid);
    assert_eq!(verdict(Register, &[&base[..], &["ok 2 read null"]].concat()), Invalid);
}

#[test]
fn real_time_order_is_respected() {
    let h =
        ["invoke 1 write 1", "ok 1 write 1", "invoke 1 write 2", "ok 1 write 2", "invoke 2 read null", "ok 2 read 1"];
    assert_eq!(verdict(Register, &h), Invalid, "a read after write 2 completed cannot see 1");
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    for seen in ["null", "1"] {
        let h = ["invoke 1 write 1", "invoke 2 read null", &format!("ok 2 read {seen}"), "ok 1 write 1"];
        assert_eq!(verdict(Register, &h), Valid, "read {seen}");
    }
}

#[test]
fn once_seen_a_write_cannot_be_unseen() {
    let h = [
        "invoke 1 write 1",
        "invoke 2 read null",
        "ok 2 read 1",
        "invoke 2 read null",
        "ok 2 read null",
        "ok 1 write 1",
    ];
    assert_eq!(verdict(Register, &h), Invalid);
}

#[test]
fn an_info_write_may_take_effect_late() {
    let h = [
        "invoke 1 write 1",
        "info 1 write 1",
        "invoke 2 read null",
        "ok 2 read null",
        "invoke 2 read null",
        "ok 2 read 1",
    ];
    assert_eq!(verdict(Register, &h), Valid, "it took effect after the first read");
}

#[test]
fn an_info_write_may_never_take_effect() {
    let h = ["invoke 1 write 1", "info 1 write 1", "invoke 2 read null", "ok 2 read null"];
    assert_eq!(verdict(Register, &h), Valid);
    let unfinished = ["invoke 1 write 1", "invoke 2 read null", "ok 2 read null"];
    assert_eq!(verdict(Register, &unfinished), Valid, "an invocation with no completion counts as info");
}

#[test]
fn an_info_write_cannot_take_effect_before_its_invocation() {
    let h = ["invoke 2 read null", "ok 2 read 1", "invoke 1 write 1", "info 1 write 1"];
    assert_eq!(verdict(Register, &h), Invalid);
}

#[test]
fn a_failed_operation_did_not_happen() {
    let h = ["invoke 1 write 1", "fail 1 write 1", "invoke 2 read null", "ok 2 read 1"];
    assert_eq!(verdict(Register, &h), Invalid);
}

#[test]
fn cas_succeeds_only_on_the_expected_value() {
    let ok = [
        "invoke 1 write 1",
        "ok 1 write 1",
        "invoke 1 cas [1,2]",
        "ok 1 cas [1,2]",
        "invoke 2 read null",
        "ok 2 read 2",
    ];
    assert_eq!(verdict(CasRegister, &ok), Valid);
    let wrong = ["invoke 1 write 3", "ok 1 write 3", "invoke 1 cas [1,2]", "ok 1 cas [1,2]"];
    assert_eq!(verdict(CasRegister, &wrong), Invalid);
}

#[test]
fn a_cas_mismatch_is_an_observation() {
    // The value was certainly 1 throughout: a mismatch against 1 is a lie.
    let lie = ["invoke 1 write 1", "ok 1 write 1", "invoke 2 cas [1,2]", "fail 2 cas [1,2] mismatch"];
    assert_eq!(verdict(CasRegister, &lie), Invalid);
    let truth = ["invoke 1 write 1", "ok 1 write 1", "invoke 2 cas [0,2]", "fail 2 cas [0,2] mismatch"];
    assert_eq!(verdict(CasRegister, &truth), Valid);
    // Any other failure says nothing.
    let other = ["invoke 1 write 1", "ok 1 write 1", "invoke 2 cas [1,2]", "fail 2 cas [1,2]"];
    assert_eq!(verdict(CasRegister, &other), Valid);
}

#[test]
fn delete_then_read_finds_nothing() {
    let base = ["invoke 1 write key=a 1", "ok 1 write key=a 1", "invoke 1 delete key=a", "ok 1 delete key=a"];
    assert_eq!(verdict(Kv, &[&base[..], &["invoke 2 read key=a null", "ok 2 read key=a null"]].concat()), Valid);
    assert_eq!(verdict(Kv, &[&base[..], &["invoke 2 read key=a null", "ok 2 read key=a 1"]].concat()), Invalid);
}

#[test]
fn appends_keep_their_order() {
    let seq = [
        "invoke 1 append key=a \"x\"",
        "ok 1 append key=a \"x\"",
        "invoke 1 append key=a \"y\"",
        "ok 1 append key=a \"y\"",
    ];
    assert_eq!(verdict(Kv, &[&seq[..], &["invoke 2 read key=a null", "ok 2 read key=a \"xy\""]].concat()), Valid);
    assert_eq!(verdict(Kv, &[&seq[..], &["invoke 2 read key=a null", "ok 2 read key=a \"yx\""]].concat()), Invalid);
    assert_eq!(
        verdict(Kv, &[&seq[..], &["invoke 2 read key=a null", "ok 2 read key=a \"x\""]].concat()),
        Invalid,
        "lost append"
    );
    let concurrent = [
        "invoke 1 append key=a \"x\"",
        "invoke 3 append key=a \"y\"",
        "ok 1 append key=a \"x\"",
        "ok 3 append key=a \"y\"",
        "invoke 2 read key=a null",
        "ok 2 read key=a \"yx\"",
    ];
    assert_eq!(verdict(Kv, &concurrent), Valid);
}

#[test]
fn keys_are_independent() {
    let h = [
        "invoke 1 write key=a 1",
        "ok 1 write key=a 1",
        "invoke 2 read key=b null",
        "ok 2 read key=b null",
        "invoke 2 read key=a null",
        "ok 2 read key=a 1",
    ];
    assert_eq!(verdict(Kv, &h), Valid);
}

#[test]
fn the_initial_value_is_configurable() {
    let h = history(&["invoke 1 read null", "ok 1 read 0"]);
    let budget = Budget::default();
    assert_eq!(check_history(&h, Register, None, &budget).unwrap().verdict, Invalid);
    assert_eq!(check_history(&h, Register, Some(Value::Int(0)), &budget).unwrap().verdict, Valid);
}

#[test]
fn an_invalid_key_comes_with_its_longest_prefix_and_what_could_not_follow() {
    let h = history(&[
        "invoke 1 write key=k 1",
        "ok 1 write key=k 1",
        "invoke 1 write key=k 2",
        "ok 1 write key=k 2",
        "invoke 2 read key=k null",
        "ok 2 read key=k 1",
        "invoke 2 read key=ok null",
        "ok 2 read key=ok null",
    ]);
    let report = check_history(&h, Kv, None, &Budget::default()).unwrap();
    assert_eq!((report.verdict, report.keys, report.invalid_keys), (Invalid, 2, 1));
    let bad = &report.results[0];
    assert_eq!(bad.key, Some(checker::Key::from("k")));
    assert_eq!(bad.ops.len(), 3);
    let cx = bad.counterexample.as_ref().expect("a counterexample");
    let order: Vec<(usize, &str)> = cx.linearized.iter().map(|s| (s.op, s.state_after.as_str())).collect();
    assert_eq!(order, vec![(0, "1"), (1, "2")]);
    assert_eq!(cx.unplaced.len(), 1);
    assert_eq!(cx.unplaced[0].op, 2);
    assert_eq!(cx.unplaced[0].reason, "it read 1 but the value was 2");
}

#[test]
fn an_exhausted_budget_is_unknown_never_valid() {
    let mut cfg = checker::synth::Synth::new(3, CasRegister);
    (cfg.concurrency, cfg.operations, cfg.info) = (12, 3_000, 0.3);
    let h = checker::synth::generate(&cfg);
    let budget = Budget { timeout: Duration::ZERO, ..Budget::default() };
    let report = check_history(&h, CasRegister, None, &budget).unwrap();
    assert_eq!(report.verdict, Verdict::Unknown);
    let reason = report.results[0].reason.as_deref().unwrap();
    assert!(reason.contains("time budget"), "{reason}");
    // It says how far the search got.
    assert!(reason.contains("the longest linearizable prefix found holds"), "{reason}");
}

#[test]
fn an_operation_the_model_lacks_is_an_error_with_its_line() {
    let h = history(&["invoke 1 write 1", "ok 1 write 1", "invoke 1 cas [1,2]", "ok 1 cas [1,2]"]);
    let err = check_history(&h, Register, None, &Budget::default()).unwrap_err();
    assert_eq!(err.to_string(), "case:3: the register model has no `cas` operation");
}

/// The JSON key `1` and the key `"1"` are two keys: a write to one is never
/// read from the other. (Both once became the string "1", which made the
/// first history invalid and the second valid.)
#[test]
fn keys_keep_their_json_type() {
    let jsonl = |read_key: &str, seen: &str| {
        let text = format!(
            "{{\"index\":0,\"type\":\"invoke\",\"process\":1,\"f\":\"write\",\"key\":1,\"value\":5,\"time\":0}}\n\
             {{\"index\":1,\"type\":\"ok\",\"process\":1,\"f\":\"write\",\"key\":1,\"value\":5,\"time\":1}}\n\
             {{\"index\":2,\"type\":\"invoke\",\"process\":2,\"f\":\"read\",\"key\":{read_key},\"value\":null,\"time\":2}}\n\
             {{\"index\":3,\"type\":\"ok\",\"process\":2,\"f\":\"read\",\"key\":{read_key},\"value\":{seen},\"time\":3}}\n"
        );
        let history = History::read_jsonl(text.as_bytes(), "typed").unwrap();
        check_history(&history, Kv, None, &Budget::default()).unwrap()
    };
    assert_eq!(jsonl("\"1\"", "null").verdict, Valid, "\"1\" was never written");
    assert_eq!(jsonl("\"1\"", "5").verdict, Invalid, "5 was written to 1, not to \"1\"");
    assert_eq!(jsonl("1", "5").verdict, Valid);
    let report = jsonl("\"1\"", "null");
    assert_eq!(report.keys, 2, "two keys, one per type");

    let bad = "{\"index\":0,\"type\":\"invoke\",\"process\":1,\"f\":\"read\",\"key\":true,\"value\":null,\"time\":0}\n";
    let err = History::read_jsonl(bad.as_bytes(), "typed").unwrap_err().to_string();
    assert!(err.contains("`key` must be a string or an integer"), "{err}");
}

/// One key of a chaos run's append history under failpoints (CapuKV
/// crashed with eleven appends in flight; the reads after the restart saw
/// them in the order they were invoked). Trying completed operations before
/// info ones never found that order within a minute; the search now races
/// that order against the order of invocation, which decides it at once.
#[test]
fn appends_left_open_by_a_crash_are_placed_in_the_order_they_were_invoked() {
    let history = History::read_file(std::path::Path::new("tests/data/crash-appends.jsonl")).unwrap();
    let budget = Budget { timeout: std::time::Duration::from_secs(30), ..Budget::default() };
    let report = check_history(&history, Kv, None, &budget).unwrap();
    assert_eq!((report.verdict, report.unknown_keys), (Valid, 0), "{:?}", report.results[0].reason);
}
