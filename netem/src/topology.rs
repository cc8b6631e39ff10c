//! Hosts on a private bridge: one network namespace per host, a veth pair
//! into a bridge of its own, an address from a /24 nobody else uses.
//!
//! Every object is named `PREFIX-ID-…` so [`cleanup_prefix`] can find what a
//! crashed run left. Dropping a [`Topology`] removes it.

use std::net::Ipv4Addr;

use rand::Rng;

use crate::command;
use crate::error::{NetemError, Result};
use crate::namespace::NetNs;

/// The prefix of every namespace, link and rule comment we create.
pub const PREFIX: &str = "capukv";

/// One host of a topology.
#[derive(Clone, Debug)]
pub struct Host {
    /// 1-based.
    pub index: usize,
    pub netns: String,
    pub addr: Ipv4Addr,
    /// The host end of its veth pair, on the bridge.
    pub veth: String,
}

impl Host {
    pub fn ns(&self) -> NetNs {
        NetNs::Named(self.netns.clone())
    }
}

/// A bridge with namespaces attached. Removed on drop.
#[derive(Debug)]
pub struct Topology {
    pub id: String,
    pub bridge: String,
    pub gateway: Ipv4Addr,
    pub hosts: Vec<Host>,
    forward_rule: Option<Vec<String>>,
    removed: bool,
}

fn ip(args: &[&str]) -> Result<String> {
    command::run("ip", args, None)
}

/// A /24 in 10.0.0.0/8 that no address or route of this machine touches.
pub fn free_subnet() -> Result<[u8; 3]> {
    let used = format!("{}\n{}", ip(&["-4", "addr", "show"])?, ip(&["-4", "route", "show", "table", "all"])?);
    let mut rng = rand::rng();
    for _ in 0..200 {
        let subnet = [10, rng.random_range(100..=250), rng.random_range(0..=255)];
        let prefix = format!("10.{}.{}.", subnet[1], subnet[2]);
        let wide = format!("10.{}.0.0/16", subnet[1]);
        if !used.contains(&prefix) && !used.contains(&wide) {
            return Ok(subnet);
        }
    }
    Err(NetemError::InvalidFault("no free /24 found in 10.100.0.0-10.250.255.0".into()))
}

impl Topology {
    /// Creates `hosts` namespaces on a new bridge; interface `eth0` in each.
    pub fn create(hosts: usize) -> Result<Topology> {
        if !(1..=200).contains(&hosts) {
            return Err(NetemError::InvalidFault(format!("{hosts} hosts: 1 to 200 supported")));
        }
        let id = format!("{:04x}", rand::rng().random::<u16>());
        let subnet = free_subnet()?;
        let addr = |host: u8| Ipv4Addr::new(subnet[0], subnet[1], subnet[2], host);
        let mut topology = Topology {
            bridge: format!("{PREFIX}-{id}-br"),
            gateway: addr(1),
            hosts: Vec::new(),
            id,
            forward_rule: None,
            removed: false,
        };
        // On failure part-way, dropping `topology` removes what was made.
        topology.build(hosts, addr)?;
        Ok(topology)
    }

    fn build(&mut self, hosts: usize, addr: impl Fn(u8) -> Ipv4Addr) -> Result<()> {
        ip(&["link", "add", &self.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/24", self.gateway), "dev", &self.bridge])?;
        ip(&["link", "set", &self.bridge, "up"])?;
        self.allow_bridged_forwarding()?;
        for index in 1..=hosts {
            let host = Host {
                index,
                netns: format!("{PREFIX}-{}-n{index}", self.id),
                addr: addr(index as u8 + 1),
                veth: format!("{PREFIX}-{}-v{index}", self.id),
            };
            ip(&["netns", "add", &host.netns])?;
            self.hosts.push(host.clone());
            ip(&["link", "add", &host.veth, "type", "veth", "peer", "name", "eth0", "netns", &host.netns])?;
            ip(&["link", "set", &host.veth, "master", &self.bridge, "up"])?;
            let n = host.netns.as_str();
            ip(&["-n", n, "addr", "add", &format!("{}/24", host.addr), "dev", "eth0"])?;
            ip(&["-n", n, "link", "set", "eth0", "up"])?;
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// With Docker on the host, FORWARD drops by default and br_netfilter sends
    /// bridged frames through it: accept our bridge's traffic explicitly.
    fn allow_bridged_forwarding(&mut self) -> Result<()> {
        if command::run("iptables", &["-S", "FORWARD"], None).is_err() {
            return Ok(()); // no iptables at all: nothing filters the bridge
        }
        let comment = format!("{PREFIX}-{}", self.id);
        let rule: Vec<String> =
            ["FORWARD", "-i", &self.bridge, "-o", &self.bridge, "-m", "comment", "--comment", &comment, "-j", "ACCEPT"]
                .map(String::from)
                .to_vec();
        let mut args: Vec<&str> = rule.iter().map(String::as_str).collect();
        args.insert(0, "-I");
        command::run("iptables", &args, None)?;
        self.forward_rule = Some(rule);
        Ok(())
    }

    pub fn host(&self, index: usize) -> &Host {
        &self.hosts[index - 1]
    }

    /// Removes namespaces (killing what runs in them), links and the rule.
    pub fn remove(&mut self) -> Result<()> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        let mut first_error = None;
        for host in &self.hosts {
            kill_processes_in(&host.netns);
            if let Err(e) = ip(&["link", "del", &host.veth]) {
                first_error.get_or_insert(e);
            }
            if let Err(e) = ip(&["netns", "del", &host.netns]) {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = ip(&["link", "del", &self.bridge]) {
            first_error.get_or_insert(e);
        }
        if let Some(rule) = self.forward_rule.take() {
            let mut args: Vec<&str> = rule.iter().map(String::as_str).collect();
            args.insert(0, "-D");
            if let Err(e) = command::run("iptables", &args, None) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::error!(error = %e, bridge = %self.bridge, "could not remove the topology; run cleanup");
        }
    }
}

fn kill_processes_in(netns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", netns]) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// What [`cleanup_prefix`] removed.
#[derive(Debug, Default)]
pub struct Removed {
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
    pub forward_rules: usize,
}

/// Removes every namespace, link and FORWARD rule whose name starts with `prefix`
/// (a whole run's `capukv-ID`, or just `capukv` for everything of ours).
pub fn cleanup_prefix(prefix: &str) -> Result<Removed> {
    let mut removed = Removed::default();
    for line in ip(&["netns", "list"])?.lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        if name.starts_with(prefix) {
            kill_processes_in(name);
            ip(&["netns", "del", name])?;
            removed.namespaces.push(name.to_string());
        }
    }
    for line in ip(&["-o", "link", "show"])?.lines() {
        // "7: capukv-1a2b-v1@if2: <...>"
        let Some(name) = line.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n)) else { continue };
        if name.starts_with(prefix) {
            // Deleting one end of a veth removes the other; ignore ones already gone.
            if ip(&["link", "del", name]).is_ok() {
                removed.links.push(name.to_string());
            }
        }
    }
    if let Ok(rules) = command::run("iptables", &["-S", "FORWARD"], None) {
        for rule in rules.lines().filter(|l| l.contains(&format!("--comment {prefix}"))) {
            let mut args: Vec<&str> = rule.split_whitespace().collect();
            args[0] = "-D";
            command::run("iptables", &args, None)?;
            removed.forward_rules += 1;
        }
    }
    Ok(removed)
}
