//! Removing what a crashed caller left in a namespace, found by our names.

use crate::command;
use crate::error::Result;
use crate::injector::{QDISC_MAJOR, RULE_COMMENT, remove_mangle_if_empty, remove_table};
use crate::namespace::{NetNs, NsWorker};
use crate::nft;
use crate::route::Rtnl;
use crate::tc;

/// What [`cleanup`] found and removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub nft_tables: usize,
    pub iptables_rules: usize,
    pub qdiscs: usize,
    pub nfqueues: usize,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        *self == Leftovers::default()
    }
}

/// Our objects present in the calling thread's namespace.
fn find() -> Result<(Leftovers, Vec<String>, Vec<u32>)> {
    let tables = command::run("nft", &["list", "tables", "ip"], None)?;
    let nft_tables = tables.lines().filter(|l| l.trim() == format!("table ip {}", nft::TABLE)).count();
    let rules: Vec<String> = command::run("iptables-nft", &["-t", "mangle", "-S", "OUTPUT"], None)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(RULE_COMMENT))
        .map(str::to_string)
        .collect();
    let qdiscs: Vec<u32> = Rtnl::open()?
        .qdiscs()?
        .iter()
        .map(tc::describe_qdisc)
        .filter(|&(_, handle, parent, _)| parent == tc::TC_H_ROOT && handle >> 16 == u32::from(QDISC_MAJOR))
        .map(|(ifindex, ..)| ifindex)
        .collect();
    // Bound queues in this namespace; /proc/thread-self follows the thread's namespace.
    let nfqueues = std::fs::read_to_string("/proc/thread-self/net/netfilter/nfnetlink_queue")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().next().and_then(|q| q.parse::<u32>().ok()).is_some_and(|q| q >> 8 == 0xca))
        .count();
    let found = Leftovers { nft_tables, iptables_rules: rules.len(), qdiscs: qdiscs.len(), nfqueues };
    Ok((found, rules, qdiscs))
}

/// Lists our objects in `target` without touching them.
pub fn inspect(target: &NetNs) -> Result<Leftovers> {
    NsWorker::enter(target)?.run(|| find().map(|(found, ..)| found))?
}

/// Removes every object of ours in `target`: nftables table, iptables rules,
/// root qdiscs. Queues die with the process that bound them.
pub fn cleanup(target: &NetNs) -> Result<Leftovers> {
    let worker = NsWorker::enter(target)?;
    worker.run(|| {
        let (found, rules, qdiscs) = find()?;
        for rule in &rules {
            let mut args: Vec<&str> = rule.split_whitespace().collect();
            if args.first() == Some(&"-A") {
                args[0] = "-D";
            }
            let mut full = vec!["-t", "mangle"];
            full.extend(args);
            command::run("iptables-nft", &full, None)?;
        }
        if !rules.is_empty() {
            remove_mangle_if_empty()?;
        }
        remove_table()?;
        let mut rtnl = Rtnl::open()?;
        for ifindex in qdiscs {
            rtnl.request("delete root qdisc", tc::delete_root_qdisc(ifindex), 0)?;
        }
        Ok(found)
    })?
}
