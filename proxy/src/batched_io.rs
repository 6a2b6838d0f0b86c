//! Batched socket I/O under the TLS layer of a multiplexed (HTTP/2) mesh
//! connection: writes are gathered until the end of the current scheduler
//! round, and reads fill a large buffer, so many requests share one syscall.
//!
//! HTTP/2 flushes after every poll of its connection task, and that task
//! runs between the request tasks that feed it: without batching, every
//! request costs one `writev` and one TLS record on the link between
//! sidecars. Here the first flush of a batch yields once (the task wakes
//! itself and goes to the back of the run queue); the request tasks already
//! queued add their frames meanwhile, and the second flush writes them all.
//! `rustls` reads at most 4 KiB at a time, so reads are served from a
//! [`READ_BUF`] buffer filled by one `recv`.
//!
//! With batching off the wrapper passes every call straight through (HTTP/1
//! and opaque connections carry one exchange at a time: nothing to gather).
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered before a write goes out without waiting for the flush.
pub const MAX_PENDING_WRITE: usize = 256 * 1024;
/// A batch at least this large is written at once, without the yield:
/// requests gathered meanwhile would add little, and a bulk transfer would
/// pay one extra poll of the reactor per write.
pub const YIELD_BELOW: usize = 32 * 1024;
/// Size of one socket read when batching.
pub const READ_BUF: usize = 64 * 1024;

#[derive(Debug)]
pub struct Batched<T> {
    inner: T,
    enabled: bool,
    wbuf: Vec<u8>,
    /// Bytes of `wbuf` already written.
    wpos: usize,
    /// The current batch's flush has yielded once already.
    yielded: bool,
    /// Read buffer, allocated (and zeroed) once, on the first batched read.
    rbuf: Box<[u8]>,
    rpos: usize,
    rlen: usize,
}

impl<T> Batched<T> {
    /// A pass-through wrapper; see [`Batched::set_batching`].
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            enabled: false,
            wbuf: Vec::new(),
            wpos: 0,
            yielded: false,
            rbuf: Box::default(),
            rpos: 0,
            rlen: 0,
        }
    }

    /// Turns batching on (for a multiplexed connection) or off. Turning it
    /// off with bytes still gathered keeps them: they go out first.
    pub fn set_batching(&mut self, on: bool) {
        self.enabled = on;
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn pending_write(&self) -> usize {
        self.wbuf.len() - self.wpos
    }
}

impl<T: AsyncWrite + Unpin> Batched<T> {
    /// Writes out every gathered byte.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.wbuf[self.wpos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wpos += n;
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.wbuf.capacity() > MAX_PENDING_WRITE * 2 {
            self.wbuf.shrink_to(MAX_PENDING_WRITE);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Batched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.rpos < this.rlen {
            let n = buf.remaining().min(this.rlen - this.rpos);
            buf.put_slice(&this.rbuf[this.rpos..this.rpos + n]);
            this.rpos += n;
            return Poll::Ready(Ok(()));
        }
        if !this.enabled || buf.remaining() >= READ_BUF {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if this.rbuf.is_empty() {
            this.rbuf = vec![0u8; READ_BUF].into_boxed_slice();
        }
        let mut fill = ReadBuf::new(&mut this.rbuf);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut fill))?;
        let got = fill.filled().len();
        let n = buf.remaining().min(got);
        buf.put_slice(&this.rbuf[..n]);
        this.rpos = n;
        this.rlen = got;
        Poll::Ready(Ok(()))
    }
}

/// Where a write of some bytes goes.
enum WriteRoute {
    /// Straight to the socket (batching off, or too large to gather).
    Through,
    /// Into the gather buffer.
    Gather,
}

impl<T: AsyncWrite + Unpin> Batched<T> {
    /// Decides where a write of `len` bytes goes, first writing out what is
    /// gathered when it would not fit.
    fn poll_route(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<WriteRoute>> {
        if !self.enabled && self.pending_write() == 0 {
            return Poll::Ready(Ok(WriteRoute::Through));
        }
        if self.pending_write() + len > MAX_PENDING_WRITE {
            ready!(self.poll_drain(cx))?;
            if len >= MAX_PENDING_WRITE || !self.enabled {
                return Poll::Ready(Ok(WriteRoute::Through));
            }
        }
        Poll::Ready(Ok(WriteRoute::Gather))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Batched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match ready!(this.poll_route(cx, data.len()))? {
            WriteRoute::Through => Pin::new(&mut this.inner).poll_write(cx, data),
            WriteRoute::Gather => {
                this.wbuf.extend_from_slice(data);
                Poll::Ready(Ok(data.len()))
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        match ready!(this.poll_route(cx, total))? {
            WriteRoute::Through => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            WriteRoute::Gather => {
                for b in bufs {
                    this.wbuf.extend_from_slice(b);
                }
                Poll::Ready(Ok(total))
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.enabled || self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pending_write() > 0 {
            if this.enabled && !this.yielded && this.pending_write() < YIELD_BELOW {
                // Let the tasks already queued, and those the next poll of
                // the reactor wakes, add to this batch first: tokio's
                // `yield_now` defers the wake until then.
                this.yielded = true;
                let mut yield_once = std::pin::pin!(tokio::task::yield_now());
                let _ = yield_once.as_mut().poll(cx);
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn gathered_writes_reach_the_peer_only_after_flush_in_one_piece() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Batched::new(a);
        w.set_batching(true);
        w.write_all(b"hello ").await.unwrap();
        w.write_all(b"world").await.unwrap();
        let mut probe = [0u8; 16];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(20), b.read(&mut probe)).await;
        assert!(early.is_err(), "nothing may leave before the flush");
        w.flush().await.unwrap();
        let n = b.read(&mut probe).await.unwrap();
        assert_eq!(&probe[..n], b"hello world");
    }

    /// A small batch's first flush yields once; a large one goes out at
    /// once.
    #[tokio::test]
    async fn only_small_batches_wait_for_the_scheduler_round() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Batched::new(a);
        w.set_batching(true);
        w.write_all(b"small").await.unwrap();
        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_pending());
        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_ready());
        let big = vec![7u8; YIELD_BELOW];
        w.write_all(&big).await.unwrap();
        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_ready());
        let mut got = vec![0u8; 5 + YIELD_BELOW];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..5], b"small");
        assert!(got[5..].iter().all(|&x| x == 7));
    }

    #[tokio::test]
    async fn passthrough_when_batching_is_off() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = Batched::new(a);
        w.write_all(b"now").await.unwrap();
        let mut probe = [0u8; 8];
        let n = b.read(&mut probe).await.unwrap();
        assert_eq!(&probe[..n], b"now");
    }

    #[tokio::test]
    async fn large_writes_and_small_reads_keep_every_byte_in_order() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let mut w = Batched::new(a);
        w.set_batching(true);
        let mut r = Batched::new(b);
        r.set_batching(true);
        let data: Vec<u8> = (0..(3 * MAX_PENDING_WRITE + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let expected = data.clone();
        let writer = tokio::spawn(async move {
            for chunk in data.chunks(7919) {
                w.write_all(chunk).await.unwrap();
            }
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        let mut small = [0u8; 1000];
        loop {
            let n = r.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, expected);
    }
}
