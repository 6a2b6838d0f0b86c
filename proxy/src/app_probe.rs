//! The app's kubelet probes, answered through the admin port. `palisade
//! inject` rewrites each HTTP or TCP probe of an app container to
//! `GET /app-health/<container>/<livez|readyz|startupz>` on this port (a
//! plaintext kubelet probe would be refused by a STRICT inbound port) and
//! hands the originals to the sidecar in `PALISADE_APP_PROBES`; this module
//! runs the original probe against the app and answers with its outcome.
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, HeaderName, HeaderValue, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

pub const ENV: &str = "PALISADE_APP_PROBES";
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    name: String,
    value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGet {
    #[serde(default = "root")]
    path: String,
    port: u16,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    http_headers: Vec<Header>,
}

fn root() -> String {
    "/".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TcpSocket {
    port: u16,
}

/// One original probe, as `palisade inject` recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Prober {
    HttpGet(HttpGet),
    TcpSocket(TcpSocket),
}

/// The probes by admin path.
#[derive(Debug, Default, Clone)]
pub struct AppProbes(HashMap<String, Prober>);

impl AppProbes {
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json).map(AppProbes)
    }

    /// From `PALISADE_APP_PROBES`; a malformed value is logged and ignored
    /// (every `/app-health` path then answers 404, which fails the probe).
    pub fn from_env() -> Self {
        match std::env::var(ENV) {
            Ok(json) => Self::parse(&json).unwrap_or_else(|e| {
                tracing::error!(error = %e, "{ENV} is not valid; app probes will fail");
                AppProbes::default()
            }),
            Err(_) => AppProbes::default(),
        }
    }

    pub fn get(&self, path: &str) -> Option<&Prober> {
        self.0.get(path)
    }
}

/// Runs `prober` against the app at `ip` and maps the outcome to the
/// status the kubelet sees: 200 on success, 503 with the reason otherwise.
pub async fn run(prober: &Prober, ip: Option<IpAddr>) -> (StatusCode, String) {
    let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let outcome = tokio::time::timeout(PROBE_TIMEOUT, async {
        match prober {
            Prober::TcpSocket(t) => TcpStream::connect(SocketAddr::new(ip, t.port))
                .await
                .map(|_| "connected".to_string())
                .map_err(|e| format!("connect: {e}")),
            Prober::HttpGet(h) => http_get(ip, h).await,
        }
    })
    .await;
    match outcome {
        Ok(Ok(detail)) => (StatusCode::OK, format!("{detail}\n")),
        Ok(Err(reason)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "probe timed out\n".into()),
    }
}

/// Kubelet semantics: any status in 200..400 is success. HTTPS probes are
/// checked as TCP connects (the kubelet does not verify their certificate
/// either, and the app's own TLS is not the sidecar's to terminate).
async fn http_get(ip: IpAddr, h: &HttpGet) -> Result<String, String> {
    let addr = SocketAddr::new(ip, h.port);
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    if h.scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
    {
        return Ok("connected (HTTPS probe checked as TCP)".into());
    }
    let req = probe_request(addr, h)?;
    // Header names as the kubelet writes them (Go's canonical form).
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let code = sender
        .send_request(req)
        .await
        .map_err(|e| format!("the app did not answer with HTTP: {e}"))?
        .status()
        .as_u16();
    if (200..400).contains(&code) {
        Ok(format!("app answered {code}"))
    } else {
        Err(format!("app answered {code}"))
    }
}

/// The probe's `GET`, with the kubelet's Host and User-Agent and the
/// probe's own headers after them.
fn probe_request(addr: SocketAddr, h: &HttpGet) -> Result<Request<Empty<Bytes>>, String> {
    let uri: Uri = h
        .path
        .parse()
        .map_err(|e| format!("probe path {:?} is not valid: {e}", h.path))?;
    let mut req = Request::get(uri)
        .body(Empty::new())
        .map_err(|e| format!("probe request: {e}"))?;
    let headers = req.headers_mut();
    if let Ok(host) = HeaderValue::try_from(addr.to_string()) {
        headers.append(HOST, host);
    }
    headers.append(USER_AGENT, HeaderValue::from_static("kube-probe/palisade"));
    headers.append(CONNECTION, HeaderValue::from_static("close"));
    for header in &h.http_headers {
        let invalid = || format!("probe header {:?} is not valid", header.name);
        let name = HeaderName::try_from(header.name.as_str()).map_err(|_| invalid())?;
        let value = HeaderValue::try_from(header.value.as_str()).map_err(|_| invalid())?;
        headers.append(name, value);
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn parses_what_inject_writes() {
        let json = r#"{"/app-health/web/livez":{"httpGet":{"httpHeaders":[{"name":"X-Probe","value":"live"}],"path":"/healthz","port":8080,"scheme":"HTTP"}},"/app-health/web/readyz":{"tcpSocket":{"port":8080}}}"#;
        let probes = AppProbes::parse(json).unwrap();
        assert!(
            matches!(probes.get("/app-health/web/livez"), Some(Prober::HttpGet(h)) if h.port == 8080 && h.http_headers.len() == 1)
        );
        assert_eq!(
            probes.get("/app-health/web/readyz"),
            Some(&Prober::TcpSocket(TcpSocket { port: 8080 }))
        );
        assert!(probes.get("/app-health/other/livez").is_none());
        assert!(AppProbes::parse("{\"x\": 1}").is_err());
    }

    #[tokio::test]
    async fn http_and_tcp_probes_follow_kubelet_semantics() {
        let ok = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ok_port = ok.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = ok.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let status = if req.starts_with("GET /healthz ") && req.contains("X-Probe: live") {
                    "204 No Content"
                } else {
                    "500 Oops"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let get = |path: &str| {
            Prober::HttpGet(HttpGet {
                path: path.into(),
                port: ok_port,
                scheme: None,
                http_headers: vec![Header {
                    name: "X-Probe".into(),
                    value: "live".into(),
                }],
            })
        };
        assert_eq!(run(&get("/healthz"), None).await.0, StatusCode::OK);
        assert_eq!(
            run(&get("/broken"), None).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            run(&Prober::TcpSocket(TcpSocket { port: ok_port }), None)
                .await
                .0,
            StatusCode::OK
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        assert_eq!(
            run(&Prober::TcpSocket(TcpSocket { port: closed_port }), None)
                .await
                .0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
