//! Pooled plain HTTP/1.1 connections: inbound to the app (at the pod's own
//! IP and the original port), outbound to unmeshed destinations.
//!
//! One task per connection and none per request (hyper-util's pooled client
//! spawns one per request to wait for the connection to come back).
//!
//! A kept connection the server has just closed must not cost the request a
//! 502. A request hyper hands back unsent goes out again on a new
//! connection. A request already written when the server's close was seen
//! goes out again only if no response head came back, it is idempotent
//! (RFC 9110 9.2.2) and has no body, and the connection had sat idle (a
//! server's idle timer cannot close a connection in continuous use): the
//! copy of its head this needs is only made for such connections.
//!
//! A server that answers before reading the whole body and closes (a 413
//! for an upload) resets the connection under the rest of the body; its
//! answer still reaches the caller ([`crate::early_response`]).
//!
//! Connections per destination are capped (Envoy's circuit breaker
//! `max_connections`, 1024 by default): an HTTP/1 connection carries one
//! request at a time, so without a cap a caller holding requests open (a
//! slow body, an HTTP/2 client with many streams) makes the sidecar open
//! as many connections to the app. Past the cap a request is refused at
//! once with 503 and counted, and the app is not touched.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{Either, Empty};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;

use crate::early_response::EarlyResponseIo;
use crate::idle_senders::IdleSenders;
use crate::outbound::connect::ConnectError;

/// Idle connections kept per destination.
const MAX_IDLE_PER_DESTINATION: usize = 256;
/// Idle connections older than this are closed when next looked at.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A kept connection idle at least this long may have been closed by the
/// server's idle timer: its idempotent requests are kept for a replay.
/// Servers' idle timeouts are seconds (Node.js 5 s, Apache 5 s, nginx
/// 75 s); below this, a connection in steady use (idle for a fraction of a
/// millisecond between requests under load, about 10 ms at 100 requests a
/// second) pays no copy of each request's head.
const REPLAY_AFTER_IDLE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum PlainError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("HTTP/1 exchange with {addr} failed: {source}")]
    Http {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("{max} connections to {addr} are open, the most allowed (--max-upstream-connections)")]
    Overflow { addr: SocketAddr, max: usize },
}

/// Open connections by destination, shared with each connection's task.
type OpenCounts = Arc<Mutex<crate::fast_map::FastMap<SocketAddr, usize>>>;

/// One open connection's place in the count; given back on drop.
struct OpenSlot {
    counts: OpenCounts,
    addr: SocketAddr,
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.lock()
            && let Some(n) = counts.get_mut(&self.addr)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.addr);
            }
        }
    }
}

/// What goes on the wire: the forwarded body, or none for a replayed
/// request.
type Outgoing<B> = Either<B, Empty<Bytes>>;

/// The pool, for request bodies of type `B` (the proxy forwards hyper's
/// `Incoming`).
pub struct PlainPool<B = Incoming> {
    idle: IdleSenders<Outgoing<B>>,
    connect_timeout: Duration,
    open: OpenCounts,
    max_per_destination: usize,
    overflows: prometheus_client::metrics::counter::Counter,
}

/// Envoy's default circuit-breaker `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS_PER_DESTINATION: usize = 1024;

impl<B> PlainPool<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(connect_timeout: Duration) -> Self {
        Self::with_idle_timeout(connect_timeout, IDLE_TIMEOUT)
    }

    pub fn with_idle_timeout(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            idle: IdleSenders::new(MAX_IDLE_PER_DESTINATION, idle_timeout),
            connect_timeout,
            open: OpenCounts::default(),
            max_per_destination: DEFAULT_MAX_CONNECTIONS_PER_DESTINATION,
            overflows: Default::default(),
        }
    }

    /// At most `max` connections open to one destination; each refusal
    /// past it is counted in `overflows`.
    pub fn with_connection_cap(
        mut self,
        max: usize,
        overflows: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        self.max_per_destination = max.max(1);
        self.overflows = overflows;
        self
    }

    /// Connections open to `addr` now (for tests).
    pub fn open(&self, addr: SocketAddr) -> usize {
        self.open
            .lock()
            .map(|c| c.get(&addr).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Takes a place for a new connection to `addr`, if the cap allows
    /// (none is counted as a refusal).
    fn reserve(&self, addr: SocketAddr) -> Option<OpenSlot> {
        let mut counts = self.open.lock().ok()?;
        let n = counts.entry(addr).or_insert(0);
        if *n >= self.max_per_destination {
            self.overflows.inc();
            return None;
        }
        *n += 1;
        Some(OpenSlot {
            counts: self.open.clone(),
            addr,
        })
    }

    /// Sends `req` (origin-form target, `Host` set) to `addr` and returns the
    /// response head; the body streams from the connection.
    pub async fn send(
        &self,
        addr: SocketAddr,
        req: Request<B>,
    ) -> Result<Response<Incoming>, PlainError> {
        let mut req = req.map(Either::Left);
        if let Some((mut sender, idle_for)) = self.idle.take_ready(addr, "") {
            let replay = if idle_for >= REPLAY_AFTER_IDLE {
                replayable_copy(&req)
            } else {
                None
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.keep(addr, sender, &resp);
                    return Ok(resp);
                }
                Err(mut e) => match (e.take_message(), replay) {
                    // Never written: the connection closed under it.
                    (Some(unsent), _) => req = unsent,
                    (None, Some(copy)) if closed_without_response(e.error()) => {
                        tracing::debug!(%addr, error = %e.error(), "kept connection closed by the server; sending the request again");
                        req = copy;
                    }
                    (None, _) => {
                        return Err(PlainError::Http {
                            addr,
                            source: e.into_error(),
                        });
                    }
                },
            }
        }
        // Boxed: the connect's state would otherwise be carried, and moved,
        // by every request's future.
        let mut sender = Box::pin(self.connect(addr)).await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|source| PlainError::Http { addr, source })?;
        self.keep(addr, sender, &resp);
        Ok(resp)
    }

    /// Makes sure a connection to `addr` is kept ready, opening one if none
    /// is: a caller with other destinations to try learns that `addr`
    /// cannot be reached before it hands its request over.
    pub async fn prepare(&self, addr: SocketAddr) -> Result<(), PlainError> {
        if self.idle.kept(addr) > 0 {
            return Ok(());
        }
        let sender = Box::pin(self.connect(addr)).await?;
        self.idle.checkin(addr, "", sender);
        Ok(())
    }

    /// Idle connections kept for `addr`.
    pub fn kept(&self, addr: SocketAddr) -> usize {
        self.idle.kept(addr)
    }

    /// Closes the connections idle past the idle timeout.
    pub fn sweep(&self) {
        self.idle.sweep();
    }

    fn keep(&self, addr: SocketAddr, sender: SendRequest<Outgoing<B>>, resp: &Response<Incoming>) {
        // An upgraded connection belongs to the upgrade now.
        if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            self.idle.checkin(addr, "", sender);
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<Outgoing<B>>, PlainError> {
        let slot = self.reserve(addr).ok_or(PlainError::Overflow {
            addr,
            max: self.max_per_destination,
        })?;
        let stream = crate::outbound::connect::tcp(addr, self.connect_timeout).await?;
        let (sender, conn) = Builder::new()
            .handshake(TokioIo::new(EarlyResponseIo::new(stream)))
            .await
            .map_err(|source| PlainError::Http { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "plain HTTP/1 connection ended");
            }
            drop(slot);
        });
        Ok(sender)
    }
}

/// A copy of `req` with no body, if sending it twice is safe: an idempotent
/// method, no body, no upgrade.
fn replayable_copy<B: Body>(req: &Request<Outgoing<B>>) -> Option<Request<Outgoing<B>>> {
    let no_body = match req.body() {
        Either::Left(b) => b.is_end_stream(),
        Either::Right(_) => true,
    };
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !idempotent || !no_body || req.headers().contains_key(http::header::UPGRADE) {
        return None;
    }
    let mut copy = Request::new(Either::Right(Empty::new()));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// True when the server closed (or reset) the connection before a response
/// head arrived: the request was not answered, and RFC 9110 9.2.2 lets an
/// idempotent one be sent again.
fn closed_without_response(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return crate::early_response::closed_by_peer(io);
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};

    use super::*;

    /// A blocking HTTP/1.1 server on its own thread: connection `i` answers
    /// `conn=i` to each request; the first connection closes after its
    /// first response once `close_first` fires. Reports each accepted
    /// connection.
    fn server(accepted: mpsc::Sender<usize>, close_first: mpsc::Receiver<()>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut close_first = Some(close_first);
        std::thread::spawn(move || {
            for (i, tcp) in listener.incoming().enumerate() {
                let Ok(mut tcp) = tcp else { return };
                let _ = accepted.send(i);
                let close = close_first.take();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        let mut head = Vec::new();
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tcp.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let body = format!("conn={i}");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if tcp.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                        if let Some(close) = &close {
                            let _ = close.recv();
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn get(addr: SocketAddr) -> Request<Empty<Bytes>> {
        Request::builder()
            .uri("/")
            .header("host", addr.to_string())
            .body(Empty::new())
            .unwrap()
    }

    async fn body(resp: Response<Incoming>) -> String {
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&b).into_owned()
    }

    /// A pool holding one kept connection that the server has just closed,
    /// while the pool still takes it for ready: the FIN is sent while the
    /// only runtime thread is blocked, so it is not seen until the runtime
    /// polls its I/O driver again. Returns the accepted-connection reports.
    async fn pool_with_a_just_closed_connection()
    -> (PlainPool<Empty<Bytes>>, SocketAddr, mpsc::Receiver<usize>) {
        let (tx, accepted) = mpsc::channel();
        let (close_first, close) = mpsc::channel();
        let addr = server(tx, close);
        let pool = PlainPool::new(Duration::from_secs(2));
        let first = pool.send(addr, get(addr)).await.unwrap();
        assert_eq!(body(first).await, "conn=0");
        tokio::task::yield_now().await;
        assert_eq!(pool.kept(addr), 1);
        close_first.send(()).unwrap();
        // Idle long enough for the pool to keep a replay copy.
        std::thread::sleep(REPLAY_AFTER_IDLE * 2);
        (pool, addr, accepted)
    }

    /// A GET written to the just-closed connection comes back unanswered
    /// and goes out again on a new connection.
    #[tokio::test(flavor = "current_thread")]
    async fn a_request_refused_by_a_just_closed_connection_is_sent_again() {
        let (pool, addr, accepted) = pool_with_a_just_closed_connection().await;
        let second = pool.send(addr, get(addr)).await.unwrap();
        assert_eq!(body(second).await, "conn=1");
        assert_eq!(accepted.try_iter().collect::<Vec<_>>(), vec![0, 1]);
    }

    /// The same close, but a POST: it may have been acted on, so it is not
    /// sent twice; the caller gets the error (a 502 from the sidecar).
    #[tokio::test(flavor = "current_thread")]
    async fn a_written_post_is_never_sent_again() {
        let (pool, addr, accepted) = pool_with_a_just_closed_connection().await;
        let mut post = get(addr);
        *post.method_mut() = Method::POST;
        let err = pool.send(addr, post).await.unwrap_err();
        assert!(matches!(err, PlainError::Http { .. }), "{err}");
        assert_eq!(accepted.try_iter().collect::<Vec<_>>(), vec![0]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_kept_connection_serves_the_next_request() {
        let (tx, accepted) = mpsc::channel();
        let (close_first, close) = mpsc::channel();
        let addr = server(tx, close);
        let pool = PlainPool::new(Duration::from_secs(2));
        // Connection 0 closes after one response; connection 1 stays.
        let r = pool.send(addr, get(addr)).await.unwrap();
        assert_eq!(body(r).await, "conn=0");
        close_first.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..5 {
            let r = pool.send(addr, get(addr)).await.unwrap();
            assert_eq!(body(r).await, "conn=1");
        }
        assert_eq!(accepted.try_iter().count(), 2);
    }

    /// A swept connection idle past the timeout is closed: the server
    /// reads the end of it.
    #[tokio::test(flavor = "current_thread")]
    async fn sweeping_closes_connections_idle_past_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, closed) = mpsc::channel();
        std::thread::spawn(move || {
            let Ok((mut tcp, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf);
            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            // The next read ends only when the pool closes the connection.
            let ended = matches!(tcp.read(&mut buf), Ok(0) | Err(_));
            let _ = closed_tx.send(ended);
        });
        let pool = PlainPool::with_idle_timeout(Duration::from_secs(2), Duration::from_millis(50));
        let r = pool.send(addr, get(addr)).await.unwrap();
        assert_eq!(body(r).await, "ok");
        tokio::task::yield_now().await;
        pool.sweep();
        assert_eq!(pool.kept(addr), 1, "not idle long enough yet");
        tokio::time::sleep(Duration::from_millis(80)).await;
        pool.sweep();
        assert_eq!(pool.kept(addr), 0);
        let ended =
            tokio::task::spawn_blocking(move || closed.recv_timeout(Duration::from_secs(5)))
                .await
                .unwrap();
        assert_eq!(ended, Ok(true), "the server saw the connection close");
    }

    /// The connection cap counts open connections, not requests: a kept
    /// connection holds its place until it closes, a closed one gives it
    /// back, and a refused connect is counted and opens nothing.
    #[tokio::test(flavor = "current_thread")]
    async fn open_connections_hold_their_place_under_the_cap_until_closed() {
        let (tx, accepted) = mpsc::channel();
        let (close_first, close) = mpsc::channel();
        let addr = server(tx, close);
        let overflows = prometheus_client::metrics::counter::Counter::default();
        let pool = PlainPool::with_idle_timeout(Duration::from_secs(2), Duration::from_millis(50))
            .with_connection_cap(1, overflows.clone());
        let r = pool.send(addr, get(addr)).await.unwrap();
        assert_eq!(body(r).await, "conn=0");
        tokio::task::yield_now().await;
        assert_eq!((pool.open(addr), pool.kept(addr)), (1, 1));
        // The server closes it: its place comes back once its task sees
        // the close.
        close_first.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pool.open(addr) != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the place was not given back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let r = pool.send(addr, get(addr)).await.unwrap();
        assert_eq!(body(r).await, "conn=1");
        // One connection open and busy: a second request needs another
        // connection, which the cap refuses.
        let busy = pool.idle.take_ready(addr, "").map(|(s, _)| s);
        assert!(busy.is_some());
        let err = pool.send(addr, get(addr)).await.unwrap_err();
        assert!(matches!(err, PlainError::Overflow { max: 1, .. }), "{err}");
        assert_eq!(overflows.get(), 1);
        assert_eq!(
            accepted.try_iter().count(),
            2,
            "the refused request opened nothing"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unreachable_destination_is_an_error() {
        // Bound and closed again: nothing listens there now.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let pool = PlainPool::new(Duration::from_secs(2));
        let err = pool.send(addr, get(addr)).await.unwrap_err();
        assert!(matches!(err, PlainError::Connect { .. }), "{err}");
    }
}
