//! [`Netem`]: the handle that applies faults in one namespace and removes them.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::capabilities::Capabilities;
use crate::command;
use crate::error::{NetemError, Result};
use crate::fault::{Impairment, Scope};
use crate::namespace::{NetNs, NsWorker};
use crate::nfqueue::NfQueue;
use crate::nft;
use crate::route::{CREATE, Rtnl};
use crate::shaper::{ShapeProfile, Shaper, ShaperStats};
use crate::tc::{self, Clock, NetemParams, TC_H_ROOT};
use netlink_packet_route::RouteNetlinkMessage;

/// Major number of every qdisc we create (`ca:`), so cleanup can tell ours apart.
pub const QDISC_MAJOR: u16 = 0xca;
/// The comment on our iptables rules.
pub const RULE_COMMENT: &str = "capukv-netem";
/// First NFQUEUE number we bind; one queue per shaped fault.
const FIRST_QUEUE: u16 = 0xca00;
/// `prio` has at most 16 bands; bands 0 to 2 carry unfiltered traffic.
const MAX_BANDS: u16 = 16;

/// Which backend to use for delay, loss and the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// Kernel netem when it is there, else the fallback.
    #[default]
    Auto,
    /// Kernel netem or an error.
    Kernel,
    /// nftables, NFQUEUE and tbf, even where netem exists.
    Fallback,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// The interface inside the namespace whose outgoing traffic is impaired.
    pub iface: String,
    pub backend: BackendChoice,
    /// Seeds the shaper's random choices.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options { iface: "eth0".into(), backend: BackendChoice::Auto, seed: 0 }
    }
}

/// Everything we added, so that heal removes exactly that.
#[derive(Default)]
struct Applied {
    nft_table: bool,
    root_qdisc: bool,
    prio_bands: u16,
    iptables_rules: Vec<Vec<String>>,
    mangle_created: bool,
    shapers: Vec<Shaper>,
    next_queue: u16,
}

/// Fault injection into one network namespace. Dropping it heals.
pub struct Netem {
    worker: NsWorker,
    options: Options,
    ifindex: u32,
    capabilities: Capabilities,
    clock: Clock,
    applied: Applied,
}

fn netlink(op: &'static str) -> impl FnOnce(std::io::Error) -> NetemError {
    move |source| NetemError::Netlink { op, source }
}

/// Tries to create a netem qdisc on `lo` and removes it again.
fn probe_kernel_netem(target: String) -> Result<bool> {
    let mut rtnl = Rtnl::open()?;
    let lo = rtnl.link_index("lo")?.ok_or(NetemError::NoInterface { iface: "lo".into(), target })?;
    let params = NetemParams { latency: Duration::from_millis(1), ..Default::default() };
    let add = tc::netem_qdisc(lo, tc::handle(QDISC_MAJOR, 0), TC_H_ROOT, &params, Clock::default());
    match rtnl.try_request(add, CREATE) {
        Ok(()) => {
            rtnl.request("delete the probe's qdisc", tc::delete_root_qdisc(lo), 0)?;
            Ok(true)
        }
        // ENOENT: "Specified qdisc kind is unknown"; EOPNOTSUPP and EINVAL from odd kernels.
        Err(e) if matches!(e.raw_os_error(), Some(nix::libc::ENOENT | nix::libc::EOPNOTSUPP | nix::libc::EINVAL)) => {
            Ok(false)
        }
        Err(e) => Err(netlink("probe for sch_netem")(e)),
    }
}

impl Netem {
    /// Enters `target`, finds the interface and what the kernel offers.
    pub fn open(target: &NetNs, options: Options) -> Result<Netem> {
        let worker = NsWorker::enter(target)?;
        let iface = options.iface.clone();
        let ifindex = worker
            .run(move || Rtnl::open()?.link_index(&iface))??
            .ok_or_else(|| NetemError::NoInterface { iface: options.iface.clone(), target: target.to_string() })?;
        let kernel_netem = match options.backend {
            BackendChoice::Fallback => false,
            _ => {
                let target = target.to_string();
                worker.run(move || probe_kernel_netem(target))??
            }
        };
        if options.backend == BackendChoice::Kernel && !kernel_netem {
            return Err(NetemError::Unsupported {
                what: "netem",
                backend: "kernel",
                why: "this kernel has no sch_netem (tc qdisc netem: unknown qdisc)".into(),
            });
        }
        // A table left by a crashed run would mix with ours; start clean.
        worker.run(remove_table)??;
        let applied = Applied { next_queue: FIRST_QUEUE, ..Applied::default() };
        Ok(Netem {
            worker,
            options,
            ifindex,
            capabilities: Capabilities { kernel_netem },
            clock: Clock::from_kernel(),
            applied,
        })
    }

    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    pub fn target(&self) -> &NetNs {
        self.worker.target()
    }

    /// Statistics of the running shapers (fallback backend), one per shaped fault.
    pub fn shaper_stats(&self) -> Vec<&ShaperStats> {
        self.applied.shapers.iter().map(Shaper::stats).collect()
    }

    /// Impairs outgoing traffic of `scope`. Several calls add up (on different scopes).
    pub fn impair(&mut self, scope: &Scope, impairment: &Impairment) -> Result<()> {
        impairment.validate()?;
        if let Scope::Peers(peers) = scope
            && peers.is_empty()
        {
            return Err(NetemError::InvalidFault("a peer scope with no peers".into()));
        }
        tracing::info!(target = %self.target(), ?scope, %impairment, "impair");
        if self.capabilities.kernel_netem {
            self.impair_kernel(scope, impairment)
        } else {
            self.impair_fallback(scope, impairment)
        }
    }

    /// Drops all traffic to and from `peers`.
    pub fn partition(&mut self, peers: &[Ipv4Addr]) -> Result<()> {
        if peers.is_empty() {
            return Err(NetemError::InvalidFault("a partition from no peers".into()));
        }
        tracing::info!(target = %self.target(), ?peers, "partition");
        self.nft(&nft::partition(peers))
    }

    /// Drops what `peers` send to this node, one way only: they still hear
    /// it (a one-way partition).
    pub fn deafen(&mut self, peers: &[Ipv4Addr]) -> Result<()> {
        if peers.is_empty() {
            return Err(NetemError::InvalidFault("a one-way partition from no peers".into()));
        }
        tracing::info!(target = %self.target(), ?peers, "one-way partition: deaf to peers");
        self.nft(&nft::deafen(peers))
    }

    /// Removes everything this handle added. Safe to call twice.
    pub fn heal(&mut self) -> Result<()> {
        let mut first_error: Option<NetemError> = None;
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                tracing::warn!(error = %e, "heal step failed");
                first_error.get_or_insert(e);
            }
        };
        // Stop queueing before releasing what the shapers hold.
        for rule in std::mem::take(&mut self.applied.iptables_rules) {
            note(self.worker.run(move || delete_iptables_rule(&rule)).and_then(|r| r));
        }
        for mut shaper in std::mem::take(&mut self.applied.shapers) {
            note(shaper.stop().map_err(NetemError::Io));
        }
        if std::mem::take(&mut self.applied.mangle_created) {
            note(self.worker.run(remove_mangle_if_empty).and_then(|r| r));
        }
        if std::mem::take(&mut self.applied.nft_table) {
            note(self.worker.run(remove_table).and_then(|r| r));
        }
        if std::mem::take(&mut self.applied.root_qdisc) {
            let ifindex = self.ifindex;
            note(
                self.worker
                    .run(move || Rtnl::open()?.request("delete root qdisc", tc::delete_root_qdisc(ifindex), 0))
                    .and_then(|r| r),
            );
            self.applied.prio_bands = 0;
        }
        self.applied.next_queue = FIRST_QUEUE;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn nft(&mut self, script: &str) -> Result<()> {
        if !self.applied.nft_table {
            let create = nft::create_table();
            self.worker.run(move || command::run("nft", &["-f", "-"], Some(&create)))??;
            self.applied.nft_table = true;
        }
        let script = script.to_string();
        self.worker.run(move || command::run("nft", &["-f", "-"], Some(&script)))??;
        Ok(())
    }

    fn tc(&mut self, op: &'static str, message: RouteNetlinkMessage) -> Result<()> {
        self.worker.run(move || Rtnl::open()?.request(op, message, CREATE))?
    }

    fn impair_kernel(&mut self, scope: &Scope, i: &Impairment) -> Result<()> {
        let params = NetemParams {
            latency: i.delay,
            jitter: i.jitter,
            delay_correlation: i.delay_correlation,
            loss: i.loss,
            loss_correlation: i.loss_correlation,
            duplicate: i.duplicate,
            reorder: i.reorder,
            corrupt: i.corrupt,
            rate: i.rate,
            ..Default::default()
        };
        let root = tc::handle(QDISC_MAJOR, 0);
        match scope {
            Scope::All => {
                if self.applied.root_qdisc {
                    return Err(NetemError::Unsupported {
                        what: "a second impairment of all traffic",
                        backend: "kernel netem",
                        why: "heal first; one root qdisc per interface".into(),
                    });
                }
                let msg = tc::netem_qdisc(self.ifindex, root, TC_H_ROOT, &params, self.clock);
                self.tc("add netem qdisc", msg)?;
                self.applied.root_qdisc = true;
            }
            Scope::Peers(peers) => {
                if self.applied.root_qdisc && self.applied.prio_bands == 0 {
                    return Err(NetemError::Unsupported {
                        what: "a per-peer impairment on top of one of all traffic",
                        backend: "kernel netem",
                        why: "heal first".into(),
                    });
                }
                if self.applied.prio_bands == 0 {
                    self.tc("add prio qdisc", tc::prio_qdisc(self.ifindex, QDISC_MAJOR, u32::from(MAX_BANDS)))?;
                    self.applied.root_qdisc = true;
                    self.applied.prio_bands = 3;
                }
                if self.applied.prio_bands >= MAX_BANDS {
                    return Err(NetemError::Unsupported {
                        what: "more per-peer impairments",
                        backend: "kernel netem",
                        why: format!("prio has {MAX_BANDS} bands"),
                    });
                }
                let band = self.applied.prio_bands + 1;
                self.applied.prio_bands = band;
                let flow = tc::handle(QDISC_MAJOR, band);
                let child = tc::handle(QDISC_MAJOR + band, 0);
                self.tc("add netem qdisc", tc::netem_qdisc(self.ifindex, child, flow, &params, self.clock))?;
                for peer in peers {
                    self.tc("add u32 filter", tc::u32_dst_filter(self.ifindex, QDISC_MAJOR, band, *peer, flow))?;
                }
            }
        }
        Ok(())
    }

    fn impair_fallback(&mut self, scope: &Scope, i: &Impairment) -> Result<()> {
        let iface = self.options.iface.clone();
        let shaper_takes_loss = i.loss > 0.0 && i.loss_correlation > 0.0;
        if i.loss > 0.0 && !shaper_takes_loss {
            self.nft(&nft::loss(scope, &iface, i.loss))?;
        }
        if i.duplicate > 0.0 {
            self.nft(&nft::duplicate(scope, &iface, i.duplicate))?;
        }
        if let Some(rate) = i.rate {
            match scope {
                Scope::All => {
                    if self.applied.root_qdisc {
                        return Err(NetemError::Unsupported {
                            what: "a second rate limit of all traffic",
                            backend: "tbf",
                            why: "heal first".into(),
                        });
                    }
                    let burst = (rate / 100).clamp(3000, 1 << 20) as u32;
                    let msg = tc::tbf_qdisc(
                        self.ifindex,
                        tc::handle(QDISC_MAJOR, 0),
                        TC_H_ROOT,
                        rate,
                        burst,
                        Duration::from_millis(200),
                        self.clock,
                    );
                    self.tc("add tbf qdisc", msg)?;
                    self.applied.root_qdisc = true;
                }
                Scope::Peers(peers) => self.nft(&nft::rate_limit(peers, rate))?,
            }
        }
        let shaped = !i.delay.is_zero() || i.reorder > 0.0 || i.corrupt > 0.0 || shaper_takes_loss;
        if shaped {
            let profile = ShapeProfile {
                delay: i.delay,
                jitter: i.jitter,
                delay_correlation: i.delay_correlation,
                reorder: i.reorder,
                corrupt: i.corrupt,
                loss: if shaper_takes_loss { i.loss } else { 0.0 },
                loss_correlation: i.loss_correlation,
            };
            self.start_shaper(scope, profile)?;
        }
        Ok(())
    }

    fn start_shaper(&mut self, scope: &Scope, profile: ShapeProfile) -> Result<()> {
        let queue_num = self.applied.next_queue;
        self.applied.next_queue += 1;
        let copy_payload = profile.corrupt > 0.0;
        let queue = self
            .worker
            .run(move || NfQueue::bind(queue_num, 16_384, copy_payload))?
            .map_err(netlink("bind NFQUEUE"))?;
        let seed = self.options.seed ^ u64::from(queue_num);
        self.applied.shapers.push(Shaper::start(queue, profile, seed)?);
        if self.applied.iptables_rules.is_empty() {
            let had_mangle =
                self.worker.run(|| command::run("nft", &["list", "table", "ip", "mangle"], None).is_ok())?;
            self.applied.mangle_created = !had_mangle;
        }
        let mut rule: Vec<String> = ["-t", "mangle", "OUTPUT", "-o", &self.options.iface].map(String::from).to_vec();
        if let Scope::Peers(peers) = scope {
            let list: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
            rule.extend(["-d".to_string(), list.join(",")]);
        }
        let queue = queue_num.to_string();
        rule.extend(
            ["-m", "comment", "--comment", RULE_COMMENT, "-j", "NFQUEUE", "--queue-num", &queue, "--queue-bypass"]
                .map(String::from),
        );
        let add = rule.clone();
        self.worker.run(move || {
            let mut args: Vec<&str> = add.iter().map(String::as_str).collect();
            args.insert(2, "-A");
            command::run("iptables-nft", &args, None)
        })??;
        self.applied.iptables_rules.push(rule);
        Ok(())
    }
}

impl Drop for Netem {
    fn drop(&mut self) {
        if let Err(e) = self.heal() {
            tracing::error!(target = %self.target(), error = %e, "could not heal on drop; run cleanup");
        }
    }
}

fn delete_iptables_rule(rule: &[String]) -> Result<()> {
    let mut args: Vec<&str> = rule.iter().map(String::as_str).collect();
    args.insert(2, "-D");
    command::run("iptables-nft", &args, None).map(|_| ())
}

/// Deletes our nftables table if it exists (in the calling thread's namespace).
pub(crate) fn remove_table() -> Result<()> {
    let tables = command::run("nft", &["list", "tables", "ip"], None)?;
    if tables.lines().any(|l| l.trim() == format!("table ip {}", nft::TABLE)) {
        command::run("nft", &["delete", "table", "ip", nft::TABLE], None)?;
    }
    Ok(())
}

/// Deletes iptables-nft's `mangle` table when only empty built-in chains remain.
pub(crate) fn remove_mangle_if_empty() -> Result<()> {
    let Ok(rules) = command::run("iptables-nft", &["-t", "mangle", "-S"], None) else { return Ok(()) };
    if rules.lines().all(|l| l.starts_with("-P ") || l.trim().is_empty()) {
        command::run("nft", &["delete", "table", "ip", "mangle"], None)?;
    }
    Ok(())
}
