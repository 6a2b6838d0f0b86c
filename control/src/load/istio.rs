//! Istio security kinds (`security.istio.io` `v1` and `v1beta1`):
//! PeerAuthentication and AuthorizationPolicy. The spec structs follow Istio's
//! closed schema (`deny_unknown_fields`), and AuthorizationPolicy is converted
//! into the wire form (`palisade_api::AuthorizationPolicy`) here, so every
//! conversion error names its file, document and field.
use std::collections::BTreeMap;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use palisade_api::{
    AuthorizationPolicy as ApiPolicy, AuthzAction, AuthzCondition, AuthzOperation, AuthzRule,
    AuthzSource, MtlsMode,
};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{FieldError, ObjectHead, typed};
use crate::cluster::{
    AuthorizationPolicy, Labels, Origin, PeerAuthMode, PeerAuthentication, Selector,
};

/// Annotation that turns an AuthorizationPolicy into a dry-run policy.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object<S> {
    metadata: ObjectMeta,
    #[serde(default = "Option::default")]
    spec: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WorkloadSelector {
    #[serde(default)]
    match_labels: Labels,
}

/// Istio's `validateWorkloadSelector`: "empty key is not supported in
/// selector" and "wildcard is not supported in selector" (a `*` in a key or a
/// value). An empty value, or no labels at all, is valid.
fn check_selector(selector: Option<&WorkloadSelector>, errors: &mut Vec<FieldError>) {
    for (k, v) in selector.iter().flat_map(|s| &s.match_labels) {
        let field = || format!("spec.selector.matchLabels[{k:?}]");
        if k.is_empty() {
            errors.push(FieldError::new(field(), "a label key must not be empty"));
        }
        if k.contains('*') || v.contains('*') {
            errors.push(FieldError::new(
                field(),
                format!("{k}={v}: wildcards are not supported in a workload selector"),
            ));
        }
    }
}

// === PeerAuthentication ===

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PeerAuthenticationSpec {
    #[serde(default)]
    selector: Option<WorkloadSelector>,
    #[serde(default)]
    mtls: Option<MtlsSpec>,
    /// `None` when absent: Istio refuses a present but empty map.
    #[serde(default)]
    port_level_mtls: Option<BTreeMap<PortKey, MtlsSpec>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MtlsSpec {
    #[serde(default)]
    mode: Option<String>,
}

/// A `portLevelMtls` key: YAML writes it as a number or a quoted string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(untagged)]
enum PortKey {
    Number(i64),
    Text(String),
}

fn mode(field: &str, m: Option<&MtlsSpec>) -> Result<PeerAuthMode, FieldError> {
    match m.and_then(|m| m.mode.as_deref()) {
        None | Some("UNSET") => Ok(PeerAuthMode::Unset),
        Some("STRICT") => Ok(PeerAuthMode::Set(MtlsMode::Strict)),
        Some("PERMISSIVE") => Ok(PeerAuthMode::Set(MtlsMode::Permissive)),
        Some("DISABLE") => Ok(PeerAuthMode::Set(MtlsMode::Disable)),
        Some(other) => Err(FieldError::new(
            field,
            format!("unknown mTLS mode {other:?} (expected UNSET, STRICT, PERMISSIVE or DISABLE)"),
        )),
    }
}

fn expect_istio_version(head: &ObjectHead) -> Result<(), Vec<FieldError>> {
    if matches!(head.version(), "v1" | "v1beta1") {
        Ok(())
    } else {
        Err(vec![FieldError::new(
            "apiVersion",
            format!(
                "unsupported apiVersion {:?} (expected security.istio.io/v1 or v1beta1)",
                head.api_version
            ),
        )])
    }
}

pub(super) fn peer_authentication(
    head: &ObjectHead,
    value: serde_yaml::Value,
    origin: Origin,
) -> Result<PeerAuthentication, Vec<FieldError>> {
    expect_istio_version(head)?;
    let mut value = value;
    // Read here rather than through `ObjectMeta` so that the value is RFC 3339
    // as Kubernetes parses it and a bad one gets a message of our own.
    let created = take_creation_timestamp(&mut value);
    let obj: Object<PeerAuthenticationSpec> = match typed(value) {
        Ok(obj) => obj,
        Err(mut errors) => {
            if let Err(e) = created {
                errors.insert(0, e);
            }
            return Err(errors);
        }
    };
    let _ = obj.metadata;
    let spec = obj.spec.unwrap_or_default();
    let mut errors = Vec::new();
    let creation_timestamp = created.map_err(|e| errors.push(e)).unwrap_or(None);
    check_selector(spec.selector.as_ref(), &mut errors);
    // Istio (`ComposePeerAuthentication`, `ValidatePeerAuthentication`):
    // `spec.Selector == nil || len(spec.Selector.MatchLabels) == 0` is a
    // mesh- or namespace-level policy, so an empty selector is no selector.
    let selector = spec
        .selector
        .as_ref()
        .filter(|s| !s.match_labels.is_empty())
        .map(|s| Selector::from_match_labels(&s.match_labels));
    let m = mode("spec.mtls.mode", spec.mtls.as_ref())
        .map_err(|e| errors.push(e))
        .unwrap_or(PeerAuthMode::Unset);
    let mut port_level = BTreeMap::new();
    for (key, spec_m) in spec.port_level_mtls.iter().flatten() {
        let (field, port) = match key {
            PortKey::Number(n) => (format!("spec.portLevelMtls.{n}"), u16::try_from(*n).ok()),
            PortKey::Text(s) => (
                format!("spec.portLevelMtls.{s}"),
                palisade_api::authz::parse_port(s),
            ),
        };
        match port.filter(|p| *p > 0) {
            Some(p) => match mode(&format!("{field}.mode"), Some(spec_m)) {
                Ok(m) => {
                    port_level.insert(p, m);
                }
                Err(e) => errors.push(e),
            },
            None => errors.push(FieldError::new(field, "port must be a number in 1-65535")),
        }
    }
    // Istio: "port level mTLS, if defined, must have at least one element".
    if spec
        .port_level_mtls
        .as_ref()
        .is_some_and(BTreeMap::is_empty)
    {
        errors.push(FieldError::new(
            "spec.portLevelMtls",
            "must have at least one port when present",
        ));
    }
    // Istio: "portLevelMtls ... Port specific mutual TLS settings. These only
    // apply when a workload selector is specified."
    if !port_level.is_empty() && selector.is_none() {
        errors.push(FieldError::new(
            "spec.portLevelMtls",
            "portLevelMtls only applies with a workload selector (spec.selector.matchLabels); Istio rejects it otherwise",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PeerAuthentication {
        namespace: head.namespace.clone(),
        name: head.name.clone(),
        selector,
        selector_without_labels: spec
            .selector
            .as_ref()
            .is_some_and(|s| s.match_labels.is_empty()),
        mode: m,
        port_level,
        creation_timestamp,
        origin,
    })
}

/// Removes `metadata.creationTimestamp` from `value` and parses it like
/// Kubernetes' `metav1.Time.UnmarshalJSON`: `null` (or no field) is the zero
/// time, anything else must be an RFC 3339 string (`time.Parse(time.RFC3339,
/// ...)`), e.g. `2024-01-02T03:04:05Z`.
fn take_creation_timestamp(
    value: &mut serde_yaml::Value,
) -> Result<Option<OffsetDateTime>, FieldError> {
    const FIELD: &str = "metadata.creationTimestamp";
    let taken = value
        .get_mut("metadata")
        .and_then(serde_yaml::Value::as_mapping_mut)
        .and_then(|m| m.remove("creationTimestamp"));
    match taken {
        None | Some(serde_yaml::Value::Null) => Ok(None),
        Some(serde_yaml::Value::String(s)) => OffsetDateTime::parse(&s, &Rfc3339)
            .map(Some)
            .map_err(|e| {
                FieldError::new(
                    FIELD,
                    format!(
                        "invalid timestamp {s:?}: {e} (expected RFC 3339, e.g. 2024-01-02T03:04:05Z)"
                    ),
                )
            }),
        Some(other) => Err(FieldError::new(
            FIELD,
            format!(
                "must be an RFC 3339 string such as 2024-01-02T03:04:05Z, not {}",
                serde_yaml::to_string(&other)
                    .map(|t| t.trim_end().to_string())
                    .unwrap_or_else(|_| "a non-string value".to_string())
            ),
        )),
    }
}

// === AuthorizationPolicy ===

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuthorizationPolicySpec {
    #[serde(default)]
    selector: Option<WorkloadSelector>,
    #[serde(default)]
    target_ref: Option<serde_yaml::Value>,
    #[serde(default)]
    target_refs: Option<serde_yaml::Value>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    provider: Option<serde_yaml::Value>,
    /// `None` when absent; a null element is kept as `None` so that it is
    /// refused rather than read as the empty rule `{}`.
    #[serde(default)]
    rules: Option<Vec<Option<RuleSpec>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    /// `None` when absent; Istio refuses an explicit empty list.
    #[serde(default)]
    from: Option<Vec<FromSpec>>,
    #[serde(default)]
    to: Option<Vec<ToSpec>>,
    #[serde(default)]
    when: Vec<ConditionSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FromSpec {
    #[serde(default)]
    source: SourceSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToSpec {
    #[serde(default)]
    operation: OperationSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SourceSpec {
    #[serde(default)]
    principals: Vec<String>,
    #[serde(default)]
    not_principals: Vec<String>,
    #[serde(default)]
    request_principals: Vec<String>,
    #[serde(default)]
    not_request_principals: Vec<String>,
    #[serde(default)]
    service_accounts: Vec<String>,
    #[serde(default)]
    not_service_accounts: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    not_namespaces: Vec<String>,
    #[serde(default)]
    ip_blocks: Vec<String>,
    #[serde(default)]
    not_ip_blocks: Vec<String>,
    #[serde(default)]
    remote_ip_blocks: Vec<String>,
    #[serde(default)]
    not_remote_ip_blocks: Vec<String>,
    #[serde(default)]
    trust_domains: Vec<String>,
    #[serde(default)]
    not_trust_domains: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OperationSpec {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    not_hosts: Vec<String>,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    not_ports: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    not_methods: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    not_paths: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConditionSpec {
    key: String,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    not_values: Vec<String>,
}

/// `ipBlocks` values: "IP or CIDR", e.g. `1.2.3.4` or `1.2.3.0/24`, read as
/// Istio's `security.ValidateIPs` reads them (`parse_ip_or_cidr`).
fn nets(field: &str, values: &[String], errors: &mut Vec<FieldError>) -> Vec<IpNet> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let net = palisade_api::authz::parse_ip_or_cidr(v).map(|n| n.trunc());
            if net.is_none() {
                errors.push(FieldError::new(
                    format!("{field}[{i}]"),
                    format!("{v:?} is not an IP address or CIDR"),
                ));
            }
            net
        })
        .collect()
}

fn ports(field: &str, values: &[String], errors: &mut Vec<FieldError>) -> Vec<u16> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let port = palisade_api::authz::parse_port(v);
            if port.is_none() {
                errors.push(FieldError::new(
                    format!("{field}[{i}]"),
                    format!("{v:?} is not a port number (0-65535)"),
                ));
            }
            port
        })
        .collect()
}

fn source(
    field: &str,
    s: &SourceSpec,
    policy_ns: &str,
    errors: &mut Vec<FieldError>,
) -> AuthzSource {
    if !s.request_principals.is_empty() || !s.not_request_principals.is_empty() {
        let which = if s.request_principals.is_empty() {
            "notRequestPrincipals"
        } else {
            "requestPrincipals"
        };
        errors.push(FieldError::new(
            format!("{field}.{which}"),
            "JWT request principals are not supported by Palisade (no RequestAuthentication); remove the field",
        ));
    }
    AuthzSource {
        principals: s.principals.clone(),
        not_principals: s.not_principals.clone(),
        service_accounts: service_accounts(
            &format!("{field}.serviceAccounts"),
            &s.service_accounts,
            policy_ns,
            errors,
        ),
        not_service_accounts: service_accounts(
            &format!("{field}.notServiceAccounts"),
            &s.not_service_accounts,
            policy_ns,
            errors,
        ),
        namespaces: s.namespaces.clone(),
        not_namespaces: s.not_namespaces.clone(),
        ip_blocks: nets(&format!("{field}.ipBlocks"), &s.ip_blocks, errors),
        not_ip_blocks: nets(&format!("{field}.notIpBlocks"), &s.not_ip_blocks, errors),
        remote_ip_blocks: nets(
            &format!("{field}.remoteIpBlocks"),
            &s.remote_ip_blocks,
            errors,
        ),
        not_remote_ip_blocks: nets(
            &format!("{field}.notRemoteIpBlocks"),
            &s.not_remote_ip_blocks,
            errors,
        ),
        trust_domains: s.trust_domains.clone(),
        not_trust_domains: s.not_trust_domains.clone(),
    }
}

fn operation(field: &str, o: &OperationSpec, errors: &mut Vec<FieldError>) -> AuthzOperation {
    AuthzOperation {
        hosts: o.hosts.clone(),
        not_hosts: o.not_hosts.clone(),
        ports: ports(&format!("{field}.ports"), &o.ports, errors),
        not_ports: ports(&format!("{field}.notPorts"), &o.not_ports, errors),
        methods: o.methods.clone(),
        not_methods: o.not_methods.clone(),
        paths: o.paths.clone(),
        not_paths: o.not_paths.clone(),
    }
}

fn condition(
    field: &str,
    c: &ConditionSpec,
    policy_ns: &str,
    errors: &mut Vec<FieldError>,
) -> AuthzCondition {
    if let Err(e) = palisade_api::authz::validate_condition_key(&c.key) {
        errors.push(FieldError::new(format!("{field}.key"), e));
    }
    if c.values.is_empty() && c.not_values.is_empty() {
        errors.push(FieldError::new(
            field,
            "a condition needs values or notValues",
        ));
    }
    let mut values = |name: &str, v: &Vec<String>| {
        if c.key == "source.serviceAccount" {
            service_accounts(&format!("{field}.{name}"), v, policy_ns, errors)
        } else {
            v.clone()
        }
    };
    AuthzCondition {
        key: c.key.clone(),
        values: values("values", &c.values),
        not_values: values("notValues", &c.not_values),
    }
}

/// Istio's `CheckServiceAccount`: "may not have more than 16 values" in
/// one list.
const MAX_SERVICE_ACCOUNTS: usize = 16;
/// ... and "value cannot exceed 320 characters" (Go `len`: bytes, as written).
const MAX_SERVICE_ACCOUNT_LEN: usize = 320;

/// Istio: a service account is `<namespace>/<serviceaccount>`, or `<sa>`
/// meaning the policy's own namespace (`serviceAccountRegex`). The form is
/// checked by the evaluator's compiler; the bounds of `CheckServiceAccount`
/// here, on the values as written.
fn service_accounts(
    field: &str,
    values: &[String],
    policy_ns: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<String> {
    if values.len() > MAX_SERVICE_ACCOUNTS {
        errors.push(FieldError::new(
            field,
            format!(
                "{} values: Istio allows at most {MAX_SERVICE_ACCOUNTS} service accounts in one list",
                values.len()
            ),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.len() > MAX_SERVICE_ACCOUNT_LEN {
                errors.push(FieldError::new(
                    format!("{field}[{i}]"),
                    format!("a service account cannot exceed {MAX_SERVICE_ACCOUNT_LEN} characters"),
                ));
            }
            if s.contains('/') {
                s.clone()
            } else {
                format!("{policy_ns}/{s}")
            }
        })
        .collect()
}

pub(super) fn authorization_policy(
    head: &ObjectHead,
    value: serde_yaml::Value,
    origin: Origin,
) -> Result<AuthorizationPolicy, Vec<FieldError>> {
    expect_istio_version(head)?;
    let obj: Object<AuthorizationPolicySpec> = typed(value)?;
    let spec = obj.spec.unwrap_or_default();
    let mut errors = Vec::new();
    check_selector(spec.selector.as_ref(), &mut errors);
    if spec.target_ref.is_some() || spec.target_refs.is_some() {
        let which = if spec.target_ref.is_some() {
            "spec.targetRef"
        } else {
            "spec.targetRefs"
        };
        errors.push(FieldError::new(
            which,
            "targetRef/targetRefs (gateway and waypoint attachment) are not supported; use spec.selector.matchLabels",
        ));
    }
    let action = match spec.action.as_deref() {
        None | Some("ALLOW") => AuthzAction::Allow,
        Some("DENY") => AuthzAction::Deny,
        Some("AUDIT") => AuthzAction::Audit,
        Some("CUSTOM") => {
            errors.push(FieldError::new(
                "spec.action",
                "action CUSTOM (external authorization) is not supported by Palisade; use ALLOW, DENY or AUDIT",
            ));
            AuthzAction::Deny
        }
        Some(other) => {
            errors.push(FieldError::new(
                "spec.action",
                format!("unknown action {other:?} (expected ALLOW, DENY or AUDIT)"),
            ));
            AuthzAction::Deny
        }
    };
    if spec.provider.is_some() && spec.action.as_deref() != Some("CUSTOM") {
        errors.push(FieldError::new(
            "spec.provider",
            "provider is only valid with action CUSTOM",
        ));
    }
    // Istio's validation: "DENY action without `rules` is meaningless as it
    // will never be triggered, add an empty rule `{}` if you want it be
    // triggered for every request" (`in.Rules == nil`, which protojson also
    // leaves for `rules: []`).
    if spec.action.as_deref() == Some("DENY") && spec.rules.as_ref().is_none_or(Vec::is_empty) {
        errors.push(FieldError::new(
            "spec.rules",
            "a DENY policy without rules never matches; add an empty rule `{}` to deny every request",
        ));
    }
    let mut rules = Vec::new();
    for (ri, r) in spec.rules.iter().flatten().enumerate() {
        let field = format!("spec.rules[{ri}]");
        // Istio's validation: "`rule` must not be nil"; `{}` is the rule
        // that matches everything, a null is a mistake.
        let Some(r) = r else {
            errors.push(FieldError::new(
                field,
                "a rule must not be null (write `{}` for a rule that matches every request)",
            ));
            continue;
        };
        // Istio's validation: "`from` must not be empty", "`to` must not be
        // empty".
        for (name, empty) in [
            ("from", r.from.as_ref().is_some_and(Vec::is_empty)),
            ("to", r.to.as_ref().is_some_and(Vec::is_empty)),
        ] {
            if empty {
                errors.push(FieldError::new(
                    format!("{field}.{name}"),
                    format!("`{name}` must not be empty (omit it to match any)"),
                ));
            }
        }
        rules.push(AuthzRule {
            from: r
                .from
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, f)| {
                    source(
                        &format!("{field}.from[{i}].source"),
                        &f.source,
                        &head.namespace,
                        &mut errors,
                    )
                })
                .collect(),
            to: r
                .to
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, t)| {
                    operation(
                        &format!("{field}.to[{i}].operation"),
                        &t.operation,
                        &mut errors,
                    )
                })
                .collect(),
            when: r
                .when
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    condition(
                        &format!("{field}.when[{i}]"),
                        c,
                        &head.namespace,
                        &mut errors,
                    )
                })
                .collect(),
        });
    }
    let annotation = obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DRY_RUN_ANNOTATION));
    let at = || format!("metadata.annotations[{DRY_RUN_ANNOTATION}]");
    // Istio reads the value with Go's `strconv.ParseBool`.
    let dry_run = match annotation.map(String::as_str) {
        None => false,
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => true,
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => false,
        Some(v) => {
            errors.push(FieldError::new(
                at(),
                format!("{v:?} is not a boolean (true or false)"),
            ));
            false
        }
    };
    // Istio's `checkDryRunAnnotation`: "the annotation istio.io/dry-run
    // currently only supports action ALLOW/DENY".
    if annotation.is_some() && action == AuthzAction::Audit {
        errors.push(FieldError::new(
            at(),
            "the dry-run annotation only supports action ALLOW or DENY",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(AuthorizationPolicy {
        namespace: head.namespace.clone(),
        name: head.name.clone(),
        selector: spec
            .selector
            .as_ref()
            .map(|s| Selector::from_match_labels(&s.match_labels)),
        policy: ApiPolicy {
            name: format!("{}/{}", head.namespace, head.name),
            action,
            dry_run,
            rules,
        },
        origin,
    })
}
