//! The client side of a pooled HTTP/2 mesh connection, on the `h2` crate
//! directly: each request's own task opens its stream, pipes its body and
//! awaits its response. hyper's HTTP/2 client puts a dispatch task, a
//! channel, a oneshot and a task spawned per request between the caller and
//! the connection; on a keep-alive load that was about 4% of both hops' CPU.
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, RecvStream, SendStream};
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderMap, TE, TRANSFER_ENCODING, UPGRADE};
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::ctx::H2Keepalive;
use crate::h2_windows::H2Windows;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest response header list taken from a peer (hyper's client default).
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Bytes of request bodies h2 may buffer per stream before asking for more.
const MAX_SEND_BUFFER: usize = 1024 * 1024;
/// Streams opened before the peer's SETTINGS say how many it takes.
const INITIAL_MAX_SEND_STREAMS: usize = 100;

/// Sends requests over one mesh connection; clones share it.
#[derive(Clone)]
pub struct MeshSender {
    send: SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

/// Why a request got no response.
#[derive(Debug)]
pub enum MeshSendError {
    /// The connection would not take it (closed, or going away): nothing
    /// of it was sent, so it may go out on another connection.
    Unsent(Box<Request<Incoming>>, h2::Error),
    /// The caller's own request body failed (broke off, or held a
    /// malformed chunk); the stream was reset.
    CallerBody(BoxError),
    /// It was handed to the connection and the exchange failed.
    Failed(h2::Error),
}

impl std::fmt::Display for MeshSendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsent(_, e) => write!(f, "connection not taking requests: {e}"),
            Self::CallerBody(e) => write!(f, "request body from the caller failed: {e}"),
            Self::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Opens HTTP/2 on `io` with the given windows. The returned future drives
/// the connection (and its keep-alive pings) until it ends; spawn it.
pub async fn handshake<IO>(
    io: IO,
    windows: H2Windows,
    keepalive: H2Keepalive,
) -> Result<(MeshSender, impl Future<Output = ()> + Send + 'static), h2::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut conn) = h2::client::Builder::new()
        .initial_window_size(windows.stream)
        .initial_connection_window_size(windows.connection)
        .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await?;
    let closed = Arc::new(AtomicBool::new(false));
    let pings = conn.ping_pong();
    let ended = closed.clone();
    let driven = async move {
        let outcome = tokio::select! {
            r = &mut conn => r.err().map(|e| e.to_string()),
            () = keep_alive(pings, keepalive) => Some("ping unanswered".to_string()),
        };
        ended.store(true, Ordering::Release);
        if let Some(error) = outcome {
            tracing::debug!(%error, "pooled mesh connection ended");
        }
    };
    Ok((MeshSender { send, closed }, driven))
}

/// Pings the peer every `interval` and returns when one goes unanswered
/// for `timeout` (a peer whose node vanished without a FIN or RST, which
/// TCP alone would keep as established for hours). Never returns while
/// the peer answers.
async fn keep_alive(pings: Option<h2::PingPong>, keepalive: H2Keepalive) {
    let Some(mut pings) = pings else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(keepalive.interval).await;
        match tokio::time::timeout(keepalive.timeout, pings.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            // The connection failed: its own future reports why.
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => return,
        }
    }
}

impl MeshSender {
    /// The connection has ended; no request can go out on it.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until the connection can open a stream; an error means it
    /// never will (closed, failed or going away).
    pub async fn ready(&mut self) -> Result<(), h2::Error> {
        poll_fn(|cx| self.send.poll_ready(cx)).await
    }

    /// Sends `req` (in absolute form) and returns the response head; the
    /// body follows as [`MeshBody`]. A request body still streaming when
    /// the head arrives (gRPC streaming, an early answer) is piped on by a
    /// task of its own.
    pub async fn send(
        &mut self,
        req: Request<Incoming>,
    ) -> Result<Response<MeshBody>, MeshSendError> {
        if let Err(e) = self.ready().await {
            return Err(MeshSendError::Unsent(Box::new(req), e));
        }
        let (mut head, body) = req.into_parts();
        strip_connection_headers(&mut head.headers);
        if let Some(len) = body.size_hint().exact()
            && (len != 0 || has_payload_semantics(&head.method))
            && !head.headers.contains_key(CONTENT_LENGTH)
        {
            head.headers.insert(CONTENT_LENGTH, len.into());
        }
        let eos = body.is_end_stream();
        let (response, stream) = self
            .send
            .send_request(Request::from_parts(head, ()), eos)
            .map_err(MeshSendError::Failed)?;
        let resp = if eos {
            drop(stream);
            response.await.map_err(MeshSendError::Failed)?
        } else {
            with_body(response, BodyPipe::new(body, stream)).await?
        };
        let (head, recv) = resp.into_parts();
        let body = MeshBody::new(recv, &head.headers);
        Ok(Response::from_parts(head, body))
    }
}

/// Awaits the response while piping the request body; a body that has not
/// ended when the response head arrives goes on in its own task.
async fn with_body(
    mut response: ResponseFuture,
    mut pipe: BodyPipe,
) -> Result<Response<RecvStream>, MeshSendError> {
    let mut piped = false;
    let resp = poll_fn(|cx| {
        if !piped {
            match Pin::new(&mut pipe).poll(cx) {
                Poll::Ready(Err(PipeError::Caller(e))) => {
                    return Poll::Ready(Err(MeshSendError::CallerBody(e)));
                }
                // A stream error shows in the response too.
                Poll::Ready(_) => piped = true,
                Poll::Pending => {}
            }
        }
        Pin::new(&mut response)
            .poll(cx)
            .map_err(MeshSendError::Failed)
    })
    .await?;
    if !piped {
        tokio::spawn(async move {
            if let Err(e) = pipe.await {
                tracing::debug!(error = %e, "request body after the response head failed");
            }
        });
    }
    Ok(resp)
}

/// Removes what HTTP/2 forbids in a request head (RFC 9113 8.2.2), so a
/// stray header costs the header rather than the request.
fn strip_connection_headers(headers: &mut HeaderMap) {
    if !headers.keys().any(crate::forward::is_hop_by_hop) {
        return;
    }
    if let Some(named) = headers.remove(CONNECTION)
        && let Ok(named) = named.to_str()
    {
        for name in named.split(',') {
            headers.remove(name.trim());
        }
    }
    for name in [TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if headers.get(TE).is_some_and(|te| te != "trailers") {
        headers.remove(TE);
    }
}

/// Methods whose request body has a meaning, so an empty one is announced
/// with `content-length: 0` (as hyper does).
fn has_payload_semantics(method: &http::Method) -> bool {
    !matches!(
        *method,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::DELETE
            | http::Method::CONNECT
            | http::Method::OPTIONS
            | http::Method::TRACE
    )
}

#[derive(Debug, thiserror::Error)]
enum PipeError {
    #[error("request body from the caller failed: {0}")]
    Caller(BoxError),
    #[error("stream: {0}")]
    Stream(#[from] h2::Error),
    #[error("stream closed while the body was being sent")]
    Closed,
}

/// Copies a request body into its HTTP/2 stream as flow control allows.
struct BodyPipe {
    body: Incoming,
    tx: SendStream<Bytes>,
    /// A chunk read from the body, waiting for stream capacity.
    waiting: Option<(Bytes, bool)>,
}

impl BodyPipe {
    fn new(body: Incoming, tx: SendStream<Bytes>) -> Self {
        Self {
            body,
            tx,
            waiting: None,
        }
    }
}

impl Future for BodyPipe {
    type Output = Result<(), PipeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = &mut *self;
        loop {
            // Woken by a RST_STREAM while waiting for the body or capacity.
            if let Poll::Ready(reason) = me.tx.poll_reset(cx)? {
                return Poll::Ready(Err(h2::Error::from(reason).into()));
            }
            if let Some((_, _)) = &me.waiting {
                while me.tx.capacity() == 0 {
                    match ready!(me.tx.poll_capacity(cx)) {
                        Some(Ok(0)) => {}
                        Some(Ok(_)) => break,
                        Some(Err(e)) => return Poll::Ready(Err(e.into())),
                        None => return Poll::Ready(Err(PipeError::Closed)),
                    }
                }
                if let Some((data, eos)) = me.waiting.take() {
                    me.tx.send_data(data, eos)?;
                    if eos {
                        return Poll::Ready(Ok(()));
                    }
                }
                continue;
            }
            // The next frame is read before any capacity is claimed: a
            // claim for a body that never comes would pin the connection's
            // window (hyper #4003).
            match ready!(Pin::new(&mut me.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let eos = me.body.is_end_stream();
                        if data.is_empty() {
                            me.tx.send_data(data, eos)?;
                            if eos {
                                return Poll::Ready(Ok(()));
                            }
                        } else {
                            // h2 raises the claim to the whole chunk when it
                            // is sent.
                            me.tx.reserve_capacity(1);
                            me.waiting = Some((data, eos));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            me.tx.reserve_capacity(0);
                            me.tx.send_trailers(trailers)?;
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
                Some(Err(e)) => {
                    me.tx.send_reset(Reason::INTERNAL_ERROR);
                    return Poll::Ready(Err(PipeError::Caller(e.into())));
                }
                None => {
                    me.tx.reserve_capacity(0);
                    me.tx.send_data(Bytes::new(), true)?;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// A response body arriving on a mesh stream: data frames (their window
/// released as they are handed on), then trailers.
#[derive(Debug)]
pub struct MeshBody {
    recv: RecvStream,
    data_done: bool,
    /// Bytes the head's `content-length` still promises.
    remaining: Option<u64>,
}

impl MeshBody {
    /// `recv`, whose declared length is in `headers` (the response head
    /// it came with).
    fn new(recv: RecvStream, headers: &HeaderMap) -> Self {
        let data_done = recv.is_end_stream();
        let remaining = if data_done {
            Some(0)
        } else {
            headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
        };
        Self {
            recv,
            data_done,
            remaining,
        }
    }
}

impl Body for MeshBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut self.remaining {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // RST_STREAM(NO_ERROR) after a whole response: an early
                // answer (RFC 9113 8.1), not a failure.
                Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) => {
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) if e.reason() == Some(Reason::NO_ERROR) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const FAST: H2Keepalive = H2Keepalive {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(200),
    };

    /// A client connection to an HTTP/2 server on loopback whose
    /// connection is polled (so it answers pings) only if `answering`.
    async fn connected(answering: bool) -> MeshSender {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(tcp).await.unwrap();
            if answering {
                while let Some(Ok(_)) = conn.accept().await {}
            } else {
                // Holds the socket open and never reads from it again.
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(conn);
            }
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, driven) = handshake(tcp, H2Windows::default(), FAST).await.unwrap();
        tokio::spawn(driven);
        sender
    }

    #[tokio::test]
    async fn an_unanswered_ping_closes_the_connection() {
        let sender = connected(false).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while !sender.is_closed() {
            assert!(tokio::time::Instant::now() < deadline, "still open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_peer_that_answers_pings_is_kept() {
        let mut sender = connected(true).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!sender.is_closed());
        assert!(sender.ready().await.is_ok());
    }
}
