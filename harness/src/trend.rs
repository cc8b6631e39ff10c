//! The trend page (`trend.html` of a published site): every suite run under
//! the reports directory as one point, per suite, so that a regression
//! shows the morning after and a flaky run shows as a pattern. Built from
//! the suites' `summary.json` files alone (their `results` carry each run's
//! outcome, throughput and checker time), so older summaries still count.

use std::collections::BTreeMap;
use std::fmt::Write;

use checker::report::page::{STYLE, escape};
use checker::report::plots::{Series, per_point};
use serde_json::Value;

use crate::suite::NOT_NEEDED;

/// The page's file name in a published site.
pub const FILE: &str = "trend.html";

/// The outcomes a night is counted by, with the colour of each.
const OUTCOMES: [(&str, &str); 5] = [
    ("valid", "#2a9d46"),
    ("invalid", "#dc3232"),
    ("unknown", "#f0aa14"),
    ("vacuous", "#9467bd"),
    ("harness-failed", "#555555"),
];

/// One suite run, as the trend shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Night {
    pub started_at: String,
    pub suite: String,
    /// The commit the harness (and so the tested CapuKV) was built from.
    pub commit: Option<String>,
    /// Runs that took place (neither skipped nor left out as not needed).
    pub ran: usize,
    pub passed: usize,
    pub outcomes: BTreeMap<String, usize>,
    /// Planted-bug runs that caught their bug, of those that ran.
    pub caught: usize,
    pub planted_runs: usize,
    /// Median over runs of successful operations per second.
    pub ops_per_s: Option<f64>,
    /// Checker time summed over runs.
    pub checker_s: Option<f64>,
    pub duration_s: f64,
}

impl Night {
    /// Reads one suite summary. Runs without a figure (older summaries) leave it out.
    pub fn of(summary: &Value) -> Night {
        let results = summary["results"].as_array().map(Vec::as_slice).unwrap_or_default();
        let ran: Vec<&Value> = results
            .iter()
            .filter(|r| !matches!(r["outcome"].as_str(), Some("skipped") | Some(NOT_NEEDED) | None))
            .collect();
        let mut outcomes = BTreeMap::new();
        for r in &ran {
            *outcomes.entry(r["outcome"].as_str().unwrap_or("?").to_string()).or_insert(0) += 1;
        }
        let planted: Vec<&&Value> = ran.iter().filter(|r| r["planted_bug"].is_string()).collect();
        let mut ops: Vec<f64> = ran.iter().filter_map(|r| r["ops_per_s"].as_f64()).collect();
        ops.sort_by(f64::total_cmp);
        let checker: Vec<f64> = ran.iter().filter_map(|r| r["checker_s"].as_f64()).collect();
        Night {
            started_at: summary["started_at"].as_str().unwrap_or("?").to_string(),
            suite: summary["suite"].as_str().unwrap_or("?").to_string(),
            commit: summary["git_commit"].as_str().filter(|c| !c.is_empty()).map(String::from),
            ran: ran.len(),
            passed: ran.iter().filter(|r| r["passed"].as_bool() == Some(true)).count(),
            outcomes,
            caught: planted.iter().filter(|r| r["outcome"] == "invalid").count(),
            planted_runs: planted.len(),
            ops_per_s: (!ops.is_empty()).then(|| ops[ops.len() / 2]),
            checker_s: (!checker.is_empty()).then(|| checker.iter().sum()),
            duration_s: summary["duration_s"].as_f64().unwrap_or(0.0),
        }
    }

    /// Caught share of the planted-bug runs, in percent.
    pub fn detection_percent(&self) -> Option<f64> {
        (self.planted_runs > 0).then(|| 100.0 * self.caught as f64 / self.planted_runs as f64)
    }

    fn count(&self, outcome: &str) -> usize {
        self.outcomes.get(outcome).copied().unwrap_or(0)
    }
}

/// `20261201T023000Z` as `12-01 02:30` (the axis has little room).
fn short_time(stamp: &str) -> String {
    match (stamp.get(4..6), stamp.get(6..8), stamp.get(9..11), stamp.get(11..13)) {
        (Some(mo), Some(d), Some(h), Some(mi)) => format!("{mo}-{d} {h}:{mi}"),
        _ => stamp.to_string(),
    }
}

/// The page: per suite, plots of outcomes, detection rate, throughput and
/// checker time over its runs, then a table of them, newest first.
/// `summaries` oldest first, as [`crate::site::suite_summaries`] gives them.
pub fn page(summaries: &[Value]) -> String {
    let nights: Vec<Night> = summaries.iter().map(Night::of).collect();
    let mut by_suite: BTreeMap<&str, Vec<&Night>> = BTreeMap::new();
    for night in &nights {
        by_suite.entry(night.suite.as_str()).or_default().push(night);
    }
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>CapuKV: suites over time</title>\
         <style>{STYLE} table.runs {{ border-collapse: collapse; font-size: 14px; }} table.runs td, table.runs th \
         {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}</style></head><body>\
         <h1>Suites over time</h1><p><a href=\"index.html\">all runs</a></p>"
    );
    if nights.is_empty() {
        html.push_str("<p>No suite has run yet: <code>capukv-chaos suite FILE</code> writes a summary here.</p>");
    }
    for (suite, nights) in &by_suite {
        let labels: Vec<String> = nights.iter().map(|n| short_time(&n.started_at)).collect();
        let _ = write!(html, "<h2 id=\"suite-{0}\">{0}</h2>", escape(suite));
        let outcome_series: Vec<Series<'_>> = OUTCOMES
            .iter()
            .filter(|(o, _)| nights.iter().any(|n| n.count(o) > 0))
            .map(|&(o, colour)| Series {
                name: o,
                colour,
                values: nights.iter().map(|n| Some(n.count(o) as f64)).collect(),
            })
            .collect();
        html.push_str(&per_point("Runs by outcome", "runs", &labels, &outcome_series));
        if nights.iter().any(|n| n.planted_runs > 0) {
            let values = nights.iter().map(|n| n.detection_percent()).collect();
            let series = [Series { name: "planted-bug runs caught", colour: "#dc3232", values }];
            html.push_str(&per_point("Detection rate of the planted bugs", "% caught", &labels, &series));
        }
        if nights.iter().any(|n| n.ops_per_s.is_some()) {
            let values = nights.iter().map(|n| n.ops_per_s).collect();
            let series = [Series { name: "median ok ops/s of a run", colour: "#326ec8", values }];
            html.push_str(&per_point("Throughput", "ok operations / s", &labels, &series));
        }
        if nights.iter().any(|n| n.checker_s.is_some()) {
            let values = nights.iter().map(|n| n.checker_s).collect();
            let series = [Series { name: "checker time, all runs", colour: "#9467bd", values }];
            html.push_str(&per_point("Checker time", "seconds", &labels, &series));
        }
        html.push_str(
            "<table class=\"runs suite-trend\"><tr><th>started</th><th>runs</th><th>passed</th><th>valid</th><th>invalid</th>\
             <th>unknown</th><th>vacuous</th><th>harness-failed</th><th>planted bugs caught</th><th>median ok ops/s</th>\
             <th>checker s</th><th>seconds</th><th>commit</th></tr>",
        );
        for n in nights.iter().rev() {
            let power = match n.detection_percent() {
                Some(p) => format!("{}/{} ({p:.0} %)", n.caught, n.planted_runs),
                None => "-".into(),
            };
            let figure = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
            let commit = n.commit.as_deref().map_or("-".to_string(), |c| c.chars().take(12).collect());
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{power}</td><td>{}</td><td>{}</td><td>{:.0}</td><td><code>{}</code></td></tr>",
                escape(&n.started_at),
                n.ran,
                n.passed,
                n.count("valid"),
                n.count("invalid"),
                n.count("unknown"),
                n.count("vacuous"),
                n.count("harness-failed"),
                figure(n.ops_per_s),
                figure(n.checker_s),
                n.duration_s,
                escape(&commit)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary(started: &str, suite: &str, results: Value) -> Value {
        json!({"suite": suite, "started_at": started, "duration_s": 120.0, "git_commit": "0123456789abcdef",
            "results": results})
    }

    #[test]
    fn a_night_counts_outcomes_detection_and_figures_of_the_runs_that_ran() {
        let s = summary(
            "20261201T023000Z",
            "power",
            json!([
                {"outcome": "invalid", "passed": true, "planted_bug": "no-fsync", "ops_per_s": 300.0, "checker_s": 1.5},
                {"outcome": "valid", "passed": false, "planted_bug": "no-fsync", "ops_per_s": 100.0, "checker_s": 0.5},
                {"outcome": NOT_NEEDED, "passed": true, "planted_bug": "no-fsync"},
                {"outcome": "skipped", "passed": false},
                {"outcome": "valid", "passed": true, "ops_per_s": 200.0},
                {"outcome": "harness-failed", "passed": false}
            ]),
        );
        let n = Night::of(&s);
        assert_eq!((n.ran, n.passed, n.caught, n.planted_runs), (4, 2, 1, 2));
        assert_eq!((n.count("valid"), n.count("invalid"), n.count("harness-failed")), (2, 1, 1));
        assert_eq!(n.detection_percent(), Some(50.0));
        assert_eq!(n.ops_per_s, Some(200.0), "the median of 100, 200, 300");
        assert_eq!(n.checker_s, Some(2.0));
        assert_eq!(n.commit.as_deref(), Some("0123456789abcdef"));
    }

    #[test]
    fn an_old_summary_without_figures_leaves_them_out() {
        let n = Night::of(
            &json!({"suite": "nightly", "started_at": "x", "results": [{"outcome": "valid", "passed": true}]}),
        );
        assert_eq!(
            (n.ran, n.ops_per_s, n.checker_s, n.commit.clone(), n.detection_percent()),
            (1, None, None, None, None)
        );
    }

    #[test]
    fn the_page_plots_each_suite_over_its_runs_and_tables_them_newest_first() {
        let run =
            |outcome: &str, ops: f64| json!({"outcome": outcome, "passed": true, "ops_per_s": ops, "checker_s": 1.0});
        let planted =
            |outcome: &str| json!({"outcome": outcome, "passed": outcome == "invalid", "planted_bug": "commit-alone"});
        let summaries = [
            summary("20261201T020000Z", "nightly", json!([run("valid", 250.0), run("valid", 260.0)])),
            summary("20261201T030000Z", "power", json!([planted("invalid"), planted("valid")])),
            summary("20261202T020000Z", "nightly", json!([run("valid", 240.0), run("unknown", 230.0)])),
        ];
        let html = page(&summaries);
        assert!(html.contains("<h2 id=\"suite-nightly\">") && html.contains("<h2 id=\"suite-power\">"));
        assert!(html.contains("Runs by outcome") && html.contains("Throughput") && html.contains("Checker time"));
        assert_eq!(html.matches("Detection rate of the planted bugs").count(), 1, "only the suite with planted bugs");
        assert!(html.contains("1/2 (50 %)"), "{html}");
        let newer = html.find("20261202T020000Z").expect("the newer night is listed");
        let older = html.find("<td>20261201T020000Z").expect("the older night is listed");
        assert!(newer < older, "newest first");
        assert!(html.contains("12-02 02:00"), "x labels are short times");
        assert_eq!(
            html.matches("<svg").count(),
            5,
            "outcomes, throughput, checker time of nightly; outcomes, detection of power"
        );
        assert!(page(&[]).contains("No suite has run yet"));
    }
}
