//! Answers the sidecar makes itself (a denial, an unreachable peer, a bad
//! request) reach a gRPC caller as gRPC errors, as Envoy's local replies do
//! for a request with a gRPC content type: HTTP status 200,
//! `content-type: application/grpc`, `grpc-status` mapped from the HTTP
//! status (gRPC's http-grpc-status-mapping, Envoy's `httpToGrpcStatus`:
//! 403 is PERMISSION_DENIED, 502/503/504 UNAVAILABLE, ...) and the text in
//! `grpc-message`, all in one HEADERS frame (trailers-only). A gRPC client
//! then reports `PERMISSION_DENIED: RBAC: access denied` instead of an
//! unexpected HTTP status.
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use crate::forward::RespBody;

/// The text of a response the sidecar made itself (set by
/// [`crate::forward::local_response`]).
#[derive(Debug, Clone, Copy)]
pub struct LocalReply(pub &'static str);

/// A gRPC request: `content-type` is `application/grpc` or
/// `application/grpc+<codec>` (not gRPC-Web, which its own filter serves).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.split(';').next().unwrap_or("").trim();
            ct.eq_ignore_ascii_case("application/grpc")
                || ct
                    .get(..17)
                    .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc+"))
        })
}

/// gRPC's status code for an HTTP status from an intermediary.
pub fn status_for(http: StatusCode) -> u8 {
    match http.as_u16() {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// `resp` as a gRPC error if the sidecar made it; answers from upstream
/// pass unchanged.
pub fn local_reply(mut resp: Response<RespBody>) -> Response<RespBody> {
    let Some(LocalReply(text)) = resp.extensions().get::<LocalReply>().copied() else {
        return resp;
    };
    if !matches!(resp.body(), Either::Right(_)) {
        return resp;
    }
    let code = status_for(resp.status());
    *resp.status_mut() = StatusCode::OK;
    *resp.body_mut() = Either::Right(Full::new(Bytes::new()));
    let headers = resp.headers_mut();
    headers.remove(CONTENT_LENGTH);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(msg) = HeaderValue::from_str(&percent_encode(text.trim_end())) {
        headers.insert("grpc-message", msg);
    }
    resp
}

/// `grpc-message` encoding (gRPC over HTTP/2): bytes outside printable
/// ASCII, and `%`, as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::local_response;

    #[test]
    fn grpc_content_types() {
        let h = |ct: &str| {
            let mut m = HeaderMap::new();
            m.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            is_grpc(&m)
        };
        assert!(h("application/grpc"));
        assert!(h("application/grpc+proto"));
        assert!(h("Application/GRPC+json; charset=utf-8"));
        assert!(!h("application/grpc-web"));
        assert!(!h("application/grpc-web+proto"));
        assert!(!h("application/json"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn http_statuses_map_as_grpc_documents() {
        for (http, grpc) in [
            (400, 13),
            (401, 16),
            (403, 7),
            (404, 12),
            (429, 14),
            (502, 14),
            (503, 14),
            (504, 14),
            (500, 2),
            (413, 2),
        ] {
            assert_eq!(
                status_for(StatusCode::from_u16(http).unwrap()),
                grpc,
                "{http}"
            );
        }
    }

    #[test]
    fn a_local_denial_becomes_trailers_only_permission_denied() {
        let mut resp = local_response(StatusCode::FORBIDDEN, "RBAC: access denied");
        resp.headers_mut()
            .insert("x-palisade-denied-by", HeaderValue::from_static("ns/p"));
        let out = local_reply(resp);
        assert_eq!(out.status(), StatusCode::OK);
        let h = out.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-status"], "7");
        assert_eq!(h["grpc-message"], "RBAC: access denied");
        assert_eq!(h["x-palisade-denied-by"], "ns/p");
        assert!(hyper::body::Body::is_end_stream(out.body()));
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("a%b\u{e9}\n"), "a%25b%C3%A9%0A");
        let out = local_reply(local_response(
            StatusCode::BAD_GATEWAY,
            "peer sidecar unavailable\n",
        ));
        assert_eq!(out.headers()["grpc-status"], "14");
        assert_eq!(out.headers()["grpc-message"], "peer sidecar unavailable");
    }
}
