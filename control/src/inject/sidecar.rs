//! Builds the two containers and the volume one injection adds, and places
//! them in the pod spec.
use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use super::options::InjectOptions;
use super::probes::AppProbes;
use super::{
    ANNOTATION_EXCLUDE_INBOUND_PORTS, ANNOTATION_EXCLUDE_OUTBOUND_CIDRS,
    ANNOTATION_EXCLUDE_OUTBOUND_PORTS,
};

pub const PROXY_NAME: &str = "palisade-proxy";
pub const INIT_NAME: &str = "palisade-init";
const TOKEN_VOLUME: &str = "palisade-token";
const TOKEN_DIR: &str = "/var/run/palisade/token";

/// Adds the capture init container, the sidecar and the token volume.
pub fn add(
    spec: &mut Mapping,
    annotations: &BTreeMap<String, String>,
    app_probes: &AppProbes,
    options: &InjectOptions,
) -> Result<(), String> {
    let init = init_container(annotations, options)?;
    let proxy = proxy_container(app_probes, options);
    if options.legacy_sidecar {
        prepend(spec, "initContainers", vec![init])?;
        prepend(spec, "containers", vec![proxy])?;
    } else {
        prepend(spec, "initContainers", vec![init, proxy])?;
    }
    let volume = yaml(&format!(
        "name: {TOKEN_VOLUME}\nsecret:\n  secretName: {}\n  defaultMode: 292\n",
        options.token_secret
    ));
    append(spec, "volumes", volume)
}

fn prepend(spec: &mut Mapping, list: &str, items: Vec<Value>) -> Result<(), String> {
    let entry = spec
        .entry(Value::from(list))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    let Some(seq) = entry.as_sequence_mut() else {
        return Err(format!("spec.{list} is not a list"));
    };
    seq.splice(0..0, items);
    Ok(())
}

fn append(spec: &mut Mapping, list: &str, item: Value) -> Result<(), String> {
    let entry = spec
        .entry(Value::from(list))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    let Some(seq) = entry.as_sequence_mut() else {
        return Err(format!("spec.{list} is not a list"));
    };
    seq.push(item);
    Ok(())
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or(Value::Null)
}

/// Checks a comma-separated annotation of ports or CIDRs and returns it
/// without spaces.
fn list_annotation(
    annotations: &BTreeMap<String, String>,
    key: &str,
    check: fn(&str) -> bool,
) -> Result<Option<String>, String> {
    let Some(raw) = annotations.get(key) else {
        return Ok(None);
    };
    let items: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = items.iter().find(|item| !check(item)) {
        return Err(format!("annotation {key}: {bad:?} is not valid"));
    }
    Ok((!items.is_empty()).then(|| items.join(",")))
}

fn is_port(s: &str) -> bool {
    s.parse::<u16>().is_ok_and(|p| p > 0)
}

fn is_cidr(s: &str) -> bool {
    s.parse::<ipnet::IpNet>().is_ok() || s.parse::<std::net::IpAddr>().is_ok()
}

fn init_container(
    annotations: &BTreeMap<String, String>,
    options: &InjectOptions,
) -> Result<Value, String> {
    let mut args = vec![
        "init".to_string(),
        "--proxy-uid".into(),
        options.proxy_uid.to_string(),
        "--inbound-port".into(),
        options.inbound_port.to_string(),
        "--outbound-port".into(),
        options.outbound_port.to_string(),
    ];
    // The kubelet reaches the admin port (rewritten probes, metrics) directly.
    let mut inbound_excluded = options.admin_port.to_string();
    if let Some(extra) = list_annotation(annotations, ANNOTATION_EXCLUDE_INBOUND_PORTS, is_port)? {
        inbound_excluded = format!("{inbound_excluded},{extra}");
    }
    args.extend(["--exclude-inbound-ports".into(), inbound_excluded]);
    if let Some(ports) = list_annotation(annotations, ANNOTATION_EXCLUDE_OUTBOUND_PORTS, is_port)? {
        args.extend(["--exclude-outbound-ports".into(), ports]);
    }
    if let Some(cidrs) = list_annotation(annotations, ANNOTATION_EXCLUDE_OUTBOUND_CIDRS, is_cidr)? {
        args.extend(["--exclude-outbound-cidrs".into(), cidrs]);
    }
    let mut container = Mapping::new();
    container.insert("name".into(), INIT_NAME.into());
    container.insert("image".into(), options.image.clone().into());
    container.insert("command".into(), yaml("[palisade-proxy]"));
    container.insert(
        "args".into(),
        Value::Sequence(args.into_iter().map(Value::from).collect()),
    );
    container.insert("resources".into(), resources(options));
    container.insert(
        "securityContext".into(),
        yaml(
            "runAsUser: 0\nrunAsGroup: 0\nrunAsNonRoot: false\nprivileged: false\n\
             allowPrivilegeEscalation: false\nreadOnlyRootFilesystem: true\n\
             capabilities:\n  drop: [ALL]\n  add: [NET_ADMIN, NET_RAW]\n",
        ),
    );
    Ok(Value::Mapping(container))
}

fn proxy_container(app_probes: &AppProbes, options: &InjectOptions) -> Value {
    let admin = options.admin_port;
    let mut container = Mapping::new();
    container.insert("name".into(), PROXY_NAME.into());
    container.insert("image".into(), options.image.clone().into());
    if !options.legacy_sidecar {
        container.insert("restartPolicy".into(), "Always".into());
    }
    container.insert("command".into(), yaml("[palisade-proxy]"));
    let args = [
        "run",
        "--control",
        &options.control_url,
        "--workload",
        "$(POD_NAMESPACE)/$(POD_NAME)",
        "--token",
        &format!("{TOKEN_DIR}/token"),
        "--admin-listen",
        &format!("0.0.0.0:{admin}"),
    ];
    container.insert(
        "args".into(),
        Value::Sequence(args.iter().map(|a| Value::from(*a)).collect()),
    );
    let mut env = vec![
        yaml("name: POD_NAME\nvalueFrom:\n  fieldRef:\n    fieldPath: metadata.name\n"),
        yaml("name: POD_NAMESPACE\nvalueFrom:\n  fieldRef:\n    fieldPath: metadata.namespace\n"),
    ];
    if !app_probes.is_empty() {
        let mut probe = Mapping::new();
        probe.insert("name".into(), "PALISADE_APP_PROBES".into());
        let json = serde_json::to_string(app_probes).unwrap_or_default();
        probe.insert("value".into(), json.into());
        env.push(Value::Mapping(probe));
    }
    container.insert("env".into(), Value::Sequence(env));
    container.insert(
        "ports".into(),
        yaml(&format!(
            "- name: palisade-admin\n  containerPort: {admin}\n  protocol: TCP\n"
        )),
    );
    let ready = format!("httpGet:\n  path: /ready\n  port: {admin}\n");
    if options.legacy_sidecar {
        // The kubelet starts containers in order and waits for a postStart
        // hook to finish before starting the next one: the app is held until
        // the proxy is ready.
        container.insert(
            "lifecycle".into(),
            yaml(&format!(
                "postStart:\n  exec:\n    command: [palisade-proxy, wait-ready, --admin, \
                 '127.0.0.1:{admin}', --timeout, 120s]\n"
            )),
        );
    } else {
        // A native sidecar's startup probe must pass before the next
        // container starts: the app starts after the proxy is ready.
        container.insert(
            "startupProbe".into(),
            yaml(&format!("{ready}periodSeconds: 1\nfailureThreshold: 600\n")),
        );
    }
    container.insert(
        "readinessProbe".into(),
        yaml(&format!("{ready}periodSeconds: 5\n")),
    );
    container.insert(
        "livenessProbe".into(),
        yaml(&format!(
            "httpGet:\n  path: /live\n  port: {admin}\nperiodSeconds: 10\nfailureThreshold: 3\n"
        )),
    );
    container.insert("resources".into(), resources(options));
    // NET_ADMIN lets the sidecar rebuild the netfilter rules for UDP and
    // SCTP in its own pod's namespace; nothing else is kept.
    container.insert(
        "securityContext".into(),
        yaml(&format!(
            "runAsUser: {uid}\nrunAsGroup: {uid}\nrunAsNonRoot: true\nprivileged: false\n\
             allowPrivilegeEscalation: false\nreadOnlyRootFilesystem: true\n\
             capabilities:\n  drop: [ALL]\n  add: [NET_ADMIN]\n",
            uid = options.proxy_uid
        )),
    );
    container.insert(
        "volumeMounts".into(),
        yaml(&format!(
            "- name: {TOKEN_VOLUME}\n  mountPath: {TOKEN_DIR}\n  readOnly: true\n"
        )),
    );
    Value::Mapping(container)
}

fn resources(options: &InjectOptions) -> Value {
    let r = &options.resources;
    yaml(&format!(
        "requests:\n  cpu: '{}'\n  memory: '{}'\nlimits:\n  cpu: '{}'\n  memory: '{}'\n",
        r.cpu_request, r.memory_request, r.cpu_limit, r.memory_limit
    ))
}
