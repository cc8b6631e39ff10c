//! Hosts on a private bridge: one network namespace per host, a veth pair
//! into a bridge of its own, an address from a /24 nobody else uses.
//!
//! Every object is named `PREFIX-ID-…` so [`cleanup_prefix`] can find what a
//! crashed run left. Dropping a [`Topology`] removes it.

use std::fs::File;
use std::net::Ipv4Addr;

use rand::Rng;

use crate::command;
use crate::error::{NetemError, Result};
use crate::namespace::{self, NetNs, NsWorker};
use crate::route::Rtnl;

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

/// A /24 in 10.0.0.0/8 that no address or route of this machine touches.
pub fn free_subnet() -> Result<[u8; 3]> {
    let used = Rtnl::open()?.ipv4_networks()?;
    let mut rng = rand::rng();
    for _ in 0..200 {
        let subnet = [10, rng.random_range(100..=250), rng.random_range(0..=255)];
        if !used.iter().any(|&(addr, prefix)| overlaps(subnet, addr, prefix)) {
            return Ok(subnet);
        }
    }
    Err(NetemError::InvalidFault("no free /24 found in 10.100.0.0-10.250.255.0".into()))
}

/// Whether the /24 `subnet` overlaps `addr/prefix`. Networks wider than a
/// /16 (a default route, a /8 aggregate) do not count: the connected route
/// of our bridge is more specific and wins.
fn overlaps(subnet: [u8; 3], addr: Ipv4Addr, prefix: u8) -> bool {
    if prefix < 16 {
        return false;
    }
    let common = u32::from(prefix.min(24));
    let mask = u32::MAX.checked_shl(32 - common).unwrap_or(0);
    let ours = u32::from(Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 0));
    ours & mask == u32::from(addr) & mask
}

/// Runs `f` with an rtnetlink socket inside the named namespace `netns`.
fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce(&mut Rtnl) -> Result<T> + Send + 'static) -> Result<T> {
    NsWorker::enter(&NetNs::Named(netns.to_string()))?.run(move || f(&mut Rtnl::open()?))?
}

impl Topology {
    /// Creates `hosts` namespaces on a new bridge; interface `eth0` in each.
    pub fn create(hosts: usize) -> Result<Topology> {
        // Link names are at most 15 bytes: `capukv-ID-vNN` leaves room for two digits.
        if !(1..=99).contains(&hosts) {
            return Err(NetemError::InvalidFault(format!("{hosts} hosts: 1 to 99 supported")));
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
        let mut rtnl = Rtnl::open()?;
        rtnl.add_bridge(&self.bridge)?;
        let bridge = rtnl.link_index(&self.bridge)?.ok_or_else(|| self.missing(&self.bridge))?;
        rtnl.add_address(bridge, self.gateway, 24)?;
        rtnl.set_up(bridge, None)?;
        self.allow_bridged_forwarding()?;
        for index in 1..=hosts {
            let host = Host {
                index,
                netns: format!("{PREFIX}-{}-n{index}", self.id),
                addr: addr(index as u8 + 1),
                veth: format!("{PREFIX}-{}-v{index}", self.id),
            };
            namespace::create_named(&host.netns)?;
            self.hosts.push(host.clone());
            let ns_file = File::open(host.ns().path())
                .map_err(|source| NetemError::Namespace { target: host.ns().to_string(), source })?;
            rtnl.add_veth_into(&host.veth, "eth0", &ns_file)?;
            let veth = rtnl.link_index(&host.veth)?.ok_or_else(|| self.missing(&host.veth))?;
            rtnl.set_up(veth, Some(bridge))?;
            let (netns, host_addr) = (host.netns.clone(), host.addr);
            in_netns(&host.netns, move |rtnl| {
                let missing = |iface: &str| NetemError::NoInterface { iface: iface.into(), target: netns.clone() };
                let eth0 = rtnl.link_index("eth0")?.ok_or_else(|| missing("eth0"))?;
                rtnl.add_address(eth0, host_addr, 24)?;
                rtnl.set_up(eth0, None)?;
                let lo = rtnl.link_index("lo")?.ok_or_else(|| missing("lo"))?;
                rtnl.set_up(lo, None)
            })?;
        }
        Ok(())
    }

    fn missing(&self, iface: &str) -> NetemError {
        NetemError::NoInterface { iface: iface.into(), target: "the host namespace".into() }
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
        let delete_link = |name: &str| -> Result<()> {
            let mut rtnl = Rtnl::open()?;
            match rtnl.link_index(name)? {
                Some(index) => rtnl.delete_link(index),
                None => Ok(()), // gone with its namespace, or never made
            }
        };
        for host in &self.hosts {
            kill_processes_in(&host.netns);
            if let Err(e) = delete_link(&host.veth) {
                first_error.get_or_insert(e);
            }
            if let Err(e) = namespace::delete_named(&host.netns) {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = delete_link(&self.bridge) {
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
    for pid in namespace::pids_in(netns) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
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
    for name in namespace::list_named()? {
        if name.starts_with(prefix) {
            kill_processes_in(&name);
            namespace::delete_named(&name)?;
            removed.namespaces.push(name);
        }
    }
    let mut rtnl = Rtnl::open()?;
    for (index, name) in rtnl.links()? {
        if name.starts_with(prefix) {
            // Deleting one end of a veth removes the other; ignore ones already gone.
            if rtnl.delete_link(index).is_ok() {
                removed.links.push(name);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnet_is_taken_by_an_address_or_route_inside_it_or_around_it_down_to_a_16() {
        let net = |a, b, c, d| Ipv4Addr::new(a, b, c, d);
        assert!(overlaps([10, 120, 7], net(10, 120, 7, 1), 24));
        assert!(overlaps([10, 120, 7], net(10, 120, 7, 128), 25), "a smaller network inside it");
        assert!(overlaps([10, 120, 7], net(10, 120, 7, 9), 32), "a host route");
        assert!(overlaps([10, 120, 7], net(10, 120, 0, 0), 16), "a /16 around it");
        assert!(!overlaps([10, 120, 7], net(10, 120, 8, 1), 24), "the next /24");
        assert!(!overlaps([10, 120, 7], net(10, 121, 0, 0), 16));
        assert!(!overlaps([10, 120, 7], net(10, 0, 0, 0), 8), "an aggregate: our connected route wins");
        assert!(!overlaps([10, 120, 7], net(0, 0, 0, 0), 0), "the default route");
    }
}
