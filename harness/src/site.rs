//! The index of runs, as `capukv-chaos serve` shows it: newest first, with
//! each run's verdict and a link to its report. Links are relative, so the
//! same page works served, opened from disk or published.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use checker::report::page::{STYLE, escape};

use crate::options::name;
use crate::rundir::{RESULTS_JSON, RUN_JSON, RunRecord};

/// One run directory, as the index lists it.
#[derive(Clone, Debug)]
pub struct RunEntry {
    /// The directory's name (the link target).
    pub name: String,
    pub started_at: String,
    pub workload: String,
    pub nemesis: String,
    pub nodes: usize,
    /// `valid`, `invalid`, `unknown`, or `none` (no verdict).
    pub verdict: String,
    pub ok: u64,
    pub operations: u64,
    pub duration_s: f64,
    pub has_report: bool,
    /// The CapuKV version and commit the run tested.
    pub version: String,
}

/// The run directories directly under `dir` (those holding run.json), newest first.
pub fn scan(dir: &Path) -> std::io::Result<Vec<RunEntry>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        // `latest` is a link to a run already listed.
        if entry.file_name() == "latest" || !path.join(RUN_JSON).is_file() {
            continue;
        }
        let Ok(record) = RunRecord::read(&path) else { continue };
        let results: serde_json::Value = std::fs::read_to_string(path.join(RESULTS_JSON))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let ops = &results["operations"];
        entries.push(RunEntry {
            name: entry.file_name().to_string_lossy().into_owned(),
            started_at: record.started_at.clone(),
            workload: name(&record.options.workload),
            nemesis: name(&record.options.nemesis),
            nodes: record.options.nodes,
            verdict: results["verdict"].as_str().unwrap_or("none").to_string(),
            ok: ops["ok"].as_u64().unwrap_or(0),
            operations: ops["invoked"].as_u64().unwrap_or(0),
            duration_s: results["duration_s"].as_f64().unwrap_or(0.0),
            has_report: path.join(checker::report::FILE).is_file(),
            version: format!("{} ({})", record.version, record.git_commit.as_deref().unwrap_or("commit unknown")),
        });
    }
    entries.sort_by(|a, b| (&b.started_at, &b.name).cmp(&(&a.started_at, &a.name)));
    Ok(entries)
}

/// The index page. `summary` is extra HTML shown above the table.
pub fn index_html(title: &str, summary: &str, runs: &[RunEntry]) -> String {
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title><style>{STYLE}\
         table.runs {{ border-collapse: collapse; font-size: 14px; }} table.runs td, table.runs th {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}\
         table.runs .verdict {{ font-size: 12px; padding: 2px 8px; }}</style></head><body><h1>{0}</h1>{summary}",
        escape(title)
    );
    if runs.is_empty() {
        html.push_str("<p>No runs yet: <code>capukv-chaos run</code> writes them here.</p>");
    }
    html.push_str(
        "<table class=\"runs\" id=\"runs\"><tr><th>started</th><th>workload</th><th>nemesis</th><th>nodes</th>\
         <th>verdict</th><th>operations (ok)</th><th>duration</th><th>run</th></tr>",
    );
    for run in runs {
        // A file, never a bare directory: the page must work opened from disk.
        let target =
            if run.has_report { format!("{}/index.html", run.name) } else { format!("{}/{RUN_JSON}", run.name) };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><span class=\"verdict {}\">{}</span></td>\
             <td>{} ({})</td><td>{:.0} s</td><td><a href=\"{}\">{}</a></td></tr>",
            escape(&run.started_at),
            escape(&run.workload),
            escape(&run.nemesis),
            run.nodes,
            escape(&run.verdict),
            escape(&run.verdict.to_uppercase()),
            run.operations,
            run.ok,
            run.duration_s,
            escape(&target),
            escape(&run.name)
        );
    }
    html.push_str("</table></body></html>\n");
    html
}

/// Links to a run's raw files, relative to the run directory.
pub fn run_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = [crate::rundir::HISTORY, RUN_JSON, RESULTS_JSON]
        .iter()
        .filter(|f| dir.join(f).is_file())
        .map(|f| (f.to_string(), f.to_string()))
        .collect();
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir.join("nodes"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path().join("server.log")).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    logs.sort();
    for log in logs {
        if let Ok(rel) = log.strip_prefix(dir) {
            let rel = rel.to_string_lossy().into_owned();
            files.push((rel.clone(), rel));
        }
    }
    files
}

/// What [`publish`] wrote.
#[derive(Debug, Default)]
pub struct Published {
    pub runs: usize,
    pub files: usize,
}

fn copy_run(from: &Path, to: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut files = vec![checker::report::FILE.to_string()];
    files.extend(run_files(from).into_iter().map(|(_, rel)| rel));
    let mut copied = 0;
    for rel in files {
        let source = from.join(&rel);
        if source.is_file() {
            let target = to.join(&rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&source, &target)?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// A static site of the runs in `dir`: `out/index.html` (a summary, then the
/// index) and every run's report and raw files, all linked relatively.
pub fn publish(dir: &Path, out: &Path) -> std::io::Result<Published> {
    let runs = scan(dir)?;
    std::fs::create_dir_all(out)?;
    let mut published = Published::default();
    let mut versions = std::collections::BTreeSet::new();
    let mut kinds: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for run in &runs {
        published.files += copy_run(&dir.join(&run.name), &out.join(&run.name))?;
        published.runs += 1;
        versions.insert(run.version.as_str());
        *kinds.entry(format!("{} under {}", run.workload, run.nemesis)).or_default() += 1;
    }
    let valid = runs.iter().filter(|r| r.verdict == "valid").count();
    let invalid = runs.iter().filter(|r| r.verdict == "invalid").count();
    let kinds_html: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} × {}", escape(k))).collect();
    let versions_html: Vec<String> = versions.iter().map(|v| escape(v)).collect();
    let summary = format!(
        "<table class=\"summary\" id=\"site-summary\"><tr><td>runs</td><td>{}: {valid} valid, {invalid} invalid, {} other</td></tr>\
         <tr><td>kinds</td><td>{}</td></tr><tr><td>CapuKV tested</td><td>{}</td></tr></table>\
         <p class=\"note\">Each run's page shows its verdict, why if invalid, plots, a timeline, and the command that replays it.</p>",
        runs.len(),
        runs.len() - valid - invalid,
        kinds_html.join(", "),
        versions_html.join(", ")
    );
    let summaries = suite_summaries(&dir.join("suites"));
    let summary = summary + &power_html(&summaries);
    std::fs::write(out.join("index.html"), index_html("CapuKV correctness reports", &summary, &runs))?;
    std::fs::write(out.join(crate::trend::FILE), crate::trend::page(&summaries))?;
    published.files += 2;
    Ok(published)
}

/// Every suite summary under `dir` (`REPORTS/suites/*/summary.json`), oldest first.
pub fn suite_summaries(dir: &Path) -> Vec<serde_json::Value> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<serde_json::Value> = entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("summary.json")).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect();
    found.sort_by(|a, b| a["started_at"].as_str().cmp(&b["started_at"].as_str()));
    found
}

/// What a green night is worth: the newest detection matrix (planted bug ×
/// nemesis, with the simulation's figures), then one row per suite run.
fn power_html(summaries: &[serde_json::Value]) -> String {
    let mut html = String::new();
    if let Some(latest) =
        summaries.iter().rev().find(|s| s["detection_matrix"].as_array().is_some_and(|m| !m.is_empty()))
    {
        let _ = write!(
            html,
            "<h2 id=\"test-power\">Test power</h2><p class=\"note\">Suite {} of {}: each bug of the catalogue planted on purpose \
             (capukv/src/planted.rs), under the nemeses meant for it. A bug caught in few runs is a fault the harness cannot yet \
             provoke.</p><table class=\"runs\" id=\"detection-matrix\"><tr><th>planted bug</th><th>nemesis</th><th>caught</th>\
             <th>median s to detect</th><th>worst s</th><th>workload</th><th>simulation</th></tr>",
            escape(latest["suite"].as_str().unwrap_or("?")),
            escape(latest["started_at"].as_str().unwrap_or("?"))
        );
        let secs = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |s| format!("{s:.1}"));
        for cell in latest["detection_matrix"].as_array().into_iter().flatten() {
            let bug = cell["bug"].as_str().unwrap_or("?");
            let sim = &latest["simulation"][bug];
            let sim = if sim["seeds"].is_u64() { crate::suite::simulation_cell(sim) } else { "-".into() };
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(bug),
                escape(cell["nemesis"].as_str().unwrap_or("?")),
                cell["caught"],
                cell["runs"],
                secs(&cell["median_detect_s"]),
                secs(&cell["worst_detect_s"]),
                // Summaries before the matrix had a workload column say none.
                escape(cell["workload"].as_str().unwrap_or("-")),
                escape(&sim)
            );
        }
        html.push_str("</table>");
    }
    if !summaries.is_empty() {
        let _ = write!(
            html,
            "<h2 id=\"trend\">Suites over time</h2><p><a href=\"{}\">{} suite runs</a>: outcomes, detection rate, \
             throughput and checker time, per suite, plotted and tabled.</p>",
            crate::trend::FILE,
            summaries.len()
        );
    }
    html
}

#[cfg(test)]
mod power_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_front_page_shows_the_newest_detection_matrix_and_every_suite() {
        let old = json!({"suite": "power", "started_at": "20261130T000000Z", "runs": 2, "passed": 1, "skipped": 0,
            "duration_s": 90.0, "detection_matrix": [{"bug": "no-fsync", "nemesis": "kill", "runs": 2, "caught": 0}]});
        let new = json!({"suite": "power", "started_at": "20261201T000000Z", "runs": 3, "passed": 3, "skipped": 0,
            "duration_s": 99.0,
            "detection_matrix": [{"bug": "no-fsync", "nemesis": "power", "runs": 3, "caught": 3, "median_detect_s": 4.5,
                "workload": "append"}],
            "simulation": {"no-fsync": {"seeds": 20, "broken": 19, "ticks": 100000, "faults": "all"}}});
        let html = power_html(&[old, new]);
        assert!(html.contains("<td>append</td><td>19/20 seeds of 100000 ticks, all faults</td>"), "{html}");
        assert!(html.contains("<td>no-fsync</td><td>power</td><td>3/3</td><td>4.5</td>"), "{html}");
        assert!(!html.contains("<td>kill</td>"), "only the newest matrix: {html}");
        assert!(html.contains("<a href=\"trend.html\">2 suite runs</a>"), "{html}");
        assert!(power_html(&[]).is_empty());
    }
}
