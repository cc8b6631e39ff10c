//! The run directory: its name, the `latest` link, run.json and results.json.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::nemesis::Schedule;
use crate::options::RunOptions;

pub const HISTORY: &str = "history.jsonl";
pub const RUN_JSON: &str = "run.json";
pub const RESULTS_JSON: &str = "results.json";
/// The info writes the nodes' Raft logs settled (`checker::settlement::Settlement`).
pub const SETTLEMENT: &str = "settlement.json";

/// `YYYYMMDDTHHMMSSZ` for a time since the epoch (UTC, proleptic Gregorian).
pub fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `REPORTS/<time>-<workload>-<nemesis>`, or `--out`.
pub fn choose(options: &RunOptions, suffix: &str) -> PathBuf {
    if let Some(out) = &options.out {
        return out.clone();
    }
    let mut name = format!(
        "{}-{}-{}",
        timestamp(SystemTime::now()),
        crate::options::name(&options.workload),
        crate::options::name(&options.nemesis)
    );
    name.push_str(suffix);
    let mut dir = options.reports.join(&name);
    // Two runs in the same second get distinct directories.
    let mut n = 2;
    while dir.exists() {
        dir = options.reports.join(format!("{name}-{n}"));
        n += 1;
    }
    dir
}

/// Points `REPORTS/latest` at `dir` when `dir` is inside REPORTS.
pub fn link_latest(reports: &Path, dir: &Path) {
    let Some(name) = dir.file_name() else { return };
    if dir.parent().map(Path::canonicalize).and_then(Result::ok) != reports.canonicalize().ok() {
        return;
    }
    let link = reports.join("latest");
    let _ = std::fs::remove_file(&link);
    #[cfg(unix)]
    if let Err(e) = std::os::unix::fs::symlink(name, &link) {
        tracing::warn!(error = %e, "cannot update {}", link.display());
    }
}

/// run.json: everything needed to understand and replay the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub options: RunOptions,
    pub seed: u64,
    pub schedule: Schedule,
    /// The command line that started the run, and the one that replays it.
    pub command: Vec<String>,
    pub replay: String,
    pub version: String,
    pub git_commit: Option<String>,
    pub started_at: String,
    #[serde(default)]
    pub runtime: serde_json::Value,
    #[serde(default)]
    pub network_backends: Vec<String>,
    /// The servers' Raft knobs (drawn from the seed with `--server-knobs
    /// random`); a record from before knobs ran with the fixed ones.
    #[serde(default = "default_knobs")]
    pub server_knobs: crate::knobs::ServerKnobs,
}

fn default_knobs() -> crate::knobs::ServerKnobs {
    crate::knobs::ServerKnobs::fixed(50)
}

impl RunRecord {
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).expect("run records serialize");
        std::fs::write(dir.join(RUN_JSON), json + "\n")
    }

    pub fn read(dir: &Path) -> Result<RunRecord, String> {
        let path = dir.join(RUN_JSON);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is not a run record: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_times() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "20000229T000000Z");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(1_795_660_245)), "20261126T023045Z");
    }
}
