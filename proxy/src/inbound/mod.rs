//! The inbound side: connections to our workload, redirected to the
//! inbound listener. Stages, one module each: detect the protocol, check L4
//! policy (and that an mTLS peer owns its source IP), then serve HTTP per
//! request with authorization or forward opaque bytes after a
//! per-connection check.
pub mod detect;
pub mod forward;
pub mod http;
pub mod l4;
pub mod xfcc;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use palisade_api::MtlsMode;
use tokio::net::TcpStream;

use crate::addrs::{ClientAddr, OrigDstAddr};
use crate::ctx::Ctx;
use crate::detect::MeshInner;
use crate::io::PrefixedIo;
use crate::metrics::{Direction, Layer, Outcome};
use crate::policy::{AccessView, Denied, HttpView};
use crate::tracker::ConnInfo;
use detect::Detected;

/// What the rest of the inbound path knows about a connection.
#[derive(Clone, Debug)]
pub struct InboundConn {
    pub client: ClientAddr,
    /// The app's address: our IP and the original port (or, in explicit
    /// mode, 127.0.0.1 and `--inbound-app-port`). Policy judges its port.
    pub app: SocketAddr,
    /// The verified SPIFFE ID of an mTLS peer.
    pub peer_identity: Option<String>,
    /// What the app is told of an mTLS peer, built once per connection:
    /// the peer's SPIFFE ID and the XFCC element (see [`xfcc`]).
    pub peer_headers: Option<PeerHeaders>,
    /// The server name the connection's TLS ClientHello asked for (the
    /// mesh hello, or the app's own TLS passing through): what
    /// `connection.sni` matches.
    pub sni: Option<String>,
    /// The chain an mTLS peer presented, re-checked when the roots change.
    pub peer_chain: Option<crate::tracker::PeerChain>,
}

/// Header values naming an mTLS peer to the app.
#[derive(Debug, Clone)]
pub struct PeerHeaders {
    pub identity: ::http::HeaderValue,
    pub xfcc: Option<::http::HeaderValue>,
}

impl PeerHeaders {
    /// For a peer with SPIFFE ID `identity` and leaf certificate
    /// `peer_leaf`, received by the sidecar whose ID is `own_id`.
    fn new(identity: &str, peer_leaf: Option<&[u8]>, own_id: &str) -> Option<Self> {
        Some(Self {
            identity: ::http::HeaderValue::from_str(identity).ok()?,
            xfcc: peer_leaf.and_then(|der| xfcc::element(own_id, der)),
        })
    }
}

impl InboundConn {
    /// What authorization sees of this connection (and of `http`, a
    /// request on it).
    pub fn access<'a>(&'a self, http: Option<HttpView<'a>>) -> AccessView<'a> {
        AccessView::new(
            self.client.0.ip().to_canonical(),
            self.peer_identity.as_deref(),
            self.app,
            http,
        )
        .with_sni(self.sni.as_deref())
    }
}

/// The app address for a connection whose original destination is `orig`.
pub fn app_addr(ctx: &Ctx, orig: OrigDstAddr) -> SocketAddr {
    match ctx.opts.inbound_app_port {
        Some(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        None => orig.0,
    }
}

/// Handles one accepted inbound connection to the end.
pub async fn handle(ctx: Arc<Ctx>, mut tcp: TcpStream, client: ClientAddr, orig: OrigDstAddr) {
    let app = app_addr(&ctx, orig);
    let port = app.port();
    let (mode, opaque) = {
        let snap = ctx.state.load();
        (snap.inbound_mode(port), snap.inbound_opaque(port))
    };

    let mut buf = BytesMut::with_capacity(1024);
    let detected =
        match detect::detect(&mut tcp, &mut buf, opaque, mode, ctx.opts.detect_timeout).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(%client, error = %e, "inbound detection failed");
                ctx.metrics.connection(Direction::Inbound, Outcome::Failed);
                return;
            }
        };
    if detected == Detected::TimedOut {
        ctx.metrics
            .detect_timeouts
            .get_or_create(&crate::metrics::PortLabels { port })
            .inc();
        tracing::warn!(
            %client,
            port,
            timeout = ?ctx.opts.detect_timeout,
            "protocol detection timed out; treating the connection as opaque TCP. \
             If this port serves a server-first protocol, list it in the pod annotation \
             palisade.dev/opaque-ports"
        );
    }
    let sni = crate::detect::client_hello_sni(&buf);
    let io = PrefixedIo::new(buf.freeze(), tcp);

    if detected == Detected::Mesh {
        serve_mesh(ctx, io, client, app, sni).await;
        return;
    }

    // Plaintext (including the app's own TLS): only where the port's mode
    // is PERMISSIVE or DISABLE.
    if mode == MtlsMode::Strict {
        let denied = Denied {
            policy: "PeerAuthentication".into(),
            rule: format!("port {port} STRICT"),
            reason: "plaintext connection refused: the port requires mTLS (STRICT)".into(),
        };
        crate::logs::denied_connection(
            Direction::Inbound,
            Layer::Mtls,
            client.0,
            app,
            None,
            &denied,
        );
        ctx.metrics.denial(Direction::Inbound, Layer::Mtls);
        return;
    }
    let conn = InboundConn {
        client,
        app,
        peer_identity: None,
        peer_headers: None,
        sni,
        peer_chain: None,
    };
    if !l4::admit(&ctx, &conn) {
        return;
    }
    match detected {
        Detected::Http1 => http::serve(ctx, io, conn, MeshInner::Http1).await,
        Detected::H2 => http::serve(ctx, io, conn, MeshInner::H2).await,
        _ => forward::opaque(ctx, io, conn).await,
    }
}

async fn serve_mesh(
    ctx: Arc<Ctx>,
    io: PrefixedIo<TcpStream>,
    client: ClientAddr,
    app: SocketAddr,
    sni: Option<String>,
) {
    let (tls, peer_identity, inner) = match ctx.tls.accept(io).await {
        Ok(accepted) => accepted,
        Err(e) => {
            tracing::info!(%client, error = %e, "inbound mTLS handshake failed");
            ctx.metrics.connection(Direction::Inbound, Outcome::Failed);
            ctx.metrics.handshake_failed(Direction::Inbound, &e);
            return;
        }
    };
    ctx.metrics.handshake(Direction::Inbound);
    let peer_chain: Option<crate::tracker::PeerChain> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect());
    let peer_leaf = peer_chain
        .as_deref()
        .and_then(|chain| chain.first())
        .map(|c| c.as_ref());
    let peer_headers = PeerHeaders::new(&peer_identity, peer_leaf, &ctx.tls.local_id());
    let conn = InboundConn {
        client,
        app,
        peer_identity: Some(peer_identity),
        peer_headers,
        sni,
        peer_chain,
    };
    if !l4::admit(&ctx, &conn) {
        return;
    }
    match inner {
        MeshInner::Opaque => forward::opaque(ctx, tls, conn).await,
        http => http::serve(ctx, tls, conn, http).await,
    }
}

/// Registers an inbound connection with the tracker, with its peer chain.
pub fn track(ctx: &Ctx, conn: &InboundConn, opaque: bool) -> crate::tracker::ConnGuard {
    ctx.tracker
        .register_peer(conn_info(conn, opaque), conn.peer_chain.clone())
}

/// The tracker entry of an inbound connection.
pub fn conn_info(conn: &InboundConn, opaque: bool) -> ConnInfo {
    ConnInfo::Inbound {
        source: conn.client.0.ip(),
        dest: conn.app,
        peer_identity: conn.peer_identity.clone(),
        sni: conn.sni.clone(),
        opaque,
    }
}
