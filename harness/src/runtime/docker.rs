//! The Docker runtime: one container per node from `capukv:latest` on a
//! Docker network of the run's own, each with a named data volume. Kill is
//! SIGKILL and restart is `docker start` (the volume is kept); pause is
//! `docker pause`. Network faults enter the container's namespace through its
//! init's process id, so the image needs nothing but the server.
//!
//! Everything carries the label `capukv.run=ID`, which `cleanup` looks for.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use netem::NetNs;

use super::{Access, NodeInfo, Result, RunCerts, Runtime, RuntimeError, peers_flag};

pub const IMAGE: &str = "capukv:latest";
pub const LABEL: &str = "capukv.run";

fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| RuntimeError::Other(format!("cannot run docker ({e}); is Docker installed?")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(RuntimeError::Other(format!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

pub struct DockerRuntime {
    id: String,
    network: String,
    nodes: Vec<NodeInfo>,
    peers: String,
    tick_ms: u64,
    /// More arguments for every `capukv server` (the Raft knobs among them).
    extra_args: Vec<String>,
    torn_down: Mutex<bool>,
    /// With TLS: the run's certificates, mounted read-only at [`CERTS_IN_CONTAINER`].
    certs: Option<RunCerts>,
    access: Access,
}

/// Where a container sees the run's certificates.
const CERTS_IN_CONTAINER: &str = "/tls";

impl DockerRuntime {
    fn container(&self, id: u64) -> String {
        format!("capukv-{}-n{id}", self.id)
    }

    fn volume(&self, id: u64) -> String {
        format!("capukv-{}-n{id}-data", self.id)
    }

    /// Makes the network and the containers (not started).
    /// `tls`: mutual TLS with certificates issued for this run.
    pub fn create(
        count: usize,
        run_dir: &Path,
        tick_ms: u64,
        extra_args: Vec<String>,
        tls: bool,
    ) -> Result<DockerRuntime> {
        docker(&["image", "inspect", IMAGE])
            .map_err(|_| RuntimeError::Other(format!("no image {IMAGE}: build it with `bash scripts/image.sh`")))?;
        let id = format!("{:04x}", rand::random::<u16>());
        let subnet = netem::topology::free_subnet()?;
        let ip = |host: u8| Ipv4Addr::new(subnet[0], subnet[1], subnet[2], host);
        let network = format!("capukv-{id}");
        let label = format!("{LABEL}={id}");
        docker(&[
            "network",
            "create",
            "--label",
            &label,
            "--subnet",
            &format!("{}/24", ip(0)),
            "--gateway",
            &ip(1).to_string(),
            &network,
        ])?;
        let mut runtime = DockerRuntime {
            id,
            network,
            nodes: Vec::new(),
            peers: String::new(),
            tick_ms,
            extra_args,
            torn_down: Mutex::new(false),
            certs: None,
            access: Access::default(),
        };
        for i in 1..=count as u64 {
            runtime.nodes.push(NodeInfo::prepare(i, ip(i as u8 + 1), run_dir)?);
        }
        if tls {
            let certs = RunCerts::issue(run_dir, &runtime.nodes)?;
            runtime.access = certs.access()?;
            runtime.certs = Some(certs);
        }
        runtime.peers = peers_flag(&runtime.nodes);
        // On failure part-way, dropping `runtime` removes what was made.
        for i in 1..=count as u64 {
            runtime.create_container(i)?;
        }
        Ok(runtime)
    }

    fn create_container(&self, id: u64) -> Result<()> {
        let node = &self.nodes[(id - 1) as usize];
        let label = format!("{LABEL}={}", self.id);
        docker(&["volume", "create", "--label", &label, &self.volume(id)])?;
        let mut tls_args = Vec::new();
        if let Some(certs) = &self.certs {
            let host = certs.dir.canonicalize().map_err(|source| RuntimeError::Node {
                id,
                what: "find its certificates",
                source,
            })?;
            tls_args.extend(["--volume".to_string(), format!("{}:{CERTS_IN_CONTAINER}:ro", host.display())]);
        }
        let mut owned: Vec<String> = [
            "create",
            "--name",
            &self.container(id),
            "--label",
            &label,
            "--network",
            &self.network,
            "--ip",
            &node.ip.to_string(),
            "--volume",
            &format!("{}:/data", self.volume(id)),
            "--env",
            "NO_COLOR=1",
            "--env",
            "RUST_LOG=info",
            IMAGE,
            "server",
            "--id",
            &id.to_string(),
            "--dir",
            "/data",
            "--api-addr",
            &node.api_addr,
            "--raft-addr",
            &node.raft_addr,
            "--peers",
            &self.peers,
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(self.extra_args.iter().cloned())
        .chain(self.certs.as_ref().map(|c| c.server_args(id, Path::new(CERTS_IN_CONTAINER))).unwrap_or_default())
        .collect();
        // `docker create [OPTIONS] IMAGE ...`: the mount goes before the image.
        owned.splice(1..1, tls_args);
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        docker(&args)?;
        Ok(())
    }

    fn pid(&self, id: u64) -> Option<u32> {
        docker(&["inspect", "-f", "{{.State.Pid}}", &self.container(id)]).ok()?.parse().ok().filter(|&p| p > 0)
    }
}

impl Runtime for DockerRuntime {
    fn access(&self) -> &Access {
        &self.access
    }

    fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    fn start(&self, id: u64) -> Result<()> {
        docker(&["start", &self.container(id)]).map(|_| ())
    }

    fn kill(&self, id: u64) -> Result<()> {
        docker(&["kill", "--signal", "KILL", &self.container(id)]).map(|_| ())
    }

    fn pause(&self, id: u64) -> Result<()> {
        docker(&["pause", &self.container(id)]).map(|_| ())
    }

    fn resume(&self, id: u64) -> Result<()> {
        let state = docker(&["inspect", "-f", "{{.State.Paused}}", &self.container(id)])?;
        if state == "true" { docker(&["unpause", &self.container(id)]).map(|_| ()) } else { Ok(()) }
    }

    fn is_running(&self, id: u64) -> bool {
        docker(&["inspect", "-f", "{{.State.Running}}", &self.container(id)]).is_ok_and(|s| s == "true")
    }

    fn netns(&self, id: u64) -> Option<NetNs> {
        // A restarted container has a new process and a new namespace; a
        // stopped one has none.
        self.pid(id).map(NetNs::Pid)
    }

    fn teardown(&self) -> Result<()> {
        let mut done = self.torn_down.lock().expect("not poisoned");
        if *done {
            return Ok(());
        }
        *done = true;
        self.collect_logs();
        remove_labelled(Some(&self.id)).map(|_| ())
    }

    /// The containers' logs, as Docker keeps them, into the run directory.
    fn collect_logs(&self) {
        for node in &self.nodes {
            if let Ok(out) = Command::new("docker").args(["logs", "--timestamps", &self.container(node.id)]).output() {
                let mut log = out.stdout;
                log.extend_from_slice(&out.stderr);
                let _ = std::fs::write(&node.log, log);
            }
        }
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "tls": self.certs.is_some(),
            "kind": "docker",
            "topology": format!("capukv-{}", self.id),
            "label": format!("{LABEL}={}", self.id),
            "network": self.network,
            "image": IMAGE,
            "nodes": self.nodes,
            "tick_ms": self.tick_ms,
        })
    }
}

impl Drop for DockerRuntime {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::error!(error = %e, "docker teardown failed; `capukv-chaos cleanup` removes leftovers");
        }
    }
}

/// What [`remove_labelled`] removed.
#[derive(Debug, Default)]
pub struct Removed {
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
}

/// Removes containers, then networks and volumes, labelled `capukv.run`
/// (`=run` when given): a finished run's, or every run's leftovers.
pub fn remove_labelled(run: Option<&str>) -> Result<Removed> {
    let filter = match run {
        Some(id) => format!("label={LABEL}={id}"),
        None => format!("label={LABEL}"),
    };
    let list = |args: &[&str]| -> Result<Vec<String>> {
        Ok(docker(args)?.lines().map(str::to_string).filter(|l| !l.is_empty()).collect())
    };
    let mut removed = Removed::default();
    let containers = list(&["ps", "-aq", "--filter", &filter])?;
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(containers.iter().map(String::as_str));
        docker(&args)?;
        removed.containers = containers.len();
    }
    for network in list(&["network", "ls", "-q", "--filter", &filter])? {
        docker(&["network", "rm", &network])?;
        removed.networks += 1;
    }
    for volume in list(&["volume", "ls", "-q", "--filter", &filter])? {
        docker(&["volume", "rm", &volume])?;
        removed.volumes += 1;
    }
    Ok(removed)
}

/// Whether a Docker engine answers.
pub fn available() -> bool {
    docker(&["info", "--format", "{{.ServerVersion}}"]).is_ok()
}
