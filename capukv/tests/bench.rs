//! `capukv bench` against CapuKV and a real etcd, and the comparison table
//! built from both (the pieces of bench/compare-etcd.sh). Needs Debian's
//! etcd-server (`scripts/test.sh` installs it).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, LocalCluster};

/// A one-member etcd on loopback, killed and removed (data and log) when
/// dropped.
struct Etcd {
    child: Child,
    root: PathBuf,
    client_url: String,
}

impl Etcd {
    fn start() -> Etcd {
        let etcd = which("etcd").unwrap_or_else(|| {
            panic!("etcd is not installed: these tests need Debian's etcd-server (scripts/test.sh installs it)")
        });
        let (client, peer) = (common::free_port(), common::free_port());
        let root = std::env::temp_dir().join(format!("capukv-test-etcd-{}-{client}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(root.join("etcd.log")).unwrap();
        let child = Command::new(etcd)
            .args(["--name", "e1", "--data-dir"])
            .arg(root.join("data"))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("e1={peer_url}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        Etcd { child, root, client_url }
    }

    fn endpoint(&self) -> String {
        self.client_url.trim_start_matches("http://").to_string()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(name)).find(|p| p.is_file())
}

fn capukv(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn bench_json(endpoints: &str, target: &str) -> serde_json::Value {
    let args = ["--endpoints", endpoints, "bench", "--json", "--target", target, "--op", "mixed", "--clients", "4"];
    let (code, out, err) = capukv(&[&args[..], &["--duration", "1s", "--keys", "50"]].concat());
    assert_eq!(code, 0, "bench --target {target}: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bench --json printed {out:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_load_generator_drives_capukv_and_etcd_and_tabulates_both() {
    let etcd = Etcd::start();
    // etcd answers once it has elected itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while capukv(&["--endpoints", &etcd.endpoint(), "bench", "--target", "etcd", "--duration", "100ms"]).0 != 0 {
        assert!(Instant::now() < deadline, "etcd did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cluster = LocalCluster::start(3).await;

    let on_etcd = bench_json(&etcd.endpoint(), "etcd");
    let on_capukv = bench_json(&cluster.endpoints().join(","), "capukv");
    for (r, target) in [(&on_etcd, "etcd"), (&on_capukv, "capukv")] {
        assert_eq!(r["target"], target);
        assert_eq!(r["op"], "mixed");
        assert_eq!(r["errors"], 0, "{r}");
        let (ops, writes) = (r["operations"].as_u64().unwrap(), r["writes"].as_u64().unwrap());
        assert!(ops > 20 && writes > 0 && writes < ops, "a 50/50 mix of some operations: {r}");
        assert!(r["p50_ms"].as_f64().unwrap() > 0.0 && r["p50_ms"].as_f64() <= r["p99_ms"].as_f64(), "{r}");
        // Fsync counters were read: etcd's from its metrics, CapuKV's from Status.
        let syncs = r["leader_syncs"].as_u64().unwrap();
        assert!(syncs > 0 && syncs <= writes + 5, "leader fsyncs {syncs} for {writes} writes: {r}");
        assert!(r["cluster_syncs"].as_u64().unwrap() >= syncs, "{r}");
    }
    // Three CapuKV nodes each sync the log.
    assert!(on_capukv["cluster_syncs"].as_u64() > on_capukv["leader_syncs"].as_u64(), "{on_capukv}");

    let file = std::env::temp_dir().join(format!("capukv-test-bench-{}.jsonl", std::process::id()));
    std::fs::write(&file, format!("{on_etcd}\n{on_capukv}\n")).unwrap();
    let (code, table, err) = capukv(&["bench-table", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(code, 0, "{err}");
    let row = table.lines().find(|l| l.starts_with("| mixed | 4 |")).unwrap_or_else(|| panic!("no row in {table}"));
    let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
    assert_eq!(cells.len(), 14, "{row}");
    let ratio: f64 = cells[8].parse().unwrap();
    let expected = on_capukv["throughput"].as_f64().unwrap() / on_etcd["throughput"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 0.006, "ratio {ratio}, expected {expected:.3}: {row}");
    assert!(!row.contains('–'), "every cell filled: {row}");
}

#[test]
fn the_table_names_a_broken_line_and_fsync_probe_reports_its_rounds() {
    let file = std::env::temp_dir().join(format!("capukv-test-broken-{}.jsonl", std::process::id()));
    std::fs::write(&file, "\n{\"target\": \"etcd\", \"op\": \n").unwrap();
    let (code, _, err) = capukv(&["bench-table", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(code, 2);
    assert!(err.contains("line 2") && err.contains("not a `capukv bench --json` result"), "{err}");

    let dir = std::env::temp_dir();
    let (code, out, err) = capukv(&["bench-fsync", "--json", "--dir", dir.to_str().unwrap(), "--count", "25"]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["writes"], 25);
    assert!(r["p50_ms"].as_f64().unwrap() > 0.0, "{r}");
    let (code, _, err) = capukv(&["bench-fsync", "--dir", "/nonexistent/capukv", "--count", "1"]);
    assert_eq!(code, 2);
    assert!(err.contains("measuring fdatasync in /nonexistent/capukv"), "{err}");
}

#[test]
fn bench_history_prints_space_per_version_and_reads_at_head_and_in_the_past() {
    let dir = std::env::temp_dir().join(format!("capukv-bench-history-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(BIN)
        .args(["--json", "bench-history", "--keys", "200", "--versions", "5", "--value-size", "64", "--reads", "200"])
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cost: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cost["versions"], 1000);
    // A version holds at least its value (compressed data would be smaller,
    // but random letters barely compress).
    let per_version = cost["history_bytes_per_version"].as_f64().unwrap();
    assert!(per_version > 40.0 && per_version < 1000.0, "{cost}");
    let reads = cost["reads"].as_array().unwrap();
    assert_eq!(reads.len(), 4, "get and range, at head and in the past: {cost}");
    for r in reads {
        assert_eq!(r["reads"], 200);
        assert!(r["p50_us"].as_f64().unwrap() <= r["p99_us"].as_f64().unwrap(), "{r}");
        assert!(r["mean_us"].as_f64().unwrap() > 0.0, "{r}");
    }
}
