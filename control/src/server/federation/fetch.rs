//! One fetch from a SPIFFE bundle endpoint: HTTPS GET with the endpoint
//! authenticated by its profile (SPIFFE Federation 5.2.1.4 and 5.2.2.4).
//!
//! - `https_web`: the server's certificate chains to a trusted root (the
//!   platform's, or `--federation-web-roots`) and names the URL's host.
//! - `https_spiffe`: the server presents an X509-SVID for exactly the
//!   configured endpoint SPIFFE ID, verified against the bundle of that ID's
//!   trust domain: the mesh's own, or the federated one in force (for a
//!   self-serving endpoint, the latest fetched bundle of the very trust
//!   domain being fetched).
//!
//! Redirects are not followed (the spec makes following them a SHOULD and
//! its security section advises operators who know their endpoints to turn
//! them off); a redirect is a failed fetch that names its target.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use palisade_identity::tls::{TlsOptions, server_verified_client_config};
use palisade_identity::{SpiffeId, TrustBundle, TrustDomain};
use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::{Federation, FetchContext, FetchedBundle};
use crate::cluster::{BundleEndpoint, EndpointProfile};

/// The largest bundle document accepted.
pub const MAX_BUNDLE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("bad endpoint URL: {0}")]
    Url(String),
    #[error("no bundle for trust domain {0:?} to authenticate the endpoint with")]
    NoEndpointBundle(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("status {status}{}", location.as_ref().map(|l| format!(" (redirect to {l}, not followed)")).unwrap_or_default())]
    Status {
        status: u16,
        location: Option<String>,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("bundle: {0}")]
    Bundle(String),
    #[error("stale bundle: sequence {seq} is older than the {held} held")]
    Stale { seq: u64, held: u64 },
}

/// The roots `https_web` endpoints are verified against.
#[derive(Clone)]
pub struct WebRoots(Arc<RootCertStore>);

impl WebRoots {
    /// The platform's trust store (rustls-native-certs: the system's CA
    /// file, or `SSL_CERT_FILE` / `SSL_CERT_DIR`), plus the PEM file
    /// `extra`, if given.
    pub fn load(extra: Option<&Path>) -> Result<Self, String> {
        let mut store = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // Unparsable platform roots are skipped, as browsers do.
            let _ = store.add(cert);
        }
        if let Some(path) = extra {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let certs = rustls_pemfile::certs(&mut text.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: no certificate", path.display()));
            }
            for cert in certs {
                store
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        Ok(Self(Arc::new(store)))
    }
}

struct Target {
    host: String,
    port: u16,
    path: String,
    authority: String,
}

fn target(url: &str) -> Result<Target, FetchError> {
    let uri: http::Uri = url.parse().map_err(|e| FetchError::Url(format!("{e}")))?;
    // SPIFFE Federation 5.2.1.1 and 5.2.2.1, as the MeshConfig loader
    // checks them: the fetch itself refuses any other URL too.
    if uri.scheme_str() != Some("https") {
        return Err(FetchError::Url(format!(
            "{url:?}: the scheme must be https"
        )));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| FetchError::Url("no host".into()))?;
    if authority.as_str().contains('@') {
        return Err(FetchError::Url(format!("{url:?}: userinfo is not allowed")));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    Ok(Target {
        host: host.to_string(),
        port: authority.port_u16().unwrap_or(443),
        path: uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        authority: authority.as_str().to_string(),
    })
}

/// The client config that authenticates `endpoint` by its profile.
fn client_config(
    endpoint: &BundleEndpoint,
    federation: &Federation,
    ctx: &FetchContext,
) -> Result<rustls::ClientConfig, FetchError> {
    let opts = TlsOptions {
        alpn: vec![b"http/1.1".to_vec()],
        // Bundle endpoints follow Mozilla's intermediate profile (SPIFFE
        // Federation 5): TLS 1.2 and 1.3.
        allow_tls12: true,
        ..TlsOptions::default()
    };
    match &endpoint.profile {
        EndpointProfile::HttpsWeb => {
            let mut cfg = rustls::ClientConfig::builder_with_provider(opts.provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| FetchError::Tls(e.to_string()))?
                .with_root_certificates(ctx.web_roots.0.clone())
                .with_no_client_auth();
            cfg.alpn_protocols = opts.alpn.clone();
            Ok(cfg)
        }
        EndpointProfile::HttpsSpiffe { endpoint_id } => {
            let expected =
                SpiffeId::parse(endpoint_id).map_err(|e| FetchError::Url(e.to_string()))?;
            let endpoint_td = expected.trust_domain_str();
            let local = ctx.local.load_full();
            let bundle = if local.accepts_trust_domain(endpoint_td) {
                (*local).clone()
            } else {
                // Self-serving (endpoint_td == td) or another federated
                // trust domain: its bundle in force.
                let pem = federation
                    .current_pem(endpoint_td)
                    .ok_or_else(|| FetchError::NoEndpointBundle(endpoint_td.to_string()))?;
                let trust_domain = TrustDomain::new(endpoint_td)
                    .map_err(|e| FetchError::NoEndpointBundle(format!("{endpoint_td}: {e}")))?;
                TrustBundle::from_pem(trust_domain, &pem)
                    .map_err(|e| FetchError::NoEndpointBundle(format!("{endpoint_td}: {e}")))?
            };
            server_verified_client_config(bundle, expected, &opts)
                .map_err(|e| FetchError::Tls(e.to_string()))
        }
    }
}

/// Fetches the bundle of trust domain `td` from `endpoint` once.
pub async fn fetch(
    td: &str,
    endpoint: &BundleEndpoint,
    federation: &Federation,
    ctx: &FetchContext,
) -> Result<FetchedBundle, FetchError> {
    let timeout = ctx.timeout;
    tokio::time::timeout(timeout, fetch_inner(td, endpoint, federation, ctx))
        .await
        .unwrap_or(Err(FetchError::Timeout(timeout)))
}

async fn fetch_inner(
    td: &str,
    endpoint: &BundleEndpoint,
    federation: &Federation,
    ctx: &FetchContext,
) -> Result<FetchedBundle, FetchError> {
    let t = target(&endpoint.url)?;
    let config = client_config(endpoint, federation, ctx)?;
    let tcp = TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| FetchError::Connect(format!("{}:{}: {e}", t.host, t.port)))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(t.host.clone())
        .map_err(|e| FetchError::Url(format!("host {:?}: {e}", t.host)))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| FetchError::Tls(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get(t.path.as_str())
        .header(http::header::HOST, t.authority.as_str())
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let status = resp.status();
    if status != http::StatusCode::OK {
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        return Err(FetchError::Status {
            status: status.as_u16(),
            location,
        });
    }
    let body = Limited::new(resp.into_body(), MAX_BUNDLE_BYTES)
        .collect()
        .await
        .map_err(|e| FetchError::Http(format!("body: {e}")))?
        .to_bytes();
    let text = std::str::from_utf8(&body)
        .map_err(|_| FetchError::Bundle("not UTF-8 (SPIFFE Federation 5.2.x.3)".into()))?;
    FetchedBundle::parse(td, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_the_port_and_path_of_the_url() {
        let t = target("https://bundles.example.com:8443/prod/bundle.json?x=1").unwrap();
        assert_eq!(t.host, "bundles.example.com");
        assert_eq!(t.port, 8443);
        assert_eq!(t.path, "/prod/bundle.json?x=1");
        assert_eq!(t.authority, "bundles.example.com:8443");
        let t = target("https://[2001:db8::1]/").unwrap();
        assert_eq!(t.host, "2001:db8::1");
        assert_eq!(t.port, 443);
        let t = target("https://example.com").unwrap();
        assert_eq!(t.path, "/");
    }

    /// SPIFFE Federation 5.2.1.1 and 5.2.2.1: scheme `https`, no userinfo.
    #[test]
    fn targets_must_be_https_without_userinfo() {
        for url in [
            "http://example.com/bundle",
            "ftp://example.com/bundle",
            "https://user@example.com/bundle",
            "https://user:pw@example.com/bundle",
            "/bundle",
        ] {
            assert!(
                matches!(target(url), Err(FetchError::Url(_))),
                "{url}: {:?}",
                target(url).ok().map(|t| t.host)
            );
        }
    }
}
