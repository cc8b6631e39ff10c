//! Jepsen `history.edn` files read as Knossos reads them, one construct per
//! test, each with the verdict knossos.model would give and why. And the
//! check stopping at the first invalid key.

use checker::edn::read_history;
use checker::{Budget, CheckReport, Key, ModelKind, Verdict, check_history};

fn check(model: ModelKind, edn: &str) -> CheckReport {
    let history = read_history(edn, "case.edn").expect("well-formed EDN");
    check_history(&history, model, None, &Budget::default()).expect("a history the model can check")
}

fn verdict(model: ModelKind, edn: &str) -> Verdict {
    check(model, edn).verdict
}

use ModelKind::{CasRegister, Register};

#[test]
fn an_ok_read_of_nil_matches_any_value() {
    // knossos.model/CASRegister: `:read` steps to itself when `(nil? (:value op))`:
    // the client did not learn the value. Read as "absent", the value 1 written
    // and acknowledged before would make this invalid.
    let edn = r#"{:type :invoke, :f :write, :value 1, :process 0, :index 0}
{:type :ok, :f :write, :value 1, :process 0, :index 1}
{:type :invoke, :f :read, :value nil, :process 1, :index 2}
{:type :ok, :f :read, :value nil, :process 1, :index 3}"#;
    assert_eq!(verdict(CasRegister, edn), Verdict::Valid);
    assert_eq!(verdict(Register, edn), Verdict::Valid);
    assert_eq!(check(CasRegister, edn).removed, 1, "the nil read constrains nothing and is removed");
}

#[test]
fn a_read_of_a_value_never_written_is_invalid() {
    // The register held 1 and nothing wrote 2: no model state reads 2.
    let edn = r#"{:type :invoke, :f :write, :value 1, :process 0}
{:type :ok, :f :write, :value 1, :process 0}
{:type :invoke, :f :read, :value nil, :process 1}
{:type :ok, :f :read, :value 2, :process 1}"#;
    assert_eq!(verdict(CasRegister, edn), Verdict::Invalid);
}

#[test]
fn every_fail_did_not_happen_whatever_its_error() {
    // Knossos drops :fail ops before the search. Our JSON Lines format reads a
    // cas failed with "mismatch" as having seen another value; here the
    // register held 1, so that reading would make the history invalid.
    let edn = r#"{:type :invoke, :f :write, :value 1, :process 0}
{:type :ok, :f :write, :value 1, :process 0}
{:type :invoke, :f :cas, :value [1 2], :process 1}
{:type :fail, :f :cas, :value [1 2], :process 1, :error :mismatch}
{:type :invoke, :f :read, :value nil, :process 2}
{:type :ok, :f :read, :value 1, :process 2}"#;
    assert_eq!(verdict(CasRegister, edn), Verdict::Valid);
    // A failed write that a read then observes: the write did not happen, so 5 was never there.
    let edn = r#"{:type :invoke, :f :write, :value 5, :process 0}
{:type :fail, :f :write, :value 5, :process 0}
{:type :invoke, :f :read, :value nil, :process 1}
{:type :ok, :f :read, :value 5, :process 1}"#;
    assert_eq!(verdict(CasRegister, edn), Verdict::Invalid);
}

#[test]
fn an_info_may_take_effect_at_any_later_time_or_never() {
    // The info write of 2 may land after the first read and before the
    // second: valid. Knossos keeps an :info op open to the end of the history.
    let edn = r#"{:type :invoke, :f :write, :value 1, :process 0}
{:type :ok, :f :write, :value 1, :process 0}
{:type :invoke, :f :write, :value 2, :process 1}
{:type :info, :f :write, :value 2, :process 1, :error :timeout}
{:type :invoke, :f :read, :value nil, :process 2}
{:type :ok, :f :read, :value 1, :process 2}
{:type :invoke, :f :read, :value nil, :process 2}
{:type :ok, :f :read, :value 2, :process 2}"#;
    assert_eq!(verdict(CasRegister, edn), Verdict::Valid);
    // ...but once seen it cannot be undone: a later read of 1 is invalid.
    let undone = format!(
        "{edn}\n{{:type :invoke, :f :read, :value nil, :process 2}}\n{{:type :ok, :f :read, :value 1, :process 2}}"
    );
    assert_eq!(verdict(CasRegister, &undone), Verdict::Invalid);
}

#[test]
fn an_invocation_never_completed_is_an_info() {
    // Process 1's write of 3 never completes: it may have happened, so a read of 3 is fine.
    let edn = r#"{:type :invoke, :f :write, :value 3, :process 1}
{:type :invoke, :f :read, :value nil, :process 2}
{:type :ok, :f :read, :value 3, :process 2}"#;
    assert_eq!(verdict(CasRegister, edn), Verdict::Valid);
}

#[test]
fn independent_tuples_split_keys_and_keep_their_type() {
    // jepsen.independent: [key value]. The integer key 1 and the string key
    // "1" are different registers: each reads what was written to it.
    let edn = r#"{:type :invoke, :f :write, :value [1 10], :process 0}
{:type :ok, :f :write, :value [1 10], :process 0}
{:type :invoke, :f :write, :value ["1" 20], :process 1}
{:type :ok, :f :write, :value ["1" 20], :process 1}
{:type :invoke, :f :read, :value [1 nil], :process 2}
{:type :ok, :f :read, :value [1 10], :process 2}
{:type :invoke, :f :read, :value ["1" nil], :process 3}
{:type :ok, :f :read, :value ["1" 20], :process 3}
{:type :invoke, :f :cas, :value [1 [10 11]], :process 0}
{:type :ok, :f :cas, :value [1 [10 11]], :process 0}"#;
    let report = check(CasRegister, edn);
    assert_eq!(report.verdict, Verdict::Valid, "{report:?}");
    let keys: Vec<Option<Key>> = report.results.iter().map(|k| k.key.clone()).collect();
    assert_eq!(keys, vec![Some(Key::Int(1)), Some(Key::Str("1".into()))]);
    // A history of writes only is independent too (no read to tell by).
    let writes = r#"{:type :invoke, :f :write, :value [7 1], :process 0}
{:type :ok, :f :write, :value [7 1], :process 0}"#;
    assert_eq!(check(CasRegister, writes).results[0].key, Some(Key::Int(7)));
}

/// `keys` registers each written then read back; key `bad` reads a value never written.
fn many_keys(keys: usize, bad: usize) -> String {
    let mut edn = String::new();
    for k in 0..keys {
        let read = if k == bad { 99 } else { k };
        edn += &format!(
            "{{:type :invoke, :f :write, :value [{k} {k}], :process 0}}\n{{:type :ok, :f :write, :value [{k} {k}], :process 0}}\n\
             {{:type :invoke, :f :read, :value [{k} nil], :process 1}}\n{{:type :ok, :f :read, :value [{k} {read}], :process 1}}\n"
        );
    }
    edn
}

#[test]
fn the_check_stops_at_the_first_invalid_key_unless_asked_for_all() {
    let history = read_history(&many_keys(40, 0), "many.edn").unwrap();
    // One thread, largest key first; all keys are the same size, so the order is the map's: key 0 first.
    let first = Budget { threads: 1, ..Budget::default() };
    let report = check_history(&history, CasRegister, None, &first).unwrap();
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!((report.keys, report.invalid_keys, report.unknown_keys), (40, 1, 0));
    assert_eq!(report.unsearched_keys.len() + report.results.len(), 40, "every key decided or listed");
    assert!(!report.unsearched_keys.is_empty(), "the rest were not searched");
    let summary = checker::summary::render(&report, "many.edn");
    assert!(summary.contains("not searched"), "{summary}");

    let all = Budget { threads: 1, all_keys: true, ..Budget::default() };
    let report = check_history(&history, CasRegister, None, &all).unwrap();
    assert_eq!((report.keys, report.invalid_keys, report.results.len()), (40, 1, 40));
    assert!(report.unsearched_keys.is_empty());

    // A valid history searches every key either way.
    let valid = read_history(&many_keys(40, usize::MAX), "valid.edn").unwrap();
    let report = check_history(&valid, CasRegister, None, &first).unwrap();
    assert_eq!((report.verdict, report.results.len()), (Verdict::Valid, 40));
}
