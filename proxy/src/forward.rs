//! HTTP forwarding plumbing shared by both directions: sending over the
//! pooled plain HTTP/1 connections, the response body type, hop-by-hop
//! header removal, and connection upgrades (WebSocket) spliced after the 101.
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::plain_pool::{PlainError, PlainPool};

/// A response body: proxied from upstream, or generated here.
pub type RespBody = Either<crate::prefetch::Proxied, Full<Bytes>>;

/// An upstream response, passed on with its first body frame read when the
/// body is small (see [`crate::prefetch`]).
pub async fn proxied(resp: Response<impl Into<crate::prefetch::Upstream>>) -> Response<RespBody> {
    crate::prefetch::with_first_frame(resp)
        .await
        .map(Either::Left)
}

/// An upstream `101 Switching Protocols` (or the answer refusing the
/// upgrade), passed on as it is: its body is the upgraded stream's business.
pub fn upgrade_response(resp: Response<Incoming>) -> Response<RespBody> {
    resp.map(|b| Either::Left(b.into()))
}

/// A locally generated response.
pub fn local_response(status: StatusCode, body: &'static str) -> Response<RespBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    resp.extensions_mut().insert(crate::grpc::LocalReply(body));
    resp
}

pub fn ok<T>(t: T) -> Result<T, Infallible> {
    Ok(t)
}

/// The request body being forwarded (the caller's, read by hyper) failed:
/// it broke off or held a malformed chunk, which is the caller's fault, not
/// the upstream's. An HTTP/1 client reports it as an error of the user's
/// body caused by hyper's own read error (other user errors, such as a
/// dispatch task gone, are not the caller's); an HTTP/2 client as a stream
/// reset with INTERNAL_ERROR that hyper itself sent.
pub fn caller_body_failed(e: &hyper::Error) -> bool {
    let cause = std::error::Error::source(e);
    if e.is_user() {
        return cause.is_some_and(|c| c.is::<hyper::Error>());
    }
    cause
        .and_then(|c| c.downcast_ref::<h2::Error>())
        .is_some_and(|h| {
            h.is_reset()
                && !h.is_remote()
                && !h.is_library()
                && h.reason() == Some(h2::Reason::INTERNAL_ERROR)
        })
}

/// Headers that describe one hop and must not be forwarded (RFC 9110
/// 7.6.1), plus those the `Connection` header names. Upgrade requests keep
/// `connection`/`upgrade` so the upgrade reaches the next hop.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most requests carry none of them: one pass over the names (standard
    // ones compare as enum tags) instead of a hashed removal per name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if !keep_upgrade {
        // The headers `Connection` names go too; `close` and `keep-alive`
        // name none (keep-alive goes below anyway).
        if let Some(conn) = headers.remove(header::CONNECTION) {
            for named in conn.to_str().unwrap_or("").split(',').map(str::trim) {
                if !named.is_empty()
                    && !named.eq_ignore_ascii_case("close")
                    && !named.eq_ignore_ascii_case("keep-alive")
                {
                    headers.remove(named);
                }
            }
        }
        headers.remove(header::UPGRADE);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    headers.remove(header::PROXY_AUTHORIZATION);
    headers.remove(header::TE);
    headers.remove(header::TRAILER);
}

const KEEP_ALIVE: header::HeaderName = header::HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: header::HeaderName = header::HeaderName::from_static("proxy-connection");

/// A header that describes one hop (RFC 9110 7.6.1, and what HTTP/2
/// forbids in a message, RFC 9113 8.2.2), or one that names others to
/// drop (`connection`).
pub fn is_hop_by_hop(name: &header::HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::UPGRADE
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
        || *name == header::PROXY_AUTHORIZATION
        || *name == KEEP_ALIVE
        || *name == PROXY_CONNECTION
}

/// True for an HTTP/1.1 `Connection: upgrade` request.
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == http::Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Splices the client's and the upstream's upgraded connections once the
/// upstream answered 101.
pub fn splice_upgrade(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        let _ = crate::io::copy_bidirectional(&mut client, &mut upstream).await;
    });
}

/// Forwards `req` (origin-form target, `Host` set) to `addr` over the
/// pooled plain connections, handling an upgrade.
pub async fn send_plain(
    pool: &PlainPool,
    addr: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<RespBody> {
    let upgrade = is_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
    match pool.send(addr, req).await {
        Ok(mut resp) => match upgrade {
            Some(client_up) => {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    splice_upgrade(client_up, hyper::upgrade::on(&mut resp));
                }
                upgrade_response(resp)
            }
            // The answer may go back over HTTP/2 in TLS (a mesh caller).
            None => proxied(resp).await.map(|body| match body {
                Either::Left(body) => Either::Left(body.record_sized()),
                local => local,
            }),
        },
        Err(e) if matches!(&e, PlainError::Http { source, .. } if caller_body_failed(source)) => {
            // The caller's body broke off or was malformed (a bad chunk):
            // the caller's fault, not the upstream's.
            tracing::debug!(error = %e, "request body from the caller failed");
            local_response(StatusCode::BAD_REQUEST, "bad request body\n")
        }
        Err(e @ PlainError::Overflow { .. }) => {
            tracing::info!(error = %e, "request refused: upstream connection limit");
            local_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connection limit reached\n",
            )
        }
        Err(e) => {
            tracing::debug!(error = %e, "upstream request failed");
            local_response(StatusCode::BAD_GATEWAY, "upstream unavailable\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut n: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        n.sort_unstable();
        n
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut h = headers(&[
            ("host", "svc"),
            ("connection", "close, X-Hop, keep-alive"),
            ("x-hop", "1"),
            ("x-end", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic x"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("upgrade", "websocket"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["host", "x-end"]);
    }

    #[test]
    fn an_upgrade_keeps_connection_and_upgrade() {
        let mut h = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("keep-alive", "timeout=5"),
            ("x-end", "2"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(names(&h), ["connection", "upgrade", "x-end"]);
    }

    #[test]
    fn end_to_end_headers_are_left_alone() {
        let mut h = headers(&[("host", "svc"), ("accept", "*/*"), ("x-close", "1")]);
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
        assert!(!h.keys().any(is_hop_by_hop));
    }
}
