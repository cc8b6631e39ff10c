//! Faults measured on real packets: three namespaces on a bridge made by the
//! test (and always removed), a UDP probe from host 1 to echo servers on
//! hosts 2 and 3. Needs root; CI runs as root.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::Duration;

use netem::probe::{self, EchoServer, ProbeReport};
use netem::{BackendChoice, Impairment, NetNs, Netem, NsWorker, Options, Scope, Topology};

/// Measurements would disturb each other; one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Lab {
    // Field order: servers and workers go before the namespaces they live in.
    echoes: Vec<EchoServer>,
    client: NsWorker,
    topology: Topology,
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "netem tests create network namespaces and need root (CI runs as root): run `sudo -E cargo test -p netem`"
    );
}

fn lab() -> Lab {
    require_root();
    let topology = Topology::create(3).expect("create namespaces on a bridge");
    let mut echoes = Vec::new();
    for index in [2, 3] {
        let host = topology.host(index);
        let worker = NsWorker::enter(&host.ns()).unwrap();
        let addr = SocketAddr::from((host.addr, 7000));
        let socket = worker.run(move || UdpSocket::bind(addr)).unwrap().unwrap();
        echoes.push(EchoServer::start(socket).unwrap());
    }
    let client = NsWorker::enter(&topology.host(1).ns()).unwrap();
    Lab { echoes, client, topology }
}

impl Lab {
    fn target(&self, host: usize) -> SocketAddr {
        self.echoes[host - 2].addr
    }

    fn probe(&self, host: usize, count: u64, interval: Duration) -> ProbeReport {
        let socket = self.client.run(|| UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
        probe::run(socket, self.target(host), count, interval, Duration::from_millis(300)).unwrap()
    }

    fn netem(&self) -> Netem {
        Netem::open(&self.topology.host(1).ns(), Options { seed: 7, ..Options::default() }).unwrap()
    }

    fn peer(&self, host: usize) -> Scope {
        Scope::Peers(vec![self.topology.host(host).addr])
    }

    fn assert_nothing_of_ours_remains(&self) {
        let left = netem::inspect(&self.topology.host(1).ns()).unwrap();
        assert!(left.is_empty(), "left behind after heal: {left:?}");
    }
}

fn ms(d: Option<Duration>) -> f64 {
    d.unwrap().as_secs_f64() * 1000.0
}

#[test]
fn delay_adds_its_time_to_the_round_trip_and_jitter_widens_the_spread() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let mut netem = lab.netem();
    netem.impair(&Scope::All, &Impairment::delay(Duration::from_millis(50), Duration::ZERO)).unwrap();
    let steady = lab.probe(2, 200, Duration::from_millis(5));
    let (p10, p50, p90) = (ms(steady.rtt_quantile(0.1)), ms(steady.rtt_quantile(0.5)), ms(steady.rtt_quantile(0.9)));
    println!("delay 50ms: rtt p10 {p10:.2} p50 {p50:.2} p90 {p90:.2} ms");
    assert_eq!(steady.received, 200);
    assert!((50.0..60.0).contains(&p10) && (50.0..60.0).contains(&p90), "rtt p10 {p10} p90 {p90}");
    netem.heal().unwrap();

    netem.impair(&Scope::All, &Impairment::delay(Duration::from_millis(50), Duration::from_millis(20))).unwrap();
    let jittery = lab.probe(2, 200, Duration::from_millis(5));
    let spread = ms(jittery.rtt_quantile(0.9)) - ms(jittery.rtt_quantile(0.1));
    println!("delay 50ms ±20ms: p10-p90 spread {spread:.2} ms (steady {:.2})", p90 - p10);
    assert!(spread > 15.0 && spread > 5.0 * (p90 - p10).max(0.5), "spread {spread}");
    netem.heal().unwrap();
    lab.assert_nothing_of_ours_remains();
    assert_eq!(lab.probe(2, 50, Duration::from_millis(1)).received, 50);
}

#[test]
fn loss_drops_its_share_of_2000_probes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let mut netem = lab.netem();
    netem.impair(&Scope::All, &Impairment::loss(30.0)).unwrap();
    let report = lab.probe(2, 2000, Duration::from_micros(500));
    println!("loss 30%: {:.1}% lost", report.loss_percent());
    assert!((20.0..40.0).contains(&report.loss_percent()), "{report:?}");
    drop(netem); // dropping the handle heals too
    lab.assert_nothing_of_ours_remains();
    // All of it, toward one peer only (what the nemesis's lost answers do).
    let mut netem = lab.netem();
    netem.impair(&lab.peer(2), &Impairment::loss(100.0)).unwrap();
    assert_eq!(lab.probe(2, 200, Duration::from_micros(500)).loss_percent(), 100.0);
    assert_eq!(lab.probe(3, 200, Duration::from_micros(500)).loss_percent(), 0.0);
    drop(netem);
    lab.assert_nothing_of_ours_remains();
}

#[test]
fn duplication_doubles_about_half_the_probes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let mut netem = lab.netem();
    netem.impair(&Scope::All, &Impairment::duplicate(50.0)).unwrap();
    let report = lab.probe(2, 2000, Duration::from_micros(500));
    println!("duplicate 50%: {:.1}% duplicated", report.duplicate_percent());
    assert!((40.0..60.0).contains(&report.duplicate_percent()), "{report:?}");
    netem.heal().unwrap();
    lab.assert_nothing_of_ours_remains();
}

#[test]
fn reordering_delivers_out_of_sequence() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let mut netem = lab.netem();
    netem.impair(&Scope::All, &Impairment::reorder(30.0, Duration::from_millis(10))).unwrap();
    let report = lab.probe(2, 1000, Duration::from_micros(500));
    println!("reorder 30% around 10ms: {} of {} out of order", report.out_of_order, report.received);
    assert!(report.out_of_order > 100, "{report:?}");
    assert_eq!(report.received, 1000, "reordering loses nothing");
    netem.heal().unwrap();
    lab.assert_nothing_of_ours_remains();
}

#[test]
fn corruption_damages_payloads() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let mut netem = lab.netem();
    netem.impair(&Scope::All, &Impairment::corrupt(20.0)).unwrap();
    let receiver = NsWorker::enter(&lab.topology.host(2).ns()).unwrap();
    let csum_errors = || receiver.run(probe::udp_checksum_errors).unwrap().unwrap();
    let before = csum_errors();
    let report = lab.probe(2, 1000, Duration::from_micros(500));
    let failed_checksum = csum_errors() - before;
    // A damaged datagram is dropped by the receiver's UDP checksum, or, where
    // checksums are offloaded and computed after the damage, arrives with a
    // bad probe checksum; both are the corruption showing.
    let damaged = report.corrupted + failed_checksum;
    println!(
        "corrupt 20%: {failed_checksum} UDP checksum failures at the receiver, {} corrupted payloads, {} lost",
        report.corrupted,
        report.sent - report.received
    );
    assert!((100..=300).contains(&damaged), "{damaged} damaged: {report:?}");
    assert_eq!(report.sent - report.received, failed_checksum, "every loss is a checksum failure");
    netem.heal().unwrap();
    lab.assert_nothing_of_ours_remains();
}

#[test]
fn partition_delivers_nothing_to_its_peer_and_heal_restores_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let mut netem = lab.netem();
    netem.partition(&[lab.topology.host(2).addr]).unwrap();
    assert_eq!(lab.probe(2, 200, Duration::from_millis(1)).received, 0, "partitioned peer answered");
    assert_eq!(lab.probe(3, 200, Duration::from_millis(1)).received, 200, "the other peer must be untouched");
    // TCP too: a connection to the partitioned peer cannot be made.
    let target = SocketAddr::from((lab.topology.host(2).addr, 7001));
    let connect =
        lab.client.run(move || std::net::TcpStream::connect_timeout(&target, Duration::from_millis(500))).unwrap();
    assert_eq!(connect.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    netem.heal().unwrap();
    lab.assert_nothing_of_ours_remains();
    assert_eq!(lab.probe(2, 200, Duration::from_millis(1)).received, 200, "heal must restore delivery");
}

#[test]
fn a_one_way_partition_drops_only_what_the_peer_sends() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let mut netem = lab.netem();
    netem.deafen(&[lab.topology.host(2).addr]).unwrap();
    let heard_before = lab.echoes[0].heard.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(lab.probe(2, 200, Duration::from_millis(1)).received, 0, "host 1 must not hear host 2");
    let heard = lab.echoes[0].heard.load(std::sync::atomic::Ordering::Relaxed) - heard_before;
    assert_eq!(heard, 200, "host 2 must still hear host 1");
    assert_eq!(lab.probe(3, 200, Duration::from_millis(1)).received, 200, "the other peer must be untouched");
    netem.heal().unwrap();
    lab.assert_nothing_of_ours_remains();
    assert_eq!(lab.probe(2, 200, Duration::from_millis(1)).received, 200, "heal must restore delivery");
}

#[test]
fn a_link_fault_leaves_the_other_destination_untouched() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let mut netem = lab.netem();
    let link = Impairment { loss: 50.0, ..Impairment::delay(Duration::from_millis(50), Duration::ZERO) };
    netem.impair(&lab.peer(2), &link).unwrap();
    let faulty = lab.probe(2, 400, Duration::from_millis(1));
    let clean = lab.probe(3, 400, Duration::from_millis(1));
    println!(
        "link to host 2: {:.1}% lost, p50 {:.2} ms; host 3: {:.1}% lost, p50 {:.2} ms",
        faulty.loss_percent(),
        ms(faulty.rtt_quantile(0.5)),
        clean.loss_percent(),
        ms(clean.rtt_quantile(0.5))
    );
    assert!(ms(faulty.rtt_quantile(0.5)) >= 50.0 && faulty.loss_percent() > 30.0);
    assert_eq!(clean.received, 400);
    assert!(ms(clean.rtt_quantile(0.99)) < 20.0, "host 3 was slowed");
    netem.heal().unwrap();
    lab.assert_nothing_of_ours_remains();
}

#[test]
fn rate_limits_hold_throughput_down_for_all_and_per_peer() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let mut netem = lab.netem();
    // 2,000 probes of 92 bytes on the wire in 0.2 s is ~900 kB/s; allow 20 kB/s.
    for scope in [Scope::All, lab.peer(2)] {
        netem.impair(&scope, &Impairment::rate(20_000)).unwrap();
        let report = lab.probe(2, 2000, Duration::from_micros(100));
        println!("rate 20 kB/s on {scope:?}: {} of 2000 answered", report.received);
        assert!(report.received < 500, "{scope:?}: {report:?}");
        netem.heal().unwrap();
    }
    lab.assert_nothing_of_ours_remains();
    assert_eq!(lab.probe(2, 200, Duration::from_millis(1)).received, 200);
}

#[test]
fn kernel_netem_detection_matches_the_kernel() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let ns = lab.topology.host(1).ns();
    let detected = lab.netem().capabilities().kernel_netem;
    let kernel = Netem::open(&ns, Options { backend: BackendChoice::Kernel, ..Options::default() });
    assert_eq!(kernel.is_ok(), detected);
    // Where the kernel's config is readable, it decides what detection must say.
    if let Ok(out) = std::process::Command::new("sh").args(["-c", "zcat /proc/config.gz | grep NET_SCH_NETEM"]).output()
    {
        let config = String::from_utf8_lossy(&out.stdout);
        if config.contains("is not set") {
            assert!(!detected, "netem reported available on a kernel built without it");
            let err = kernel.err().unwrap().to_string();
            assert!(err.contains("no sch_netem"), "{err}");
        } else if config.contains("=y") {
            assert!(detected);
        }
    }
    let fallback = Netem::open(&ns, Options { backend: BackendChoice::Fallback, ..Options::default() }).unwrap();
    assert!(!fallback.capabilities().kernel_netem);
}

#[test]
fn cleanup_removes_what_a_crashed_caller_left() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = lab();
    let ns: NetNs = lab.topology.host(1).ns();
    let mut netem = lab.netem();
    netem.partition(&[lab.topology.host(2).addr]).unwrap();
    netem.impair(&lab.peer(3), &Impairment::delay(Duration::from_millis(5), Duration::ZERO)).unwrap();
    netem.impair(&Scope::All, &Impairment::rate(1_000_000)).unwrap();
    std::mem::forget(netem); // as if the process had died: nothing healed
    let found = netem::inspect(&ns).unwrap();
    assert_eq!((found.nft_tables, found.iptables_rules, found.qdiscs), (1, 1, 1), "{found:?}");
    let removed = netem::cleanup(&ns).unwrap();
    assert_eq!(removed, found);
    let left = netem::inspect(&ns).unwrap();
    assert_eq!((left.nft_tables, left.iptables_rules, left.qdiscs), (0, 0, 0), "{left:?}");
}

/// What `ip` shows of a run's objects: named namespaces and links whose names start with `prefix`.
fn visible_to_ip(prefix: &str) -> Vec<String> {
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip").args(args).output().expect("iproute2's ip runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut found: Vec<String> =
        ip(&["netns", "list"]).lines().filter(|l| l.starts_with(prefix)).map(|l| format!("netns {l}")).collect();
    found.extend(ip(&["-o", "link", "show"]).lines().filter(|l| l.contains(prefix)).map(|l| format!("link {l}")));
    found
}

#[test]
fn a_topology_is_what_ip_shows_and_cleanup_by_prefix_removes_all_of_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let topology = Topology::create(2).expect("create namespaces on a bridge");
    let prefix = format!("{}-{}", netem::topology::PREFIX, topology.id);
    let shown = visible_to_ip(&prefix);
    // Two namespaces, the bridge and the host ends of two veth pairs.
    assert_eq!(shown.iter().filter(|l| l.starts_with("netns")).count(), 2, "{shown:#?}");
    assert_eq!(shown.iter().filter(|l| l.starts_with("link")).count(), 3, "{shown:#?}");
    // Inside, eth0 has its address and is up, as `ip -n` sees it.
    let host = topology.host(2);
    let out = std::process::Command::new("ip")
        .args(["-n", &host.netns, "-o", "-4", "addr", "show", "dev", "eth0", "up"])
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(out.contains(&format!("inet {}/24", host.addr)), "{out}");
    // A taken name is refused, and the refusal leaves the namespace alone.
    let err = netem::create_named(&host.netns).unwrap_err().to_string();
    assert!(err.contains(&host.netns), "{err}");
    assert!(netem::list_named().unwrap().contains(&host.netns));

    // As after a crash: forget the topology, then remove by prefix.
    std::mem::forget(topology);
    let removed = netem::cleanup_prefix(&prefix).unwrap();
    // Veth ends go with their namespace, as the kernel gets to it; the bridge is ours to delete.
    assert_eq!(removed.namespaces.len(), 2, "{removed:?}");
    assert!(removed.links.iter().any(|l| l.ends_with("-br")), "{removed:?}");
    // The kernel tears a namespace down in the background: give it up to 2 s.
    let mut left = visible_to_ip(&prefix);
    for _ in 0..20 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = visible_to_ip(&prefix);
    }
    assert_eq!(left, Vec::<String>::new());
}

#[test]
fn a_namespace_file_left_unmounted_by_a_crash_is_still_cleaned_up() {
    require_root();
    // A crash between making /run/netns/NAME and mounting the namespace on it.
    let name = format!("{}-dead-n{}", netem::topology::PREFIX, std::process::id());
    std::fs::create_dir_all(netem::NETNS_DIR).unwrap();
    let path = std::path::Path::new(netem::NETNS_DIR).join(&name);
    std::fs::write(&path, b"").unwrap();
    let removed = netem::cleanup_prefix(&name).unwrap();
    assert_eq!(removed.namespaces, vec![name.clone()]);
    assert!(!path.exists(), "the file is gone");
    assert!(!netem::list_named().unwrap().contains(&name));
}
