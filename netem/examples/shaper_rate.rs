//! How many packets per second the NFQUEUE shaper passes at zero delay, and
//! what CPU it spends doing it. Needs root.
//!
//! `cargo run --release -p netem --example shaper_rate [SECONDS]`
//!
//! Host 1 sends 64-byte UDP datagrams as fast as it can to a sink on host 2,
//! first unshaped, then through the shaper with every packet released at once
//! (reorder 100%: no packet waits), and prints both rates and the shaper
//! thread's CPU time per second.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use netem::{Impairment, Netem, NsWorker, Options, Scope, Topology};

fn blast(sender: &NsWorker, sink: &NsWorker, to: SocketAddr, secs: f64) -> (f64, f64) {
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let socket = sink.run(move || UdpSocket::bind(to)).unwrap().unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let counter = {
        let (received, stop) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                if socket.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let out = sender.run(|| UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed().as_secs_f64() < secs && sent < 50_000_000 {
        if out.send_to(&[0u8; 64], to).is_ok() {
            sent += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    counter.join().unwrap();
    (sent as f64 / elapsed, received.load(Ordering::Relaxed) as f64 / elapsed)
}

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let topology = Topology::create(2).expect("namespaces (root needed)");
    let sender = NsWorker::enter(&topology.host(1).ns()).unwrap();
    let sink = NsWorker::enter(&topology.host(2).ns()).unwrap();
    let to = SocketAddr::from((topology.host(2).addr, 9000));

    let (sent, got) = blast(&sender, &sink, to, secs);
    println!("unshaped:            sent {sent:>9.0} pkt/s, received {got:>9.0} pkt/s");

    let mut netem = Netem::open(&topology.host(1).ns(), Options::default()).unwrap();
    netem.impair(&Scope::All, &Impairment::reorder(100.0, Duration::from_millis(1))).unwrap();
    let (sent, got) = blast(&sender, &sink, SocketAddr::from((topology.host(2).addr, 9001)), secs);
    let stats = netem.shaper_stats();
    let cpu = stats[0].cpu_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    let packets = stats[0].packets.load(Ordering::Relaxed) as f64;
    println!("shaper, zero delay:  sent {sent:>9.0} pkt/s, received {got:>9.0} pkt/s");
    println!(
        "shaper thread: {packets:.0} packets, {:.2} s CPU in {secs} s ({:.0}% of one core), {:.2} µs CPU per packet",
        cpu,
        100.0 * cpu / secs,
        cpu * 1e6 / packets.max(1.0)
    );
    netem.heal().unwrap();
}
