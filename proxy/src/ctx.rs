//! What every connection task shares: options, the live config, metrics,
//! the connection tracker, the drain, the mTLS configs and the pools.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::drain::Drain;
use crate::h2_windows::H2Windows;
use crate::metrics::Metrics;
use crate::outbound::pool::MeshPool;
use crate::plain_pool::PlainPool;
use crate::state::SharedState;
use crate::tls::MeshTls;
use crate::tracker::ConnTracker;

/// Data-plane options (from the command line).
#[derive(Clone, Debug)]
pub struct Options {
    /// How long inbound detection waits for the first bytes before falling
    /// back to opaque TCP.
    pub detect_timeout: Duration,
    pub connect_timeout: Duration,
    /// HTTP/1 request head read timeout; also the idle limit of a kept-alive
    /// HTTP/1 connection between requests (hyper starts the timer when the
    /// next head is awaited).
    pub header_read_timeout: Duration,
    /// Cap on an HTTP request head (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Idle timeout of opaque TCP connections (no bytes either way) and of
    /// served HTTP connections (no request started or in flight).
    pub idle_timeout: Duration,
    /// Cap on concurrent connections per listener.
    pub max_connections: usize,
    /// Cap on plain HTTP/1 connections open to one destination (the app,
    /// or an unmeshed endpoint); past it a request gets 503.
    pub max_upstream_connections: usize,
    /// Add `x-palisade-denied-by` to 403 responses.
    pub denied_by_header: bool,
    pub access_log: bool,
    /// Explicit mode: every outbound connection goes here.
    pub outbound_to: Option<SocketAddr>,
    /// Explicit mode: the app listens on 127.0.0.1 at this port.
    pub inbound_app_port: Option<u16>,
    pub drain_deadline: Duration,
    /// Rebuild the UDP/SCTP netfilter rules on every config version.
    pub netfilter: bool,
    /// HTTP between sidecars: one multiplexed HTTP/2 connection per peer
    /// (default), or pooled HTTP/1.1 connections.
    pub mesh_h2: bool,
    /// Flow-control windows of every HTTP/2 connection (mesh and app side).
    pub h2_windows: H2Windows,
    /// HTTP/2 PING keep-alive on every HTTP/2 connection, pooled or served.
    pub h2_keepalive: H2Keepalive,
}

/// HTTP/2 PING keep-alive: ping a peer that has sent nothing for
/// `interval`; close the connection when the ping goes unanswered for
/// `timeout` (a peer whose node vanished without a FIN or RST, which TCP
/// alone would keep as established for hours).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for H2Keepalive {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            detect_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            header_read_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(3600),
            max_connections: 10_000,
            max_upstream_connections: crate::plain_pool::DEFAULT_MAX_CONNECTIONS_PER_DESTINATION,
            denied_by_header: true,
            access_log: false,
            outbound_to: None,
            inbound_app_port: None,
            drain_deadline: Duration::from_secs(5),
            netfilter: false,
            mesh_h2: true,
            h2_windows: H2Windows::default(),
            h2_keepalive: H2Keepalive::default(),
        }
    }
}

pub struct Ctx {
    pub opts: Options,
    pub state: SharedState,
    pub metrics: Arc<Metrics>,
    pub tracker: Arc<ConnTracker>,
    pub drain: Drain,
    pub tls: Arc<MeshTls>,
    /// Pooled plain HTTP/1 connections: to the app (inbound) and to
    /// unmeshed endpoints.
    pub plain: PlainPool,
    /// Pooled HTTP/2-over-mTLS connections to peer sidecars.
    pub mesh_pool: MeshPool,
    pub mesh_pool_h1: crate::outbound::pool_h1::MeshPoolH1,
    /// Client-IP session affinities of the Services this pod calls; kept
    /// across config versions.
    pub affinities: crate::outbound::affinity::Affinities,
}

impl Ctx {
    /// Opens mTLS connections to peer sidecars with our SVID and limits.
    pub fn mesh_dialer(&self) -> crate::outbound::connect::MeshDialer<'_> {
        crate::outbound::connect::MeshDialer {
            tls: &self.tls,
            metrics: &self.metrics,
            timeout: self.opts.connect_timeout,
        }
    }
}
