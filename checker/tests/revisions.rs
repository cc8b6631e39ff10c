//! The revision check on hand-written histories: what the store's revisions
//! prove beside the values, and what they must not be blamed for.

use checker::revisions::Rule;
use checker::{Budget, CheckReport, History, ModelKind, Verdict, check_history};

/// `(process, f, key, value, revision, mod_revision)` per operation, each
/// invoked and completed in turn unless `concurrent` pairs say otherwise.
struct H {
    lines: Vec<String>,
    index: u64,
}

impl H {
    fn new() -> H {
        H { lines: Vec::new(), index: 0 }
    }

    fn event(&mut self, kind: &str, p: u64, f: &str, key: &str, value: &str, extra: &str) -> &mut H {
        let i = self.index;
        self.lines.push(format!(
            r#"{{"index":{i},"type":"{kind}","process":{p},"f":"{f}","key":"{key}","value":{value},"time":{}{extra}}}"#,
            i * 1000
        ));
        self.index += 1;
        self
    }

    fn invoke(&mut self, p: u64, f: &str, key: &str, value: &str) -> &mut H {
        self.event("invoke", p, f, key, value, "")
    }

    /// Completes with a revision and, where given, a mod revision.
    fn done(&mut self, kind: &str, p: u64, f: &str, key: &str, value: &str, (rev, m): (u64, Option<u64>)) -> &mut H {
        let extra = match m {
            Some(m) => format!(r#","revision":{rev},"mod_revision":{m}"#),
            None => format!(r#","revision":{rev}"#),
        };
        let extra = if kind == "fail" { format!(r#","error":"mismatch"{extra}"#) } else { extra };
        self.event(kind, p, f, key, value, &extra)
    }

    fn op(&mut self, p: u64, f: &str, key: &str, value: &str, rev: u64, m: Option<u64>) -> &mut H {
        let invoked = if f == "read" { "null" } else { value };
        self.invoke(p, f, key, invoked).done("ok", p, f, key, value, (rev, m))
    }

    fn check(&self) -> CheckReport {
        let text = self.lines.join("\n");
        let history = History::read_jsonl(text.as_bytes(), "h.jsonl").unwrap();
        check_history(&history, ModelKind::Kv, None, &Budget { all_keys: true, ..Budget::default() }).unwrap()
    }
}

fn rules(report: &CheckReport) -> Vec<Rule> {
    let r = report.revisions.as_ref().expect("the history has revisions");
    r.counts.keys().copied().collect()
}

#[test]
fn revisions_that_agree_with_values_and_real_time_pass() {
    let mut h = H::new();
    h.op(1, "write", "a", "1", 1, None)
        .op(2, "read", "a", "1", 1, Some(1))
        .op(1, "write", "b", "7", 2, None)
        .op(2, "read", "a", "1", 2, Some(1))
        .op(3, "cas", "a", "[1,2]", 3, Some(1))
        .op(2, "delete", "b", "null", 4, Some(2))
        .op(3, "read", "b", "null", 4, Some(0))
        // A delete of an absent key changes nothing: an observation at 4.
        .op(1, "delete", "b", "null", 4, Some(0));
    h.invoke(2, "cas", "a", "[1,3]").done("fail", 2, "cas", "a", "[1,3]", (4, Some(3)));
    let report = h.check();
    assert_eq!(report.verdict, Verdict::Valid, "{:?}", report.revisions);
    let r = report.revisions.unwrap();
    assert_eq!((r.checked, r.changes), (9, 4));
}

#[test]
fn a_revision_counter_that_went_back_after_a_crash_is_invalid_though_every_value_is_right() {
    // Three keys, each written once and read back: every key is
    // linearizable. But after the "crash" the store numbers again from 2.
    let mut h = H::new();
    h.op(1, "write", "a", "1", 1, None).op(1, "write", "b", "2", 2, None);
    h.op(2, "write", "c", "3", 2, None).op(2, "read", "a", "1", 2, Some(1));
    let report = h.check();
    assert_eq!(report.invalid_keys, 0, "the values alone are linearizable");
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!(rules(&report), vec![Rule::DuplicateRevision]);

    // A read served at a revision below one already acknowledged.
    let mut h = H::new();
    h.op(1, "write", "a", "1", 1, None).op(1, "write", "b", "2", 2, None).op(2, "read", "a", "1", 1, Some(1));
    let report = h.check();
    assert_eq!(report.invalid_keys, 0);
    assert_eq!(rules(&report), vec![Rule::RevisionWentBack]);
    let v = &report.revisions.as_ref().unwrap().violations[0];
    assert!(v.message.contains("was served at revision 1") && v.message.contains("changed the store at revision 2"));
    assert_eq!(v.ops.len(), 2);
}

#[test]
fn overlapping_operations_may_be_ordered_either_way() {
    // The read is invoked before the write completes: revision 2 for the
    // write and 1 for the read contradict nothing.
    let mut h = H::new();
    h.op(1, "write", "a", "1", 1, None);
    h.invoke(1, "write", "a", "2").invoke(2, "read", "a", "null");
    h.done("ok", 1, "write", "a", "2", (2, None)).done("ok", 2, "read", "a", "1", (1, Some(1)));
    assert_eq!(h.check().verdict, Verdict::Valid);
}

#[test]
fn a_read_whose_mod_revision_skips_a_change_of_its_key_is_invalid_where_values_cannot_tell() {
    // The read overlaps the second write, so by values it may come first.
    // But the store says it read at revision 3, after the write at 2, and
    // still found the first write's mod revision.
    let mut h = H::new();
    h.op(1, "write", "a", "1", 1, None);
    h.invoke(1, "write", "a", "2").invoke(2, "read", "a", "null");
    h.done("ok", 1, "write", "a", "2", (2, None)).done("ok", 2, "read", "a", "1", (3, Some(1)));
    let report = h.check();
    assert_eq!(report.invalid_keys, 0, "by values the read can go first");
    assert_eq!(rules(&report), vec![Rule::ModRevision]);
    assert!(report.revisions.unwrap().violations[0].message.contains("changed the key at revision 2"));
}

#[test]
fn a_mod_revision_must_be_a_change_of_this_key_that_left_the_value_found() {
    // Revision 2 wrote key b; a read of a cannot have found it.
    let mut h = H::new();
    h.op(1, "write", "a", "1", 1, None).op(1, "write", "b", "1", 2, None).op(2, "read", "a", "1", 2, Some(2));
    let report = h.check();
    assert_eq!(rules(&report), vec![Rule::ModRevision]);
    assert!(report.revisions.unwrap().violations[0].message.contains("changed another key"));

    // A cas that reported a mismatch cannot have found the value it expected.
    let mut h = H::new();
    h.op(1, "write", "a", "5", 1, None);
    h.invoke(2, "cas", "a", "[5,6]").done("fail", 2, "cas", "a", "[5,6]", (1, Some(1)));
    assert_eq!(rules(&h.check()), vec![Rule::ModRevision]);

    // A mod revision that no change was given, with none in doubt.
    let mut h = H::new();
    h.op(1, "write", "a", "5", 1, None).op(2, "read", "a", "5", 3, Some(3));
    assert_eq!(rules(&h.check()), vec![Rule::ModRevision]);
}

#[test]
fn changes_in_doubt_may_explain_what_was_found() {
    // An info write of 9 may be the change at revision 2 that the read found.
    let mut h = H::new();
    h.op(1, "write", "a", "1", 1, None);
    h.invoke(3, "write", "a", "9").event("info", 3, "write", "a", "9", "");
    h.op(2, "read", "a", "9", 2, Some(2));
    let report = h.check();
    assert_eq!(report.verdict, Verdict::Valid, "{:?} {:?}", report.revisions, report.results);

    // Absent after a write: an info delete may have come between...
    let mut h = H::new();
    h.op(1, "write", "a", "1", 1, None);
    h.invoke(3, "delete", "a", "null").event("info", 3, "delete", "a", "null", "");
    h.op(2, "read", "a", "null", 2, Some(0));
    assert_eq!(h.check().verdict, Verdict::Valid);

    // ...and without one, the store contradicts itself.
    let mut h = H::new();
    h.op(1, "write", "a", "1", 1, None).op(1, "write", "b", "1", 2, None).op(2, "read", "a", "null", 2, Some(0));
    let report = h.check();
    assert_eq!(rules(&report), vec![Rule::ModRevision]);
    assert_eq!(report.invalid_keys, 1, "by values too: the read missed an acknowledged write");
}

#[test]
fn a_history_without_revisions_is_judged_by_its_values_alone() {
    let text = r#"{"index":0,"type":"invoke","process":1,"f":"write","key":"a","value":1,"time":0}
{"index":1,"type":"ok","process":1,"f":"write","key":"a","value":1,"time":1}"#;
    let history = History::read_jsonl(text.as_bytes(), "h").unwrap();
    let report = check_history(&history, ModelKind::Kv, None, &Budget::default()).unwrap();
    assert!(report.revisions.is_none());
    assert_eq!(report.verdict, Verdict::Valid);
}

/// A linearizable store's revisions never contradict anything: 2,000 random
/// histories (1 to 8 clients, 1 to 3 keys, every operation kind, info
/// operations that take effect late or never) from the simulated store.
#[test]
fn a_linearizable_stores_revisions_pass_on_random_histories() {
    use checker::synth::{Synth, generate};
    let mut changes = 0;
    for seed in 0..2_000u64 {
        let mut cfg = Synth::new(seed, ModelKind::Kv);
        cfg.concurrency = 1 + (seed % 8) as usize;
        cfg.keys = 1 + (seed % 3) as usize;
        cfg.operations = 60;
        cfg.info = 0.15;
        cfg.mix = Some("rrwwccdd".into());
        cfg.revisions = true;
        let history = generate(&cfg);
        let report = check_history(&history, ModelKind::Kv, None, &Budget::default()).unwrap();
        let r = report.revisions.as_ref().expect("the synthetic store gives revisions");
        assert!(r.is_valid(), "seed {seed}: {:?}", r.violations);
        assert_eq!(report.verdict, Verdict::Valid, "seed {seed}");
        changes += r.changes;
    }
    assert!(changes > 20_000, "the histories change the store: {changes} changes");
}

/// The same store with a revision counter that goes back once, mid-run (as
/// after a crash that forgot revisions): caught on every history where a
/// later operation was given a revision that one completed earlier had.
#[test]
fn a_store_whose_revisions_go_back_is_caught_on_random_histories() {
    use checker::synth::{Synth, generate};
    let mut caught = 0;
    for seed in 0..200u64 {
        let mut cfg = Synth::new(seed, ModelKind::Kv);
        cfg.concurrency = 3;
        cfg.keys = 2;
        cfg.operations = 60;
        cfg.info = 0.0;
        cfg.mix = Some("rrww".into());
        cfg.revisions = true;
        let mut history = generate(&cfg);
        // From the middle on, every revision is 5 lower: values unchanged.
        let middle = history.events.len() / 2;
        for e in &mut history.events[middle..] {
            e.revision = e.revision.map(|r| r.saturating_sub(5));
            e.mod_revision = e.mod_revision.map(|m| m.saturating_sub(5));
        }
        let report = check_history(&history, ModelKind::Kv, None, &Budget::default()).unwrap();
        assert_eq!(report.invalid_keys, 0, "seed {seed}: the values are untouched");
        if !report.revisions.unwrap().is_valid() {
            caught += 1;
        }
    }
    assert!(caught >= 190, "caught {caught} of 200");
}

/// The witness (the order the revisions claim) is only ever taken as proof
/// when it is one: on 3,000 histories whose revisions were tampered with
/// (two operations' revisions swapped, or one moved by a few), whenever the
/// witness is accepted the search finds the key linearizable too.
#[test]
fn a_tampered_witness_is_never_taken_for_a_linearization_the_search_would_refute() {
    use checker::model::Kv;
    use checker::operation::pair;
    use checker::revisions::witnessed;
    use checker::search::{Limits, Outcome, search};
    use checker::synth::{Synth, generate};
    let (mut accepted, mut refuted) = (0, 0);
    for seed in 0..3_000u64 {
        let mut cfg = Synth::new(seed, ModelKind::Kv);
        cfg.concurrency = 2 + (seed % 5) as usize;
        cfg.operations = 30;
        cfg.info = 0.1;
        cfg.mix = Some("rrwwcd".into());
        cfg.revisions = true;
        let mut history = generate(&cfg);
        let with: Vec<usize> = (0..history.events.len()).filter(|&i| history.events[i].revision.is_some()).collect();
        if with.len() < 2 {
            continue;
        }
        let (a, b) = (with[(seed as usize * 7) % with.len()], with[(seed as usize * 13 + 1) % with.len()]);
        if seed % 2 == 0 {
            let (ra, rb) = (history.events[a].revision, history.events[b].revision);
            (history.events[a].revision, history.events[b].revision) = (rb, ra);
        } else {
            let r = history.events[a].revision.unwrap();
            history.events[a].revision = Some(r.saturating_sub(1 + seed % 3));
        }
        let ops = pair(&history).unwrap();
        for list in ops.by_key.values() {
            if !witnessed(list, &None) {
                continue;
            }
            accepted += 1;
            let limits = Limits::new(std::time::Instant::now() + std::time::Duration::from_secs(10), 1 << 28);
            match search(list, Kv(None), &limits, false) {
                Outcome::Linearizable => {}
                Outcome::NotLinearizable(_) => refuted += 1,
                Outcome::Unknown(why) => panic!("seed {seed}: the search did not decide: {why}"),
            }
        }
    }
    assert_eq!(refuted, 0, "a witness the search refutes was accepted");
    assert!(accepted > 200, "accepted {accepted}: the test must exercise the witness");
}
