//! Append + fdatasync latency on a lazyfs mount versus the plain backing filesystem.
//!
//! ```text
//! cargo run --release --example fsync_bench -- [ROUNDS] [BLOCK_BYTES]    # as root
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use lazyfs::{Mount, Options};

/// Appends `block` and fdatasyncs, `rounds` times; returns each round's latency, sorted.
fn measure(path: &Path, rounds: usize, block: &[u8]) -> std::io::Result<Vec<Duration>> {
    let mut file = OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
    // The directory entry once, so that only data syncs are measured.
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()?;
    let mut latencies = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        file.write_all(block)?;
        file.sync_data()?;
        latencies.push(start.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let block_bytes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4096);
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("run as root: the mount needs it".into());
    }
    let block = vec![0x5A; block_bytes];

    let plain = tempfile::tempdir()?;
    let backing = tempfile::tempdir()?;
    let mountpoint = tempfile::tempdir()?;
    let mount = Mount::mount(backing.path(), mountpoint.path(), Options::default())?;

    let on_mount = measure(&mount.mountpoint().join("bench.log"), rounds, &block);
    let pending = mount.pending();
    // Unmount before reporting errors, so a failed round never leaves the mount behind.
    mount.unmount()?;
    let on_mount = on_mount?;
    let on_plain = measure(&plain.path().join("bench.log"), rounds, &block)?;

    println!("append {block_bytes} B + fdatasync, {rounds} rounds");
    println!("{:<10} {:>12} {:>12} {:>12}", "", "p50", "p99", "max");
    for (name, lat) in [("lazyfs", &on_mount), ("plain", &on_plain)] {
        let max = lat.last().copied().unwrap_or_default();
        println!("{name:<10} {:>12} {:>12} {:>12}", us(percentile(lat, 0.5)), us(percentile(lat, 0.99)), us(max));
    }
    println!("pending on the mount after the last sync: {pending:?}");
    Ok(())
}
