//! Federated trust bundles: the X.509 roots of other trust domains whose
//! workloads this one accepts as peers (SPIFFE Trust Domain and Bundle,
//! section 5, federation; go-spiffe's `x509bundle.Set`). A bundle vouches
//! only for SPIFFE IDs of its own trust domain: the verifier picks it by the
//! trust domain of the peer's ID, so a federated CA can never issue an
//! identity of the local trust domain, or of a third one.
//!
//! On disk the bundles sit in the SVID directory's `federated/` folder, one
//! file per trust domain named after it: `<trust-domain>.json` (a SPIFFE
//! bundle, as a bundle endpoint serves it) or `<trust-domain>.pem`.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::bundle::{BundleError, TrustBundle};
use crate::spiffe_id::{SpiffeIdError, TrustDomain};

/// The folder of an SVID directory that holds federated bundles.
pub const FEDERATED_DIR: &str = "federated";

/// Why a federated bundle could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path}: the file name must be the trust domain followed by .json (a SPIFFE bundle) or .pem"
    )]
    BadFileName { path: String },
    #[error("{path}: {name:?} is not a trust domain name: {source}")]
    BadTrustDomain {
        path: String,
        name: String,
        source: SpiffeIdError,
    },
    #[error("{path}: {source}")]
    Bundle { path: String, source: BundleError },
    #[error("two federated bundles for trust domain {0}")]
    Duplicate(String),
    #[error(
        "a federated bundle for {0} is the local trust domain (or one of its aliases): its roots belong in bundle.pem"
    )]
    LocalTrustDomain(String),
}

/// Bundles of other trust domains, by trust domain name.
#[derive(Debug, Clone, Default)]
pub struct FederatedBundles {
    by_trust_domain: BTreeMap<String, Arc<TrustBundle>>,
}

impl FederatedBundles {
    /// No federated trust domains.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds the bundle of its trust domain; a second one for the same trust
    /// domain is refused.
    pub fn insert(&mut self, bundle: TrustBundle) -> Result<(), FederationError> {
        let td = bundle.trust_domain().as_str().to_string();
        if self.by_trust_domain.contains_key(&td) {
            return Err(FederationError::Duplicate(td));
        }
        self.by_trust_domain.insert(td, Arc::new(bundle));
        Ok(())
    }

    /// The bundle of trust domain `td`, if federated.
    pub fn get(&self, td: &str) -> Option<&TrustBundle> {
        self.by_trust_domain.get(td).map(|b| &**b)
    }

    /// The federated trust domain names, sorted.
    pub fn trust_domains(&self) -> impl Iterator<Item = &str> {
        self.by_trust_domain.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.by_trust_domain.is_empty()
    }

    /// Refuses a federated bundle for a trust domain `local` accepts (its
    /// own name or an alias): that trust domain has one bundle, the local one.
    pub fn check_against(&self, local: &TrustBundle) -> Result<(), FederationError> {
        match self
            .trust_domains()
            .find(|td| local.accepts_trust_domain(td))
        {
            Some(td) => Err(FederationError::LocalTrustDomain(td.to_string())),
            None => Ok(()),
        }
    }

    /// Reads every `<trust-domain>.json` and `<trust-domain>.pem` in `dir`
    /// (files starting with `.` are skipped, as the `..data` links of a
    /// mounted Kubernetes volume). A missing `dir` is no federation.
    pub fn load_dir(dir: &Path) -> Result<Self, FederationError> {
        let mut bundles = Self::none();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(bundles),
            Err(source) => {
                return Err(FederationError::Io {
                    path: dir.display().to_string(),
                    source,
                });
            }
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| FederationError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            paths.push(entry.path());
        }
        paths.sort();
        for path in paths {
            bundles.insert(read_bundle_file(&path)?)?;
        }
        Ok(bundles)
    }
}

/// One federated bundle file, its trust domain taken from the file name.
pub fn read_bundle_file(path: &Path) -> Result<TrustBundle, FederationError> {
    let shown = path.display().to_string();
    let bad_name = || FederationError::BadFileName {
        path: shown.clone(),
    };
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(bad_name)?;
    let (name, spiffe_json) = if let Some(name) = file_name.strip_suffix(".json") {
        (name, true)
    } else if let Some(name) = file_name.strip_suffix(".pem") {
        (name, false)
    } else {
        return Err(bad_name());
    };
    let td = TrustDomain::new(name).map_err(|source| FederationError::BadTrustDomain {
        path: shown.clone(),
        name: name.to_string(),
        source,
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| FederationError::Io {
        path: shown.clone(),
        source,
    })?;
    // A SPIFFE bundle without x509-svid entries is the trust domain's latest
    // word all the same: its keys are revoked, or it does not support
    // X509-SVID. A bundle without roots, not an error that would keep the
    // roots loaded before in force.
    // An empty (or blank) .pem file is the same word: the trust domain has no
    // X.509 root, so its SVIDs are refused ("…holds no X.509 root"). Text
    // that is not blank must hold certificates.
    let bundle = if spiffe_json {
        TrustBundle::from_spiffe_bundle_or_none(td, &text)
    } else if text.trim().is_empty() {
        Ok(TrustBundle::without_roots(td))
    } else {
        TrustBundle::from_pem(td, &text)
    };
    bundle.map_err(|source| FederationError::Bundle {
        path: shown,
        source,
    })
}
