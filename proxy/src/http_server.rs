//! Serving one HTTP connection whose protocol the sidecar's detection (or
//! the mesh ALPN) already decided: hyper's HTTP/1 server, with upgrades, or
//! its HTTP/2 server, with the sidecar's limits. hyper-util's `auto` server
//! would read the first 24 bytes again to tell the two apart, even when
//! told which one to serve, and hand hyper those 24 bytes as a first read:
//! the head was never complete on the first parse, and hyper grew (and
//! copied) its 8 KiB read buffer on every new connection. Every served
//! connection lingers on close while its client may still be sending
//! ([`crate::linger`]).
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::{HttpService, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::detect::MeshInner;
use crate::h2_windows::H2Windows;
use crate::linger::{BodyMark, Lingering};

/// The limits a served connection runs under.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// HTTP/1: the time allowed for a request head, and between requests
    /// (hyper's header read timer is also its keep-alive idle limit).
    pub header_read_timeout: Duration,
    /// HTTP/1 read buffer cap; HTTP/2 header list cap.
    pub max_header_bytes: usize,
    pub h2_windows: H2Windows,
    pub h2_keepalive_interval: Duration,
    pub h2_keepalive_timeout: Duration,
    /// HTTP/2 streams a client may open at once (hyper's default if none).
    pub max_concurrent_streams: Option<u32>,
}

impl ServerLimits {
    /// The limits from the sidecar's options.
    pub fn from_opts(opts: &crate::ctx::Options) -> Self {
        Self {
            header_read_timeout: opts.header_read_timeout.min(opts.idle_timeout),
            max_header_bytes: opts.max_header_bytes,
            h2_windows: opts.h2_windows,
            h2_keepalive_interval: opts.h2_keepalive.interval,
            h2_keepalive_timeout: opts.h2_keepalive.timeout,
            max_concurrent_streams: None,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connection as hyper sees it: lingering on close while the client
/// may still be sending ([`crate::linger`]).
pub type ServedIo<I> = TokioIo<Lingering<I>>;

/// What hyper needs of a service to serve it over HTTP/1 and HTTP/2 on
/// Tokio, written once.
pub trait ServedHttp:
    HttpService<
        Incoming,
        Future: Send + 'static,
        Error: Into<BoxError>,
        ResBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
    >
{
}
impl<S> ServedHttp for S where
    S: HttpService<
            Incoming,
            Future: Send + 'static,
            Error: Into<BoxError>,
            ResBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
        >
{
}

/// The service, noting each request that carries a body: such a
/// connection lingers when it closes.
pub struct NotingBodies<S> {
    inner: S,
    bodies: BodyMark,
}

impl<S: Service<Request<Incoming>>> Service<Request<Incoming>> for NotingBodies<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.bodies.note(!req.body().is_end_stream());
        self.inner.call(req)
    }
}

/// An HTTP connection being served. The HTTP/1 connection, the common
/// case (one per app connection), stays inline: no allocation per
/// connection.
#[allow(clippy::large_enum_variant)]
pub enum Served<I, S>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    NotingBodies<S>: ServedHttp,
{
    Http1(http1::UpgradeableConnection<ServedIo<I>, NotingBodies<S>>),
    /// Boxed: larger than an HTTP/1 connection, and much rarer (one per
    /// peer sidecar or HTTP/2 client).
    H2(Box<http2::Connection<ServedIo<I>, NotingBodies<S>, TokioExecutor>>),
}

/// Serves `io` as `protocol` (HTTP/1 unless `MeshInner::H2`) with `svc`;
/// the connection lingers on close while its client may still be sending.
pub fn serve<I, S>(limits: &ServerLimits, protocol: MeshInner, io: I, svc: S) -> Served<I, S>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    NotingBodies<S>: ServedHttp,
{
    let (io, bodies) = Lingering::new(io);
    let io = TokioIo::new(io);
    let svc = NotingBodies { inner: svc, bodies };
    match protocol {
        MeshInner::H2 => {
            let mut b = http2::Builder::new(TokioExecutor::new());
            b.timer(TokioTimer::new())
                .initial_stream_window_size(limits.h2_windows.stream)
                .initial_connection_window_size(limits.h2_windows.connection)
                .keep_alive_interval(limits.h2_keepalive_interval)
                .keep_alive_timeout(limits.h2_keepalive_timeout)
                .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
            if let Some(n) = limits.max_concurrent_streams {
                b.max_concurrent_streams(n);
            }
            Served::H2(Box::new(b.serve_connection(io, svc)))
        }
        MeshInner::Http1 | MeshInner::Opaque => {
            let mut b = http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .keep_alive(true);
            Served::Http1(b.serve_connection(io, svc).with_upgrades())
        }
    }
}

impl<I, S> Served<I, S>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    NotingBodies<S>: ServedHttp,
{
    /// Finish the requests in flight, take no new ones (HTTP/2: GOAWAY).
    pub fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.get_mut() {
            Served::Http1(c) => Pin::new(c).graceful_shutdown(),
            Served::H2(c) => Pin::new(c.as_mut()).graceful_shutdown(),
        }
    }
}

impl<I, S> Future for Served<I, S>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    NotingBodies<S>: ServedHttp,
{
    type Output = Result<(), hyper::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Served::Http1(c) => Pin::new(c).poll(cx),
            Served::H2(c) => Pin::new(c.as_mut()).poll(cx),
        }
    }
}
