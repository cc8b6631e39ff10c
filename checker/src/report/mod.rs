//! The run report: one self-contained `index.html` (no external scripts,
//! fonts or styles) with the verdict and what the run was, a view of every
//! invalid key in the style of Porcupine's, SVG plots of latency and
//! throughput with the faults shaded, and a timeline of every operation.
//!
//! It knows histories and check reports, nothing of what produced them: the
//! caller passes the run's description as labelled fields.

mod linearization;
pub mod page;
pub mod plots;
pub mod spans;
mod timeline;
mod txn;

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::check::{CheckReport, Verdict};
use crate::history::History;
use page::escape;
use spans::Outcome;

/// What the caller knows of the run.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub title: String,
    /// Labelled facts shown in the summary, in order (workload, nemesis, seed...).
    pub fields: Vec<(String, String)>,
    /// The command that reproduces the run.
    pub replay: Option<String>,
    /// Why there is no verdict, when the run did not finish.
    pub failure: Option<String>,
    /// Raw files beside the report: (label, relative link).
    pub links: Vec<(String, String)>,
    /// Shown in red above everything else (a run wrong on purpose says so).
    pub warnings: Vec<String>,
    /// The run's verdict when more than this checker decided it (`valid`,
    /// `invalid`, `unknown`, `vacuous`); otherwise the checker's.
    pub verdict: Option<String>,
    /// Checks made besides this one, in order.
    pub findings: Vec<Finding>,
    /// The transactional check, for a history of transactions.
    pub transactions: Option<crate::txn::TxnReport>,
}

/// The outcome of a check the caller made besides the linearizability search.
#[derive(Clone, Debug, Default)]
pub struct Finding {
    pub check: String,
    /// `passed`, `failed`, `vacuous` or `skipped`.
    pub outcome: String,
    pub summary: String,
    /// Evidence, one line each; a line may link to a file: (text, href).
    pub details: Vec<(String, Option<String>)>,
}

pub const FILE: &str = "index.html";

/// The report as one HTML page.
pub fn render(history: &History, check: Option<&CheckReport>, info: &RunInfo) -> String {
    let spans = spans::from_history(history);
    let verdict = check
        .map(|c| c.verdict)
        .or_else(|| info.transactions.as_ref().map(|t| if t.valid { Verdict::Valid } else { Verdict::Invalid }));
    let (class, word) = match (info.verdict.as_deref(), verdict) {
        (Some("vacuous"), _) => ("vacuous", "VACUOUS"),
        (Some("invalid"), _) | (None, Some(Verdict::Invalid)) => ("invalid", "INVALID"),
        (Some("valid"), _) | (None, Some(Verdict::Valid)) => ("valid", "VALID"),
        (Some("unknown"), _) | (None, Some(Verdict::Unknown)) => ("unknown", "UNKNOWN"),
        _ => ("none", "NO VERDICT"),
    };
    let mut html = String::with_capacity(1 << 20);
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — {word}</title><style>{}</style>\
         <script>window.addEventListener('error', e => {{ document.documentElement.dataset.scriptErrors = \
         (document.documentElement.dataset.scriptErrors || '') + e.message + '; '; }});</script></head><body>",
        escape(&info.title),
        page::STYLE
    );
    for warning in &info.warnings {
        let _ = write!(html, "<p class=\"warning\">{}</p>", escape(warning));
    }
    let _ = write!(
        html,
        "<h1>{}</h1><p><span id=\"verdict\" class=\"verdict {class}\">{word}</span></p>",
        escape(&info.title)
    );
    let failed: Vec<&Finding> = info.findings.iter().filter(|f| f.outcome != "passed").collect();
    if !failed.is_empty() || !info.findings.is_empty() {
        html.push_str("<h2 id=\"checks\">End-of-run checks</h2><table class=\"findings\">");
        for f in &info.findings {
            let _ = write!(
                html,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}",
                escape(&f.check),
                escape(&f.outcome),
                escape(&f.outcome),
                escape(&f.summary)
            );
            for (text, href) in f.details.iter().take(50) {
                match href {
                    Some(href) => {
                        let _ = write!(html, "<pre><a href=\"{}\">{}</a></pre>", escape(href), escape(text));
                    }
                    None => {
                        let _ = write!(html, "<pre>{}</pre>", escape(text));
                    }
                }
            }
            html.push_str("</td></tr>");
        }
        html.push_str("</table>");
    }
    if let Some(failure) = &info.failure {
        let _ = write!(html, "<p><b>The run did not finish:</b> {}</p>", escape(failure));
    }

    // Invalid keys come first: they are why someone opens the report.
    if let Some(t) = info.transactions.as_ref().filter(|t| !t.valid) {
        html.push_str(&txn::anomalies(t));
    }
    if let Some(check) = check {
        let invalid: Vec<_> = check.results.iter().filter(|k| k.verdict == Verdict::Invalid).collect();
        if !invalid.is_empty() {
            let _ = write!(html, "<h2 id=\"invalid\">Why it is invalid</h2>");
            for key in invalid.iter().take(5) {
                html.push_str(&linearization::render(key));
            }
            if invalid.len() > 5 {
                let _ =
                    write!(html, "<p class=\"note\">{} more invalid keys are in results.json.</p>", invalid.len() - 5);
            }
        }
        if let Some(r) = check.revisions.as_ref().filter(|r| !r.is_valid()) {
            html.push_str(&revision_violations(r));
        }
    }

    html.push_str("<h2>Summary</h2><table class=\"summary\">");
    let row = |html: &mut String, k: &str, v: &str| {
        let _ = write!(html, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(v));
    };
    for (k, v) in &info.fields {
        row(&mut html, k, v);
    }
    let count = |o: Outcome| spans.ops.iter().filter(|s| s.outcome == o).count();
    row(
        &mut html,
        "operations",
        &format!(
            "{} in all: {} ok, {} fail, {} info",
            spans.ops.len(),
            count(Outcome::Ok),
            count(Outcome::Fail),
            count(Outcome::Info)
        ),
    );
    row(&mut html, "history span", &format!("{:.1} s", spans.end as f64 / 1e9));
    let mut kinds: Vec<&str> = spans.faults.iter().map(|w| w.kind.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    row(&mut html, "faults", &format!("{} ({})", spans.faults.len(), kinds.join(", ")));
    if let Some(t) = &info.transactions {
        row(&mut html, "transactions", &txn::summary_row(t));
    }
    if let Some(check) = check {
        row(
            &mut html,
            "checker",
            &format!(
                "model {}: {} operations on {} keys ({} invalid, {} unknown) in {:.2} s",
                check.model,
                check.operations,
                check.keys,
                check.invalid_keys,
                check.unknown_keys,
                check.elapsed_ms as f64 / 1000.0
            ),
        );
        if let Some(s) = &check.settlement {
            let note = format!(
                "{} info writes: {} took effect by the store's log (made ok), {} never did (removed), the rest stay info",
                s.info_writes, s.took_effect, s.never
            );
            row(&mut html, "settled from the log", &note);
        }
        if let Some(r) = &check.revisions {
            let broken: Vec<String> = r.counts.iter().map(|(rule, n)| format!("{n} × {}", rule.describe())).collect();
            let outcome = if broken.is_empty() { "consistent".to_string() } else { broken.join(", ") };
            row(&mut html, "revisions", &format!("{} operations, {} changes: {outcome}", r.checked, r.changes));
        }
        if !check.unsearched_keys.is_empty() {
            let note = format!(
                "{} keys: the first invalid key settled the verdict (check --all-keys searches every key)",
                check.unsearched_keys.len()
            );
            row(&mut html, "not searched", &note);
        }
        for key in check.results.iter().filter(|k| k.verdict == Verdict::Unknown).take(3) {
            row(
                &mut html,
                "unknown key",
                &format!(
                    "{}: {}",
                    key.key.as_ref().map_or("-".into(), |k| k.quoted()),
                    key.reason.as_deref().unwrap_or("")
                ),
            );
        }
    }
    html.push_str("</table>");
    if let Some(replay) = &info.replay {
        let _ = write!(html, "<p>Replay it:</p><pre class=\"replay\" id=\"replay\">{}</pre>", escape(replay));
    }

    if !info.links.is_empty() {
        html.push_str("<p>Files: ");
        let links: Vec<String> = info
            .links
            .iter()
            .map(|(label, href)| format!("<a href=\"{}\">{}</a>", escape(href), escape(label)))
            .collect();
        html.push_str(&links.join(" · "));
        html.push_str("</p>");
    }

    html.push_str("<h2>Latency and throughput</h2><p class=\"note\">Shaded: faults in force, by kind.</p>");
    for (id, svg) in [
        ("plot-latency", plots::latency(&spans)),
        ("plot-throughput", plots::throughput(&spans)),
        ("plot-quantiles", plots::quantiles(&spans)),
    ] {
        let _ = write!(html, "<div class=\"plot\" id=\"{id}\">{svg}</div>");
    }

    let _ = write!(
        html,
        "<h2>Timeline</h2><p class=\"note\">One lane per process; green ok, red fail, amber info (open to the end). \
         Wheel: zoom; drag: pan; hover: the operation. Lanes: <input id=\"timeline-lanes\" type=\"range\" min=\"0\" value=\"0\"> \
         <button id=\"timeline-reset\">whole run</button></p><canvas id=\"timeline\"></canvas><div id=\"timeline-tip\"></div>\
         <script type=\"application/json\" id=\"timeline-data\">{}</script><script>{}</script>",
        timeline::data(&spans),
        timeline::SCRIPT
    );
    html.push_str("</body></html>\n");
    html
}

/// Writes `dir/index.html`.
pub fn write(dir: &Path, history: &History, check: Option<&CheckReport>, info: &RunInfo) -> std::io::Result<PathBuf> {
    let path = dir.join(FILE);
    std::fs::write(&path, render(history, check, info))?;
    Ok(path)
}

/// The revision check's violations: each rule's message and the operations
/// it involves, with their history indexes.
fn revision_violations(r: &crate::revisions::RevisionReport) -> String {
    let mut html = String::from("<h2 id=\"revisions\">What the revisions contradict</h2>");
    for v in &r.violations {
        let _ = write!(html, "<p><b>{}</b>: {}</p><ul>", escape(v.rule.describe()), escape(&v.message));
        for op in &v.ops {
            let at = op.complete_index.map_or_else(String::new, |c| format!(" … {c}"));
            let key = op.key.as_ref().map_or_else(String::new, |k| format!("key {} ", k.quoted()));
            let _ = write!(html, "<li>{key}history {}{at}: {}</li>", op.invoke_index, escape(&op.what));
        }
        html.push_str("</ul>");
    }
    let listed = r.violations.len();
    let total: usize = r.counts.values().sum();
    if total > listed {
        let _ = write!(html, "<p class=\"note\">{} more are counted in results.json.</p>", total - listed);
    }
    html
}
