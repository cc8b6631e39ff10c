//! The run's `index.html`: the checker's report with what the harness knows
//! of the run (options, seed, faults, replay command).

use std::path::Path;

use checker::report::{self, RunInfo};
use checker::{CheckReport, History};

use crate::options::name;
use crate::rundir::RunRecord;

/// The summary fields of a run, for the report and the `serve` index.
pub fn fields(record: &RunRecord, results: &serde_json::Value) -> Vec<(String, String)> {
    let o = &record.options;
    let mut fields = vec![
        ("workload".to_string(), name(&o.workload)),
        ("nemesis".to_string(), format!("{} every {} s", name(&o.nemesis), o.nemesis_interval)),
        (
            "nodes".to_string(),
            format!("{} ({} runtime{})", o.nodes, name(&o.runtime), if o.tls { ", mutual TLS" } else { "" }),
        ),
        ("seed".to_string(), record.seed.to_string()),
        (
            "clients".to_string(),
            format!(
                "{} at {} ops/s, {} s timeout, bound to {}, {} reads",
                o.concurrency,
                o.rate,
                o.op_timeout,
                name(&o.client_binding),
                name(&o.read_mode)
            ),
        ),
        ("time limit".to_string(), format!("{} s", o.time_limit)),
        ("started".to_string(), record.started_at.clone()),
    ];
    if let Some(d) = results["duration_s"].as_f64() {
        fields.push(("duration".to_string(), format!("{d:.1} s")));
    }
    if let Some(struck) = results["nemesis"]["struck"].as_array() {
        let kinds: Vec<&str> = struck.iter().filter_map(|v| v.as_str()).collect();
        fields.push(("faults that struck".to_string(), kinds.join(", ")));
    }
    if let Some(bug) = &o.planted_bug {
        fields.insert(0, ("planted bug".to_string(), bug.clone()));
    }
    if let Some(reasons) = results["invalid_reasons"].as_array().filter(|r| !r.is_empty()) {
        let reasons: Vec<&str> = reasons.iter().filter_map(|v| v.as_str()).collect();
        fields.push(("invalid because".to_string(), reasons.join("; ")));
    }
    if let Some(lost) = results["lost_appends"].as_object().filter(|l| !l.is_empty()) {
        fields.push(("lost acknowledged appends".to_string(), serde_json::Value::Object(lost.clone()).to_string()));
    }
    let version = match &record.git_commit {
        Some(c) => format!("capukv {} ({c})", record.version),
        None => format!("capukv {}", record.version),
    };
    fields.push(("version".to_string(), version));
    fields
}

/// Writes `dir/index.html` of a checked run (the history as read for the check).
pub fn write(dir: &Path, record: &RunRecord, results: &serde_json::Value, history: &History, check: &CheckReport) {
    render(dir, record, results, history, Some(check));
}

/// Writes `dir/index.html` of a run that ended without a verdict, from the
/// partial history on disk. A report that cannot be written is logged, not
/// fatal: the history and results are what matter.
pub fn write_unchecked(dir: &Path, record: &RunRecord, results: &serde_json::Value) {
    match History::read_file(&dir.join(crate::rundir::HISTORY)) {
        Ok(history) => render(dir, record, results, &history, None),
        Err(e) => tracing::warn!(error = %e, "no report: the history cannot be read"),
    }
}

/// results.json's end-of-run checks, for the page; a log line links to its log.
fn findings(results: &serde_json::Value) -> Vec<report::Finding> {
    let Some(list) = results["checks"].as_array() else { return Vec::new() };
    list.iter()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            let details = f["details"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|l| l.as_str())
                        .map(|l| {
                            // `nN/server.log:LINE: ...` lives at nodes/nN/server.log.
                            let href = l
                                .split_once(':')
                                .filter(|(file, _)| file.ends_with(".log"))
                                .map(|(file, _)| format!("nodes/{file}"));
                            (l.to_string(), href)
                        })
                        .collect()
                })
                .unwrap_or_default();
            report::Finding { check: text("check"), outcome: text("outcome"), summary: text("summary"), details }
        })
        .collect()
}

fn render(dir: &Path, record: &RunRecord, results: &serde_json::Value, history: &History, check: Option<&CheckReport>) {
    let workload = name(&record.options.workload);
    let nemesis = name(&record.options.nemesis);
    let info = RunInfo {
        title: format!("CapuKV chaos run: {workload} under {nemesis}, {} nodes", record.options.nodes),
        fields: fields(record, results),
        replay: Some(record.replay.clone()),
        failure: results["harness_failure"].as_str().map(String::from),
        links: crate::site::run_files(dir),
        warnings: record
            .options
            .planted_bug
            .iter()
            .map(|bug| format!("PLANTED BUG: the servers ran with `{bug}` switched on. This run is wrong on purpose."))
            .collect(),
        verdict: results["verdict"].as_str().map(String::from),
        findings: findings(results),
        transactions: serde_json::from_value(results["transactions"].clone()).ok(),
    };
    if let Err(e) = report::write(dir, history, check, &info) {
        tracing::warn!(error = %e, "cannot write the report");
    }
}
