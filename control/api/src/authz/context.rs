//! What an authorization decision looks at: the connection (peer identity,
//! addresses, SNI) and, for HTTP, the request (method, normalized path,
//! host, headers).
use std::borrow::Cow;
use std::net::IpAddr;

use http::HeaderMap;
use http::header::HeaderName;

use super::matchers::fingerprint;
use super::path_guard::head_word;

/// One connection, or one request on it.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// The peer's verified SPIFFE ID (`spiffe://td/ns/x/sa/y`); `None` for
    /// plaintext peers.
    pub peer_identity: Option<&'a str>,
    /// Source address of the connection (`source.ip`, `ipBlocks`).
    pub source_ip: IpAddr,
    /// Original client address (`remote.ip`, `remoteIpBlocks`). Palisade
    /// trusts no X-Forwarded-For, so this is the source address.
    pub remote_ip: IpAddr,
    pub destination_ip: IpAddr,
    pub destination_port: u16,
    /// Server name of the connection's TLS ClientHello, if any.
    pub sni: Option<&'a str>,
    /// The HTTP request; `None` for TCP (non-HTTP) traffic.
    pub http: Option<HttpRequest<'a>>,
}

/// The HTTP part of a request.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The normalized path without the query
    /// (`crate::normalize::NormalizedPath::path`).
    pub path: &'a str,
    /// The `Host` header or `:authority`, as sent (port included).
    pub host: &'a str,
    pub headers: &'a HeaderMap,
}

impl<'a> RequestContext<'a> {
    /// A TCP connection from `source_ip` (also the remote IP) to
    /// `destination_ip:destination_port`.
    pub fn tcp(
        peer_identity: Option<&'a str>,
        source_ip: IpAddr,
        destination_ip: IpAddr,
        destination_port: u16,
    ) -> Self {
        RequestContext {
            peer_identity,
            source_ip,
            remote_ip: source_ip,
            destination_ip,
            destination_port,
            sni: None,
            http: None,
        }
    }

    /// The ClientHello's server name. One trailing dot (the root label,
    /// which rustls and others accept) is dropped: `admin.example.com.` is
    /// the name `admin.example.com`, and matching ignores case.
    pub fn with_sni(mut self, sni: &'a str) -> Self {
        let sni = sni.strip_suffix('.').unwrap_or(sni);
        self.sni = (!sni.is_empty()).then_some(sni);
        self
    }

    pub fn with_http(mut self, http: HttpRequest<'a>) -> Self {
        self.http = Some(http);
        self
    }
}

impl HttpRequest<'_> {
    /// The header's value; Istio merges duplicate headers "by concatenating
    /// all values using comma as a separator". `None` when absent.
    pub(crate) fn header(&self, name: &HeaderName) -> Option<Cow<'_, [u8]>> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        let Some(second) = values.next() else {
            return Some(Cow::Borrowed(first.as_bytes()));
        };
        let mut joined = first.as_bytes().to_vec();
        for v in std::iter::once(second).chain(values) {
            joined.push(b',');
            joined.extend_from_slice(v.as_bytes());
        }
        Some(Cow::Owned(joined))
    }
}

/// What the matchers read of one `RequestContext`, prepared once per
/// evaluation: the peer's SPIFFE ID (whole, for `namespaces` and
/// `serviceAccounts`, and without `spiffe://` as the principal, with a
/// fingerprint for quick rejection), and the addresses with IPv4-mapped
/// IPv6 turned into IPv4.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    /// The whole ID, `spiffe://td/ns/x/sa/y`, when it has a principal:
    /// what Istio's namespace and service-account regexes are matched
    /// against (Envoy's `principal_name`, the URI SAN).
    pub(crate) identity: Option<&'a str>,
    /// The ID without `spiffe://`: `td/ns/x/sa/y` (`source.principal`).
    pub(crate) principal: Option<&'a str>,
    /// `matchers::fingerprint` of `principal`.
    pub(crate) principal_fingerprint: u64,
    pub(crate) source_ip: IpAddr,
    pub(crate) remote_ip: IpAddr,
    pub(crate) destination_ip: IpAddr,
    /// `path_guard::head_word` of the HTTP request path (0 without HTTP).
    pub(crate) path_head: u64,
}

impl<'a> Subject<'a> {
    pub(crate) fn new(ctx: &RequestContext<'a>) -> Self {
        let principal = principal_of(ctx.peer_identity);
        Subject {
            identity: principal.and(ctx.peer_identity),
            principal,
            principal_fingerprint: principal.map_or(0, |p| fingerprint(p.as_bytes())),
            source_ip: canonical_ip(ctx.source_ip),
            remote_ip: canonical_ip(ctx.remote_ip),
            destination_ip: canonical_ip(ctx.destination_ip),
            path_head: ctx
                .http
                .as_ref()
                .map_or(0, |h| head_word(h.path.as_bytes())),
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is matched as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// An identity that is not a `spiffe://` URI has no principal, as in
/// ztunnel ("Istio matches all assumes spiffe:// prefix"). Namespaces and
/// service accounts are not split out here: Istio matches them by regex
/// against the whole ID (`matchers::IdentityGlob`), wherever in the path
/// `/ns/<ns>/` and `/sa/<sa>` stand.
fn principal_of(identity: Option<&str>) -> Option<&str> {
    identity
        .and_then(|i| i.strip_prefix("spiffe://"))
        .filter(|p| !p.is_empty())
}
