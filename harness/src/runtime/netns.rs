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

use super::{Access, NodeInfo, Result, RunCerts, Runtime, RuntimeError, peers_flag};

/// Settings passed to every server.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub binary: PathBuf,
    pub tick_ms: u64,
    pub snapshot_every: u64,
    /// More arguments for every `capukv server` (a planted bug, ...).
    pub extra_args: Vec<String>,
    /// Data directories on lazyfs, to lose what was not fsynced (the power
    /// nemesis); `None`: on the run directory's filesystem.
    pub lazyfs: Option<lazyfs::Options>,
    /// libfaketime's library, preloaded into every server so that the clock
    /// nemesis can skew its clocks; `None`: real clocks.
    pub faketime: Option<PathBuf>,
    /// Mutual TLS between the nodes and to the harness's clients, with
    /// certificates issued for this run ([`RunCerts`]).
    pub tls: bool,
}

/// Where Debian and Ubuntu put libfaketime (the thread-safe build).
const FAKETIME_LIBS: [&str; 2] =
    ["/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1"];

/// libfaketime's library (`CAPUKV_FAKETIME_LIB`, or where Debian puts it).
pub fn find_faketime() -> std::result::Result<PathBuf, String> {
    let given = std::env::var_os("CAPUKV_FAKETIME_LIB").map(PathBuf::from);
    given
        .into_iter()
        .chain(FAKETIME_LIBS.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| "clock faults need libfaketime: apt-get install libfaketime (or set CAPUKV_FAKETIME_LIB)".into())
}

/// libfaketime's control file: `+OFFSET xRATE`.
fn clock_spec(offset_s: f64, rate: f64) -> String {
    format!("{offset_s:+.3} x{rate}\n")
}

struct Slot {
    child: Option<Child>,
    paused: bool,
    /// The Raft id of the member this slot runs now, when it is not the
    /// founder of the slot's own id: a replacement, which joins.
    member: Option<u64>,
}

pub struct NetnsRuntime {
    topology: Mutex<Option<Topology>>,
    workers: Vec<NsWorker>,
    nodes: Vec<NodeInfo>,
    slots: Mutex<Vec<Slot>>,
    data_dirs: Vec<PathBuf>,
    /// Each node's lazyfs over `nodes/nN/data.lazyfs`, mounted at its data
    /// directory (with `settings.lazyfs`).
    mounts: Vec<Mutex<Option<lazyfs::Mount>>>,
    settings: ServerSettings,
    peers: String,
    keep_data: bool,
    certs: Option<RunCerts>,
    access: Access,
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
        let certs = if settings.tls { Some(RunCerts::issue(run_dir, &nodes)?) } else { None };
        let access = certs.as_ref().map(RunCerts::access).transpose()?.unwrap_or_default();
        let slots = nodes.iter().map(|_| Slot { child: None, paused: false, member: None }).collect();
        let mounts = nodes.iter().map(|_| Mutex::new(None)).collect();
        let runtime = NetnsRuntime {
            topology: Mutex::new(Some(topology)),
            workers,
            nodes,
            slots: Mutex::new(slots),
            data_dirs,
            mounts,
            settings,
            peers,
            keep_data,
            certs,
            access,
        };
        // On failure part-way, dropping `runtime` unmounts and removes what was made.
        if let Some(options) = runtime.settings.lazyfs {
            for (i, dir) in runtime.data_dirs.iter().enumerate() {
                let id = i as u64 + 1;
                let backing = backing_dir(dir);
                for d in [dir, &backing] {
                    std::fs::create_dir_all(d).map_err(|source| RuntimeError::Node {
                        id,
                        what: "create its data directory",
                        source,
                    })?;
                }
                let options = lazyfs::Options { seed: options.seed ^ id, ..options };
                let mount = lazyfs::Mount::mount(&backing, dir, options).map_err(|e| {
                    RuntimeError::Other(format!("node n{id}: mounting lazyfs at {}: {e}", dir.display()))
                })?;
                *runtime.mounts[i].lock().expect("not poisoned") = Some(mount);
            }
        }
        Ok(runtime)
    }

    /// The topology's id (its objects are named `capukv-ID-...`).
    pub fn topology_id(&self) -> Option<String> {
        self.topology.lock().expect("not poisoned").as_ref().map(|t| t.id.clone())
    }

    /// Node `id`'s libfaketime control file, beside its log.
    fn clock_file(&self, id: u64) -> PathBuf {
        self.nodes[self.index(id)].log.with_file_name("faketime.rc")
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
    fn access(&self) -> &Access {
        &self.access
    }

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
        if let Some(lib) = &self.settings.faketime {
            let control = self.clock_file(id);
            if !control.exists() {
                std::fs::write(&control, clock_spec(0.0, 1.0)).map_err(|source| RuntimeError::Node {
                    id,
                    what: "write its clock file",
                    source,
                })?;
            }
            // Re-read at most once a second (each read costs a file open;
            // see CLOCK_TAKES_EFFECT);
            // XRESET keeps a change of rate from making the clock jump.
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", &control)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("FAKETIME_XRESET", "1");
        }
        // A founder names every founder; a replacement joins through the
        // other slots' client addresses.
        let (member, how, whom) = match slots[i].member {
            None => (id, "--peers", self.peers.clone()),
            Some(member) => {
                let others: Vec<&str> = self.nodes.iter().filter(|n| n.id != id).map(|n| n.api_addr.as_str()).collect();
                (member, "--join", others.join(","))
            }
        };
        cmd.args(["server", "--id", &member.to_string(), "--dir"])
            .arg(&self.data_dirs[i])
            .args(["--api-addr", &node.api_addr, "--raft-addr", &node.raft_addr, how, &whom])
            .args(["--tick-ms", &self.settings.tick_ms.to_string()])
            .args(["--snapshot-every", &self.settings.snapshot_every.to_string()])
            .args(&self.settings.extra_args)
            .args(self.certs.as_ref().map(|c| c.server_args(id, &c.dir)).unwrap_or_default())
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
        slots[i].child = Some(child);
        slots[i].paused = false;
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

    fn has_clocks(&self) -> bool {
        self.settings.faketime.is_some()
    }

    fn data_dir(&self, id: u64) -> Option<PathBuf> {
        self.data_dirs.get(self.index(id)).cloned()
    }

    fn can_replace(&self) -> bool {
        // A TLS run's certificates name the founding ids only.
        self.certs.is_none()
    }

    fn replace(&self, id: u64, member: u64) -> Result<()> {
        if !self.can_replace() {
            return Err(RuntimeError::Other(
                "a TLS run's certificates name the founding ids: a replacement's new id has none".into(),
            ));
        }
        self.kill(id)?;
        let dir = &self.data_dirs[self.index(id)];
        // Emptied, not removed: it may be a lazyfs mount point.
        let entries = std::fs::read_dir(dir).map_err(|source| RuntimeError::Node {
            id,
            what: "read its data directory",
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed.map_err(|source| RuntimeError::Node { id, what: "wipe its data directory", source })?;
        }
        self.slots.lock().expect("not poisoned")[self.index(id)].member = Some(member);
        tracing::info!(node = id, member, "slot wiped: it will run a new member, joining");
        Ok(())
    }

    fn set_clock(&self, id: u64, offset_s: f64, rate: f64) -> Result<()> {
        if self.settings.faketime.is_none() {
            return Err(RuntimeError::Other(format!("node n{id}: its server runs without libfaketime")));
        }
        if !(rate.is_finite() && rate > 0.0 && offset_s.is_finite()) {
            return Err(RuntimeError::Other(format!("node n{id}: bad clock: offset {offset_s} s, rate {rate}")));
        }
        // Written whole and renamed, so the server never reads half a line.
        let control = self.clock_file(id);
        let tmp = control.with_extension("tmp");
        std::fs::write(&tmp, clock_spec(offset_s, rate))
            .and_then(|()| std::fs::rename(&tmp, &control))
            .map_err(|source| RuntimeError::Node { id, what: "write its clock file", source })
    }

    fn lose_unsynced(&self, id: u64) -> Result<serde_json::Value> {
        let i = self.index(id);
        if self.slots.lock().expect("not poisoned")[i].child.is_some() {
            return Err(RuntimeError::Other(format!("node n{id} must be killed before it loses power")));
        }
        let mounts = self.mounts[i].lock().expect("not poisoned");
        let Some(mount) = mounts.as_ref() else {
            return Err(RuntimeError::Other(format!(
                "node n{id}: its data directory is not on lazyfs (run with --data-fs fuse)"
            )));
        };
        let loss = mount.lose_unsynced().map_err(|e| RuntimeError::Other(format!("node n{id}: power loss: {e}")))?;
        tracing::info!(node = id, ?loss, "power lost: unsynced writes dropped");
        Ok(serde_json::to_value(loss).expect("serializes"))
    }

    fn netns(&self, id: u64) -> Option<NetNs> {
        // The node's namespace outlives its process.
        Some(self.workers[self.index(id)].target().clone())
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
        let mut unmounted = Ok(());
        for (i, slot) in self.mounts.iter().enumerate() {
            if let Some(mount) = slot.lock().expect("not poisoned").take()
                && let Err(e) = mount.unmount()
            {
                unmounted = Err(RuntimeError::Other(format!("node n{}: unmounting lazyfs: {e}", i + 1)));
            }
        }
        let topology = self.topology.lock().expect("not poisoned").take();
        let removed = match topology {
            Some(mut t) => t.remove().map_err(RuntimeError::from),
            None => Ok(()),
        };
        for i in 0..self.nodes.len() {
            let _ = std::fs::remove_file(self.clock_file(i as u64 + 1));
        }
        if !self.keep_data {
            for dir in &self.data_dirs {
                // Never below a mount that is still there (a failed unmount).
                if lazyfs::mounts().is_ok_and(|m| m.iter().any(|p| p == dir)) {
                    continue;
                }
                let _ = std::fs::remove_dir_all(dir);
                let _ = std::fs::remove_dir_all(backing_dir(dir));
            }
        }
        removed.and(unmounted)
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
            "data_fs": if self.settings.lazyfs.is_some() { "lazyfs" } else { "plain" },
            "torn_writes": self.settings.lazyfs.is_some_and(|o| o.torn_writes),
            "faketime": self.settings.faketime,
            "tls": self.settings.tls,
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

/// The server with the planted bugs compiled in: `capukv-planted` next to
/// `given` (the real server a suite was given), else `given` itself (a
/// planted build under another name), else found as [`find_binary`] does.
pub fn planted_binary(given: Option<&Path>) -> std::result::Result<PathBuf, String> {
    match given {
        Some(given) => {
            let twin = given.with_file_name("capukv-planted");
            Ok(if twin.is_file() { twin } else { given.to_path_buf() })
        }
        None => find_binary(None, "capukv-planted"),
    }
}

/// Where a lazyfs data directory's files really are.
fn backing_dir(data_dir: &Path) -> PathBuf {
    data_dir.with_file_name("data.lazyfs")
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
