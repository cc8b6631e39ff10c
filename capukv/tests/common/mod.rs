//! Real `capukv server` processes on 127.0.0.1 for integration tests. A
//! `LocalCluster` kills its processes and removes its directories when
//! dropped, also when a test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capukv::Client;

pub const BIN: &str = env!("CARGO_BIN_EXE_capukv");

pub struct Node {
    pub id: u64,
    pub dir: PathBuf,
    pub api: String,
    pub raft: String,
    pub log: PathBuf,
    /// Started with `--join` (added to a running cluster), not `--peers`.
    pub joins: bool,
    child: Option<Child>,
}

pub struct LocalCluster {
    pub root: PathBuf,
    pub nodes: Vec<Node>,
    peers: String,
    /// Arguments that name the founders instead of `--peers` (e.g. `--dns`).
    founders: Option<Vec<String>>,
    /// More `capukv server` arguments for every node.
    extra: Vec<String>,
    /// With TLS: every node's files (node i at i - 1), and the client's.
    pub tls: Option<(Vec<capukv::tls::TlsFiles>, capukv::tls::TlsFiles)>,
    /// One cluster at a time: on two cores, parallel clusters under load
    /// would time each other's elections out.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A port on 127.0.0.1 that nothing listens on and that this process has not
/// handed out before. Not port 0's answer: the kernel gives a released port
/// out again at once (two nodes were once given the same one), and the
/// ephemeral range is where every outgoing connection takes its local port.
/// So ports come from below that range, start at a per-process offset, and
/// are never repeated within the process.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000; // below Linux's ephemeral range (32768..)
    static NEXT: Mutex<Option<u32>> = Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let cursor = next.get_or_insert_with(|| (std::process::id().wrapping_mul(2_654_435_761) >> 4) % SPAN);
    for _ in 0..SPAN {
        let port = (FIRST + *cursor % SPAN) as u16;
        *cursor = (*cursor + 1) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {FIRST}..{}", FIRST + SPAN);
}

pub fn free_addr() -> std::net::SocketAddr {
    ([127, 0, 0, 1], free_port()).into()
}

impl LocalCluster {
    /// Starts `n` nodes and waits until one leads.
    pub async fn start(n: u64) -> LocalCluster {
        Self::start_with(n, false).await
    }

    /// Starts `n` nodes with mutual TLS (certificates of a fresh test CA,
    /// under the cluster's root) and waits until one leads.
    pub async fn start_tls(n: u64) -> LocalCluster {
        Self::start_with(n, true).await
    }

    /// Starts `n` nodes with more `capukv server` arguments, and waits until
    /// one leads.
    pub async fn start_with_args(n: u64, extra: &[&str]) -> LocalCluster {
        let mut cluster = Self::build(n, false, |_| format!("127.0.0.1:{}", free_port()), None).await;
        cluster.extra = extra.iter().map(|a| a.to_string()).collect();
        cluster.start_all();
        cluster.wait_for_leader(Duration::from_secs(20)).await;
        cluster
    }

    async fn start_with(n: u64, tls: bool) -> LocalCluster {
        let mut cluster = Self::build(n, tls, |_| format!("127.0.0.1:{}", free_port()), None).await;
        cluster.start_all();
        cluster.wait_for_leader(Duration::from_secs(20)).await;
        cluster
    }

    /// `n` nodes, none started yet, that find their founders with
    /// `founders` (arguments given instead of `--peers`); node i's Raft
    /// address is `raft(i)`.
    pub async fn unstarted(n: u64, raft: impl Fn(u64) -> String, founders: Vec<String>) -> LocalCluster {
        Self::build(n, false, raft, Some(founders)).await
    }

    pub fn start_all(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.start_node(id);
        }
    }

    async fn build(n: u64, tls: bool, raft: impl Fn(u64) -> String, founders: Option<Vec<String>>) -> LocalCluster {
        let serial = SERIAL.lock().await;
        let root = std::env::temp_dir().join(format!("capukv-test-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&root).unwrap();
        let nodes: Vec<Node> = (1..=n)
            .map(|id| Node {
                id,
                dir: root.join(format!("n{id}")),
                api: format!("127.0.0.1:{}", free_port()),
                raft: raft(id),
                log: root.join(format!("n{id}.log")),
                joins: false,
                child: None,
            })
            .collect();
        let peers = nodes.iter().map(|n| format!("{}={}", n.id, n.raft)).collect::<Vec<_>>().join(",");
        let tls = tls.then(|| {
            use capukv::tls::Holder;
            let mut members: Vec<Holder> = (1..=n).map(|id| Holder::node(id, vec!["127.0.0.1".into()])).collect();
            members.push(Holder::client("client"));
            let ca = capukv::tls::TestAuthority::new("test CA").unwrap();
            let mut files = ca.write(&root.join("tls"), &members).unwrap();
            let client = files.pop().unwrap();
            (files, client)
        });
        LocalCluster { root, nodes, peers, founders, extra: Vec::new(), tls, _serial: serial }
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub fn server_command(&self, id: u64, dir: &Path) -> Command {
        let node = self.node(id);
        let mut cmd = Command::new(BIN);
        let founders = if node.joins {
            let others: Vec<String> = self.nodes.iter().filter(|n| !n.joins).map(|n| n.api.clone()).collect();
            vec!["--join".to_string(), others.join(",")]
        } else {
            self.founders.clone().unwrap_or_else(|| vec!["--peers".to_string(), self.peers.clone()])
        };
        cmd.args(["server", "--id", &id.to_string(), "--dir"])
            .arg(dir)
            .args(["--api-addr", &node.api, "--raft-addr", &node.raft])
            .args(&founders)
            // Fast elections keep the tests short.
            .args(["--tick-ms", "50", "--snapshot-every", "500"])
            .args(&self.extra);
        if let Some((nodes, _)) = &self.tls {
            let f = &nodes[(id - 1) as usize];
            cmd.arg("--tls-cert").arg(&f.cert).arg("--tls-key").arg(&f.key).arg("--tls-ca").arg(&f.ca);
        }
        cmd
    }

    pub fn start_node(&mut self, id: u64) {
        let dir = self.node(id).dir.clone();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.node(id).log).unwrap();
        let child =
            self.server_command(id, &dir).stdout(Stdio::null()).stderr(log).spawn().expect("start capukv server");
        self.nodes[(id - 1) as usize].child = Some(child);
    }

    /// A new node (next id, new ports), not started: add it to the cluster
    /// (`member add-learner`), then `start_node` starts it with `--join`.
    pub fn new_node(&mut self) -> u64 {
        assert!(self.tls.is_none(), "new nodes get no certificates");
        let id = self.nodes.len() as u64 + 1;
        self.nodes.push(Node {
            id,
            dir: self.root.join(format!("n{id}")),
            api: format!("127.0.0.1:{}", free_port()),
            raft: format!("127.0.0.1:{}", free_port()),
            log: self.root.join(format!("n{id}.log")),
            joins: true,
            child: None,
        });
        id
    }

    /// kill -9.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes[(id - 1) as usize].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP (`resume` sends SIGCONT): the node hangs, its connections stay open.
    pub fn pause(&self, id: u64) {
        self.signal(id, "-STOP");
    }

    pub fn resume(&self, id: u64) {
        self.signal(id, "-CONT");
    }

    fn signal(&self, id: u64, signal: &str) {
        let child = self.nodes[(id - 1) as usize].child.as_ref().expect("node is running");
        let status = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} node {id}");
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.api.clone()).collect()
    }

    pub fn client(&self) -> Client {
        let client = Client::new(self.endpoints()).unwrap();
        match &self.tls {
            Some((_, me)) => {
                client.with_tls(capukv::tls::client_config(&me.ca, Some((&me.cert, &me.key))).unwrap()).unwrap()
            }
            None => client,
        }
    }

    /// The node that leads, as its running peers agree.
    pub async fn leader(&self) -> Option<u64> {
        let client = self.client();
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            if let Ok(s) = client.status_of(&node.api).await
                && s.role == "leader"
            {
                return Some(s.id);
            }
        }
        None
    }

    pub async fn wait_for_leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(id) = self.leader().await {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader within {within:?}; logs in {}", self.root.display());
    }

    /// Runs the `capukv` CLI against this cluster: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(BIN);
        cmd.arg("--endpoints").arg(self.endpoints().join(","));
        if let Some((_, me)) = &self.tls {
            cmd.arg("--tls-ca").arg(&me.ca);
        }
        let out = cmd.args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
}

/// Waits until `check` holds, or fails with `what`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within {within:?}: {what}");
}

/// Runs `cmd` to its end and returns what it printed, killing it (and
/// failing) if it has not ended within `within`: a server that should
/// refuse to start must not hang the test run when it starts after all.
pub fn output_within(cmd: &mut Command, within: Duration) -> std::process::Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the command");
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if child.try_wait().expect("wait for the command").is_some() {
            return child.wait_with_output().expect("its output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("its output");
    panic!("still running after {within:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.kill(id);
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                if let Ok(log) = std::fs::read_to_string(&n.log) {
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    eprintln!("--- node {} log (last lines) ---", n.id);
                    for line in tail.iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
