//! Compiled AuthorizationPolicy rules and how one rule matches a request.
//!
//! istio.io, Authorization Policy, `Rule`: "A match occurs when at least one
//! source, one operation and all conditions matches the request. An empty
//! rule is always matched." `Source`/`Operation`: "Fields in the source are
//! ANDed together"; values within a field are OR'ed; a `not` field matches
//! when the value matches none of its values (so an absent value, such as
//! the principal of a plaintext peer, matches every `not` field: see
//! ISTIO-SECURITY-2021-004, "The mTLS-only field notNamespaces will be
//! compared to an empty value when mTLS is not used").
//!
//! HTTP-only fields (`hosts`, `methods`, `paths`, their `not` forms and the
//! `request.headers[...]` condition) on TCP traffic: "For a `DENY` rule,
//! missing attributes are treated as matches"; Istio's builder drops the
//! field for DENY and AUDIT ("effectively resulting in a wider deny or audit
//! policy") and skips the whole rule for ALLOW ("effectively result in a
//! smaller allow policy"). The evaluator skips such ALLOW rules; here an
//! HTTP-only field without an HTTP request counts as matched.
use std::net::IpAddr;

use http::header::HeaderName;
use ipnet::IpNet;
use thiserror::Error;

use super::context::{PeerId, RequestContext};
use super::matchers::{PathPattern, StrPattern, TrustDomains};
use crate::config::{AuthzCondition, AuthzOperation, AuthzRule, AuthzSource};

/// Why a policy cannot be compiled (the compiler reports it; the proxy
/// refuses the config).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("AuthorizationPolicy {policy}: {location}: {message}")]
pub struct AuthzError {
    pub policy: String,
    /// E.g. `rules[0].from[1].source.principals[2]`.
    pub location: String,
    pub message: String,
}

/// An unsupported `when` key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "unsupported condition key {key:?}: {reason}; supported keys: request.headers[<name>], \
     source.ip, remote.ip, source.namespace, source.principal, destination.ip, \
     destination.port, connection.sni"
)]
pub struct ConditionKeyError {
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConditionKey {
    RequestHeader(HeaderName),
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourcePrincipal,
    DestinationIp,
    DestinationPort,
    ConnectionSni,
}

/// Checks a `when` key against the keys Palisade supports (istio.io,
/// "Authorization Policy Conditions", minus the JWT `request.auth.*` keys and
/// the `experimental.*` ones).
pub fn validate_condition_key(key: &str) -> Result<(), ConditionKeyError> {
    parse_condition_key(key).map(|_| ())
}

pub(crate) fn parse_condition_key(key: &str) -> Result<ConditionKey, ConditionKeyError> {
    let err = |reason: &str| ConditionKeyError {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    Ok(match key {
        "source.ip" => ConditionKey::SourceIp,
        "remote.ip" => ConditionKey::RemoteIp,
        "source.namespace" => ConditionKey::SourceNamespace,
        "source.principal" => ConditionKey::SourcePrincipal,
        "destination.ip" => ConditionKey::DestinationIp,
        "destination.port" => ConditionKey::DestinationPort,
        "connection.sni" => ConditionKey::ConnectionSni,
        k if k.starts_with("request.headers[") => {
            let name = k
                .strip_prefix("request.headers[")
                .and_then(|r| r.strip_suffix(']'))
                .ok_or_else(|| err("expected request.headers[<name>]"))?;
            if name.is_empty() {
                return Err(err("empty header name"));
            }
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| err("invalid HTTP header name"))?;
            ConditionKey::RequestHeader(name)
        }
        k if k.starts_with("request.auth.") => {
            return Err(err("JWT request authentication is not supported"));
        }
        k if k.starts_with("experimental.") => {
            return Err(err("experimental keys are not supported"));
        }
        _ => return Err(err("unknown key")),
    })
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    from: Vec<CompiledSource>,
    to: Vec<CompiledOperation>,
    when: Vec<CompiledCondition>,
    /// Uses a field that only HTTP requests carry.
    pub(crate) http_only: bool,
}

/// A `serviceAccounts` value: `(namespace, service account)`.
type ServiceAccount = (Box<str>, Box<str>);

#[derive(Debug, Clone, Default)]
struct CompiledSource {
    principals: Vec<StrPattern>,
    not_principals: Vec<StrPattern>,
    service_accounts: Vec<ServiceAccount>,
    not_service_accounts: Vec<ServiceAccount>,
    namespaces: Vec<StrPattern>,
    not_namespaces: Vec<StrPattern>,
    ip_blocks: Vec<IpNet>,
    not_ip_blocks: Vec<IpNet>,
    remote_ip_blocks: Vec<IpNet>,
    not_remote_ip_blocks: Vec<IpNet>,
}

#[derive(Debug, Clone, Default)]
struct CompiledOperation {
    hosts: Vec<StrPattern>,
    not_hosts: Vec<StrPattern>,
    ports: Vec<u16>,
    not_ports: Vec<u16>,
    methods: Vec<StrPattern>,
    not_methods: Vec<StrPattern>,
    paths: Vec<PathPattern>,
    not_paths: Vec<PathPattern>,
}

/// A `when` condition with its values parsed for its key.
#[derive(Debug, Clone)]
enum CompiledCondition {
    Header(HeaderName, Vec<StrPattern>, Vec<StrPattern>),
    SourceNamespace(Vec<StrPattern>, Vec<StrPattern>),
    SourcePrincipal(Vec<StrPattern>, Vec<StrPattern>),
    ConnectionSni(Vec<StrPattern>, Vec<StrPattern>),
    SourceIp(Vec<IpNet>, Vec<IpNet>),
    RemoteIp(Vec<IpNet>, Vec<IpNet>),
    DestinationIp(Vec<IpNet>, Vec<IpNet>),
    DestinationPort(Vec<u16>, Vec<u16>),
}

/// Positive list (empty: not set) AND negative list (empty: not set).
fn field<T>(positive: &[T], negative: &[T], mut pred: impl FnMut(&T) -> bool) -> bool {
    (positive.is_empty() || positive.iter().any(&mut pred)) && !negative.iter().any(pred)
}

fn contains(net: &IpNet, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    net.contains(&ip)
}

// === compile ===

struct Compiler<'a> {
    policy: &'a str,
    trust_domains: &'a TrustDomains<'a>,
}

impl Compiler<'_> {
    fn err(&self, location: String, message: impl Into<String>) -> AuthzError {
        AuthzError {
            policy: self.policy.to_owned(),
            location,
            message: message.into(),
        }
    }

    fn strings(
        &self,
        at: &str,
        values: &[String],
        ignore_case: bool,
    ) -> Result<Vec<StrPattern>, AuthzError> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                StrPattern::parse(v, ignore_case).map_err(|m| self.err(format!("{at}[{i}]"), m))
            })
            .collect()
    }

    fn principals(&self, at: &str, values: &[String]) -> Result<Vec<StrPattern>, AuthzError> {
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            if v.starts_with("spiffe://") {
                return Err(self.err(
                    format!("{at}[{i}]"),
                    format!("{v:?}: write principals without the spiffe:// prefix"),
                ));
            }
            for expanded in self.trust_domains.expand(v) {
                out.push(
                    StrPattern::parse(&expanded, false)
                        .map_err(|m| self.err(format!("{at}[{i}]"), m))?,
                );
            }
        }
        Ok(out)
    }

    fn service_accounts(
        &self,
        at: &str,
        values: &[String],
    ) -> Result<Vec<ServiceAccount>, AuthzError> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| match v.split_once('/') {
                Some((ns, sa))
                    if !ns.is_empty()
                        && !sa.is_empty()
                        && !sa.contains('/')
                        && !v.contains('*') =>
                {
                    Ok((ns.into(), sa.into()))
                }
                _ => Err(self.err(
                    format!("{at}[{i}]"),
                    format!("{v:?}: expected <namespace>/<serviceaccount> without wildcards"),
                )),
            })
            .collect()
    }

    fn paths(&self, at: &str, values: &[String]) -> Result<Vec<PathPattern>, AuthzError> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| PathPattern::parse(v).map_err(|m| self.err(format!("{at}[{i}]"), m)))
            .collect()
    }

    fn source(&self, at: &str, s: &AuthzSource) -> Result<CompiledSource, AuthzError> {
        let c = CompiledSource {
            principals: self.principals(&format!("{at}.principals"), &s.principals)?,
            not_principals: self.principals(&format!("{at}.notPrincipals"), &s.not_principals)?,
            service_accounts: self
                .service_accounts(&format!("{at}.serviceAccounts"), &s.service_accounts)?,
            not_service_accounts: self
                .service_accounts(&format!("{at}.notServiceAccounts"), &s.not_service_accounts)?,
            namespaces: self.strings(&format!("{at}.namespaces"), &s.namespaces, false)?,
            not_namespaces: self.strings(
                &format!("{at}.notNamespaces"),
                &s.not_namespaces,
                false,
            )?,
            ip_blocks: s.ip_blocks.clone(),
            not_ip_blocks: s.not_ip_blocks.clone(),
            remote_ip_blocks: s.remote_ip_blocks.clone(),
            not_remote_ip_blocks: s.not_remote_ip_blocks.clone(),
        };
        if *s == AuthzSource::default() {
            // Istio's validation: "From.Source must not be empty".
            return Err(self.err(at.to_owned(), "source must not be empty"));
        }
        Ok(c)
    }

    fn operation(&self, at: &str, o: &AuthzOperation) -> Result<CompiledOperation, AuthzError> {
        if *o == AuthzOperation::default() {
            // Istio's validation: "To.Operation must not be empty".
            return Err(self.err(at.to_owned(), "operation must not be empty"));
        }
        Ok(CompiledOperation {
            hosts: self.strings(&format!("{at}.hosts"), &o.hosts, true)?,
            not_hosts: self.strings(&format!("{at}.notHosts"), &o.not_hosts, true)?,
            ports: o.ports.clone(),
            not_ports: o.not_ports.clone(),
            methods: self.strings(&format!("{at}.methods"), &o.methods, false)?,
            not_methods: self.strings(&format!("{at}.notMethods"), &o.not_methods, false)?,
            paths: self.paths(&format!("{at}.paths"), &o.paths)?,
            not_paths: self.paths(&format!("{at}.notPaths"), &o.not_paths)?,
        })
    }

    fn condition(&self, at: &str, c: &AuthzCondition) -> Result<CompiledCondition, AuthzError> {
        let key = parse_condition_key(&c.key)
            .map_err(|e| self.err(format!("{at}.key"), e.to_string()))?;
        if c.values.is_empty() && c.not_values.is_empty() {
            return Err(self.err(
                at.to_owned(),
                "at least one of values or notValues must be set",
            ));
        }
        let ips = |list: &[String], name: &str| -> Result<Vec<IpNet>, AuthzError> {
            list.iter()
                .enumerate()
                .map(|(i, v)| {
                    parse_ip_or_cidr(v).ok_or_else(|| {
                        self.err(
                            format!("{at}.{name}[{i}]"),
                            format!("{v:?} is not an IP address or CIDR"),
                        )
                    })
                })
                .collect()
        };
        let ports = |list: &[String], name: &str| -> Result<Vec<u16>, AuthzError> {
            list.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.parse::<u16>().map_err(|_| {
                        self.err(
                            format!("{at}.{name}[{i}]"),
                            format!("{v:?} is not a port number"),
                        )
                    })
                })
                .collect()
        };
        let strings =
            |name: &str, list: &[String]| self.strings(&format!("{at}.{name}"), list, false);
        Ok(match key {
            ConditionKey::SourceIp => CompiledCondition::SourceIp(
                ips(&c.values, "values")?,
                ips(&c.not_values, "notValues")?,
            ),
            ConditionKey::RemoteIp => CompiledCondition::RemoteIp(
                ips(&c.values, "values")?,
                ips(&c.not_values, "notValues")?,
            ),
            ConditionKey::DestinationIp => CompiledCondition::DestinationIp(
                ips(&c.values, "values")?,
                ips(&c.not_values, "notValues")?,
            ),
            ConditionKey::DestinationPort => CompiledCondition::DestinationPort(
                ports(&c.values, "values")?,
                ports(&c.not_values, "notValues")?,
            ),
            ConditionKey::SourcePrincipal => CompiledCondition::SourcePrincipal(
                self.principals(&format!("{at}.values"), &c.values)?,
                self.principals(&format!("{at}.notValues"), &c.not_values)?,
            ),
            ConditionKey::RequestHeader(name) => CompiledCondition::Header(
                name,
                strings("values", &c.values)?,
                strings("notValues", &c.not_values)?,
            ),
            ConditionKey::SourceNamespace => CompiledCondition::SourceNamespace(
                strings("values", &c.values)?,
                strings("notValues", &c.not_values)?,
            ),
            ConditionKey::ConnectionSni => CompiledCondition::ConnectionSni(
                strings("values", &c.values)?,
                strings("notValues", &c.not_values)?,
            ),
        })
    }
}

fn parse_ip_or_cidr(v: &str) -> Option<IpNet> {
    v.parse::<IpNet>()
        .ok()
        .or_else(|| v.parse::<IpAddr>().ok().map(IpNet::from))
}

impl CompiledRule {
    pub(crate) fn compile(
        policy: &str,
        index: usize,
        rule: &AuthzRule,
        trust_domains: &TrustDomains<'_>,
    ) -> Result<Self, AuthzError> {
        let c = Compiler {
            policy,
            trust_domains,
        };
        let at = format!("rules[{index}]");
        let from = rule
            .from
            .iter()
            .enumerate()
            .map(|(i, s)| c.source(&format!("{at}.from[{i}].source"), s))
            .collect::<Result<Vec<_>, _>>()?;
        let to = rule
            .to
            .iter()
            .enumerate()
            .map(|(i, o)| c.operation(&format!("{at}.to[{i}].operation"), o))
            .collect::<Result<Vec<_>, _>>()?;
        let when = rule
            .when
            .iter()
            .enumerate()
            .map(|(i, w)| c.condition(&format!("{at}.when[{i}]"), w))
            .collect::<Result<Vec<_>, _>>()?;
        let http_only = to.iter().any(|o| {
            !(o.hosts.is_empty()
                && o.not_hosts.is_empty()
                && o.methods.is_empty()
                && o.not_methods.is_empty()
                && o.paths.is_empty()
                && o.not_paths.is_empty())
        }) || when
            .iter()
            .any(|w| matches!(w, CompiledCondition::Header(..)));
        Ok(CompiledRule {
            from,
            to,
            when,
            http_only,
        })
    }

    /// Does this rule match? HTTP-only fields count as matched without HTTP.
    pub(crate) fn matches(&self, ctx: &RequestContext<'_>, peer: &PeerId<'_>) -> bool {
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(ctx, peer)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(ctx)))
            && self.when.iter().all(|w| w.matches(ctx, peer))
    }
}

// === matching ===

fn opt_str(patterns: &StrPattern, v: Option<&str>) -> bool {
    v.is_some_and(|v| patterns.matches(v.as_bytes()))
}

impl CompiledSource {
    fn matches(&self, ctx: &RequestContext<'_>, peer: &PeerId<'_>) -> bool {
        let sa = |(ns, sa): &ServiceAccount| {
            peer.namespace == Some(&**ns) && peer.service_account == Some(&**sa)
        };
        field(&self.ip_blocks, &self.not_ip_blocks, |n| {
            contains(n, ctx.source_ip)
        }) && field(&self.remote_ip_blocks, &self.not_remote_ip_blocks, |n| {
            contains(n, ctx.remote_ip)
        }) && field(&self.principals, &self.not_principals, |p| {
            opt_str(p, peer.principal)
        }) && field(&self.namespaces, &self.not_namespaces, |p| {
            opt_str(p, peer.namespace)
        }) && field(&self.service_accounts, &self.not_service_accounts, sa)
    }
}

impl CompiledOperation {
    fn matches(&self, ctx: &RequestContext<'_>) -> bool {
        let port = ctx.destination_port;
        if !field(&self.ports, &self.not_ports, |p| *p == port) {
            return false;
        }
        let Some(http) = &ctx.http else {
            // TCP: HTTP-only fields are dropped (DENY/AUDIT semantics).
            return true;
        };
        field(&self.methods, &self.not_methods, |m| {
            m.matches(http.method.as_bytes())
        }) && field(&self.paths, &self.not_paths, |p| p.matches(http.path))
            && field(&self.hosts, &self.not_hosts, |h| {
                h.matches_ignore_case(http.host.as_bytes())
            })
    }
}

impl CompiledCondition {
    fn matches(&self, ctx: &RequestContext<'_>, peer: &PeerId<'_>) -> bool {
        match self {
            CompiledCondition::Header(name, pos, neg) => {
                let Some(http) = &ctx.http else {
                    // TCP: HTTP-only condition dropped (DENY/AUDIT semantics).
                    return true;
                };
                let value = http.header(name);
                let v = value.as_deref();
                field(pos, neg, |p| v.is_some_and(|v| p.matches(v)))
            }
            CompiledCondition::SourceNamespace(pos, neg) => {
                field(pos, neg, |p| opt_str(p, peer.namespace))
            }
            CompiledCondition::SourcePrincipal(pos, neg) => {
                field(pos, neg, |p| opt_str(p, peer.principal))
            }
            CompiledCondition::ConnectionSni(pos, neg) => field(pos, neg, |p| opt_str(p, ctx.sni)),
            CompiledCondition::SourceIp(pos, neg) => {
                field(pos, neg, |n| contains(n, ctx.source_ip))
            }
            CompiledCondition::RemoteIp(pos, neg) => {
                field(pos, neg, |n| contains(n, ctx.remote_ip))
            }
            CompiledCondition::DestinationIp(pos, neg) => {
                field(pos, neg, |n| contains(n, ctx.destination_ip))
            }
            CompiledCondition::DestinationPort(pos, neg) => {
                field(pos, neg, |p| *p == ctx.destination_port)
            }
        }
    }
}
