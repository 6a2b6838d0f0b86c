//! Compiling AuthorizationPolicy rules (with Istio's validation) and how
//! one rule matches a request.
//!
//! istio.io, Authorization Policy, `Rule`: "A match occurs when at least one
//! source, one operation and all conditions matches the request. An empty
//! rule is always matched." `Source`/`Operation`: "Fields in the source are
//! ANDed together"; values within a field are OR'ed.
//!
//! HTTP-only fields (`hosts`, `methods`, `paths`, their `not` forms and the
//! `request.headers[...]` condition) on TCP traffic: "For a `DENY` rule,
//! missing attributes are treated as matches"; Istio's builder drops the
//! field for DENY and AUDIT ("effectively resulting in a wider deny or audit
//! policy") and skips the whole rule for ALLOW ("effectively result in a
//! smaller allow policy"). `CompiledRule::http_only` lets the evaluator skip
//! such ALLOW rules; `fields` treats the dropped fields as matched.
use std::net::IpAddr;

use http::header::HeaderName;
use ipnet::IpNet;
use thiserror::Error;

use super::context::{RequestContext, Subject};
use super::fields::{Field, HeaderKey, Values, all_match};
use super::guard::Guard;
use super::matchers::{IdentityGlob, PathPattern, ServiceAccountPattern, StrPattern, TrustDomains};
use super::path_guard::PathGuard;
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
     source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, \
     destination.ip, destination.port, connection.sni"
)]
pub struct ConditionKeyError {
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConditionKey {
    RequestHeader(HeaderKey),
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourcePrincipal,
    SourceServiceAccount,
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
        // Istio's model.go: `case k == attrSrcServiceAccount`.
        "source.serviceAccount" => ConditionKey::SourceServiceAccount,
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
            // Envoy's header matchers see the request line and the host as
            // pseudo-headers; Palisade has the two whose value it holds as
            // Envoy does.
            if name.starts_with(':') {
                return match name.to_ascii_lowercase().as_str() {
                    ":authority" => Ok(ConditionKey::RequestHeader(HeaderKey::Authority)),
                    ":method" => Ok(ConditionKey::RequestHeader(HeaderKey::Method)),
                    _ => Err(err(
                        "of the pseudo-headers only :authority and :method are supported \
                         (use paths/notPaths for the path)",
                    )),
                };
            }
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| err("invalid HTTP header name"))?;
            ConditionKey::RequestHeader(HeaderKey::Name(name))
        }
        k if k.starts_with("request.auth.") => {
            return Err(err("JWT request authentication is not supported"));
        }
        // `experimental.envoy.filters.*[...]` and Istio's newer
        // `request.experimental.inline.headers[...]`.
        k if k.starts_with("experimental.") || k.starts_with("request.experimental.") => {
            return Err(err("experimental keys are not supported"));
        }
        // Istio's `security.ValidateAttribute` refuses these with their
        // replacement; say the same.
        "destination.namespace" => {
            return Err(err(
                "replaced by the policy's metadata.namespace (Istio refuses it too)",
            ));
        }
        k if k.starts_with("destination.labels") => {
            return Err(err(
                "replaced by the workload selector spec.selector.matchLabels (Istio refuses it too)",
            ));
        }
        "destination.name" | "destination.user" => {
            return Err(err(
                "deprecated, only supported by Istio's v1alpha1 RBAC (Istio refuses it too)",
            ));
        }
        _ => return Err(err("unknown key")),
    })
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    /// OR of sources, each an AND of fields; empty: any source.
    from: Vec<Vec<Field>>,
    /// OR of operations, each an AND of fields; empty: any operation.
    to: Vec<Vec<Field>>,
    /// AND of conditions.
    when: Vec<Field>,
    /// Uses a field that only HTTP requests carry.
    pub(crate) http_only: bool,
    /// Quick rejection on the peer principal or namespace, when every
    /// source requires one of a few exact values.
    pub(super) guard: Option<Guard>,
    /// Quick rejection on the request path, when every operation requires
    /// paths with literal beginnings.
    pub(super) path_guard: Option<PathGuard>,
}

/// Sorted cheapest first; fields are ANDed, so order never changes results.
fn by_cost(mut fields: Vec<Field>) -> Vec<Field> {
    fields.sort_by_key(Field::cost);
    fields
}

/// Pushes the positive and the `not` field when their lists are non-empty.
fn push<T>(out: &mut Vec<Field>, pos: Vec<T>, neg: Vec<T>, make: impl Fn(Vec<T>) -> Values) {
    if !pos.is_empty() {
        out.push(Field::new(false, make(pos)));
    }
    if !neg.is_empty() {
        out.push(Field::new(true, make(neg)));
    }
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
    ) -> Result<Vec<ServiceAccountPattern>, AuthzError> {
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
                    ServiceAccountPattern::new(ns, sa)
                        .map_err(|m| self.err(format!("{at}[{i}]"), m))
                }
                _ => Err(self.err(
                    format!("{at}[{i}]"),
                    format!("{v:?}: expected <namespace>/<serviceaccount> without wildcards"),
                )),
            })
            .collect()
    }

    /// `trustDomains`/`notTrustDomains` values: whole trust domain names.
    /// Istio's matching of a `*` in them is not documented, so a `*` is
    /// refused rather than guessed (a DENY must not be narrowed silently).
    fn trust_domains(&self, at: &str, values: &[String]) -> Result<Vec<Box<str>>, AuthzError> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let ok = !v.is_empty()
                    && v.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'.' | b'-' | b'_')
                    });
                if ok {
                    Ok(v.as_str().into())
                } else {
                    Err(self.err(
                        format!("{at}[{i}]"),
                        format!(
                            "{v:?} is not a trust domain name (SPIFFE: lowercase letters, digits, \
                             '.', '-' and '_'; no wildcards)"
                        ),
                    ))
                }
            })
            .collect()
    }

    fn namespaces(&self, at: &str, values: &[String]) -> Result<Vec<IdentityGlob>, AuthzError> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| IdentityGlob::namespace(v).map_err(|m| self.err(format!("{at}[{i}]"), m)))
            .collect()
    }

    fn paths(&self, at: &str, values: &[String]) -> Result<Vec<PathPattern>, AuthzError> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| PathPattern::parse(v).map_err(|m| self.err(format!("{at}[{i}]"), m)))
            .collect()
    }

    fn source(&self, at: &str, s: &AuthzSource) -> Result<Vec<Field>, AuthzError> {
        if *s == AuthzSource::default() {
            // Istio's validation: "From.Source must not be empty".
            return Err(self.err(at.to_owned(), "source must not be empty"));
        }
        // Istio's validation: "cannot set serviceAccounts with namespaces or
        // principals" (their `not` forms included).
        let has_sa = !s.service_accounts.is_empty() || !s.not_service_accounts.is_empty();
        let has_other = !s.principals.is_empty()
            || !s.not_principals.is_empty()
            || !s.namespaces.is_empty()
            || !s.not_namespaces.is_empty();
        if has_sa && has_other {
            return Err(self.err(
                at.to_owned(),
                "serviceAccounts/notServiceAccounts cannot be set with principals, \
                 notPrincipals, namespaces or notNamespaces in the same source",
            ));
        }
        let mut f = Vec::new();
        push(
            &mut f,
            self.principals(&format!("{at}.principals"), &s.principals)?,
            self.principals(&format!("{at}.notPrincipals"), &s.not_principals)?,
            Values::Principal,
        );
        push(
            &mut f,
            self.service_accounts(&format!("{at}.serviceAccounts"), &s.service_accounts)?,
            self.service_accounts(&format!("{at}.notServiceAccounts"), &s.not_service_accounts)?,
            Values::ServiceAccount,
        );
        push(
            &mut f,
            self.namespaces(&format!("{at}.namespaces"), &s.namespaces)?,
            self.namespaces(&format!("{at}.notNamespaces"), &s.not_namespaces)?,
            Values::Namespace,
        );
        push(
            &mut f,
            self.trust_domains(&format!("{at}.trustDomains"), &s.trust_domains)?,
            self.trust_domains(&format!("{at}.notTrustDomains"), &s.not_trust_domains)?,
            Values::TrustDomain,
        );
        push(
            &mut f,
            s.ip_blocks.clone(),
            s.not_ip_blocks.clone(),
            Values::SourceIp,
        );
        push(
            &mut f,
            s.remote_ip_blocks.clone(),
            s.not_remote_ip_blocks.clone(),
            Values::RemoteIp,
        );
        Ok(by_cost(f))
    }

    fn operation(&self, at: &str, o: &AuthzOperation) -> Result<Vec<Field>, AuthzError> {
        if *o == AuthzOperation::default() {
            // Istio's validation: "To.Operation must not be empty".
            return Err(self.err(at.to_owned(), "operation must not be empty"));
        }
        let mut f = Vec::new();
        push(
            &mut f,
            self.strings(&format!("{at}.hosts"), &o.hosts, true)?,
            self.strings(&format!("{at}.notHosts"), &o.not_hosts, true)?,
            Values::Host,
        );
        push(
            &mut f,
            o.ports.clone(),
            o.not_ports.clone(),
            Values::DestinationPort,
        );
        push(
            &mut f,
            self.strings(&format!("{at}.methods"), &o.methods, false)?,
            self.strings(&format!("{at}.notMethods"), &o.not_methods, false)?,
            Values::Method,
        );
        push(
            &mut f,
            self.paths(&format!("{at}.paths"), &o.paths)?,
            self.paths(&format!("{at}.notPaths"), &o.not_paths)?,
            Values::Path,
        );
        Ok(by_cost(f))
    }

    /// A condition becomes one field (`values` or `notValues`) or two.
    fn condition(
        &self,
        at: &str,
        c: &AuthzCondition,
        out: &mut Vec<Field>,
    ) -> Result<(), AuthzError> {
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
                    parse_port(v).ok_or_else(|| {
                        self.err(
                            format!("{at}.{name}[{i}]"),
                            format!("{v:?} is not a port number (0-65535)"),
                        )
                    })
                })
                .collect()
        };
        let strings =
            |name: &str, list: &[String]| self.strings(&format!("{at}.{name}"), list, false);
        let (pos, neg) = (&c.values, &c.not_values);
        match key {
            ConditionKey::SourceIp => push(
                out,
                ips(pos, "values")?,
                ips(neg, "notValues")?,
                Values::SourceIp,
            ),
            ConditionKey::RemoteIp => push(
                out,
                ips(pos, "values")?,
                ips(neg, "notValues")?,
                Values::RemoteIp,
            ),
            ConditionKey::DestinationIp => push(
                out,
                ips(pos, "values")?,
                ips(neg, "notValues")?,
                Values::DestinationIp,
            ),
            ConditionKey::DestinationPort => push(
                out,
                ports(pos, "values")?,
                ports(neg, "notValues")?,
                Values::DestinationPort,
            ),
            ConditionKey::SourcePrincipal => push(
                out,
                self.principals(&format!("{at}.values"), pos)?,
                self.principals(&format!("{at}.notValues"), neg)?,
                Values::Principal,
            ),
            ConditionKey::SourceServiceAccount => push(
                out,
                self.service_accounts(&format!("{at}.values"), pos)?,
                self.service_accounts(&format!("{at}.notValues"), neg)?,
                Values::ServiceAccount,
            ),
            ConditionKey::RequestHeader(name) => push(
                out,
                strings("values", pos)?,
                strings("notValues", neg)?,
                |v| Values::Header(name.clone(), v),
            ),
            ConditionKey::SourceNamespace => push(
                out,
                self.namespaces(&format!("{at}.values"), pos)?,
                self.namespaces(&format!("{at}.notValues"), neg)?,
                Values::Namespace,
            ),
            // A server name is a DNS name: case-insensitive, and a DENY
            // must not be stepped around by `ADMIN.example.com` (see
            // `AccessView::with_sni` for the trailing dot).
            ConditionKey::ConnectionSni => push(
                out,
                self.strings(&format!("{at}.values"), pos, true)?,
                self.strings(&format!("{at}.notValues"), neg, true)?,
                Values::Sni,
            ),
        }
        Ok(())
    }
}

/// A port value of an AuthorizationPolicy (`ports`, `notPorts`, the `when`
/// key `destination.port`), read as Istio's `security.ValidatePorts` and
/// `convertToPort` do: `strconv.ParseUint(v, 10, 32)` and at most 65535. So
/// ASCII digits only (no sign, no space), and `0` is a port (that no
/// connection has).
pub fn parse_port(v: &str) -> Option<u16> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// An address value of an AuthorizationPolicy (`ipBlocks`, `remoteIpBlocks`,
/// their `not` forms, the `when` keys `source.ip`, `remote.ip` and
/// `destination.ip`), read as Istio's `security.ValidateIPs` does: a value
/// with `/` is Go's `netip.ParsePrefix`, any other `netip.ParseAddr`. So no
/// IPv4 octet with a leading zero (`01.2.3.4` could be read as octal) and a
/// prefix length of plain decimal digits without a leading zero (Go: "bad
/// bits after slash"); host bits under the mask are allowed. The `ipnet`
/// parser accepts `1.2.3.04/24`, hence the address is parsed on its own.
pub fn parse_ip_or_cidr(v: &str) -> Option<IpNet> {
    let Some((addr, bits)) = v.split_once('/') else {
        return v.parse::<IpAddr>().ok().map(IpNet::from);
    };
    let addr = addr.parse::<IpAddr>().ok()?;
    let decimal = !bits.is_empty() && bits.bytes().all(|b| b.is_ascii_digit());
    if !decimal || (bits.len() > 1 && bits.starts_with('0')) {
        return None;
    }
    IpNet::new(addr, bits.parse().ok()?).ok()
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
        let mut when = Vec::new();
        for (i, w) in rule.when.iter().enumerate() {
            c.condition(&format!("{at}.when[{i}]"), w, &mut when)?;
        }
        let when = by_cost(when);
        let http_only = to.iter().flatten().chain(&when).any(Field::http_only);
        let guard = Guard::new(&from);
        let path_guard = PathGuard::new(&to);
        Ok(CompiledRule {
            guard,
            path_guard,
            from,
            to,
            when,
            http_only,
        })
    }

    /// Does this rule match? HTTP-only fields count as matched without HTTP.
    pub(crate) fn matches(&self, ctx: &RequestContext<'_>, peer: &Subject<'_>) -> bool {
        if let Some(guard) = &self.guard
            && !guard.may_match(peer)
        {
            return false;
        }
        if let (Some(guard), Some(http)) = (&self.path_guard, &ctx.http)
            && !guard.may_match(http.path.as_bytes(), peer.path_head)
        {
            return false;
        }
        (self.from.is_empty() || self.from.iter().any(|s| all_match(s, ctx, peer)))
            && (self.to.is_empty() || self.to.iter().any(|o| all_match(o, ctx, peer)))
            && all_match(&self.when, ctx, peer)
    }
}
