//! Lingering close of served HTTP connections. When hyper closes a
//! connection while the client may still be sending (an answer before the
//! upload was read, a 431 for a header that never ended), closing the
//! socket with unread bytes makes the kernel answer with a reset, and the
//! client can lose the response it has not read yet: a 413 turns into
//! "broken pipe". Like nginx's `lingering_close`, such a connection's write
//! side is shut and what the client still sends is read and thrown away,
//! for at most [`LINGER_TIME`] and [`LINGER_BYTES`]. A connection whose
//! client already closed, or that carried no request body and has nothing
//! unread, closes at once.
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How long a closing connection keeps reading what the client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// How much of it is read before the connection is closed anyway.
pub const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// A served connection that lingers when it is dropped while its client
/// may still be sending.
pub struct Lingering<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    io: Option<I>,
    client_closed: bool,
    request_bodies: BodyMark,
}

/// Set for each request that arrives with a body (by
/// [`crate::http_server::NotingBodies`]): the connection may close before
/// the body was read.
#[derive(Clone, Default)]
pub struct BodyMark(Arc<AtomicBool>);

impl BodyMark {
    /// Called per request: remembers that this one carries a body.
    pub fn note(&self, req_has_body: bool) {
        if req_has_body {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    fn seen(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl<I> Lingering<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub fn new(io: I) -> (Self, BodyMark) {
        let mark = BodyMark::default();
        let conn = Self {
            io: Some(io),
            client_closed: false,
            request_bodies: mark.clone(),
        };
        (conn, mark)
    }

    fn io(&mut self) -> io::Result<&mut I> {
        self.io
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// Whether the client may still send: not closed, and either a request
    /// carried a body or bytes are waiting unread right now.
    fn client_may_be_sending(&mut self) -> bool {
        if self.client_closed {
            return false;
        }
        if self.request_bodies.seen() {
            return true;
        }
        let Some(io) = self.io.as_mut() else {
            return false;
        };
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        matches!(
            Pin::new(io).poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(())) if !buf.filled().is_empty()
        )
    }
}

impl<I> Drop for Lingering<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn drop(&mut self) {
        if !self.client_may_be_sending() {
            return;
        }
        let (Some(io), Ok(runtime)) = (self.io.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(linger(io));
    }
}

/// Shuts the write side and reads until the client closes, within limits.
async fn linger<I>(mut io: I)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let drained = async {
        let _ = io.shutdown().await;
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0usize;
        while total <= LINGER_BYTES {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drained).await;
}

impl<I> AsyncRead for Lingering<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let r = Pin::new(self.io()?).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r
            && wanted
            && buf.filled().len() == before
        {
            self.client_closed = true;
        }
        r
    }
}

impl<I> AsyncWrite for Lingering<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.io()?).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.io()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.io()?).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.io()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// A server that answers before reading a large upload and closes,
    /// lingering or not: returns what the client read, or the error it got.
    async fn early_answer(linger: bool) -> io::Result<Vec<u8>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await?;
            let mut head = [0u8; 64];
            tcp.read_exact(&mut head).await?;
            tcp.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
                .await?;
            tcp.shutdown().await?;
            if linger {
                let (conn, mark) = Lingering::new(tcp);
                mark.note(true);
                drop(conn);
            } else {
                drop(tcp);
            }
            io::Result::Ok(())
        });
        let mut client = TcpStream::connect(addr).await?;
        // More than the socket buffers of both ends hold, so the client is
        // still writing when the server closes.
        let upload = vec![b'x'; 32 * 1024 * 1024];
        let written = client.write_all(&upload).await;
        server.await.map_err(io::Error::other)??;
        written?;
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn a_lingering_close_lets_the_client_finish_its_upload_and_read_the_answer() {
        let answer = early_answer(true).await.expect("no reset");
        assert!(answer.starts_with(b"HTTP/1.1 413"), "{answer:?}");
    }

    #[tokio::test]
    async fn a_plain_close_with_unread_bytes_resets_the_client() {
        // The failure the lingering close prevents, shown on the same
        // exchange: the client's upload meets a reset.
        assert!(early_answer(false).await.is_err());
    }

    #[tokio::test]
    async fn bytes_waiting_unread_make_a_connection_linger_without_a_body_mark() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut talking = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        talking
            .write_all(b"GET / HTTP/1.1\r\nx-big: aaaa")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (mut conn, _mark) = Lingering::new(tcp);
        assert!(conn.client_may_be_sending());

        // An idle client with nothing unread and no body: closes at once.
        let _quiet_client = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut quiet, _mark) = Lingering::new(tcp);
        assert!(!quiet.client_may_be_sending());
    }

    #[tokio::test]
    async fn a_client_that_closed_is_not_waited_for() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        drop(client);
        let (mut conn, mark) = Lingering::new(tcp);
        mark.note(true);
        let mut buf = [0u8; 8];
        assert_eq!(conn.read(&mut buf).await.unwrap(), 0);
        assert!(!conn.client_may_be_sending());
    }
}
