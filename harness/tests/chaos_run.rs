//! End-to-end chaos runs: real `capukv server` processes in network
//! namespaces, faults, a recorded history, a verdict, and nothing left
//! behind. Needs root (CI runs as root).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;

use common::{CHAOS, capukv_bin, read_json};

/// Two clusters at once on two cores would time each other's elections out.
static SERIAL: Mutex<()> = Mutex::new(());

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "chaos runs create network namespaces and need root (CI runs as root): run `sudo -E cargo test -p harness`"
    );
}

/// Namespaces, links and FORWARD rules named with `prefix` that still exist.
fn leftovers(prefix: &str) -> Vec<String> {
    let run = |args: &[&str]| {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut found: Vec<String> =
        run(&["ip", "netns", "list"]).lines().filter(|l| l.starts_with(prefix)).map(|l| format!("netns {l}")).collect();
    found
        .extend(run(&["ip", "-o", "link", "show"]).lines().filter(|l| l.contains(prefix)).map(|l| format!("link {l}")));
    found.extend(
        run(&["iptables", "-S", "FORWARD"]).lines().filter(|l| l.contains(prefix)).map(|l| format!("rule {l}")),
    );
    found
}

/// Processes whose command line mentions `path` (servers of a run).
fn processes_mentioning(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect()
}

fn topology_prefix(dir: &Path) -> String {
    let run = read_json(&dir.join("run.json"));
    run["runtime"]["topology"].as_str().expect("run.json names its topology").to_string()
}

#[test]
fn a_short_chaos_run_ends_valid_with_its_files_and_leaves_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let bin = capukv_bin();
    let out = Command::new(CHAOS)
        .args(["run", "--nodes", "3", "--time-limit", "25", "--nemesis", "all", "--nemesis-interval", "3"])
        .args(["--quiet-start", "1", "--recovery-time", "3", "--workload", "cas-register", "--seed", "7", "--json"])
        .arg("--out")
        .arg(&dir)
        .arg("--capukv-bin")
        .arg(&bin)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");

    let results = read_json(&dir.join("results.json"));
    assert_eq!(results["verdict"], "valid");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["verdict"],
        "valid",
        "--json prints results"
    );
    let ok = results["operations"]["ok"].as_u64().unwrap();
    assert!(ok > 300, "only {ok} ok operations");
    let struck: Vec<&str> =
        results["nemesis"]["struck"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(
        struck,
        ["clock", "corrupt", "kill", "member", "netem", "partition", "pause", "power"],
        "every kind strikes in 8 cycles of `all`"
    );
    assert_eq!(results["check"]["invalid_keys"], 0);
    let checks = results["checks"].as_array().unwrap();
    for name in ["replica-convergence", "log-scan", "operation-stats"] {
        let f = checks.iter().find(|f| f["check"] == name).unwrap_or_else(|| panic!("no {name} in {checks:?}"));
        assert_eq!(f["outcome"], "passed", "{f}");
    }

    // The history follows the format, and the checker CLI agrees with the run.
    let check =
        Command::new(CHAOS).args(["check", "--model", "cas-register"]).arg(dir.join("history.jsonl")).output().unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    assert!(history.lines().any(|l| l.contains(r#""process":"nemesis""#) && l.contains("start-partition")));

    let run = read_json(&dir.join("run.json"));
    assert_eq!(run["seed"], 7);
    assert_eq!(run["options"]["nodes"], 3);
    assert!(!run["schedule"]["steps"].as_array().unwrap().is_empty());
    assert!(run["replay"].as_str().unwrap().starts_with("capukv-chaos replay "));
    for n in 1..=3 {
        let log = dir.join(format!("nodes/n{n}/server.log"));
        assert!(std::fs::metadata(&log).map(|m| m.len() > 0).unwrap_or(false), "{} is empty", log.display());
        assert!(!dir.join(format!("nodes/n{n}/data")).exists(), "data directories are removed unless --keep-data");
        assert!(!dir.join(format!("nodes/n{n}/data.lazyfs")).exists(), "lazyfs backing directories too");
        assert!(!dir.join(format!("nodes/n{n}/faketime.rc")).exists(), "and the clock files");
    }
    let mounts: Vec<_> = lazyfs::mounts().unwrap().into_iter().filter(|m| m.starts_with(&dir)).collect();
    assert_eq!(mounts, Vec::<std::path::PathBuf>::new(), "no lazyfs mount left");

    let prefix = topology_prefix(&dir);
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new());
}

#[test]
fn a_tls_chaos_run_ends_valid_with_every_node_on_mutual_tls() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = Command::new(CHAOS)
        .args(["run", "--tls", "--nodes", "3", "--time-limit", "16", "--nemesis", "all"])
        .args(["--nemesis-interval", "3", "--quiet-start", "1", "--recovery-time", "3", "--workload", "append"])
        .args(["--seed", "11", "--json", "--out"])
        .arg(&dir)
        .arg("--capukv-bin")
        .arg(capukv_bin())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    let results = read_json(&dir.join("results.json"));
    assert_eq!(results["verdict"], "valid");
    let ok = results["operations"]["ok"].as_u64().unwrap();
    assert!(ok > 100, "only {ok} ok operations: the harness's clients talk TLS");
    let run = read_json(&dir.join("run.json"));
    assert_eq!((run["options"]["tls"].as_bool(), run["runtime"]["tls"].as_bool()), (Some(true), Some(true)));
    assert!(dir.join("tls/ca.pem").is_file() && dir.join("tls/n3-key.pem").is_file(), "the run's certificates");
    for n in 1..=3 {
        let log = std::fs::read_to_string(dir.join(format!("nodes/n{n}/server.log"))).unwrap();
        assert!(log.contains("tls=true"), "node n{n} started with TLS");
    }
    // The end-of-run checks reached every node over TLS too.
    let checks = results["checks"].as_array().unwrap();
    let replicas = checks.iter().find(|f| f["check"] == "replica-convergence").unwrap();
    assert_eq!(replicas["outcome"], "passed", "{replicas}");
    assert_eq!(leftovers(&topology_prefix(&dir)), Vec::<String>::new());
}

#[test]
fn ctrl_c_keeps_the_partial_history_and_removes_everything() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut child = Command::new(CHAOS)
        .args(["run", "--nodes", "3", "--time-limit", "120", "--nemesis", "partition", "--nemesis-interval", "2"])
        .args(["--quiet-start", "1", "--seed", "11", "--json"])
        .arg("--out")
        .arg(&dir)
        .arg("--capukv-bin")
        .arg(capukv_bin())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the run is well under way: a partition has struck.
    let history = dir.join("history.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&history).unwrap_or_default().contains("start-partition") {
        assert!(Instant::now() < deadline, "the run never got going");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    let prefix = topology_prefix(&dir);
    assert!(!leftovers(&prefix).is_empty(), "the run's namespaces should exist while it runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the run did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(3), "stderr: {}", String::from_utf8_lossy(&out.stderr));

    let recorded = std::fs::read_to_string(&history).unwrap();
    let lines: Vec<&str> = recorded.lines().collect();
    assert!(lines.len() > 20, "the partial history is on disk");
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("broken line {line:?}: {e}"));
    }
    let results = read_json(&dir.join("results.json"));
    assert!(results["harness_failure"].as_str().unwrap().contains("interrupted"));
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new());
}

#[test]
fn cleanup_removes_a_crashed_runs_namespaces() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    // What a crash leaves: a topology that is never removed.
    let topology = netem::Topology::create(2).unwrap();
    let prefix = format!("{}-{}", netem::topology::PREFIX, topology.id);
    std::mem::forget(topology);
    assert!(!leftovers(&prefix).is_empty());
    let out = Command::new(CHAOS).args(["cleanup", "--prefix", &prefix]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed 2 namespaces"));
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}

#[test]
fn bad_options_are_refused_before_anything_starts() {
    let out = Command::new(CHAOS).args(["run", "--nodes", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nodes 0"));
    let out = Command::new(CHAOS).args(["run", "--workload", "nonsense"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = Command::new(CHAOS).args(["replay", "/nonexistent/run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(66));
}

#[test]
fn a_suite_passes_an_expected_invalid_run_only_when_it_is_caught() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("suite.toml");
    // Stale reads under partitions must be caught; linearizable reads with no
    // faults cannot be, so expecting that run to be invalid must fail the suite.
    std::fs::write(
        &suite,
        r#"name = "expectations"
budget_minutes = 5
time_limit = 8
nemesis_interval = 3
nodes = [3]
seeds = [2]

[[extra]]
workload = "cas-register"
nemesis = "partition"
read_mode = "stale"
expect = "invalid"

[[extra]]
workload = "cas-register"
nemesis = "none"
expect = "invalid"
"#,
    )
    .unwrap();
    let reports = tmp.path().join("reports");
    let out = Command::new(CHAOS)
        .arg("suite")
        .arg(&suite)
        .arg("--reports")
        .arg(&reports)
        .arg("--capukv-bin")
        .arg(capukv_bin())
        .arg("--json")
        .output()
        .unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(1), "an uncaught expected-invalid run fails the suite: {summary}");
    let results = summary["results"].as_array().unwrap();
    assert_eq!((results[0]["outcome"].as_str(), results[0]["passed"].as_bool()), (Some("invalid"), Some(true)));
    assert_eq!((results[1]["outcome"].as_str(), results[1]["passed"].as_bool()), (Some("valid"), Some(false)));
    assert!(results[1]["replay"].as_str().unwrap().starts_with("capukv-chaos replay "));
    let written =
        std::fs::read_dir(reports.join("suites")).unwrap().next().unwrap().unwrap().path().join("summary.json");
    assert!(written.is_file(), "summary.json is written");
}

/// The failpoints build beside `capukv` (scripts/test.sh builds it).
fn planted_twin() -> std::path::PathBuf {
    let twin = capukv_bin().with_file_name("capukv-planted");
    assert!(
        twin.is_file(),
        "no {}: build it with `cargo build -p capukv --features planted-bugs,failpoints --bin capukv-planted` (scripts/test.sh does)",
        twin.display()
    );
    twin
}

#[test]
fn failpoints_crash_nodes_in_their_windows_and_a_clean_cluster_stays_valid() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    planted_twin();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = Command::new(CHAOS)
        .args(["run", "--nodes", "3", "--time-limit", "20", "--nemesis", "failpoint", "--nemesis-interval", "4"])
        .args(["--quiet-start", "1", "--recovery-time", "3", "--workload", "append", "--seed", "5", "--json"])
        .arg("--out")
        .arg(&dir)
        .arg("--capukv-bin")
        .arg(capukv_bin())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    let results = read_json(&dir.join("results.json"));
    assert_eq!(results["verdict"], "valid");
    assert_eq!(results["nemesis"]["struck"], serde_json::json!(["failpoint"]));
    for f in results["checks"].as_array().unwrap() {
        assert_eq!(f["outcome"], "passed", "{f}");
    }
    // Each strike names the node, the failpoint and its actions; some crashed
    // their node (restarted at the heal), and said so in its log.
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let infos: Vec<serde_json::Value> = history
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["process"] == "nemesis" && e["type"] == "info")
        .collect();
    let armed: Vec<&serde_json::Value> = infos.iter().filter(|e| e["f"] == "start-failpoint").collect();
    assert!(armed.len() >= 4, "{armed:?}");
    assert!(armed.iter().all(|e| e["value"]["point"].is_string() || e["value"]["skipped"].is_string()), "{armed:?}");
    let restarted: usize = infos
        .iter()
        .filter(|e| e["f"] == "stop-failpoint" || e["f"] == "heal-all")
        .map(|e| e["value"]["restarted"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(restarted >= 1, "no failpoint crashed its node: {infos:?}");
    let logs: String = (1..=3)
        .map(|n| std::fs::read_to_string(dir.join(format!("nodes/n{n}/server.log"))).unwrap_or_default())
        .collect();
    assert!(logs.contains("on purpose"), "a crash names its failpoint in the log");
    assert_eq!(leftovers(&topology_prefix(&dir)), Vec::<String>::new());
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new());

    // The normal build has no failpoints: refused before anything starts.
    let lonely = tmp.path().join("bin");
    std::fs::create_dir(&lonely).unwrap();
    std::fs::copy(capukv_bin(), lonely.join("capukv")).unwrap();
    let out = Command::new(CHAOS)
        .args(["run", "--nemesis", "failpoint", "--time-limit", "5", "--capukv-bin"])
        .arg(lonely.join("capukv"))
        .arg("--reports")
        .arg(tmp.path().join("reports"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no failpoints compiled in"), "{out:?}");
}
