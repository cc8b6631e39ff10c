//! The one-screen text summary of a check, as `capukv-chaos check` prints it.

use std::fmt::Write;

use crate::check::{CheckReport, KeyReport, Verdict};
use crate::key::Key;

/// Invalid keys shown in full; the rest are counted (all are in the JSON).
const KEYS_SHOWN: usize = 3;
/// Steps of a linearizable prefix shown before it (the last ones matter).
const STEPS_SHOWN: usize = 8;

pub fn render(report: &CheckReport, source: &str) -> String {
    let mut out = String::new();
    let verdict = match report.verdict {
        Verdict::Valid => "VALID: every key is linearizable",
        Verdict::Invalid if report.invalid_keys > 0 => "INVALID: some key has no linearization",
        Verdict::Invalid => "INVALID: the store's revisions contradict real time or each other",
        Verdict::Unknown => "UNKNOWN: the budget ran out before a verdict (not valid)",
    };
    let _ = writeln!(out, "{verdict}");
    let _ = writeln!(out, "history:    {source}");
    let initial = report.initial.as_ref().map_or_else(|| "absent".to_string(), |v| v.to_string());
    let _ = writeln!(out, "model:      {} (initial value {initial})", report.model);
    let _ = writeln!(
        out,
        "operations: {} checked of {} events ({} removed as failed or info reads, {} unobserved info writes set aside)",
        report.operations, report.events, report.removed, report.unobserved_info_writes
    );
    let unsearched = report.unsearched_keys.len();
    let _ = writeln!(
        out,
        "keys:       {} ({} valid, {} invalid, {} unknown{})",
        report.keys,
        report.keys - report.invalid_keys - report.unknown_keys - unsearched,
        report.invalid_keys,
        report.unknown_keys,
        if unsearched > 0 {
            format!(", {unsearched} not searched: the first invalid key settled the verdict; --all-keys searches them")
        } else {
            String::new()
        }
    );
    if let Some(s) = &report.settlement {
        let _ = writeln!(
            out,
            "settlement: of {} info writes, {} took effect by the log, {} never did ({} named in the settlement)",
            s.info_writes, s.took_effect, s.never, s.matched
        );
    }
    if let Some(r) = &report.revisions {
        let broken: Vec<String> = r.counts.iter().map(|(rule, n)| format!("{n} × {}", rule.describe())).collect();
        let outcome = if broken.is_empty() { "consistent".to_string() } else { broken.join(", ") };
        let _ = writeln!(out, "revisions:  {} operations, {} changes: {outcome}", r.checked, r.changes);
    }
    let _ = writeln!(out, "time:       {:.3} s", report.elapsed_ms as f64 / 1000.0);
    if let Some(r) = &report.revisions {
        for v in r.violations.iter().take(KEYS_SHOWN) {
            let _ = writeln!(out, "\nrevisions: {}\n  {}", v.rule.describe(), v.message);
        }
    }
    for key in report.results.iter().filter(|k| k.verdict == Verdict::Invalid).take(KEYS_SHOWN) {
        render_invalid(&mut out, key);
    }
    if report.invalid_keys > KEYS_SHOWN {
        let _ = writeln!(out, "\n... and {} more invalid keys (see --json)", report.invalid_keys - KEYS_SHOWN);
    }
    for key in report.results.iter().filter(|k| k.verdict == Verdict::Unknown).take(KEYS_SHOWN) {
        let reason = key.reason.as_deref().unwrap_or("budget ran out");
        let _ = writeln!(out, "\nkey {}: unknown ({reason}), {} operations", key_name(key), key.operations);
    }
    out
}

fn key_name(key: &KeyReport) -> String {
    key.key.as_ref().map_or_else(|| "(single register)".to_string(), Key::quoted)
}

fn render_invalid(out: &mut String, key: &KeyReport) {
    let _ = writeln!(out, "\nkey {}: not linearizable ({} operations)", key_name(key), key.operations);
    if let Some(why) = &key.reason {
        let _ = writeln!(out, "  {why}");
    }
    let Some(cx) = &key.counterexample else {
        if key.reason.is_none() {
            let _ = writeln!(out, "  no counterexample kept");
        }
        return;
    };
    let _ = writeln!(out, "  longest linearizable prefix: {} operations", cx.linearized.len());
    let skip = cx.linearized.len().saturating_sub(STEPS_SHOWN);
    if skip > 0 {
        let _ = writeln!(out, "    ... {skip} earlier steps");
    }
    for (n, step) in cx.linearized.iter().enumerate().skip(skip) {
        let op = &key.ops[step.op];
        let _ = writeln!(out, "    {:>4}. {:<48} -> value {}", n + 1, op.describe(), step.state_after);
    }
    let _ = writeln!(out, "  could not be placed next:");
    for u in &cx.unplaced {
        let op = &key.ops[u.op];
        let _ = writeln!(out, "    - {} (history index {}): {}", op.describe(), op.invoke_index, u.reason);
    }
}
