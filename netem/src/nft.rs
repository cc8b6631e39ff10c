//! The nftables side of the fallback: one table of ours per namespace holding
//! partitions, loss, duplication and per-peer rate limits.

use std::net::Ipv4Addr;

use crate::fault::Scope;

/// The table every rule of ours lives in; `cleanup` finds it by this name.
pub const TABLE: &str = "capukv_netem";

/// The table with an output and an input chain, run just before the usual filter chains.
pub fn create_table() -> String {
    format!(
        "table ip {TABLE} {{\n\
         \tchain output {{ type filter hook output priority -10; policy accept; }}\n\
         \tchain input {{ type filter hook input priority -10; policy accept; }}\n\
         }}\n"
    )
}

fn addresses(peers: &[Ipv4Addr]) -> String {
    let list: Vec<String> = peers.iter().map(|a| a.to_string()).collect();
    format!("{{ {} }}", list.join(", "))
}

/// The match that selects outgoing packets of `scope`.
fn outgoing(scope: &Scope, iface: &str) -> String {
    match scope {
        Scope::All => format!("oifname \"{iface}\""),
        Scope::Peers(peers) => format!("ip daddr {}", addresses(peers)),
    }
}

/// Random selection of `percent`% of packets (with its leading space), in steps of 0.01%; all of
/// them from 100% (nft refuses a bound outside the generator's 0 to 9999).
fn fraction(percent: f64) -> String {
    match (percent * 100.0).round() {
        steps if steps >= 10_000.0 => String::new(),
        steps => format!(" numgen random mod 10000 < {}", steps.max(0.0) as u32),
    }
}

pub fn partition(peers: &[Ipv4Addr]) -> String {
    let set = addresses(peers);
    format!(
        "add rule ip {TABLE} output ip daddr {set} drop comment \"partition\"\n\
         add rule ip {TABLE} input ip saddr {set} drop comment \"partition\"\n"
    )
}

/// One way only: what `peers` send is dropped on arrival; what we send
/// them still goes out (a TCP peer then sees data without the ACKs).
pub fn deafen(peers: &[Ipv4Addr]) -> String {
    format!("add rule ip {TABLE} input ip saddr {} drop comment \"one-way\"\n", addresses(peers))
}

pub fn loss(scope: &Scope, iface: &str, percent: f64) -> String {
    format!("add rule ip {TABLE} output {}{} drop comment \"loss\"\n", outgoing(scope, iface), fraction(percent))
}

/// Sends a copy of the chosen packets to their own destination.
pub fn duplicate(scope: &Scope, iface: &str, percent: f64) -> String {
    format!(
        "add rule ip {TABLE} output {}{} dup to ip daddr device \"{iface}\" comment \"duplicate\"\n",
        outgoing(scope, iface),
        fraction(percent)
    )
}

/// A policer: what exceeds the rate is dropped.
pub fn rate_limit(peers: &[Ipv4Addr], bytes_per_sec: u64) -> String {
    format!(
        "add rule ip {TABLE} output ip daddr {} limit rate over {bytes_per_sec} bytes/second drop comment \"rate\"\n",
        addresses(peers)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_our_table_and_select_by_scope() {
        let peers = [Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(10, 1, 2, 4)];
        assert_eq!(
            loss(&Scope::Peers(peers.to_vec()), "eth0", 30.0),
            "add rule ip capukv_netem output ip daddr { 10.1.2.3, 10.1.2.4 } numgen random mod 10000 < 3000 drop comment \"loss\"\n"
        );
        assert_eq!(
            duplicate(&Scope::All, "eth0", 12.5),
            "add rule ip capukv_netem output oifname \"eth0\" numgen random mod 10000 < 1250 dup to ip daddr device \"eth0\" comment \"duplicate\"\n"
        );
        assert_eq!(
            loss(&Scope::Peers(peers[..1].to_vec()), "eth0", 100.0),
            "add rule ip capukv_netem output ip daddr { 10.1.2.3 } drop comment \"loss\"\n",
            "all of it: no random selection, whose bound nft would refuse"
        );
        let p = partition(&peers[..1]);
        assert!(p.contains("output ip daddr { 10.1.2.3 } drop") && p.contains("input ip saddr { 10.1.2.3 } drop"));
        assert_eq!(
            deafen(&peers),
            "add rule ip capukv_netem input ip saddr { 10.1.2.3, 10.1.2.4 } drop comment \"one-way\"\n"
        );
    }
}
