//! The HTML report: self-contained, invalid keys first, plots and timeline present.

use checker::report::{self, RunInfo};
use checker::synth::{Synth, generate};
use checker::{Budget, History, ModelKind, Verdict, check_history};

fn history(operations: usize) -> History {
    let mut cfg = Synth::new(5, ModelKind::CasRegister);
    (cfg.operations, cfg.keys, cfg.concurrency, cfg.values) = (operations, 3, 6, 5);
    generate(&cfg)
}

/// Makes the history invalid: its first successful read returns a value nobody wrote.
fn corrupt(h: &mut History) {
    let read = h.events.iter_mut().find(|e| e.f == "read" && e.kind == checker::EventType::Ok).unwrap();
    read.value = serde_json::json!(12345);
}

fn info() -> RunInfo {
    RunInfo {
        title: "test run".into(),
        fields: vec![("seed".into(), "7".into())],
        replay: Some("capukv-chaos replay x".into()),
        failure: None,
        links: vec![("history.jsonl".into(), "history.jsonl".into())],
        ..RunInfo::default()
    }
}

#[test]
fn an_invalid_report_opens_with_why_and_carries_plots_and_timeline() {
    let mut h = history(2_000);
    corrupt(&mut h);
    let check = check_history(&h, ModelKind::CasRegister, None, &Budget::default()).unwrap();
    assert_eq!(check.verdict, Verdict::Invalid);
    let html = report::render(&h, Some(&check), &info());
    let why = html.find("Why it is invalid").expect("an invalid key section");
    assert!(why < html.find("<h2>Summary").unwrap(), "the invalid key comes first");
    assert!(html.contains("class=\"verdict invalid\""));
    assert!(html.contains("class=\"unplaced\""), "the operation that could not be placed is highlighted");
    assert!(html.contains("12345"));
    assert_eq!(html.matches("<svg").count(), 4, "three plots and the key's lane diagram");
    assert!(html.contains("capukv-chaos replay x") && html.contains("href=\"history.jsonl\""));
    // Self-contained: nothing fetched from elsewhere.
    for external in ["src=\"http", "href=\"http", "@import", "<link"] {
        assert!(!html.contains(external), "external resource: {external}");
    }
    let start = html.find("id=\"timeline-data\">").unwrap() + "id=\"timeline-data\">".len();
    let end = start + html[start..].find("</script>").unwrap();
    let data: serde_json::Value = serde_json::from_str(&html[start..end].replace("<\\/", "</")).unwrap();
    assert_eq!(
        data["ops"].as_array().unwrap().len(),
        h.events.iter().filter(|e| e.kind == checker::EventType::Invoke).count()
    );
}

#[test]
fn a_valid_report_has_no_invalid_section_and_a_run_without_verdict_says_why() {
    let h = history(500);
    let check = check_history(&h, ModelKind::CasRegister, None, &Budget::default()).unwrap();
    let html = report::render(&h, Some(&check), &info());
    assert!(html.contains("class=\"verdict valid\"") && !html.contains("Why it is invalid"));
    let failed = RunInfo { failure: Some("interrupted (Ctrl-C)".into()), ..info() };
    let html = report::render(&h, None, &failed);
    assert!(html.contains("NO VERDICT") && html.contains("interrupted (Ctrl-C)"));
}
