//! A blocking netlink socket (request and acknowledge, dump), and a small
//! message writer for the protocol no crate covers.
//!
//! The writer serves NFQUEUE only (a header, a family header, flat and nested
//! attributes aligned to four bytes): `netlink-packet-route` covers rtnetlink
//! (see [`crate::route`]), and no well-kept crate speaks `nfnetlink_queue`.
//! The socket takes finished message bytes from either.

use std::io;
use std::os::fd::AsFd;

use netlink_sys::{Socket, SocketAddr};

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const HEADER_LEN: usize = 16;

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Writes one netlink message.
pub struct MsgBuilder {
    buf: Vec<u8>,
}

impl MsgBuilder {
    pub fn new(msg_type: u16, flags: u16) -> MsgBuilder {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set by finish
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        MsgBuilder { buf }
    }

    /// Raw bytes (a family header or a struct inside an attribute), padded.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    pub fn attr(&mut self, attr_type: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&attr_type.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    /// The message's bytes; the socket that sends them sets the sequence number.
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.finish(0)
    }

    pub fn finish(&mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        std::mem::take(&mut self.buf)
    }

    fn pad(&mut self) {
        let padded = align4(self.buf.len());
        self.buf.resize(padded, 0);
    }
}

/// One received netlink message: its type, its payload after the header, and all of it.
pub struct Received<'a> {
    pub msg_type: u16,
    pub payload: &'a [u8],
    pub whole: &'a [u8],
}

/// The kernel's answer in an `NLMSG_ERROR` payload: 0 acknowledges, else `-errno`.
fn error_code(payload: &[u8]) -> io::Result<()> {
    let code = i32::from_ne_bytes(payload[0..4].try_into().expect("4 bytes"));
    if code == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-code)) }
}

/// Splits a receive buffer into messages.
pub fn messages(mut buf: &[u8]) -> impl Iterator<Item = Received<'_>> {
    std::iter::from_fn(move || {
        if buf.len() < HEADER_LEN {
            return None;
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().ok()?) as usize;
        if len < HEADER_LEN || len > buf.len() {
            return None;
        }
        let msg_type = u16::from_ne_bytes(buf[4..6].try_into().ok()?);
        let (payload, whole) = (&buf[HEADER_LEN..len], &buf[..len]);
        buf = &buf[align4(len).min(buf.len())..];
        Some(Received { msg_type, payload, whole })
    })
}

/// Splits attributes into (type without flag bits, data).
pub fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let attr_type = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let data = &buf[4..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((attr_type, data))
    })
}

/// A netlink socket that sends requests and waits for the kernel's answer.
pub struct NlSocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl NlSocket {
    pub fn open(protocol: isize) -> io::Result<NlSocket> {
        let mut socket = Socket::new(protocol)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(NlSocket { socket, seq: 1, buf: vec![0; 1 << 17] })
    }

    pub fn fd(&self) -> impl AsFd + '_ {
        &self.socket
    }

    /// Sends a finished message without waiting (NFQUEUE verdicts), numbering it.
    pub fn send(&mut self, mut message: Vec<u8>) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        if message.len() < HEADER_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a netlink message shorter than its header"));
        }
        message[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        self.socket.send(&message, 0)?;
        Ok(())
    }

    /// Sends a request flagged `NLM_F_ACK` and returns the kernel's error, if any.
    pub fn request(&mut self, message: Vec<u8>) -> io::Result<()> {
        self.exchange(message).map(drop)
    }

    /// Sends a request that is answered with messages (a dump, flagged
    /// `NLM_F_DUMP`, or a get flagged `NLM_F_ACK`) and collects them until the
    /// kernel's done or acknowledgement, each whole (header included) for the
    /// caller's parser.
    pub fn exchange(&mut self, message: Vec<u8>) -> io::Result<Vec<Vec<u8>>> {
        self.send(message)?;
        let mut out = Vec::new();
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            for received in messages(&self.buf[..n]) {
                match received.msg_type {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR if received.payload.len() >= 4 => return error_code(received.payload).map(|()| out),
                    _ => out.push(received.whole.to_vec()),
                }
            }
        }
    }

    /// Receives whatever is queued into the internal buffer (`flags` may carry MSG_DONTWAIT).
    pub fn recv(&mut self, flags: i32) -> io::Result<&[u8]> {
        let n = self.socket.recv(&mut &mut self.buf[..], flags)?;
        Ok(&self.buf[..n])
    }

    pub fn set_recv_buffer(&self, bytes: usize) -> io::Result<()> {
        self.socket.set_rx_buf_sz(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_the_header_counts_the_whole_message() {
        let mut msg = MsgBuilder::new(36, NLM_F_REQUEST);
        msg.bytes(&[1, 2]);
        msg.attr(1, b"tbf\0");
        msg.attr(2, &4096u32.to_ne_bytes());
        let bytes = msg.finish(7);
        assert_eq!(bytes.len(), 16 + 4 + 8 + 8);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), bytes.len() as u32);
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        assert_eq!(&bytes[16..20], &[1, 2, 0, 0]);
        let attrs: Vec<_> = attributes(&bytes[20..]).collect();
        assert_eq!(attrs, vec![(1, &b"tbf\0"[..]), (2, &4096u32.to_ne_bytes()[..])]);
    }
}
