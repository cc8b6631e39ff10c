//! The NFQUEUE protocol: bind a queue, receive packets, give verdicts.

use std::io;

use crate::netlink::{MsgBuilder, NLM_F_ACK, NLM_F_REQUEST, NlSocket, attributes, messages};

const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_CFG_CMD_UNBIND: u8 = 2;
const NFQNL_COPY_META: u8 = 1;
const NFQNL_COPY_PACKET: u8 = 2;
const NFQA_CFG_F_FAIL_OPEN: u32 = 1;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_PAYLOAD: u16 = 10;
const AF_INET: u16 = 2;
pub const NF_DROP: u32 = 0;
pub const NF_ACCEPT: u32 = 1;

/// A packet held by the kernel until it gets a verdict.
#[derive(Debug)]
pub struct QueuedPacket {
    pub id: u32,
    /// The IP packet, headers included (empty when the queue copies metadata only).
    pub payload: Vec<u8>,
}

/// A bound NFQUEUE queue.
pub struct NfQueue {
    socket: NlSocket,
    queue: u16,
}

fn nfgenmsg(queue: u16) -> [u8; 4] {
    let q = queue.to_be_bytes();
    [0, 0, q[0], q[1]]
}

fn message(msg: u16, queue: u16, flags: u16) -> MsgBuilder {
    let mut m = MsgBuilder::new((NFNL_SUBSYS_QUEUE << 8) | msg, flags);
    m.bytes(&nfgenmsg(queue));
    m
}

impl NfQueue {
    /// Binds `queue` in the calling thread's namespace, letting packets through
    /// (fail open) when the queue is full. Packets reach userspace whole only
    /// when `copy_payload` (to change them); otherwise as metadata, which is all
    /// a delay needs and spares a copy of every packet each way.
    pub fn bind(queue: u16, max_len: u32, copy_payload: bool) -> io::Result<NfQueue> {
        let mut socket = NlSocket::open(NETLINK_NETFILTER)?;
        socket.set_recv_buffer(8 << 20)?;
        let mut cmd = message(NFQNL_MSG_CONFIG, queue, NLM_F_REQUEST | NLM_F_ACK);
        let pf = AF_INET.to_be_bytes();
        cmd.attr(NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, pf[0], pf[1]]);
        socket.request(cmd.into_bytes())?;
        let mut params = message(NFQNL_MSG_CONFIG, queue, NLM_F_REQUEST | NLM_F_ACK);
        let mut p = 0xffffu32.to_be_bytes().to_vec();
        p.push(if copy_payload { NFQNL_COPY_PACKET } else { NFQNL_COPY_META });
        params.attr(NFQA_CFG_PARAMS, &p);
        params.attr(NFQA_CFG_QUEUE_MAXLEN, &max_len.to_be_bytes());
        params.attr(NFQA_CFG_MASK, &NFQA_CFG_F_FAIL_OPEN.to_be_bytes());
        params.attr(NFQA_CFG_FLAGS, &NFQA_CFG_F_FAIL_OPEN.to_be_bytes());
        socket.request(params.into_bytes())?;
        Ok(NfQueue { socket, queue })
    }

    pub fn socket(&self) -> &NlSocket {
        &self.socket
    }

    /// Receives the packets waiting now; an empty result when none are.
    pub fn recv_ready(&mut self, out: &mut Vec<QueuedPacket>) -> io::Result<()> {
        loop {
            let buf = match self.socket.recv(nix::libc::MSG_DONTWAIT) {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // The kernel dropped packets for a full socket buffer; fail-open lets them through.
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => continue,
                Err(e) => return Err(e),
            };
            for m in messages(buf) {
                if m.msg_type != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET || m.payload.len() < 4 {
                    continue;
                }
                let mut id = None;
                let mut payload = Vec::new();
                for (attr, data) in attributes(&m.payload[4..]) {
                    match attr {
                        NFQA_PACKET_HDR if data.len() >= 4 => {
                            id = Some(u32::from_be_bytes(data[0..4].try_into().expect("4 bytes")))
                        }
                        NFQA_PAYLOAD => payload = data.to_vec(),
                        _ => {}
                    }
                }
                if let Some(id) = id {
                    out.push(QueuedPacket { id, payload });
                }
            }
        }
    }

    /// Gives a verdict; `payload` replaces the packet when given.
    pub fn verdict(&mut self, id: u32, verdict: u32, payload: Option<&[u8]>) -> io::Result<()> {
        let mut msg = message(NFQNL_MSG_VERDICT, self.queue, NLM_F_REQUEST);
        let mut hdr = verdict.to_be_bytes().to_vec();
        hdr.extend_from_slice(&id.to_be_bytes());
        msg.attr(NFQA_VERDICT_HDR, &hdr);
        if let Some(payload) = payload {
            msg.attr(NFQA_PAYLOAD, payload);
        }
        self.socket.send(msg.into_bytes())
    }
}

impl Drop for NfQueue {
    fn drop(&mut self) {
        let mut cmd = message(NFQNL_MSG_CONFIG, self.queue, NLM_F_REQUEST | NLM_F_ACK);
        let pf = AF_INET.to_be_bytes();
        cmd.attr(NFQA_CFG_CMD, &[NFQNL_CFG_CMD_UNBIND, 0, pf[0], pf[1]]);
        let _ = self.socket.request(cmd.into_bytes());
    }
}
