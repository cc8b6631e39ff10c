//! `capukv bench-table`: the side-by-side table of `capukv bench --json`
//! results for CapuKV and etcd, one row per operation and concurrency, with
//! CapuKV/etcd ratios. Where a combination ran several times, the run of
//! median throughput stands for it (on a shared or virtual machine single
//! runs vary by tens of percent; the steal column shows how much).

use std::fmt::Write as _;

use super::BenchReport;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("line {line}: not a `capukv bench --json` result: {reason}")]
    BadLine { line: usize, reason: String },
    #[error("no results to tabulate")]
    Empty,
}

/// Parses JSON lines of [`BenchReport`]s (blank lines allowed).
pub fn parse(text: &str) -> Result<Vec<BenchReport>, TableError> {
    let mut reports = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let report =
            serde_json::from_str(line).map_err(|e| TableError::BadLine { line: i + 1, reason: e.to_string() })?;
        reports.push(report);
    }
    if reports.is_empty() {
        return Err(TableError::Empty);
    }
    Ok(reports)
}

/// A Markdown table: rows in the order (op, clients) first appear; a cell
/// without its counterpart shows a dash.
pub fn comparison_table(text: &str) -> Result<String, TableError> {
    let reports = parse(text)?;
    let mut rows: Vec<(&str, usize)> = Vec::new();
    for r in &reports {
        if !rows.contains(&(r.op.as_str(), r.clients)) {
            rows.push((r.op.as_str(), r.clients));
        }
    }
    let find = |target: &str, op: &str, clients: usize| {
        let mut runs: Vec<&BenchReport> =
            reports.iter().filter(|r| r.target == target && r.op == op && r.clients == clients).collect();
        runs.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
        runs.get(runs.len().saturating_sub(1) / 2).copied()
    };
    let mut out = String::from(
        "| op | clients | etcd ops/s | etcd p50 ms | etcd p99 ms | CapuKV ops/s | CapuKV p50 ms | CapuKV p99 ms \
         | ops/s CapuKV/etcd | p50 CapuKV/etcd | p99 CapuKV/etcd | CapuKV fsyncs/write: leader, all nodes \
         | etcd WAL fsyncs/write (leader) | steal %: etcd, CapuKV |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (op, clients) in rows {
        let (etcd, capukv) = (find("etcd", op, clients), find("capukv", op, clients));
        let cell = |r: Option<&BenchReport>, f: fn(&BenchReport) -> f64, digits: usize| {
            r.map_or("–".to_string(), |r| format!("{:.*}", digits, f(r)))
        };
        let ratio = |f: fn(&BenchReport) -> f64| match (capukv, etcd) {
            (Some(c), Some(e)) if f(e) > 0.0 => format!("{:.2}", f(c) / f(e)),
            _ => "–".to_string(),
        };
        let syncs = |r: Option<&BenchReport>, f: fn(&BenchReport) -> String| match r {
            Some(r) if r.writes > 0 && r.leader_syncs > 0 => f(r),
            _ => "–".to_string(),
        };
        let _ = writeln!(
            out,
            "| {op} | {clients} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}, {} |",
            cell(etcd, |r| r.throughput, 0),
            cell(etcd, |r| r.p50_ms, 2),
            cell(etcd, |r| r.p99_ms, 2),
            cell(capukv, |r| r.throughput, 0),
            cell(capukv, |r| r.p50_ms, 2),
            cell(capukv, |r| r.p99_ms, 2),
            ratio(|r| r.throughput),
            ratio(|r| r.p50_ms),
            ratio(|r| r.p99_ms),
            syncs(capukv, |r| format!("{:.3}, {:.3}", r.leader_syncs_per_write(), r.cluster_syncs_per_write())),
            syncs(etcd, |r| format!("{:.3}", r.leader_syncs_per_write())),
            cell(etcd, |r| r.steal_pct, 0),
            cell(capukv, |r| r.steal_pct, 0),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(target: &str, op: &str, clients: usize, throughput: f64, p99: f64, writes: u64, syncs: u64) -> String {
        serde_json::to_string(&BenchReport {
            target: target.into(),
            op: op.into(),
            clients,
            operations: writes.max(1),
            writes,
            errors: 0,
            seconds: 10.0,
            throughput,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            p999_ms: p99,
            max_ms: p99,
            leader_syncs: syncs,
            cluster_syncs: 3 * syncs,
            leader_entries_synced: writes,
            cpu_busy_pct: 90.0,
            steal_pct: 5.0,
        })
        .unwrap()
    }

    #[test]
    fn pairs_both_systems_per_row_with_ratios_fsyncs_and_the_median_run() {
        let text = [
            line("etcd", "put", 64, 4000.0, 20.0, 40_000, 4_000),
            String::new(),
            line("capukv", "put", 64, 9000.0, 9.0, 90_000, 2_000),
            line("capukv", "put", 64, 8000.0, 10.0, 80_000, 2_000),
            line("capukv", "put", 64, 1000.0, 90.0, 10_000, 2_000),
            line("etcd", "get", 1, 1000.0, 2.0, 0, 0),
        ]
        .join("\n");
        let table = comparison_table(&text).unwrap();
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 4, "{table}");
        assert_eq!(
            rows[2],
            "| put | 64 | 4000 | 10.00 | 20.00 | 8000 | 5.00 | 10.00 | 2.00 | 0.50 | 0.50 | 0.025, 0.075 | 0.100 | 5, 5 |"
        );
        assert_eq!(rows[3], "| get | 1 | 1000 | 1.00 | 2.00 | – | – | – | – | – | – | – | – | 5, – |");
    }

    #[test]
    fn a_broken_line_is_named() {
        let text = format!("{}\n{{\"target\": \"etcd\"\n", line("etcd", "put", 1, 1.0, 1.0, 1, 1));
        let err = comparison_table(&text).unwrap_err();
        assert!(matches!(err, TableError::BadLine { line: 2, .. }), "{err}");
        assert!(matches!(comparison_table("\n\n"), Err(TableError::Empty)));
    }
}
