//! Inbound forwarding to the app at the pod's own IP and the original port:
//! opaque TCP after a per-connection authorization, and HTTP requests over
//! the pooled client with the verified peer identity attached.
use std::sync::Arc;

use http::header::{HOST, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::ctx::Ctx;
use crate::forward::{RespBody, send_plain, strip_hop_by_hop};
use crate::metrics::{Direction, Layer, Outcome};
use crate::policy;

use super::InboundConn;

/// The header carrying the verified peer SPIFFE ID to the app. Any copy
/// arriving from the client is removed first.
/// (A `HeaderName` made once: inserting by `&str` allocates the name per
/// request.)
pub static PEER_IDENTITY_HEADER: HeaderName = HeaderName::from_static("x-palisade-peer-identity");

/// Authorizes a non-HTTP connection once (L4-applicable fields only) and
/// copies bytes to and from the app until either side ends, a config
/// change denies it, or the drain deadline passes.
pub async fn opaque<I>(ctx: Arc<Ctx>, mut io: I, conn: InboundConn)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let verdict = {
        let snap = ctx.state.load();
        policy::authorize_counted(&snap, &conn.access(None), &ctx.metrics)
    };
    if let Err(denied) = verdict {
        crate::logs::denied_connection(
            Direction::Inbound,
            Layer::Authz,
            conn.client.0,
            conn.app,
            conn.peer_identity.as_deref(),
            &denied,
        );
        ctx.metrics.denial(Direction::Inbound, Layer::Authz);
        return;
    }
    let guard = super::track(&ctx, &conn, true);
    let mut upstream = match crate::outbound::connect::tcp(conn.app, ctx.opts.connect_timeout).await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(app = %conn.app, error = %e, "cannot connect to the app");
            ctx.metrics.connection(Direction::Inbound, Outcome::Failed);
            return;
        }
    };
    tokio::select! {
        r = crate::io::copy_bidirectional_idle(&mut io, &mut upstream, ctx.opts.idle_timeout) => {
            match r {
                Err(e) => tracing::debug!(error = %e, "inbound opaque copy ended with an error"),
                Ok(None) => tracing::debug!(client = %conn.client, "idle timeout; closing"),
                Ok(Some(_)) => {}
            }
            ctx.metrics.connection(Direction::Inbound, Outcome::Completed);
        }
        () = guard.killed() => {}
    }
}

/// Rewrites an authorized request for the app and sends it.
pub async fn to_app(
    ctx: &Ctx,
    conn: &InboundConn,
    mut req: Request<Incoming>,
    normalized_path_and_query: Option<String>,
) -> Response<RespBody> {
    let upgrade = crate::forward::is_upgrade(&req);
    // Host preserved: an HTTP/2 request carries it as :authority; a request
    // with neither names the app.
    if !req.headers().contains_key(HOST) {
        let host = match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()),
            None => HeaderValue::try_from(conn.app.to_string()),
        };
        if let Ok(v) = host {
            req.headers_mut().insert(HOST, v);
        }
    }
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    // Nothing the caller says about its own identity reaches the app:
    // ours replaces it (`insert` drops every earlier value), or it goes.
    let peer = conn.peer_headers.as_ref();
    match peer {
        Some(peer) => headers.insert(PEER_IDENTITY_HEADER.clone(), peer.identity.clone()),
        None => headers.remove(&PEER_IDENTITY_HEADER),
    };
    match peer.and_then(|p| p.xfcc.as_ref()) {
        Some(xfcc) => headers.insert(super::xfcc::XFCC.clone(), xfcc.clone()),
        None => headers.remove(&super::xfcc::XFCC),
    };
    // Origin form: the path (normalized when it changed) and query.
    let target = match normalized_path_and_query {
        Some(pq) => PathAndQuery::try_from(pq).map(Uri::from),
        None => Ok(Uri::from(
            req.uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        )),
    };
    match target {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => {
            return crate::forward::local_response(
                http::StatusCode::BAD_REQUEST,
                "bad request target\n",
            );
        }
    }
    *req.version_mut() = http::Version::HTTP_11;
    send_plain(&ctx.plain, conn.app, req).await
}
