//! Loading a configuration directory: every `*.yaml`/`*.yml`/`*.json` file
//! below it (recursively, sorted by path), every YAML document in each file,
//! dispatched by `apiVersion` and `kind` into a validated `Cluster`.
//!
//! Errors name the file, the document index, the object and the field path,
//! and are all collected before failing: a directory with any error yields no
//! `Cluster` at all, so nothing half-loaded is ever used. Unknown kinds are
//! skipped (and logged at debug level).
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cluster::{Cluster, IgnoredClientTls, Origin};

mod cidr;
mod istio;
mod kube;
pub use kube::{INJECT_ANNOTATION, ISTIO_INJECT_KEY, OPAQUE_PORTS_ANNOTATION, injection_opt_out};
mod mesh;
mod meta;
mod names;
mod service_entry;
pub(crate) mod yaml11;
pub(crate) use names::valid_port_name;

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    /// 0-based document index; `None` for whole-file problems.
    pub document: Option<usize>,
    /// `Kind ns/name`, when known.
    pub object: Option<String>,
    /// Field path such as `spec.ingress[0].from[1].ipBlock.cidr`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(d) = self.document {
            write!(f, ": document {d}")?;
        }
        if let Some(o) = &self.object {
            write!(f, ": {o}")?;
        }
        if let Some(p) = &self.field {
            write!(f, ": field {p}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems found in a configuration directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} error{} in the configuration:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// A problem inside one object, before the file and document are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            message: message.to_string(),
        }
    }

    /// The same error for an object found at `prefix` (a list item).
    fn under(self, prefix: &str) -> Self {
        let field = match (prefix.is_empty(), self.field.is_empty()) {
            (true, _) => self.field,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{}", self.field),
        };
        Self { field, ..self }
    }
}

/// Deserializes `value` as `T`, reporting the failing field path.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(
    value: serde_yaml::Value,
) -> Result<T, Vec<FieldError>> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        vec![FieldError::new(field, e.into_inner())]
    })
}

/// Loads every manifest below `dir`.
pub fn load_dir(dir: &Path) -> Result<Cluster, LoadErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    if !dir.is_dir() {
        return Err(LoadErrors(vec![LoadError {
            file: dir.to_path_buf(),
            document: None,
            object: None,
            field: None,
            message: "not a directory (expected a directory of Kubernetes YAML manifests)".into(),
        }]));
    }
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        match entry {
            Ok(e) if e.file_type().is_file() && is_manifest(e.path()) => files.push(e.into_path()),
            Ok(_) => {}
            Err(e) => errors.push(LoadError {
                file: e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| dir.to_path_buf()),
                document: None,
                object: None,
                field: None,
                message: e.to_string(),
            }),
        }
    }
    files.sort();
    let mut sources = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => sources.push((file, text)),
            Err(e) => errors.push(LoadError {
                file,
                document: None,
                object: None,
                field: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    match load_sources(&sources) {
        Ok(c) if errors.is_empty() => Ok(c),
        Ok(_) => Err(LoadErrors(errors)),
        Err(LoadErrors(more)) => {
            errors.extend(more);
            Err(LoadErrors(errors))
        }
    }
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Loads manifests given as (file name, text) pairs, in that order. The
/// result does not depend on the order.
pub fn load_sources(sources: &[(PathBuf, String)]) -> Result<Cluster, LoadErrors> {
    let mut loading = Loading::default();
    for (file, text) in sources {
        let shapes = match yaml11::documents(text) {
            Ok(shapes) => shapes,
            Err(deep) => {
                let origin = Origin {
                    file: file.clone(),
                    document: deep.document,
                };
                let fe = FieldError::new("", format!("invalid YAML: {deep}"));
                loading.errors.push(load_error(&origin, None, fe));
                continue;
            }
        };
        for (document, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let origin = Origin {
                file: file.clone(),
                document,
            };
            let mut value = match serde_yaml::Value::deserialize(doc) {
                Ok(v) => v,
                Err(e) => {
                    let fe = FieldError::new("", format!("invalid YAML: {e}"));
                    loading.errors.push(load_error(&origin, None, fe));
                    // A syntax error ends the document stream of this file.
                    break;
                }
            };
            if value.is_null() {
                continue; // empty document, e.g. a trailing `---`
            }
            // Plain scalars as kubectl reads them (YAML 1.1).
            let mut originals = yaml11::Originals::default();
            if let Some(shape) = shapes.get(document) {
                let applied = yaml11::apply(&mut value, shape, &mut originals);
                for fe in applied.errors {
                    loading.errors.push(load_error(&origin, None, fe));
                }
                for w in applied.warnings {
                    tracing::warn!(file = %origin.file.display(), document, field = %w.field, "{}", w.message);
                }
            }
            for (prefix, value) in list_items(value) {
                loading.object(&origin, &prefix, value, &originals);
            }
        }
    }
    let Loading {
        mut cluster,
        mut errors,
        ..
    } = loading;
    // Authorization policies are checked with the evaluator the sidecar uses,
    // once the mesh settings (trust domain aliases) are known.
    let mesh = palisade_api::MeshSettings {
        trust_domain: cluster.mesh.trust_domain.clone(),
        trust_domain_aliases: cluster.mesh.trust_domain_aliases.clone(),
        path_normalization: cluster.mesh.path_normalization,
        cluster_domain: cluster.mesh.cluster_domain.clone(),
        federated_bundles: cluster.mesh.federated_bundles.clone(),
        trust_bundle: String::new(),
        svid_signer: String::new(),
    };
    for ap in &cluster.authorization_policies {
        if let Err(e) = palisade_api::authz::validate_policy(&ap.policy, &mesh) {
            errors.push(LoadError {
                file: ap.origin.file.clone(),
                document: Some(ap.origin.document),
                object: Some(format!("AuthorizationPolicy {}/{}", ap.namespace, ap.name)),
                field: Some(format!("spec.{}", e.location)),
                message: e.message,
            });
        }
    }
    if !errors.is_empty() {
        errors.sort_by(|a, b| (&a.file, a.document).cmp(&(&b.file, b.document)));
        return Err(LoadErrors(errors));
    }
    cluster.finish();
    Ok(cluster)
}

/// A [`LoadError`] for the document at `origin`.
fn load_error(origin: &Origin, object: Option<String>, fe: FieldError) -> LoadError {
    LoadError {
        file: origin.file.clone(),
        document: Some(origin.document),
        object,
        field: if fe.field.is_empty() {
            None
        } else {
            Some(fe.field)
        },
        message: fe.message,
    }
}

/// What [`load_sources`] gathers object by object.
#[derive(Default)]
struct Loading {
    cluster: Cluster,
    errors: Vec<LoadError>,
    /// Where each (kind, namespace, name) was first defined.
    seen: BTreeMap<(String, String, String), Origin>,
    mesh_origin: Option<Origin>,
}

impl Loading {
    /// Reads one object of the document at `origin`, found at `prefix` (a
    /// list item, or empty), into the cluster, or its errors.
    fn object(
        &mut self,
        origin: &Origin,
        prefix: &str,
        value: serde_yaml::Value,
        originals: &yaml11::Originals,
    ) {
        let err = |object: Option<String>, fe: FieldError| {
            let mut fe = fe.under(prefix);
            fe.message = originals.explain(&fe.field, fe.message);
            load_error(origin, object, fe)
        };
        let head = match ObjectHead::read(&value) {
            Ok(h) => h,
            Err(fe) => {
                self.errors.push(err(None, fe));
                return;
            }
        };
        let object = head.describe();
        let cluster = &mut self.cluster;
        let result = match (head.group(), head.kind.as_str()) {
            ("", "Namespace") => kube::namespace(&head, value).map(|n| {
                cluster.namespaces.insert(n.name.clone(), n);
            }),
            ("", "Pod") => kube::pod(&head, value, origin.clone()).map(|p| cluster.pods.push(p)),
            ("", "Service") => {
                kube::service(&head, value, origin.clone()).map(|s| cluster.services.push(s))
            }
            ("networking.k8s.io", "NetworkPolicy") => {
                kube::network_policy(&head, value, origin.clone())
                    .map(|p| cluster.network_policies.push(p))
            }
            ("security.istio.io", "PeerAuthentication") => {
                istio::peer_authentication(&head, value, origin.clone())
                    .map(|p| cluster.peer_authentications.push(p))
            }
            ("security.istio.io", "AuthorizationPolicy") => {
                istio::authorization_policy(&head, value, origin.clone())
                    .map(|p| cluster.authorization_policies.push(p))
            }
            ("networking.istio.io", "ServiceEntry") => {
                service_entry::service_entry(&head, value, origin.clone())
                    .map(|e| cluster.service_entries.push(e))
            }
            ("networking.istio.io", "DestinationRule") => {
                // Not applied (see `IgnoredClientTls`); its TLS modes are
                // kept for `lint` to name.
                let object = head.describe();
                cluster.ignored_client_tls.extend(
                    destination_rule_tls_modes(&value)
                        .into_iter()
                        .map(|(field, mode)| IgnoredClientTls {
                            object: object.clone(),
                            field,
                            mode,
                            origin: origin.clone(),
                        }),
                );
                Ok(())
            }
            ("palisade.dev", "MeshConfig") => {
                if let Some(first) = &self.mesh_origin {
                    Err(vec![FieldError::new(
                        "",
                        format!("a second MeshConfig; the first is at {first}"),
                    )])
                } else {
                    self.mesh_origin = Some(origin.clone());
                    mesh::mesh_config(&head, value).map(|m| cluster.mesh = m)
                }
            }
            _ => {
                tracing::debug!(file = %origin.file.display(), document = origin.document, object = %object, "skipping unknown kind");
                return;
            }
        };
        match result {
            Ok(()) => {
                let key = (head.kind.clone(), head.namespace.clone(), head.name.clone());
                if let Some(first) = self.seen.get(&key) {
                    self.errors.push(err(
                        Some(object),
                        FieldError::new(
                            "metadata.name",
                            format!("duplicate object; first defined at {first}"),
                        ),
                    ));
                } else {
                    self.seen.insert(key, origin.clone());
                }
            }
            Err(fes) => self
                .errors
                .extend(fes.into_iter().map(|fe| err(Some(object.clone()), fe))),
        }
    }
}

/// The objects of one document: the document itself, or the items of a
/// list (`kind: List`, as `kubectl get -o yaml` writes, or a typed list such
/// as `NetworkPolicyList`), each with the field path that leads to it.
/// `kubectl apply` takes lists apart the same way (FlattenListVisitor); an
/// item of a typed list without `apiVersion` or `kind` is of the list's
/// group and version and of its kind without `List`.
fn list_items(value: serde_yaml::Value) -> Vec<(String, serde_yaml::Value)> {
    let item_kind = match value
        .get("kind")
        .and_then(serde_yaml::Value::as_str)
        .and_then(|k| k.strip_suffix("List"))
    {
        Some(k) => k.to_string(),
        None => return vec![(String::new(), value)],
    };
    let mut map = match value {
        serde_yaml::Value::Mapping(m) => m,
        other => return vec![(String::new(), other)],
    };
    let api_version = map.get("apiVersion").cloned();
    let items = match map.remove("items") {
        Some(serde_yaml::Value::Sequence(items)) => items,
        // `items: null` or none: an empty list.
        Some(serde_yaml::Value::Null) | None => Vec::new(),
        Some(other) => {
            map.insert("items".into(), other);
            return vec![(String::new(), serde_yaml::Value::Mapping(map))];
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            if let serde_yaml::Value::Mapping(m) = &mut item
                && !item_kind.is_empty()
            {
                if !m.contains_key("apiVersion")
                    && let Some(v) = &api_version
                {
                    m.insert("apiVersion".into(), v.clone());
                }
                if !m.contains_key("kind") {
                    m.insert("kind".into(), item_kind.clone().into());
                }
            }
            (format!("items[{i}]"), item)
        })
        .collect()
}

/// `apiVersion`, `kind` and the identifying metadata of a document.
#[derive(Debug, Clone)]
pub(crate) struct ObjectHead {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectHead {
    fn read(value: &serde_yaml::Value) -> Result<Self, FieldError> {
        let s = |v: Option<&serde_yaml::Value>, field: &str| -> Result<String, FieldError> {
            match v {
                Some(serde_yaml::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => Err(FieldError::new(field, "must be a non-empty string")),
                None => Err(FieldError::new(field, "missing")),
            }
        };
        if !value.is_mapping() {
            return Err(FieldError::new(
                "",
                "a manifest must be a mapping with apiVersion and kind",
            ));
        }
        let api_version = s(value.get("apiVersion"), "apiVersion")?;
        let kind = s(value.get("kind"), "kind")?;
        let meta = value.get("metadata");
        let name = s(meta.and_then(|m| m.get("name")), "metadata.name")?;
        let namespace = match meta.and_then(|m| m.get("namespace")) {
            None => String::new(),
            Some(v) => s(Some(v), "metadata.namespace")?,
        };
        let mut head = Self {
            api_version,
            kind,
            namespace,
            name,
        };
        if head.namespaced() && head.namespace.is_empty() {
            // `kubectl apply` without `-n` puts objects into `default`.
            head.namespace = "default".into();
        }
        Ok(head)
    }

    fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }

    fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(_, v)| v)
            .unwrap_or(&self.api_version)
    }

    fn namespaced(&self) -> bool {
        !matches!(self.kind.as_str(), "Namespace" | "MeshConfig")
    }

    fn describe(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The `tls.mode`s a DestinationRule sets, with their field paths: in
/// `spec.trafficPolicy`, its `portLevelSettings`, and the same in each of
/// `spec.subsets`.
fn destination_rule_tls_modes(value: &serde_yaml::Value) -> Vec<(String, String)> {
    fn policy(at: &str, p: Option<&serde_yaml::Value>, out: &mut Vec<(String, String)>) {
        let Some(p) = p else { return };
        let mode = |v: &serde_yaml::Value| {
            v.get("tls")
                .and_then(|t| t.get("mode"))
                .and_then(serde_yaml::Value::as_str)
                .map(str::to_string)
        };
        if let Some(m) = mode(p) {
            out.push((format!("{at}.tls.mode"), m));
        }
        for (i, pls) in p
            .get("portLevelSettings")
            .and_then(serde_yaml::Value::as_sequence)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(m) = mode(pls) {
                out.push((format!("{at}.portLevelSettings[{i}].tls.mode"), m));
            }
        }
    }
    let mut out = Vec::new();
    let spec = value.get("spec");
    policy(
        "spec.trafficPolicy",
        spec.and_then(|s| s.get("trafficPolicy")),
        &mut out,
    );
    for (i, subset) in spec
        .and_then(|s| s.get("subsets"))
        .and_then(serde_yaml::Value::as_sequence)
        .into_iter()
        .flatten()
        .enumerate()
    {
        policy(
            &format!("spec.subsets[{i}].trafficPolicy"),
            subset.get("trafficPolicy"),
            &mut out,
        );
    }
    out
}
