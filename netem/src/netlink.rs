//! A small netlink message writer and a request/acknowledge socket.
//!
//! Only what tc and NFQUEUE need: a header, a fixed family header, flat and
//! nested attributes, all aligned to four bytes as the kernel expects.

use std::io;
use std::os::fd::AsFd;

use netlink_sys::{Socket, SocketAddr};

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
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

    pub fn attr_str(&mut self, attr_type: u16, value: &str) -> &mut Self {
        let mut data = value.as_bytes().to_vec();
        data.push(0);
        self.attr(attr_type, &data)
    }

    pub fn attr_u32(&mut self, attr_type: u16, value: u32) -> &mut Self {
        self.attr(attr_type, &value.to_ne_bytes())
    }

    /// Opens an attribute whose contents follow; close it with [`MsgBuilder::end`].
    pub fn begin(&mut self, attr_type: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&attr_type.to_ne_bytes());
        start
    }

    pub fn end(&mut self, start: usize) -> &mut Self {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
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

/// One received netlink message: its type and its payload after the header.
pub struct Received<'a> {
    pub msg_type: u16,
    pub payload: &'a [u8],
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
        let payload = &buf[HEADER_LEN..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some(Received { msg_type, payload })
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

    /// Sends without waiting (NFQUEUE verdicts).
    pub fn send(&mut self, msg: &mut MsgBuilder) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = msg.finish(self.seq);
        self.socket.send(&bytes, 0)?;
        Ok(())
    }

    /// Sends a request flagged `NLM_F_ACK` and returns the kernel's error, if any.
    pub fn request(&mut self, msg: &mut MsgBuilder) -> io::Result<()> {
        self.send(msg)?;
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            for received in messages(&self.buf[..n]) {
                if received.msg_type == NLMSG_ERROR && received.payload.len() >= 4 {
                    let code = i32::from_ne_bytes(received.payload[0..4].try_into().expect("4 bytes"));
                    return if code == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-code)) };
                }
            }
        }
    }

    /// Sends a dump request (`NLM_F_DUMP`) and collects every answer's payload.
    pub fn dump(&mut self, msg: &mut MsgBuilder) -> io::Result<Vec<(u16, Vec<u8>)>> {
        self.send(msg)?;
        let mut out = Vec::new();
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            for received in messages(&self.buf[..n]) {
                match received.msg_type {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR if received.payload.len() >= 4 => {
                        let code = i32::from_ne_bytes(received.payload[0..4].try_into().expect("4 bytes"));
                        return if code == 0 { Ok(out) } else { Err(io::Error::from_raw_os_error(-code)) };
                    }
                    t => out.push((t, received.payload.to_vec())),
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
    fn attributes_are_padded_and_nested_lengths_cover_their_contents() {
        let mut msg = MsgBuilder::new(36, NLM_F_REQUEST);
        msg.attr_str(1, "tbf");
        let start = msg.begin(2);
        msg.attr_u32(6, 4096);
        msg.end(start);
        let bytes = msg.finish(7);
        assert_eq!(bytes.len(), 16 + 8 + 4 + 8);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), bytes.len() as u32);
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        let attrs: Vec<_> = attributes(&bytes[16..]).collect();
        assert_eq!(attrs[0], (1, &b"tbf\0"[..]));
        assert_eq!(attrs[1].0, 2);
        let inner: Vec<_> = attributes(attrs[1].1).collect();
        assert_eq!(inner, vec![(6, &4096u32.to_ne_bytes()[..])]);
    }
}
