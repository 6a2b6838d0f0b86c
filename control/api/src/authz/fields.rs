//! One compiled field of a source, operation or condition (`principals`,
//! `notPaths`, `when: source.ip`, ...) and how it matches a request.
//!
//! A field matches when the request's value matches one of its values; its
//! `not` form when the value matches none of them. An absent value (the
//! principal of a plaintext peer, a missing header, no SNI) matches no
//! value, so it fails a positive field and passes a `not` field: see
//! ISTIO-SECURITY-2021-004, "The mTLS-only field notNamespaces will be
//! compared to an empty value when mTLS is not used".
//!
//! HTTP-only fields (`hosts`, `methods`, `paths`, headers) evaluated without
//! an HTTP request count as matched: Istio drops them from DENY and AUDIT
//! rules on TCP; ALLOW rules that use them are skipped before this point.
use std::borrow::Cow;
use std::net::IpAddr;

use http::header::HeaderName;
use ipnet::IpNet;

use super::context::{RequestContext, Subject};
use super::matchers::{IdentityGlob, PathPattern, ServiceAccountPattern, StrPattern};

#[derive(Debug, Clone)]
pub(crate) struct Field {
    /// The `not` form.
    pub(crate) negate: bool,
    pub(crate) values: Values,
}

#[derive(Debug, Clone)]
pub(crate) enum Values {
    DestinationPort(Vec<u16>),
    SourceIp(Vec<IpNet>),
    RemoteIp(Vec<IpNet>),
    DestinationIp(Vec<IpNet>),
    Principal(Vec<StrPattern>),
    /// Matched against the whole SPIFFE ID, as Istio's regexes are.
    Namespace(Vec<IdentityGlob>),
    /// Matched against the whole SPIFFE ID, as Istio's regexes are.
    ServiceAccount(Vec<ServiceAccountPattern>),
    /// The trust domain of the peer's SPIFFE ID, compared whole.
    TrustDomain(Vec<Box<str>>),
    Sni(Vec<StrPattern>),
    Method(Vec<StrPattern>),
    /// Patterns lower-cased; matched case-insensitively.
    Host(Vec<StrPattern>),
    Path(Vec<PathPattern>),
    Header(HeaderKey, Vec<StrPattern>),
}

/// The header a `request.headers[<name>]` condition reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderKey {
    Name(HeaderName),
    /// `:authority`: the Host header or HTTP/2 `:authority`, as sent.
    Authority,
    /// `:method`.
    Method,
}

impl Field {
    pub(crate) fn new(negate: bool, values: Values) -> Self {
        Field { negate, values }
    }

    /// Only HTTP requests carry this field's value.
    pub(crate) fn http_only(&self) -> bool {
        matches!(
            self.values,
            Values::Method(_) | Values::Host(_) | Values::Path(_) | Values::Header(..)
        )
    }

    /// Relative cost, to check cheap fields first (they are ANDed, so the
    /// order never changes the result).
    pub(crate) fn cost(&self) -> u8 {
        match self.values {
            Values::DestinationPort(_) => 0,
            Values::SourceIp(_) | Values::RemoteIp(_) | Values::DestinationIp(_) => 1,
            Values::Method(_) => 2,
            Values::Principal(_)
            | Values::Namespace(_)
            | Values::ServiceAccount(_)
            | Values::TrustDomain(_)
            | Values::Sni(_) => 3,
            Values::Host(_) => 4,
            Values::Path(_) => 5,
            Values::Header(..) => 6,
        }
    }

    pub(crate) fn matches(&self, ctx: &RequestContext<'_>, peer: &Subject<'_>) -> bool {
        let any = match &self.values {
            Values::DestinationPort(ports) => ports.contains(&ctx.destination_port),
            Values::SourceIp(nets) => any_net(nets, peer.source_ip),
            Values::RemoteIp(nets) => any_net(nets, peer.remote_ip),
            Values::DestinationIp(nets) => any_net(nets, peer.destination_ip),
            Values::Principal(p) => any_str(p, peer.principal),
            Values::Namespace(p) => peer
                .identity
                .is_some_and(|id| p.iter().any(|p| p.matches(id.as_bytes()))),
            Values::ServiceAccount(p) => peer
                .identity
                .is_some_and(|id| p.iter().any(|p| p.matches(id.as_bytes()))),
            Values::TrustDomain(tds) => peer
                .principal
                .map(|p| p.split_once('/').map_or(p, |(td, _)| td))
                .is_some_and(|td| tds.iter().any(|t| **t == *td)),
            Values::Sni(p) => ctx
                .sni
                .is_some_and(|sni| p.iter().any(|p| p.matches_ignore_case(sni.as_bytes()))),
            // `:method` and `:authority` are header matchers in Istio's
            // RBAC (`"*"` is `present_match`), and both are always present.
            Values::Method(p) => match &ctx.http {
                Some(http) => p.iter().any(|p| p.matches_header(http.method.as_bytes())),
                None => return true,
            },
            Values::Host(p) => match &ctx.http {
                Some(http) => p
                    .iter()
                    .any(|p| p.matches_header_ignore_case(http.host.as_bytes())),
                None => return true,
            },
            Values::Path(p) => match &ctx.http {
                Some(http) => p.iter().any(|p| p.matches(http.path)),
                None => return true,
            },
            Values::Header(key, p) => match &ctx.http {
                Some(http) => {
                    let value = match key {
                        HeaderKey::Name(name) => http.header(name),
                        HeaderKey::Authority => Some(Cow::Borrowed(http.host.as_bytes())),
                        HeaderKey::Method => Some(Cow::Borrowed(http.method.as_bytes())),
                    };
                    let v = value.as_deref();
                    v.is_some_and(|v| p.iter().any(|p| p.matches_header(v)))
                }
                None => return true,
            },
        };
        any != self.negate
    }
}

fn any_str(patterns: &[StrPattern], v: Option<&str>) -> bool {
    v.is_some_and(|v| patterns.iter().any(|p| p.matches(v.as_bytes())))
}

/// `ip` is canonical (`Subject`), so IPv4-mapped peers match IPv4 nets.
fn any_net(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// All fields of a source, an operation or the `when` list match.
pub(crate) fn all_match(fields: &[Field], ctx: &RequestContext<'_>, peer: &Subject<'_>) -> bool {
    fields.iter().all(|f| f.matches(ctx, peer))
}
