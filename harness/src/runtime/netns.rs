//! The default runtime: one network namespace per node on a bridge of the
//! run's own (see `netem::Topology`), each `capukv server` started inside
//! its namespace from a thread that entered it.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use netem::{NetNs, NsWorker, Topology};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{NodeInfo, Result, Runtime, RuntimeError, peers_flag};

/// Settings passed to every server.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub binary: PathBuf,
    pub tick_ms: u64,
    pub snapshot_every: u64,
    /// More arguments for every `capukv server` (a planted bug, ...).
    pub extra_args: Vec<String>,
}

struct Slot {
    child: Option<Child>,
    paused: bool,
}

pub struct NetnsRuntime {
    topology: Mutex<Option<Topology>>,
    workers: Vec<NsWorker>,
    nodes: Vec<NodeInfo>,
    slots: Mutex<Vec<Slot>>,
    data_dirs: Vec<PathBuf>,
    settings: ServerSettings,
    peers: String,
    keep_data: bool,
}

impl NetnsRuntime {
    /// Creates the namespaces; nodes are started with [`Runtime::start`].
    pub fn create(count: usize, run_dir: &Path, settings: ServerSettings, keep_data: bool) -> Result<NetnsRuntime> {
        let topology = Topology::create(count)?;
        let mut nodes = Vec::new();
        let mut data_dirs = Vec::new();
        let mut workers = Vec::new();
        for host in &topology.hosts {
            let node = NodeInfo::prepare(host.index as u64, host.addr, run_dir)?;
            data_dirs.push(node.log.with_file_name("data"));
            nodes.push(node);
            workers.push(NsWorker::enter(&host.ns())?);
        }
        let peers = peers_flag(&nodes);
        let slots = nodes.iter().map(|_| Slot { child: None, paused: false }).collect();
        Ok(NetnsRuntime {
            topology: Mutex::new(Some(topology)),
            workers,
            nodes,
            slots: Mutex::new(slots),
            data_dirs,
            settings,
            peers,
            keep_data,
        })
    }

    /// The topology's id (its objects are named `capukv-ID-...`).
    pub fn topology_id(&self) -> Option<String> {
        self.topology.lock().expect("not poisoned").as_ref().map(|t| t.id.clone())
    }

    fn index(&self, id: u64) -> usize {
        (id as usize).checked_sub(1).filter(|&i| i < self.nodes.len()).expect("node ids are 1..=n")
    }

    fn signal(&self, id: u64, signal: Signal) -> Result<()> {
        let slots = self.slots.lock().expect("not poisoned");
        let Some(child) = slots[self.index(id)].child.as_ref() else {
            return Err(RuntimeError::Other(format!("node n{id} is not running")));
        };
        kill(Pid::from_raw(child.id() as i32), signal).map_err(|e| RuntimeError::Node {
            id,
            what: "signal",
            source: e.into(),
        })
    }
}

impl Runtime for NetnsRuntime {
    fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    fn start(&self, id: u64) -> Result<()> {
        let i = self.index(id);
        let node = &self.nodes[i];
        let mut slots = self.slots.lock().expect("not poisoned");
        if slots[i].child.is_some() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|source| RuntimeError::Node { id, what: "open its log", source })?;
        let mut cmd = Command::new(&self.settings.binary);
        cmd.args(["server", "--id", &id.to_string(), "--dir"])
            .arg(&self.data_dirs[i])
            .args(["--api-addr", &node.api_addr, "--raft-addr", &node.raft_addr, "--peers", &self.peers])
            .args(["--tick-ms", &self.settings.tick_ms.to_string()])
            .args(["--snapshot-every", &self.settings.snapshot_every.to_string()])
            .args(&self.settings.extra_args)
            .env("RUST_LOG", std::env::var("CAPUKV_SERVER_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            // A process group of its own: Ctrl-C at the terminal reaches the
            // harness, which then stops the servers itself.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|source| RuntimeError::Node { id, what: "open its log", source })?)
            .stderr(log);
        // Spawned from the namespace's thread, the server starts inside it.
        let child = self.workers[i].run(move || cmd.spawn())?.map_err(|source| RuntimeError::Node {
            id,
            what: "start capukv server",
            source,
        })?;
        slots[i] = Slot { child: Some(child), paused: false };
        Ok(())
    }

    fn kill(&self, id: u64) -> Result<()> {
        let i = self.index(id);
        let mut slots = self.slots.lock().expect("not poisoned");
        if let Some(mut child) = slots[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        slots[i].paused = false;
        Ok(())
    }

    fn pause(&self, id: u64) -> Result<()> {
        self.signal(id, Signal::SIGSTOP)?;
        self.slots.lock().expect("not poisoned")[self.index(id)].paused = true;
        Ok(())
    }

    fn resume(&self, id: u64) -> Result<()> {
        self.signal(id, Signal::SIGCONT)?;
        self.slots.lock().expect("not poisoned")[self.index(id)].paused = false;
        Ok(())
    }

    fn is_running(&self, id: u64) -> bool {
        let mut slots = self.slots.lock().expect("not poisoned");
        let slot = &mut slots[self.index(id)];
        match slot.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                slot.child = None;
                false
            }
            None => false,
        }
    }

    fn netns(&self, id: u64) -> NetNs {
        self.workers[self.index(id)].target().clone()
    }

    fn teardown(&self) -> Result<()> {
        {
            let mut slots = self.slots.lock().expect("not poisoned");
            for slot in slots.iter_mut() {
                if let Some(mut child) = slot.child.take() {
                    // A stopped process still dies of SIGKILL.
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let topology = self.topology.lock().expect("not poisoned").take();
        let removed = match topology {
            Some(mut t) => t.remove().map_err(RuntimeError::from),
            None => Ok(()),
        };
        if !self.keep_data {
            for dir in &self.data_dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        removed
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "netns",
            "topology": self.topology_id().map(|id| format!("{}-{id}", netem::topology::PREFIX)),
            "nodes": self.nodes,
            "binary": self.settings.binary,
            "tick_ms": self.settings.tick_ms,
            "snapshot_every": self.settings.snapshot_every,
            "extra_args": self.settings.extra_args,
        })
    }
}

impl Drop for NetnsRuntime {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::error!(error = %e, "teardown failed; `capukv-chaos cleanup` removes leftovers");
        }
    }
}

/// Finds the server binary `name` (`capukv`, or `capukv-planted` for planted
/// bugs): the given path, next to this executable, or on PATH.
pub fn find_binary(given: Option<&Path>, name: &str) -> std::result::Result<PathBuf, String> {
    if let Some(path) = given {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(format!("--capukv-bin {}: no such file", path.display()))
        };
    }
    let beside = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?;
        // Test binaries live one level down, in deps/.
        [dir.join(name), dir.parent()?.join(name)].into_iter().find(|p| p.is_file())
    });
    if let Some(path) = beside {
        return Ok(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()))
        .ok_or_else(|| {
            let build = if name == "capukv" {
                "cargo build -p capukv".to_string()
            } else {
                format!("cargo build -p capukv --features planted-bugs, then copy target/.../capukv to {name}")
            };
            format!("no {name} binary next to capukv-chaos or on PATH: build it ({build}) or pass --capukv-bin")
        })
}
