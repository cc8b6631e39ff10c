//! rtnetlink requests: links, addresses, routes, qdiscs and filters, as the
//! typed messages of `netlink-packet-route` (links built with `rtnetlink`'s
//! builders), sent over a blocking socket.
//!
//! Blocking on purpose: a netlink socket acts in the namespace of the thread
//! that opened it, and this crate enters namespaces from [`crate::NsWorker`]
//! threads; `rtnetlink`'s async handle would need a runtime on each of them.
//! What `netlink-packet-route` cannot express (the option structs of netem,
//! prio and tbf) is written in [`crate::tc`].

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::tc::TcMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth};

use crate::error::{NetemError, Result};
use crate::netlink::NlSocket;

const NETLINK_ROUTE: isize = 0;

/// Flags of a request that creates an object and fails if it exists.
pub const CREATE: u16 = NLM_F_CREATE | NLM_F_EXCL;

/// A message's bytes as the kernel reads them (sequence 0: the socket numbers it).
pub fn encode(message: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
    packet.finalize();
    let mut bytes = vec![0; packet.buffer_len()];
    packet.serialize(&mut bytes);
    bytes
}

fn decode(bytes: &[u8]) -> io::Result<Option<RouteNetlinkMessage>> {
    let packet = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(match packet.payload {
        NetlinkPayload::InnerMessage(message) => Some(message),
        _ => None,
    })
}

fn failed(op: &'static str) -> impl FnOnce(io::Error) -> NetemError {
    move |source| NetemError::Netlink { op, source }
}

/// An rtnetlink socket in the calling thread's namespace.
pub struct Rtnl {
    socket: NlSocket,
}

impl Rtnl {
    pub fn open() -> Result<Rtnl> {
        Ok(Rtnl { socket: NlSocket::open(NETLINK_ROUTE).map_err(failed("open rtnetlink"))? })
    }

    /// Sends `message` and waits for the kernel's acknowledgement; `op` names it in the error.
    pub fn request(&mut self, op: &'static str, message: RouteNetlinkMessage, flags: u16) -> Result<()> {
        self.socket.request(encode(message, flags | NLM_F_ACK)).map_err(failed(op))
    }

    /// [`Rtnl::request`] about one object, named in the error by `on`.
    fn request_on(&mut self, op: &'static str, on: &str, message: RouteNetlinkMessage, flags: u16) -> Result<()> {
        self.socket.request(encode(message, flags | NLM_F_ACK)).map_err(|source| NetemError::NetlinkOn {
            op,
            on: on.to_string(),
            source,
        })
    }

    /// The same, keeping the kernel's error number for callers that branch on it.
    pub fn try_request(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.socket.request(encode(message, flags | NLM_F_ACK))
    }

    /// Every object of a kind. An answer `netlink-packet-route` cannot decode
    /// (a link type newer than the crate) is skipped with a warning: it is
    /// not one of ours, and one foreign object must not stop a cleanup.
    pub fn dump(&mut self, op: &'static str, message: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
        let answers = self.socket.exchange(encode(message, NLM_F_DUMP)).map_err(failed(op))?;
        let mut out = Vec::with_capacity(answers.len());
        for bytes in answers {
            match decode(&bytes) {
                Ok(message) => out.extend(message),
                Err(e) => tracing::warn!(op, error = %e, "skipping an rtnetlink answer that does not decode"),
            }
        }
        Ok(out)
    }

    /// Every link of the namespace: (index, name).
    pub fn links(&mut self) -> Result<Vec<(u32, String)>> {
        let answers = self.dump("list links", RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .filter_map(|link| {
                let name = link.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(name) => Some(name.clone()),
                    _ => None,
                })?;
                Some((link.header.index, name))
            })
            .collect())
    }

    /// The index of the link called `name`, asked of the kernel by name.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        let mut query = LinkMessage::default();
        query.attributes.push(LinkAttribute::IfName(name.to_string()));
        let answers = match self.socket.exchange(encode(RouteNetlinkMessage::GetLink(query), NLM_F_ACK)) {
            Ok(answers) => answers,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => return Ok(None),
            Err(source) => return Err(NetemError::NetlinkOn { op: "find link", on: name.to_string(), source }),
        };
        for bytes in answers {
            let decoded = decode(&bytes).map_err(|source| NetemError::NetlinkOn {
                op: "find link",
                on: name.to_string(),
                source,
            })?;
            if let Some(RouteNetlinkMessage::NewLink(link)) = decoded {
                return Ok(Some(link.header.index));
            }
        }
        Ok(None)
    }

    /// `ip link add NAME type bridge`
    pub fn add_bridge(&mut self, name: &str) -> Result<()> {
        self.request_on("add bridge", name, RouteNetlinkMessage::NewLink(LinkBridge::new(name).build()), CREATE)
    }

    /// `ip link add NAME type veth peer name PEER netns NS`: the peer end is
    /// created inside the namespace `peer_netns` (an open `/run/netns/NS`).
    pub fn add_veth_into(&mut self, name: &str, peer: &str, peer_netns: &File) -> Result<()> {
        let peer = LinkUnspec::new_with_name(peer).setns_by_fd(peer_netns.as_raw_fd()).build();
        let link = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(name.to_string())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.request_on("add veth pair", name, RouteNetlinkMessage::NewLink(link), CREATE)
    }

    /// `ip link set dev INDEX [master CONTROLLER] up`
    pub fn set_up(&mut self, index: u32, controller: Option<u32>) -> Result<()> {
        let mut link = LinkUnspec::new_with_index(index).up();
        if let Some(controller) = controller {
            link = link.controller(controller);
        }
        self.request_on("set link up", &format!("link {index}"), RouteNetlinkMessage::SetLink(link.build()), 0)
    }

    /// `ip link del dev INDEX`; with a veth, its peer goes too.
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let message = RouteNetlinkMessage::DelLink(LinkUnspec::new_with_index(index).build());
        self.request_on("delete link", &format!("link {index}"), message, 0)
    }

    /// `ip addr add ADDR/PREFIX dev INDEX`
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix;
        message.header.index = index;
        message.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
        message.attributes.push(AddressAttribute::Address(IpAddr::V4(addr)));
        self.request_on(
            "add address",
            &format!("{addr}/{prefix} on link {index}"),
            RouteNetlinkMessage::NewAddress(message),
            CREATE,
        )
    }

    /// The IPv4 networks this namespace has an address in or a route to, as (address, prefix length).
    pub fn ipv4_networks(&mut self) -> Result<Vec<(Ipv4Addr, u8)>> {
        let mut query = AddressMessage::default();
        query.header.family = AddressFamily::Inet;
        let mut networks = Vec::new();
        for answer in self.dump("list addresses", RouteNetlinkMessage::GetAddress(query))? {
            let RouteNetlinkMessage::NewAddress(address) = answer else { continue };
            for attribute in &address.attributes {
                if let AddressAttribute::Address(IpAddr::V4(addr)) = attribute {
                    networks.push((*addr, address.header.prefix_len));
                }
            }
        }
        let mut query = RouteMessage::default();
        query.header.address_family = AddressFamily::Inet;
        // An unfiltered dump answers with the routes of every table, as `ip route show table all`.
        for answer in self.dump("list routes", RouteNetlinkMessage::GetRoute(query))? {
            let RouteNetlinkMessage::NewRoute(route) = answer else { continue };
            for attribute in &route.attributes {
                if let RouteAttribute::Destination(RouteAddress::Inet(addr)) = attribute {
                    networks.push((*addr, route.header.destination_prefix_length));
                }
            }
        }
        Ok(networks)
    }

    /// Every qdisc of the namespace.
    pub fn qdiscs(&mut self) -> Result<Vec<TcMessage>> {
        let answers = self.dump("list qdiscs", RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()))?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewQueueDiscipline(qdisc) => Some(qdisc),
                _ => None,
            })
            .collect())
    }
}
