//! Founding peers found through DNS (`capukv server --dns NAME --expect N`),
//! against a real DNS server: Debian's dnsmasq, started by each test on
//! loopback with the records it serves, and stopped (also on failure) when
//! the test ends.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BIN, LocalCluster, free_port, output_within};

/// A dnsmasq serving only the records it was given, on 127.0.0.1:`port`.
struct Dnsmasq {
    child: Child,
}

impl Dnsmasq {
    /// `config`: dnsmasq option lines (`srv-host=...`, `host-record=...`,
    /// `addn-hosts=...`).
    fn start(dir: &Path, port: u16, config: &[String]) -> Dnsmasq {
        let bin = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"].into_iter().map(PathBuf::from).find(|p| p.exists());
        let bin = bin.unwrap_or_else(|| {
            panic!("dnsmasq is not installed: these tests need Debian's dnsmasq (scripts/test.sh installs it)")
        });
        let conf = dir.join(format!("dnsmasq-{port}.conf"));
        let mut lines = vec![
            format!("port={port}"),
            "listen-address=127.0.0.1".into(),
            "bind-interfaces".into(),
            "no-resolv".into(),
            "no-hosts".into(),
            "no-negcache".into(),
            "user=root".into(),
        ];
        lines.extend_from_slice(config);
        std::fs::write(&conf, lines.join("\n") + "\n").unwrap();
        let log = std::fs::File::create(dir.join("dnsmasq.log")).unwrap();
        let child = Command::new(bin)
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", conf.display()))
            .arg("--pid-file=")
            .arg("--log-facility=-")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dnsmasq");
        // Stopped on drop, also when it never answers below.
        let dns = Dnsmasq { child };
        // Up once it answers (any answer) on its port.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if std::net::UdpSocket::bind("127.0.0.1:0").is_ok_and(|s| probe(&s, port)) {
                return dns;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dnsmasq did not answer on 127.0.0.1:{port}; see {}", dir.join("dnsmasq.log").display());
    }
}

/// Whether a DNS server answers a query for `probe.test` on `port`.
fn probe(socket: &std::net::UdpSocket, port: u16) -> bool {
    // Header: id 1, recursion desired, one question; then probe.test A IN.
    let mut query = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["probe", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut answer = [0u8; 512];
    socket.send_to(&query, ("127.0.0.1", port)).is_ok() && socket.recv(&mut answer).is_ok()
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dns_args(name: &str, expect: usize, port: u16) -> Vec<String> {
    ["--dns", name, "--expect", &expect.to_string(), "--dns-server", &format!("127.0.0.1:{port}")]
        .map(str::to_string)
        .to_vec()
}

/// SRV and A records naming node i as `capukv-i.cluster.test` (listed in
/// reverse, so that answer order and ids disagree).
fn srv_records(cluster: &LocalCluster, ids: &[u64]) -> Vec<String> {
    let mut lines = Vec::new();
    for &id in ids.iter().rev() {
        let port = cluster.node(id).raft.rsplit_once(':').unwrap().1.to_string();
        lines.push(format!("srv-host=_capukv-raft._tcp.cluster.test,capukv-{id}.cluster.test,{port},0,0"));
        lines.push(format!("host-record=capukv-{id}.cluster.test,127.0.0.1"));
    }
    lines
}

async fn raft_addrs_in_member_list(cluster: &LocalCluster) -> Vec<(u64, String)> {
    let list = cluster.client().member_list().await.unwrap();
    let mut members: Vec<(u64, String)> = list.members.into_iter().map(|m| (m.id, m.raft_addr)).collect();
    members.sort();
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn founders_named_by_srv_records_found_the_cluster_even_when_records_come_late() {
    let dns_port = free_port();
    let mut cluster =
        LocalCluster::unstarted(3, |_| format!("127.0.0.1:{}", free_port()), dns_args("cluster.test", 3, dns_port))
            .await;
    // Two of three peers are registered when the nodes start.
    let early = Dnsmasq::start(&cluster.root, dns_port, &srv_records(&cluster, &[1, 2]));
    cluster.start_all();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cluster.leader().await, None, "no node starts before DNS lists every founder");
    for id in 1..=3 {
        let log = std::fs::read_to_string(&cluster.node(id).log).unwrap();
        assert!(log.contains("waiting for DNS to list every founding peer"), "node {id} waits: {log}");
    }
    // The orchestrator registers the third.
    drop(early);
    let _dns = Dnsmasq::start(&cluster.root, dns_port, &srv_records(&cluster, &[1, 2, 3]));
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let expected: Vec<(u64, String)> = (1..=3).map(|id| (id, cluster.node(id).raft.clone())).collect();
    assert_eq!(raft_addrs_in_member_list(&cluster).await, expected, "ids come from the hosts' names");
    cluster.client().put("k", "v").await.unwrap();
    assert_eq!(cluster.client().get("k").await.unwrap().unwrap().value, "v");

    // A restart asks DNS again and finds the same founders: its data
    // directory (bootstrapped with them) takes it back.
    cluster.kill(2);
    cluster.start_node(2);
    let c = cluster.client();
    common::eventually(Duration::from_secs(20), "the restarted node follows the leader again", || async {
        c.status_of(&cluster.node(2).api).await.is_ok_and(|s| s.applied_index >= s.commit_index && s.leader != 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn founders_named_by_a_records_are_numbered_by_address() {
    let (dns_port, raft_port) = (free_port(), free_port());
    let mut cluster = LocalCluster::unstarted(
        3,
        |id| format!("127.0.0.{id}:{raft_port}"),
        dns_args("peers.cluster.test", 3, dns_port),
    )
    .await;
    let hosts = cluster.root.join("hosts");
    // Not in address order: the ids must not follow the file's order.
    std::fs::write(
        &hosts,
        "127.0.0.3 peers.cluster.test\n127.0.0.1 peers.cluster.test\n127.0.0.2 peers.cluster.test\n",
    )
    .unwrap();
    let _dns = Dnsmasq::start(&cluster.root, dns_port, &[format!("addn-hosts={}", hosts.display())]);
    cluster.start_all();
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let expected: Vec<(u64, String)> = (1..=3).map(|id| (id, format!("127.0.0.{id}:{raft_port}"))).collect();
    assert_eq!(raft_addrs_in_member_list(&cluster).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_that_lists_more_peers_than_expected_or_no_id_is_a_clear_startup_error() {
    let dns_port = free_port();
    let cluster =
        LocalCluster::unstarted(3, |_| format!("127.0.0.1:{}", free_port()), dns_args("cluster.test", 2, dns_port))
            .await;
    let mut records = srv_records(&cluster, &[1, 2, 3]);
    records.push("srv-host=_capukv-raft._tcp.noid.test,capukv.noid.test,7000,0,0".into());
    records.push("host-record=capukv.noid.test,127.0.0.1".into());
    let _dns = Dnsmasq::start(&cluster.root, dns_port, &records);
    let start = |dns: Vec<String>| {
        let node = cluster.node(1);
        let mut cmd = Command::new(BIN);
        cmd.args(["server", "--id", "1", "--dir"])
            .arg(cluster.root.join("refused"))
            .args(["--api-addr", &node.api, "--raft-addr", &node.raft])
            .args(dns);
        let out = output_within(&mut cmd, Duration::from_secs(30));
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let too_many = start(dns_args("cluster.test", 2, dns_port));
    assert!(too_many.contains("lists 3 peers for cluster.test, more than --expect 2"), "{too_many}");
    let no_id = start(dns_args("noid.test", 1, dns_port));
    assert!(no_id.contains("names host capukv.noid.test"), "{no_id}");
    let mut too_few = dns_args("cluster.test", 4, dns_port);
    too_few.extend(["--dns-timeout-secs".into(), "2".into()]);
    let too_few = start(too_few);
    assert!(too_few.contains("listed 3 of the 4 peers expected"), "{too_few}");
}
