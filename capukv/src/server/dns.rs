//! Founding peers from DNS (`capukv server --dns NAME --expect N`), for
//! clusters whose addresses an orchestrator assigns (Docker, Kubernetes,
//! Consul): the node asks DNS until it sees N peers, then runs exactly as
//! with `--peers` listing them.
//!
//! What is asked, and how each peer's id is derived (the id must be the
//! same on every node and across restarts, so it never comes from the order
//! of an answer):
//!
//! - **SRV records** `_capukv-raft._tcp.NAME` name each peer's host and
//!   Raft port. A peer's id is the number that ends the first label of its
//!   host (`capukv-3.db.example` is node 3; `node-07` is node 7), as
//!   StatefulSet and Compose replica names give it; a host without one, or
//!   two hosts with one number, is an error. The host's address is its A
//!   record (the first, in address order, if it has several).
//! - **A records** of NAME itself, when it has no SRV records: every peer
//!   listens for Raft on this node's `--raft-addr` port, and ids number the
//!   addresses in ascending order from 1. That is stable as long as the set
//!   of addresses is, which is the contract of such a name.
//!
//! Fewer than N peers: asked again each second (records may appear only
//! after the nodes start, as an orchestrator registers them), until
//! `timeout`. More than N: an error, since which N found the cluster would
//! be a guess. Answers are never cached: each round asks the server.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};

use crate::raft::NodeId;

/// The SRV service and protocol labels put before NAME.
pub const SRV_PREFIX: &str = "_capukv-raft._tcp.";

#[derive(Debug, Clone)]
pub struct DnsDiscovery {
    /// The name whose records list the founding peers.
    pub name: String,
    /// How many peers found the cluster.
    pub expect: usize,
    /// The DNS server to ask; `None`: the system's (`/etc/resolv.conf`).
    pub server: Option<SocketAddr>,
    /// The Raft port peers found through A records listen on.
    pub raft_port: u16,
    /// How long to keep asking for the missing peers.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot read the system's DNS configuration: {0}")]
    SystemConfig(ResolveError),
    #[error("asking DNS for {name}: {source}")]
    Lookup { name: String, source: ResolveError },
    #[error(
        "SRV record {record} names host {host}, which has no number at the end of its first label to be its node id"
    )]
    NoId { record: String, host: String },
    #[error("SRV records of {record} name two peers with node id {id}: {first} and {second}")]
    DuplicateId { record: String, id: NodeId, first: String, second: String },
    #[error(
        "DNS lists {found} peers for {name}, more than --expect {expect}: which {expect} found the cluster is unclear"
    )]
    TooMany { name: String, found: usize, expect: usize },
    #[error("DNS listed {found} of the {expect} peers expected for {name} within {timeout:?}: {peers}")]
    TooFew { name: String, found: usize, expect: usize, timeout: Duration, peers: String },
}

/// Asks until `expect` peers answer; returns their Raft addresses by id.
pub async fn discover(d: &DnsDiscovery) -> Result<HashMap<NodeId, String>, DnsError> {
    let resolver = resolver(d.server)?;
    let deadline = Instant::now() + d.timeout;
    loop {
        let peers = lookup(&resolver, d).await?;
        if peers.len() > d.expect {
            return Err(DnsError::TooMany { name: d.name.clone(), found: peers.len(), expect: d.expect });
        }
        if peers.len() == d.expect {
            tracing::info!(name = %d.name, peers = %describe(&peers), "DNS lists every founding peer");
            return Ok(peers.into_iter().map(|(id, addr)| (id, addr.to_string())).collect());
        }
        if Instant::now() >= deadline {
            return Err(DnsError::TooFew {
                name: d.name.clone(),
                found: peers.len(),
                expect: d.expect,
                timeout: d.timeout,
                peers: describe(&peers),
            });
        }
        tracing::info!(name = %d.name, found = peers.len(), expect = d.expect, peers = %describe(&peers), "waiting for DNS to list every founding peer");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn describe(peers: &BTreeMap<NodeId, SocketAddr>) -> String {
    let listed: Vec<String> = peers.iter().map(|(id, a)| format!("{id}={a}")).collect();
    if listed.is_empty() { "none yet".into() } else { listed.join(",") }
}

fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, DnsError> {
    let (config, mut opts) = match server {
        Some(addr) => (
            ResolverConfig::from_parts(
                None,
                vec![],
                NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true),
            ),
            ResolverOpts::default(),
        ),
        None => hickory_resolver::system_conf::read_system_conf().map_err(DnsError::SystemConfig)?,
    };
    // Every round must see what the server holds now.
    opts.cache_size = 0;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    Ok(TokioResolver::builder_with_config(config, TokioConnectionProvider::default()).with_options(opts).build())
}

/// One round: the peers DNS lists now.
async fn lookup(resolver: &TokioResolver, d: &DnsDiscovery) -> Result<BTreeMap<NodeId, SocketAddr>, DnsError> {
    let record = format!("{SRV_PREFIX}{}", d.name);
    let failed = |name: &str, source| DnsError::Lookup { name: name.to_string(), source };
    let srv = match resolver.srv_lookup(record.as_str()).await {
        Ok(srv) => srv.iter().map(|s| (s.target().to_utf8(), s.port())).collect::<Vec<_>>(),
        Err(e) if e.is_no_records_found() => Vec::new(),
        Err(e) => return Err(failed(&record, e)),
    };
    if srv.is_empty() {
        let ips: Vec<IpAddr> = match resolver.ipv4_lookup(d.name.as_str()).await {
            Ok(a) => a.iter().map(|a| IpAddr::V4(a.0)).collect(),
            Err(e) if e.is_no_records_found() => Vec::new(),
            Err(e) => return Err(failed(&d.name, e)),
        };
        return Ok(ids_by_address(ips, d.raft_port));
    }
    let mut peers = BTreeMap::new();
    let mut hosts: HashMap<NodeId, String> = HashMap::new();
    for (host, port) in srv {
        let id = id_of_host(&host).ok_or_else(|| DnsError::NoId { record: record.clone(), host: host.clone() })?;
        if let Some(first) = hosts.insert(id, host.clone())
            && first != host
        {
            return Err(DnsError::DuplicateId { record: record.clone(), id, first, second: host });
        }
        let ip = match resolver.ipv4_lookup(host.as_str()).await {
            Ok(a) => a.iter().map(|a| a.0).min(),
            Err(e) if e.is_no_records_found() => None,
            Err(e) => return Err(failed(&host, e)),
        };
        // A host whose A record is not there yet is a peer not there yet.
        match ip {
            Some(ip) => {
                peers.insert(id, SocketAddr::new(IpAddr::V4(ip), port));
            }
            None => tracing::info!(%record, %host, "an SRV target has no A record yet"),
        }
    }
    Ok(peers)
}

/// The number that ends the first label of `host`: `capukv-3.x` is 3.
pub fn id_of_host(host: &str) -> Option<NodeId> {
    let label = host.split('.').next()?;
    let digits = label.len() - label.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let id: NodeId = label[label.len() - digits..].parse().ok()?;
    (id > 0).then_some(id)
}

/// Ids 1.. for addresses in ascending order, each with `port`.
fn ids_by_address(mut ips: Vec<IpAddr>, port: u16) -> BTreeMap<NodeId, SocketAddr> {
    ips.sort();
    ips.dedup();
    (1..).zip(ips).map(|(id, ip)| (id, SocketAddr::new(ip, port))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_names_its_id_at_the_end_of_its_first_label() {
        assert_eq!(id_of_host("capukv-3.db.example."), Some(3));
        assert_eq!(id_of_host("node07"), Some(7));
        assert_eq!(id_of_host("n12.x"), Some(12));
        assert_eq!(id_of_host("capukv.db3.example"), None, "only the first label counts");
        assert_eq!(id_of_host("node-0"), None, "node ids start at 1");
        assert_eq!(id_of_host("node"), None);
    }

    #[test]
    fn addresses_are_numbered_in_order_whatever_order_dns_gives() {
        let ips: Vec<IpAddr> =
            ["10.0.0.12", "10.0.0.3", "10.0.0.7", "10.0.0.3"].iter().map(|s| s.parse().unwrap()).collect();
        let peers = ids_by_address(ips, 7000);
        let listed: Vec<(NodeId, String)> = peers.into_iter().map(|(id, a)| (id, a.to_string())).collect();
        assert_eq!(listed, [(1, "10.0.0.3:7000".into()), (2, "10.0.0.7:7000".into()), (3, "10.0.0.12:7000".into())]);
    }
}
