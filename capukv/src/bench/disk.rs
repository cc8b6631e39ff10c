//! `capukv bench-fsync`: the latency of `fdatasync` after a small append on
//! the disk holding a directory, the floor under every acknowledged write of
//! a store that syncs its log (CapuKV and etcd alike).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, serde::Serialize)]
pub struct FsyncReport {
    pub dir: String,
    pub writes: usize,
    pub bytes_per_write: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Appends `size` bytes and syncs, `count` times or until `limit` passes,
/// in a scratch file under `dir` that is removed afterwards.
pub fn measure(dir: &Path, count: usize, size: usize, limit: Duration) -> std::io::Result<FsyncReport> {
    let path = dir.join(format!(".capukv-fsync-probe-{}", std::process::id()));
    let result = measure_file(&path, count, size, limit);
    let _ = std::fs::remove_file(&path);
    let mut latencies = result?;
    latencies.sort_unstable_by(f64::total_cmp);
    Ok(FsyncReport {
        dir: dir.display().to_string(),
        writes: latencies.len(),
        bytes_per_write: size,
        mean_ms: latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
        p50_ms: super::percentile(&latencies, 0.50),
        p99_ms: super::percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
    })
}

fn measure_file(path: &Path, count: usize, size: usize, limit: Duration) -> std::io::Result<Vec<f64>> {
    let mut file = OpenOptions::new().create_new(true).write(true).open(path)?;
    let block = vec![0x5a_u8; size];
    let deadline = Instant::now() + limit;
    let mut latencies = Vec::with_capacity(count);
    while latencies.len() < count.max(1) && (latencies.is_empty() || Instant::now() < deadline) {
        let t = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(latencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_the_asked_number_of_syncs_and_leaves_no_file() {
        let dir = std::env::temp_dir().join(format!("capukv-fsync-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let report = measure(&dir, 20, 512, Duration::from_secs(30)).unwrap();
        assert_eq!(report.writes, 20);
        assert!(report.p50_ms > 0.0 && report.p50_ms <= report.p99_ms && report.p99_ms <= report.max_ms);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the probe file is removed");
        std::fs::remove_dir(&dir).unwrap();
    }
}
