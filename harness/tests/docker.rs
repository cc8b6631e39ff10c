//! The Docker side: the top-level docker-compose.yml brings up a cluster the
//! CLI can use, and `capukv-chaos run --runtime docker` drives containers
//! through the same nemeses and workloads, leaving no container, network or
//! volume behind. Needs root, a Docker engine and the image capukv:latest
//! (`bash scripts/image.sh`; scripts/test.sh builds it before the tests).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{CHAOS, capukv_bin, read_json};

/// One cluster at a time: two on two cores would time each other's elections out.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn require_docker() {
    assert!(nix::unistd::geteuid().is_root(), "the Docker tests need root (CI runs as root)");
    let info = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    assert!(
        info.is_ok_and(|o| o.status.success()),
        "no Docker engine answers: install docker.io and start dockerd (scripts/test.sh does)"
    );
    let image = Command::new("docker").args(["image", "inspect", "capukv:latest"]).output().unwrap();
    assert!(image.status.success(), "no image capukv:latest: build it with `bash scripts/image.sh`");
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
}

struct Compose {
    project: String,
    file: PathBuf,
}

impl Compose {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker-compose")
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(&self.file)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "--remove-orphans"]);
    }
}

#[test]
fn docker_compose_brings_up_a_cluster_the_cli_can_use() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_docker();
    let compose = Compose {
        project: format!("capukvtest{}", std::process::id()),
        file: Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yml"),
    };
    let up = compose.run(&["up", "-d"]);
    assert!(up.status.success(), "docker-compose up: {}", String::from_utf8_lossy(&up.stderr));
    let endpoints = "127.0.0.1:5701,127.0.0.1:5702,127.0.0.1:5703";
    let cli = |args: &[&str]| {
        Command::new(capukv_bin()).args(["--endpoints", endpoints, "--timeout", "5"]).args(args).output().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let put = cli(&["put", "greeting", "hello"]);
        if put.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the compose cluster never took a write: {}",
            String::from_utf8_lossy(&put.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let get = cli(&["get", "greeting"]);
    assert!(get.status.success(), "{}", String::from_utf8_lossy(&get.stderr));
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "hello");
    // Every node answers on its published port.
    for port in [5701, 5702, 5703] {
        let one = Command::new(capukv_bin())
            .args(["--endpoints", &format!("127.0.0.1:{port}"), "get", "greeting", "--read-mode", "stale"])
            .output()
            .unwrap();
        assert!(one.status.success(), "port {port}: {}", String::from_utf8_lossy(&one.stderr));
    }
    let down = compose.run(&["down", "-v"]);
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    let project_filter = format!("label=com.docker.compose.project={}", compose.project);
    assert!(docker_lines(&["ps", "-aq", "--filter", &project_filter]).is_empty());
    assert!(docker_lines(&["volume", "ls", "-q", "--filter", &project_filter]).is_empty());
}

#[test]
fn a_docker_chaos_run_ends_valid_and_leaves_no_container_network_or_volume() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_docker();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = Command::new(CHAOS)
        .args(["run", "--runtime", "docker", "--nodes", "3", "--time-limit", "15", "--nemesis", "all"])
        .args(["--nemesis-interval", "3", "--quiet-start", "1", "--recovery-time", "3", "--seed", "3", "--json"])
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    let results = read_json(&dir.join("results.json"));
    assert_eq!(results["verdict"], "valid");
    assert!(results["operations"]["ok"].as_u64().unwrap() > 300);
    // The containers' logs are fetched before the scan, not only at teardown.
    let scan = results["checks"].as_array().unwrap().iter().find(|c| c["check"] == "log-scan").unwrap();
    assert_eq!(scan["outcome"], "passed", "{scan}");
    let struck: Vec<&str> =
        results["nemesis"]["struck"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(struck, ["kill", "member", "netem", "partition", "pause"]);
    let run = read_json(&dir.join("run.json"));
    let label = run["runtime"]["label"].as_str().unwrap().to_string();
    assert!(std::fs::metadata(dir.join("nodes/n1/server.log")).unwrap().len() > 0, "container logs are kept");
    let filter = format!("label={label}");
    assert!(docker_lines(&["ps", "-aq", "--filter", &filter]).is_empty(), "containers left");
    assert!(docker_lines(&["network", "ls", "-q", "--filter", &filter]).is_empty(), "networks left");
    assert!(docker_lines(&["volume", "ls", "-q", "--filter", &filter]).is_empty(), "volumes left");
}
