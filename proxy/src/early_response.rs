//! Early responses from servers that close without lingering. A server may
//! answer before it read the whole request body (a 413 for an upload too
//! large) and close; the kernel then resets the connection on the bytes
//! still arriving, and writing the rest of the body fails with a broken
//! pipe. hyper's client reports that write error and drops the response
//! it had not parsed yet, though its bytes are waiting in the socket. This
//! wrapper turns the reset seen by a write into an end of writing: the
//! rest of the body is discarded unsent, reading goes on, so the response
//! the server did send reaches the caller, and a server that sent none
//! still fails the exchange on the read side.
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A client connection whose writes end quietly once the server has reset
/// or closed it.
#[derive(Debug)]
pub struct EarlyResponseIo<I> {
    inner: I,
    writes_refused: bool,
}

impl<I> EarlyResponseIo<I> {
    pub fn new(inner: I) -> Self {
        Self {
            inner,
            writes_refused: false,
        }
    }
}

/// The other side closed or reset the connection: what is written goes
/// nowhere.
pub(crate) fn closed_by_peer(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

impl<I: AsyncRead + Unpin> AsyncRead for EarlyResponseIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> EarlyResponseIo<I> {
    /// Passes a write result on, or, once the server stopped reading,
    /// reports `len` bytes written that were dropped.
    fn settle(&mut self, r: Poll<io::Result<usize>>, len: usize) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Err(e)) if closed_by_peer(&e) => {
                tracing::debug!(error = %e, "the server stopped reading; the rest of the request is dropped and its response awaited");
                self.writes_refused = true;
                Poll::Ready(Ok(len))
            }
            r => r,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for EarlyResponseIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.writes_refused {
            return Poll::Ready(Ok(buf.len()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.settle(r, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.writes_refused {
            return Poll::Ready(Ok(len));
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.settle(r, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.writes_refused {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) if closed_by_peer(&e) => {
                self.writes_refused = true;
                Poll::Ready(Ok(()))
            }
            r => r,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.writes_refused {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A server that reads a little, answers, and closes without reading
    /// the rest: the client's writes meet a reset.
    async fn impatient_server(answer: &'static [u8]) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 64];
            tcp.read_exact(&mut head).await.unwrap();
            tcp.write_all(answer).await.unwrap();
            drop(tcp);
        });
        addr
    }

    async fn upload_then_read(
        io: &mut (impl AsyncRead + AsyncWrite + Unpin),
    ) -> io::Result<Vec<u8>> {
        let upload = vec![b'x'; 32 * 1024 * 1024];
        io.write_all(&upload).await?;
        io.flush().await?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match io.read(&mut buf).await {
                Ok(0) => return Ok(answer),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if !answer.is_empty() && closed_by_peer(&e) => return Ok(answer),
                Err(e) => return Err(e),
            }
        }
    }

    #[tokio::test]
    async fn the_answer_sent_before_the_reset_is_read() {
        let addr = impatient_server(b"HTTP/1.1 413 Payload Too Large\r\n\r\n").await;
        let mut io = EarlyResponseIo::new(TcpStream::connect(addr).await.unwrap());
        let answer = upload_then_read(&mut io).await.expect("answer");
        assert!(answer.starts_with(b"HTTP/1.1 413"), "{answer:?}");
        assert!(io.writes_refused);
    }

    #[tokio::test]
    async fn without_it_the_write_fails_first() {
        let addr = impatient_server(b"HTTP/1.1 413 Payload Too Large\r\n\r\n").await;
        let mut io = TcpStream::connect(addr).await.unwrap();
        assert!(upload_then_read(&mut io).await.is_err());
    }

    #[tokio::test]
    async fn a_server_that_sent_nothing_still_fails_on_the_read() {
        let addr = impatient_server(b"").await;
        let mut io = EarlyResponseIo::new(TcpStream::connect(addr).await.unwrap());
        match upload_then_read(&mut io).await {
            Err(e) => assert!(closed_by_peer(&e), "{e}"),
            Ok(answer) => assert!(answer.is_empty(), "an empty read is the end"),
        }
    }
}
