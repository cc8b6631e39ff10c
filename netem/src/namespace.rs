//! Entering a network namespace without tools inside it.
//!
//! Namespaces belong to threads, so each [`NsWorker`] owns one thread that
//! calls `setns` once and then runs jobs: netlink sockets it opens stay bound
//! to that namespace wherever they are used later, and programs it spawns
//! (`nft`, `iptables-nft`, the host's binaries) start inside it.

use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;

use nix::sched::{CloneFlags, setns};

use crate::error::{NetemError, Result};

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
