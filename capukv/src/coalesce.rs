//! A TCP stream whose writes wait one scheduler pass, so that what many
//! tasks have ready at the same moment leaves in one syscall.
//!
//! HTTP/2 puts every concurrent request (or answer) on one connection, and
//! its connection task writes as soon as it is woken: when a batch of
//! writes commits and its answers are released together, each answer would
//! go out in a `writev` of its own, and each costs a loopback (or NIC) send
//! and a wake-up of the reader. Holding a write back once, by yielding to
//! the scheduler before writing, lets the other answers (or the requests
//! that closed-loop clients send on the heels of theirs) join the
//! connection's buffer first; the next attempt writes them all. The delay
//! is one pass of the runtime's run queue, not a timer (Go's gRPC batches
//! its writes the same way, with a writer loop that flushes when idle).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct Coalescing<S> {
    inner: S,
    /// A write was held back and its task rescheduled: the next one goes.
    held: bool,
}

impl<S> Coalescing<S> {
    pub fn new(inner: S) -> Coalescing<S> {
        Coalescing { inner, held: false }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether to hold this write back: every other attempt is held, and
    /// the task is woken at once so it runs again after the others queued.
    fn hold(&mut self, cx: &mut Context<'_>) -> bool {
        self.held = !self.held;
        if self.held {
            // A task that wakes itself is queued behind the tasks already
            // runnable (tokio treats it as a yield).
            cx.waker().wake_by_ref();
        }
        self.held
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalescing<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalescing<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.hold(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.hold(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Coalescing<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.get_ref().connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the writes that reach the inner stream.
    struct Counting {
        writes: usize,
        data: Vec<u8>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.writes += 1;
            self.data.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn every_write_arrives_whole_and_in_order_after_one_yield() {
        let mut s = Coalescing::new(Counting { writes: 0, data: Vec::new() });
        for chunk in [&b"abc"[..], b"", b"defg"] {
            s.write_all(chunk).await.unwrap();
        }
        s.flush().await.unwrap();
        assert_eq!(s.get_ref().data, b"abcdefg");
        // Each write was held once, then written in one piece.
        assert_eq!(s.get_ref().writes, 2);
    }

    #[tokio::test]
    async fn reads_and_writes_pass_through_a_real_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            let mut conn = Coalescing::new(conn);
            let mut buf = [0u8; 5];
            conn.read_exact(&mut buf).await.unwrap();
            conn.write_all(&buf).await.unwrap();
        });
        let mut client = Coalescing::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        client.write_all(b"hello").await.unwrap();
        let mut echo = Vec::new();
        client.read_to_end(&mut echo).await.unwrap();
        assert_eq!(echo, b"hello");
        server.await.unwrap();
    }
}
