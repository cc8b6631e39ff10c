//! `capukv-chaos check` as scripts use it: exit statuses and output.

use std::path::PathBuf;
use std::process::Command;

/// A history file in a directory of its own, removed when dropped.
struct TempHistory(PathBuf);

impl TempHistory {
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempHistory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

fn write_history(name: &str, lines: &[&str]) -> TempHistory {
    let dir = std::env::temp_dir().join(format!("capukv-check-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n")).unwrap();
    TempHistory(path)
}

fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_capukv-chaos")).arg("check").args(args).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

const WRITE_1: [&str; 2] = [
    r#"{"index":0,"type":"invoke","process":1,"f":"write","value":1,"time":0}"#,
    r#"{"index":1,"type":"ok","process":1,"f":"write","value":1,"time":5}"#,
];

#[test]
fn exit_statuses_follow_the_verdict() {
    let read = |i: u64, v: &str| {
        [
            format!(r#"{{"index":{i},"type":"invoke","process":2,"f":"read","value":null,"time":10}}"#),
            format!(r#"{{"index":{},"type":"ok","process":2,"f":"read","value":{v},"time":20}}"#, i + 1),
        ]
    };
    let [a, b] = read(2, "1");
    let valid = write_history("valid.jsonl", &[WRITE_1[0], WRITE_1[1], &a, &b]);
    let (code, out, _) = check(&["--model", "register", valid.path()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("VALID"), "{out}");

    let [a, b] = read(2, "7");
    let invalid = write_history("invalid.jsonl", &[WRITE_1[0], WRITE_1[1], &a, &b]);
    let (code, out, _) = check(&["--model", "register", invalid.path()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("it read 7 but the value was 1"), "{out}");

    let (code, out, _) = check(&["--model", "register", "--json", invalid.path()]);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["verdict"], "invalid");
    assert_eq!(json["results"][0]["counterexample"]["unplaced"][0]["op"], 1);

    let (code, _, err) = check(&["--model", "register", "--initial", "7", invalid.path()]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn an_exhausted_budget_exits_2() {
    // With no time at all a key that needs the search gets no verdict:
    // unknown, never valid. (Two writes of one value make the read
    // ambiguous, so no inference decides it at once.)
    let path = write_history(
        "unknown.jsonl",
        &[
            r#"{"index":0,"type":"invoke","process":1,"f":"write","value":1,"time":0}"#,
            r#"{"index":1,"type":"invoke","process":2,"f":"write","value":1,"time":1}"#,
            r#"{"index":2,"type":"ok","process":1,"f":"write","value":1,"time":2}"#,
            r#"{"index":3,"type":"ok","process":2,"f":"write","value":1,"time":3}"#,
            r#"{"index":4,"type":"invoke","process":3,"f":"read","value":null,"time":4}"#,
            r#"{"index":5,"type":"ok","process":3,"f":"read","value":1,"time":5}"#,
        ],
    );
    let (code, out, _) = check(&["--model", "register", "--timeout", "0", path.path()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("UNKNOWN"), "{out}");
}

#[test]
fn bad_input_exits_65_or_66_and_bad_usage_64() {
    let broken = write_history("broken.jsonl", &[WRITE_1[0], r#"{"index":1,"type":"ok""#]);
    let (code, _, err) = check(&["--model", "register", broken.path()]);
    assert_eq!(code, 65);
    assert!(err.contains("broken.jsonl:2: not a history event"), "{err}");

    let (code, _, err) = check(&["--model", "register", "/nonexistent/history.jsonl"]);
    assert_eq!(code, 66);
    assert!(err.contains("No such file"), "{err}");

    let (code, _, err) = check(&["--model", "queue", broken.path()]);
    assert_eq!(code, 64);
    assert!(err.contains("unknown model `queue`"), "{err}");
}

fn chaos(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_capukv-chaos")).args(args).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// `synth` writes a history `check` reads: a clean store's is valid, one
/// that serves stale reads is caught, with 50 clients and every key searched.
#[test]
fn synth_writes_histories_check_decides() {
    let clean = write_history("clean.jsonl", &[]);
    let stale = write_history("stale.jsonl", &[]);
    let log = stale.0.with_extension("txt");
    let (code, _, err) = chaos(&["synth", "--clients", "50", "--seed", "3", clean.path()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = check(&["--model", "kv", "--all-keys", clean.path()]);
    assert_eq!(code, 0, "a store that behaves gives a valid history: {out}{err}");
    let stale_args = ["synth", "--clients", "50", "--stale-read", "0.02", "--mix", "rrrwwa", "--porcupine"];
    let (code, _, err) = chaos(&[&stale_args[..], &[log.to_str().unwrap(), stale.path()]].concat());
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = check(&["--model", "kv", "--all-keys", stale.path()]);
    assert_eq!(code, 1, "stale reads are caught: {out}{err}");
    assert!(out.contains("0 unknown"), "every key decided: {out}");
    let porcupine = std::fs::read_to_string(&log).unwrap();
    assert!(porcupine.lines().all(|l| l.starts_with("{:process ")), "{porcupine}");
    assert!(porcupine.contains(":f :get") && porcupine.contains(":f :append"), "{porcupine}");

    // Writes and appends on one key from 50 clients, every value unique (as
    // the harness's workloads write them): each key decided, none unknown.
    let mixed = ["synth", "--clients", "50", "--ops", "4000", "--mix", "rrwwaad", "--unique-values"];
    let (code, _, err) = chaos(&[&mixed[..], &["--stale-read", "0.02", stale.path()]].concat());
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = check(&["--model", "kv", "--all-keys", stale.path()]);
    assert_eq!(code, 1, "stale reads among writes and appends are caught: {out}{err}");
    assert!(out.contains("0 unknown"), "every key decided: {out}");
    let (code, _, err) = chaos(&[&mixed[..], &[clean.path()]].concat());
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = check(&["--model", "kv", "--all-keys", clean.path()]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, _, err) = chaos(&["synth", "--model", "register", "--mix", "rwc", clean.path()]);
    assert_eq!(code, 64, "the register has no cas: {err}");
    assert!(err.contains("the register model has no `c`"), "{err}");
    let (code, _, err) = chaos(&["synth", "--porcupine", log.to_str().unwrap(), clean.path()]);
    assert_eq!(code, 64, "cas and delete have no Porcupine form: {err}");
}

/// `check --model txn`: a strictly serializable transaction history exits
/// 0; one from a store that splits transactions exits 1 with the anomalies
/// named and drawn in the report; a broken line exits 65 naming it.
#[test]
fn transactions_are_checked_with_their_anomalies_named() {
    let atomic = write_history("atomic.jsonl", &[]);
    let split = write_history("split.jsonl", &[]);
    let (code, _, err) = chaos(&["synth", "--txn", "--ops", "2000", "--clients", "8", "--keys", "3", atomic.path()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = check(&["--model", "txn", atomic.path()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("strict-serializable"), "{out}");

    let args = ["synth", "--txn", "--split", "--ops", "2000", "--clients", "8", "--keys", "3", split.path()];
    let (code, _, err) = chaos(&args);
    assert_eq!(code, 0, "{err}");
    let report = split.0.parent().unwrap().join("report");
    let (code, out, err) = check(&["--model", "txn", split.path(), "--report", report.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("not strict-serializable") && (out.contains(" -ww-> ") || out.contains(" -rw-> ")), "{out}");
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.contains("Transactional anomalies") && html.contains("<svg"), "the report explains them");
    let (code, out, _) = check(&["--model", "txn", "--json", split.path()]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((code, json["valid"].as_bool()), (1, Some(false)));
    assert!(json["counts"].as_object().is_some_and(|c| !c.is_empty()), "{out}");

    let broken = write_history(
        "broken.jsonl",
        &[r#"{"index":0,"type":"invoke","process":1,"f":"txn","value":[["append","x"]],"time":0}"#],
    );
    let (code, _, err) = check(&["--model", "txn", broken.path()]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("broken.jsonl:1:") && err.contains("must be [f, key, value]"), "{err}");
    let (code, _, err) = chaos(&["synth", "--split", atomic.path()]);
    assert_eq!(code, 64, "--split needs --txn: {err}");
}
