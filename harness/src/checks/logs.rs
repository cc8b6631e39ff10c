//! The servers' logs, scanned after the run: a panic, a corruption report or
//! any `ERROR` line that the run did not cause on purpose fails it, as
//! Jepsen's log-file-pattern checker does. Nemesis kinds that cause such
//! lines on purpose (a crash failpoint, a corrupted file) name the patterns
//! they excuse.

use std::io::{BufRead, BufReader};
use std::path::Path;

use super::{Finding, Outcome};

/// What makes a line suspicious (matched case-sensitively, as the server
/// writes them: the panic handler's text, tracing's level, our storage
/// error, RocksDB's). Not the bare word "corrupt": a path may hold it (a
/// run directory named for the corrupt nemesis).
pub const PATTERNS: [&str; 4] = ["panicked at", " ERROR ", "is corrupt", "Corruption"];

/// Lines reported at most (the count says how many there were).
const MAX_LINES: usize = 50;

/// Substrings of lines the run caused on purpose, on every node or on one.
#[derive(Clone, Debug, Default)]
pub struct Excuses {
    pub everywhere: Vec<String>,
    /// `(node name, substring)`: a corrupted node may report its corruption.
    pub on_node: Vec<(String, String)>,
}

impl Excuses {
    fn excuse(&self, node: &str, line: &str) -> bool {
        self.everywhere.iter().any(|x| line.contains(x.as_str()))
            || self.on_node.iter().any(|(n, x)| n == node && line.contains(x.as_str()))
    }
}

/// Scans each `(node name, log file)`, excusing what the run caused on
/// purpose. Details are `nN/server.log:LINE: text`.
pub fn check(logs: &[(String, &Path)], excused: &Excuses) -> Finding {
    let mut hits = Vec::new();
    let mut total = 0usize;
    let mut unread = Vec::new();
    for (node, path) in logs {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                unread.push(format!("{node}: {e}"));
                continue;
            }
        };
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line);
            if PATTERNS.iter().any(|p| line.contains(p)) && !excused.excuse(node, &line) {
                total += 1;
                if hits.len() < MAX_LINES {
                    hits.push(format!("{node}/{name}:{}: {}", i + 1, line.trim_end()));
                }
            }
        }
    }
    if total > 0 {
        let summary = format!("{total} log line(s) report a panic, corruption or an error the run did not cause");
        return Finding::new("log-scan", Outcome::Failed, summary, hits);
    }
    if !unread.is_empty() && unread.len() == logs.len() {
        return Finding::new("log-scan", Outcome::Skipped, "no server log could be read", unread);
    }
    Finding::new("log-scan", Outcome::Passed, format!("{} server logs clean", logs.len() - unread.len()), unread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_names_the_corrupt_nemesis_is_no_corruption_report() {
        let dir = std::env::temp_dir().join(format!("capukv-logscan-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("server.log");
        std::fs::write(
            &log,
            "2026-12-02T01:57:17Z  INFO capukv::server: node started id=1 dir=/r/20261202T015717Z-append-corrupt/nodes/n1/data\n",
        )
        .unwrap();
        let logs = [("n1".to_string(), log.as_path())];
        assert_eq!(check(&logs, &Excuses::default()).outcome, Outcome::Passed);
        std::fs::write(&log, "error: the data directory /r/n1/data is corrupt: Corruption: checksum mismatch\n")
            .unwrap();
        assert_eq!(check(&logs, &Excuses::default()).outcome, Outcome::Failed);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_and_panics_fail_unless_excused() {
        let dir = std::env::temp_dir().join(format!("capukv-logscan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("server.log");
        std::fs::write(
            &log,
            "2026-12-01T00:00:00Z  INFO capukv: node started\n\
             2026-12-01T00:00:01Z ERROR capukv::server: storage failure\n\
             thread 'raft-1' panicked at src/raft/log.rs:10:5: failpoint after-persist\n",
        )
        .unwrap();
        let logs = [("n1".to_string(), log.as_path())];
        let f = check(&logs, &Excuses::default());
        assert_eq!(f.outcome, Outcome::Failed);
        assert_eq!(f.details.len(), 2);
        assert!(f.details[0].starts_with("n1/server.log:2: "), "{:?}", f.details);
        let everywhere =
            Excuses { everywhere: vec!["failpoint".into(), "storage failure".into()], ..Default::default() };
        let f = check(&logs, &everywhere);
        assert_eq!(f.outcome, Outcome::Passed, "{:?}", f.details);
        let elsewhere =
            Excuses { everywhere: vec!["failpoint".into()], on_node: vec![("n2".into(), "storage failure".into())] };
        assert_eq!(check(&logs, &elsewhere).details.len(), 1, "an excuse for n2 does not cover n1");
        let here = Excuses { on_node: vec![("n1".into(), "storage failure".into())], ..elsewhere };
        assert_eq!(check(&logs, &here).outcome, Outcome::Passed);
        std::fs::write(&log, "2026-12-01T00:00:00Z  INFO capukv: node started\n").unwrap();
        assert_eq!(check(&logs, &Excuses::default()).outcome, Outcome::Passed);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
