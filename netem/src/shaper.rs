//! The userspace delayer behind NFQUEUE, for kernels without `sch_netem`.
//!
//! Packets queued by an `NFQUEUE` rule arrive here; each is given a release
//! time (delay plus jitter, correlated like netem's), optionally corrupted,
//! and held in a timer heap until it is released with an accept verdict.
//! A packet picked for reordering skips the delay, as with netem's `reorder`.
//! The rule carries `--queue-bypass`, so if this thread dies traffic flows.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, clock_gettime};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::nfqueue::{NF_ACCEPT, NF_DROP, NfQueue, QueuedPacket};

/// What the shaper does to each packet (percentages from 0 to 100).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShapeProfile {
    pub delay: Duration,
    pub jitter: Duration,
    pub delay_correlation: f64,
    pub reorder: f64,
    pub corrupt: f64,
    /// Loss is normally nftables' job; the shaper takes it when it is correlated.
    pub loss: f64,
    pub loss_correlation: f64,
}

/// Counters a running shaper keeps.
#[derive(Debug, Default)]
pub struct ShaperStats {
    pub packets: AtomicU64,
    pub reordered: AtomicU64,
    pub corrupted: AtomicU64,
    pub dropped: AtomicU64,
    /// CPU time the shaper's thread has used, in nanoseconds.
    pub cpu_nanos: AtomicU64,
}

/// A correlated uniform random source in [0, 1), as netem's `get_crandom`.
struct Correlated {
    last: f64,
    rho: f64,
}

impl Correlated {
    fn new(correlation_percent: f64) -> Correlated {
        Correlated { last: 0.5, rho: (correlation_percent / 100.0).clamp(0.0, 1.0) }
    }

    fn next(&mut self, rng: &mut SmallRng) -> f64 {
        let fresh: f64 = rng.random();
        self.last = (1.0 - self.rho) * fresh + self.rho * self.last;
        self.last
    }
}

struct Held {
    due: Instant,
    seq: u64,
    id: u32,
    payload: Option<Vec<u8>>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// A running shaper thread. Stopping it releases every held packet.
pub struct Shaper {
    stop: Arc<AtomicBool>,
    stats: Arc<ShaperStats>,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl Shaper {
    pub fn start(queue: NfQueue, profile: ShapeProfile, seed: u64) -> io::Result<Shaper> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ShaperStats::default());
        let (stop2, stats2) = (stop.clone(), stats.clone());
        let thread = thread::Builder::new()
            .name("netem-shaper".into())
            .spawn(move || run(queue, profile, seed, &stop2, &stats2))?;
        Ok(Shaper { stop, stats, thread: Some(thread) })
    }

    pub fn stats(&self) -> &ShaperStats {
        &self.stats
    }

    /// Stops the thread after releasing what it holds; returns its error, if it failed.
    pub fn stop(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the shaper thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn thread_cpu_nanos() -> u64 {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Flips one byte of the transport payload, past the IP and transport headers'
/// first eight bytes so the packet still reaches its destination.
fn corrupt(packet: &mut [u8], rng: &mut SmallRng) -> bool {
    let Some(first) = packet.first() else { return false };
    let header = usize::from(first & 0x0f) * 4 + 8;
    if packet.len() <= header {
        return false;
    }
    let at = rng.random_range(header..packet.len());
    packet[at] ^= rng.random_range(1..=255u8);
    true
}

fn run(mut queue: NfQueue, p: ShapeProfile, seed: u64, stop: &AtomicBool, stats: &ShaperStats) -> io::Result<()> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut delay_rnd = Correlated::new(p.delay_correlation);
    let mut loss_rnd = Correlated::new(p.loss_correlation);
    let mut held: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let mut batch: Vec<QueuedPacket> = Vec::with_capacity(256);
    let mut seq = 0u64;
    let idle = Duration::from_millis(20);
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let now = Instant::now();
        if !stopping {
            let wait = held.peek().map_or(idle, |Reverse(h)| h.due.saturating_duration_since(now)).min(idle);
            let fd = queue.socket().fd();
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        queue.recv_ready(&mut batch)?;
        let now = Instant::now();
        for mut packet in batch.drain(..) {
            stats.packets.fetch_add(1, Ordering::Relaxed);
            if p.loss > 0.0 && loss_rnd.next(&mut rng) * 100.0 < p.loss {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                queue.verdict(packet.id, NF_DROP, None)?;
                continue;
            }
            let corrupted =
                p.corrupt > 0.0 && rng.random::<f64>() * 100.0 < p.corrupt && corrupt(&mut packet.payload, &mut rng);
            if corrupted {
                stats.corrupted.fetch_add(1, Ordering::Relaxed);
            }
            let reordered = p.reorder > 0.0 && rng.random::<f64>() * 100.0 < p.reorder;
            let delay = if reordered {
                stats.reordered.fetch_add(1, Ordering::Relaxed);
                Duration::ZERO
            } else if p.jitter.is_zero() {
                p.delay
            } else {
                let offset = (delay_rnd.next(&mut rng) * 2.0 - 1.0) * p.jitter.as_secs_f64();
                Duration::from_secs_f64((p.delay.as_secs_f64() + offset).max(0.0))
            };
            let payload = corrupted.then_some(packet.payload);
            if delay.is_zero() {
                queue.verdict(packet.id, NF_ACCEPT, payload.as_deref())?;
            } else {
                seq += 1;
                held.push(Reverse(Held { due: now + delay, seq, id: packet.id, payload }));
            }
        }
        while let Some(Reverse(h)) = held.peek() {
            if h.due > now && !stopping {
                break;
            }
            let Reverse(h) = held.pop().expect("peeked");
            queue.verdict(h.id, NF_ACCEPT, h.payload.as_deref())?;
        }
        stats.cpu_nanos.store(thread_cpu_nanos(), Ordering::Relaxed);
        if stopping {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_changes_one_payload_byte_and_never_the_headers() {
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..1000 {
            let mut packet = vec![0x45u8; 64];
            let original = packet.clone();
            assert!(corrupt(&mut packet, &mut rng));
            let changed: Vec<usize> = (0..64).filter(|&i| packet[i] != original[i]).collect();
            assert_eq!(changed.len(), 1);
            assert!(changed[0] >= 28, "byte {} is inside the headers", changed[0]);
        }
        let mut tiny = vec![0x45u8; 28];
        assert!(!corrupt(&mut tiny, &mut rng), "no payload, nothing to corrupt");
    }

    #[test]
    fn correlation_makes_successive_samples_close() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mean_step = |rho: f64, rng: &mut SmallRng| {
            let mut c = Correlated::new(rho);
            let mut last = c.next(rng);
            let mut total = 0.0;
            for _ in 0..10_000 {
                let x = c.next(rng);
                total += (x - last).abs();
                last = x;
            }
            total / 10_000.0
        };
        let independent = mean_step(0.0, &mut rng);
        let correlated = mean_step(75.0, &mut rng);
        assert!(correlated < independent / 2.0, "{correlated} vs {independent}");
    }
}
