//! Network namespaces: named ones made and removed as `ip netns` does, and
//! entered without tools inside them.
//!
//! Namespaces belong to threads, so each [`NsWorker`] owns one thread that
//! calls `setns` once and then runs jobs: netlink sockets it opens stay bound
//! to that namespace wherever they are used later, and programs it spawns
//! (`nft`, `iptables-nft`, the host's binaries) start inside it.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::error::{NetemError, Result};

/// Where named namespaces live, as `ip netns` keeps them.
pub const NETNS_DIR: &str = "/run/netns";

/// `ip netns add NAME`: a new network namespace, kept alive by a bind mount
/// of it at `/run/netns/NAME`. Fails if the name is taken.
pub fn create_named(name: &str) -> Result<()> {
    let failed = |source| NetemError::NamedNamespace { action: "create", name: name.to_string(), source };
    let dir = Path::new(NETNS_DIR);
    std::fs::create_dir_all(dir).map_err(failed)?;
    share_mounts_under(dir).map_err(failed)?;
    let path = dir.join(name);
    OpenOptions::new().write(true).create_new(true).open(&path).map_err(failed)?;
    // A thread of its own unshares, so the caller stays where it is; the
    // mount keeps the namespace alive after the thread ends.
    let target = path.clone();
    let made = thread::Builder::new()
        .name(format!("netns-create-{name}"))
        .spawn(move || -> io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
            Ok(())
        })
        .and_then(|thread| {
            thread.join().unwrap_or_else(|_| Err(io::Error::other("the thread creating the namespace panicked")))
        });
    if let Err(source) = made {
        let _ = std::fs::remove_file(&path);
        return Err(failed(source));
    }
    Ok(())
}

/// Makes mounts under `dir` propagate to every mount namespace (so a
/// namespace made here is visible in a container's or a shell's), binding
/// `dir` onto itself first if it is not a mount point yet, as `ip netns` does.
fn share_mounts_under(dir: &Path) -> io::Result<()> {
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, dir, Some("none"), shared, None::<&str>) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            mount(Some(dir), dir, Some("none"), MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)?;
            Ok(mount(None::<&str>, dir, Some("none"), shared, None::<&str>)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// `ip netns del NAME`: the namespace ends when its last process or mount
/// goes. As `ip` does, a name whose mount is already gone (a crash between
/// making the file and mounting it) is removed all the same.
pub fn delete_named(name: &str) -> Result<()> {
    let path = Path::new(NETNS_DIR).join(name);
    let _ = umount2(&path, MntFlags::MNT_DETACH);
    std::fs::remove_file(&path).map_err(|source| NetemError::NamedNamespace {
        action: "delete",
        name: name.to_string(),
        source,
    })
}

/// `ip netns list`: the named namespaces.
pub fn list_named() -> Result<Vec<String>> {
    match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(NetemError::NamedNamespace { action: "list", name: NETNS_DIR.into(), source }),
    }
}

/// `ip netns pids NAME`: the processes whose network namespace it is.
pub fn pids_in(name: &str) -> Vec<i32> {
    let Ok(ns) = std::fs::metadata(Path::new(NETNS_DIR).join(name)) else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.dev() == ns.dev() && m.ino() == ns.ino())
        })
        .collect()
}

/// Which network namespace to act in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetNs {
    /// A namespace made with `ip netns add NAME` (`/run/netns/NAME`).
    Named(String),
    /// The namespace of a running process, e.g. a container's init.
    Pid(u32),
    /// An explicit path to a namespace file.
    Path(PathBuf),
}

impl NetNs {
    pub fn path(&self) -> PathBuf {
        match self {
            NetNs::Named(name) => PathBuf::from("/run/netns").join(name),
            NetNs::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            NetNs::Path(path) => path.clone(),
        }
    }
}

impl fmt::Display for NetNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetNs::Named(name) => write!(f, "netns {name}"),
            NetNs::Pid(pid) => write!(f, "netns of pid {pid}"),
            NetNs::Path(path) => write!(f, "netns {}", path.display()),
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread living in a network namespace, running closures there.
pub struct NsWorker {
    target: NetNs,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl NsWorker {
    pub fn enter(target: &NetNs) -> Result<NsWorker> {
        let ns_file =
            File::open(target.path()).map_err(|source| NetemError::Namespace { target: target.to_string(), source })?;
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), std::io::Error>>();
        let thread = thread::Builder::new().name(format!("netns-{}", target.path().display())).spawn(move || {
            let entered = setns(&ns_file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from);
            let ok = entered.is_ok();
            let _ = ready_tx.send(entered);
            if ok {
                while let Ok(job) = jobs_rx.recv() {
                    job();
                }
            }
        })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(NsWorker { target: target.clone(), jobs: Some(jobs_tx), thread: Some(thread) }),
            Ok(Err(source)) => Err(NetemError::Namespace { target: target.to_string(), source }),
            Err(_) => Err(NetemError::WorkerGone(target.to_string())),
        }
    }

    pub fn target(&self) -> &NetNs {
        &self.target
    }

    /// Runs `f` on the namespace's thread and waits for its result.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        let gone = || NetemError::WorkerGone(self.target.to_string());
        self.jobs.as_ref().ok_or_else(gone)?.send(job).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())
    }
}

impl Drop for NsWorker {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
