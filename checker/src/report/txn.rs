//! The transactional check in the report: each anomaly as Elle shows it,
//! the cycle drawn, and each edge with its operations and why it exists.

use std::fmt::Write;

use super::page::escape;
use crate::txn::{Model, TxnReport};

/// The "why it is invalid" section for transactions.
pub fn anomalies(r: &TxnReport) -> String {
    let mut html = String::from("<h2 id=\"anomalies\">Transactional anomalies</h2>");
    let _ = write!(html, "<p>{}</p>", escape(&r.summary()));
    for a in &r.anomalies {
        let _ = write!(
            html,
            "<div class=\"anomaly\"><h3>{}</h3><p class=\"note\">{}</p><p>{}</p>",
            escape(a.kind.name()),
            escape(a.kind.meaning()),
            escape(&a.explanation)
        );
        if !a.cycle.is_empty() {
            html.push_str("<table class=\"cycle\"><tr><th>transaction</th><th>edge to the next</th><th>why</th></tr>");
            for s in &a.cycle {
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td><b>{}</b></td><td>{}</td></tr>",
                    escape(&s.describe),
                    escape(&s.edge),
                    escape(&s.why)
                );
            }
            html.push_str("</table>");
        }
        if let Some(svg) = &a.svg {
            let _ = write!(html, "<div class=\"plot\">{svg}</div>");
        }
        html.push_str("</div>");
    }
    let shown = r.anomalies.len();
    let total: usize = r.counts.values().sum();
    if total > shown {
        let _ = write!(html, "<p class=\"note\">{} more are counted in results.json.</p>", total - shown);
    }
    html
}

/// The summary row: what was checked and the strongest model that holds.
pub fn summary_row(r: &TxnReport) -> String {
    format!(
        "{} transactions ({} ok, {} fail, {} info) on {} keys, {} dependency edges, in {:.2} s; strongest model: {}",
        r.txns.ok + r.txns.fail + r.txns.info,
        r.txns.ok,
        r.txns.fail,
        r.txns.info,
        r.keys,
        r.edges,
        r.elapsed_s,
        r.strongest.map_or("none checked", Model::name)
    )
}
