//! A UDP probe for measuring what a fault does: sequence-numbered, timestamped,
//! checksummed datagrams bounced off an echo server.

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const PACKET: usize = 64;

/// Echoes every datagram back to its sender until dropped.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    pub addr: SocketAddr,
    /// Datagrams received (and echoed): what reached this side.
    pub heard: Arc<AtomicU64>,
}

impl EchoServer {
    /// Serves on `socket` (bind it inside the namespace you want).
    pub fn start(socket: UdpSocket) -> io::Result<EchoServer> {
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let heard = Arc::new(AtomicU64::new(0));
        let count = heard.clone();
        let thread = thread::Builder::new().name("probe-echo".into()).spawn(move || {
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    count.fetch_add(1, Ordering::Relaxed);
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        })?;
        Ok(EchoServer { stop, thread: Some(thread), addr, heard })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What came back.
#[derive(Debug, Default)]
pub struct ProbeReport {
    pub sent: u64,
    /// Distinct probes answered, intact.
    pub received: u64,
    /// Answers to a probe already answered.
    pub duplicates: u64,
    /// Answers whose sequence number is below one already seen.
    pub out_of_order: u64,
    /// Answers whose checksum does not match their contents.
    pub corrupted: u64,
    /// Round-trip times of the first answer to each probe.
    pub rtts: Vec<Duration>,
}

impl ProbeReport {
    pub fn loss_percent(&self) -> f64 {
        100.0 * (self.sent - self.received.min(self.sent)) as f64 / self.sent.max(1) as f64
    }

    pub fn duplicate_percent(&self) -> f64 {
        100.0 * self.duplicates as f64 / self.received.max(1) as f64
    }

    /// The `q`-quantile (0 to 1) of the round-trip times.
    pub fn rtt_quantile(&self, q: f64) -> Option<Duration> {
        let mut sorted = self.rtts.clone();
        sorted.sort();
        let last = sorted.len().checked_sub(1)?;
        Some(sorted[((last as f64) * q).round() as usize])
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

fn encode(seq: u64, sent_nanos: u64) -> [u8; PACKET] {
    let mut p = [0u8; PACKET];
    p[0..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(&sent_nanos.to_be_bytes());
    for (i, b) in p[16..PACKET - 4].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(i as u8);
    }
    let sum = fnv1a(&p[..PACKET - 4]);
    p[PACKET - 4..].copy_from_slice(&sum.to_be_bytes());
    p
}

/// `(seq, sent_nanos)` if intact.
fn decode(p: &[u8]) -> Option<(u64, u64)> {
    if p.len() != PACKET {
        return None;
    }
    let sum = u32::from_be_bytes(p[PACKET - 4..].try_into().ok()?);
    (fnv1a(&p[..PACKET - 4]) == sum)
        .then(|| (u64::from_be_bytes(p[0..8].try_into().unwrap()), u64::from_be_bytes(p[8..16].try_into().unwrap())))
}

/// Sends `count` probes from `socket` to `target`, one per `interval`, then
/// waits `drain` for late answers.
pub fn run(
    socket: UdpSocket,
    target: SocketAddr,
    count: u64,
    interval: Duration,
    drain: Duration,
) -> io::Result<ProbeReport> {
    socket.set_read_timeout(Some(Duration::from_millis(10)))?;
    let socket = Arc::new(socket);
    let start = Instant::now();
    let receiver = {
        let socket = socket.clone();
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let handle = thread::spawn(move || {
            let mut report = ProbeReport::default();
            let mut seen = HashSet::new();
            let mut highest: Option<u64> = None;
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, _)) = socket.recv_from(&mut buf) else { continue };
                let Some((seq, sent)) = decode(&buf[..n]) else {
                    report.corrupted += 1;
                    continue;
                };
                if !seen.insert(seq) {
                    report.duplicates += 1;
                    continue;
                }
                if highest.is_some_and(|h| seq < h) {
                    report.out_of_order += 1;
                }
                highest = highest.max(Some(seq));
                report.received += 1;
                report.rtts.push(start.elapsed().saturating_sub(Duration::from_nanos(sent)));
            }
            report
        });
        (done, handle)
    };
    let mut next = Instant::now();
    for seq in 0..count {
        let packet = encode(seq, start.elapsed().as_nanos() as u64);
        // A local firewall drop answers EPERM: that probe is simply lost.
        match socket.send_to(&packet, target) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(e),
        }
        next += interval;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    thread::sleep(drain);
    receiver.0.store(true, Ordering::Relaxed);
    let mut report = receiver.1.join().map_err(|_| io::Error::other("probe receiver panicked"))?;
    report.sent = count;
    Ok(report)
}

/// The `UdpInCsumErrors` counter of the calling thread's namespace: datagrams
/// the kernel dropped for a bad checksum.
pub fn udp_checksum_errors() -> io::Result<u64> {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return Err(io::Error::other("no Udp lines in /proc/net/snmp"));
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "InCsumErrors")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| io::Error::other("no InCsumErrors in /proc/net/snmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let p = encode(42, 1234);
        assert_eq!(decode(&p), Some((42, 1234)));
        for i in 0..PACKET {
            let mut q = p;
            q[i] ^= 0x10;
            assert_eq!(decode(&q), None, "byte {i}");
        }
    }

    #[test]
    fn loopback_probe_sees_everything_in_order() {
        let echo = EchoServer::start(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let report = run(
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            echo.addr,
            200,
            Duration::from_micros(200),
            Duration::from_millis(100),
        )
        .unwrap();
        assert_eq!(report.received, 200);
        assert_eq!((report.duplicates, report.corrupted, report.out_of_order), (0, 0, 0));
        assert_eq!(report.loss_percent(), 0.0);
    }
}
