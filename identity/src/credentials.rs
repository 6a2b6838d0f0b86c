//! A workload's credentials (its SVID chain, private key and trust bundle) and
//! the [`CredentialStore`] that swaps them atomically: every TLS handshake reads
//! the current value, so a rotation applies to the next handshake with no
//! restart, and established connections are not touched.
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::sign::CertifiedKey;

use crate::bundle::{BundleError, TrustBundle};
use crate::ca::IssuedSvid;
use crate::federation::{FEDERATED_DIR, FederatedBundles, FederationError};
use crate::pem::{self, PemError};
use crate::provider::default_provider;
use crate::spiffe_id::SpiffeId;
use crate::verify::{PeerRole, SvidError, check_leaf, check_signing_cert, verify_svid_federated};

/// File names of an SVID directory (written by `palisade cert issue`).
pub const SVID_CERT_FILE: &str = "svid.pem";
pub const SVID_KEY_FILE: &str = "svid.key";
pub const SVID_BUNDLE_FILE: &str = "bundle.pem";

/// Why credentials could not be loaded or built.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Pem { path: String, source: PemError },
    #[error("trust bundle: {0}")]
    Bundle(#[from] BundleError),
    #[error("own SVID is not a valid X509-SVID: {0}")]
    Svid(#[from] SvidError),
    /// go-spiffe `x509svid.Parse`: "private key validation failed: leaf
    /// certificate does not match private key".
    #[error(
        "private key validation failed: leaf certificate does not match private key (the key is not the one the SVID certifies)"
    )]
    KeyMismatch,
    #[error("private key is unsupported or unusable: {0}")]
    Key(rustls::Error),
    #[error("no private key given")]
    NoKey,
    #[error("federated trust bundles: {0}")]
    Federation(#[from] FederationError),
}

/// One consistent set of credentials: SVID chain + key, the trust bundle,
/// and the bundles of any federated trust domains.
#[derive(Debug)]
pub struct Credentials {
    id: SpiffeId,
    certified_key: Arc<CertifiedKey>,
    bundle: Arc<TrustBundle>,
    federated: Arc<FederatedBundles>,
}

impl Credentials {
    /// Builds credentials, loading the key with the default crypto provider.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        bundle: TrustBundle,
    ) -> Result<Self, CredentialsError> {
        Self::new_with_provider(chain, key, bundle, &default_provider())
    }

    /// Builds credentials, loading the key with `provider` (which then signs in
    /// handshakes). Checks that the leaf is an X509-SVID and the key matches it.
    pub fn new_with_provider(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        bundle: TrustBundle,
        provider: &CryptoProvider,
    ) -> Result<Self, CredentialsError> {
        let leaf = chain.first().ok_or(SvidError::NoCertificate)?;
        let id = check_leaf(leaf)?;
        // go-spiffe x509svid (parsing an SVID): the certificates after the leaf
        // are signing certificates, CA with keyCertSign (X509-SVID 4.1, 4.3).
        for cert in chain.iter().skip(1) {
            check_signing_cert(cert)?;
        }
        let certified_key = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                CredentialsError::KeyMismatch
            }
            other => CredentialsError::Key(other),
        })?;
        Ok(Self {
            id,
            certified_key: Arc::new(certified_key),
            bundle: Arc::new(bundle),
            federated: Arc::new(FederatedBundles::none()),
        })
    }

    /// Credentials from an SVID the CA just issued (with its generated key).
    pub fn from_issued(svid: IssuedSvid, bundle: TrustBundle) -> Result<Self, CredentialsError> {
        let key = svid.key.ok_or(CredentialsError::NoKey)?;
        Self::new(svid.chain, key, bundle)
    }

    /// Reads `dir/svid.pem` (leaf then intermediates), `dir/svid.key`,
    /// `dir/bundle.pem`, and the federated bundles in `dir/federated/` (see
    /// [`crate::federation`]). The bundle's trust domain is the one of the
    /// SVID's ID.
    pub fn load_dir(dir: &Path) -> Result<Self, CredentialsError> {
        let chain = read_pem(&dir.join(SVID_CERT_FILE), pem::certs)?;
        let key = read_pem(&dir.join(SVID_KEY_FILE), pem::private_key)?;
        let roots = read_pem(&dir.join(SVID_BUNDLE_FILE), pem::certs)?;
        let leaf = chain.first().ok_or(SvidError::NoCertificate)?;
        let td = check_leaf(leaf)?.trust_domain();
        let federated = FederatedBundles::load_dir(&dir.join(FEDERATED_DIR))?;
        Self::new(chain, key, TrustBundle::new(td, roots)?)?.with_federated(federated)
    }

    /// The same SVID with another trust bundle (federated bundles kept).
    pub fn with_bundle(&self, bundle: TrustBundle) -> Self {
        Self {
            id: self.id.clone(),
            certified_key: self.certified_key.clone(),
            bundle: Arc::new(bundle),
            federated: self.federated.clone(),
        }
    }

    /// These credentials, accepting peers of the federated trust domains
    /// too. None of them may be the local trust domain or an alias of it.
    pub fn with_federated(self, federated: FederatedBundles) -> Result<Self, CredentialsError> {
        federated.check_against(&self.bundle)?;
        Ok(Self {
            federated: Arc::new(federated),
            ..self
        })
    }

    /// The bundles of other trust domains peers may belong to.
    pub fn federated(&self) -> &FederatedBundles {
        &self.federated
    }

    /// Our own SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The chain and signing key rustls presents.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }

    /// The roots peers are verified against.
    pub fn bundle(&self) -> &Arc<TrustBundle> {
        &self.bundle
    }
}

/// Writes the SVID directory layout: `svid.pem`, `svid.key` (0600, only if a key
/// is given) and `bundle.pem`.
pub fn write_svid_dir(
    dir: &Path,
    chain: &[CertificateDer<'_>],
    key: Option<&PrivateKeyDer<'_>>,
    bundle: &TrustBundle,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    pem::write_public(&dir.join(SVID_CERT_FILE), &pem::encode_certs(chain))?;
    if let Some(key) = key {
        let label = match key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        pem::write_private(
            &dir.join(SVID_KEY_FILE),
            &pem::encode(label, key.secret_der()),
        )?;
    }
    pem::write_public(&dir.join(SVID_BUNDLE_FILE), &bundle.to_pem())
}

fn read_pem<T>(
    path: &Path,
    parse: impl Fn(&str) -> Result<T, PemError>,
) -> Result<T, CredentialsError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|source| CredentialsError::Pem {
        path: path.display().to_string(),
        source,
    })
}

// === impl CredentialStore ===

/// The current credentials, swapped atomically, and the federated bundles
/// the control plane pushed (beside those of the SVID directory). Share it
/// as `Arc<CredentialStore>`.
#[derive(Debug)]
pub struct CredentialStore {
    current: ArcSwap<Credentials>,
    pushed_federation: ArcSwap<FederatedBundles>,
}

impl CredentialStore {
    /// A store holding `creds`.
    pub fn new(creds: Credentials) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(creds),
            pushed_federation: ArcSwap::from_pointee(FederatedBundles::none()),
        })
    }

    /// The credentials now in force (one consistent snapshot).
    pub fn current(&self) -> Arc<Credentials> {
        self.current.load_full()
    }

    /// Replaces SVID and bundle; the next handshake uses them.
    pub fn update(&self, creds: Credentials) {
        tracing::info!(id = %creds.id(), "identity credentials rotated");
        self.current.store(Arc::new(creds));
    }

    /// The federated bundles pushed with the config (the SVID directory's
    /// own are in [`Credentials::federated`]).
    pub fn pushed_federation(&self) -> Arc<FederatedBundles> {
        self.pushed_federation.load_full()
    }

    /// Replaces the pushed federated bundles; the next handshake uses them.
    /// Refused if one is for the local trust domain or an alias of it.
    pub fn set_pushed_federation(
        &self,
        federated: Arc<FederatedBundles>,
    ) -> Result<(), FederationError> {
        federated.check_against(self.current().bundle())?;
        let old = self.pushed_federation.swap(federated.clone());
        let names = |f: &FederatedBundles| f.trust_domains().map(str::to_owned).collect::<Vec<_>>();
        if names(&old) != names(&federated) {
            tracing::info!(trust_domains = ?names(&federated), "federated trust domains changed");
        }
        Ok(())
    }

    /// Verifies a peer's chain against the current local bundle, the SVID
    /// directory's federated bundles and the pushed ones.
    pub fn verify_peer(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        role: PeerRole,
        provider: &CryptoProvider,
    ) -> Result<SpiffeId, SvidError> {
        let creds = self.current();
        let pushed = self.pushed_federation();
        verify_svid_federated(
            creds.bundle(),
            &[creds.federated(), &pushed],
            leaf,
            intermediates,
            now,
            role,
            provider,
        )
    }

    /// Replaces only the trust bundle, keeping the SVID.
    pub fn update_bundle(&self, bundle: TrustBundle) {
        tracing::info!(roots = bundle.roots().len(), "trust bundle rotated");
        self.current.rcu(|cur| cur.with_bundle(bundle.clone()));
    }
}
