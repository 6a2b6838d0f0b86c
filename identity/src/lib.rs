//! SPIFFE identity for the mesh: IDs, the CA, X509-SVID issue and verification,
//! rustls client and server configs, and rotation of the credentials they use.
//!
//! The usual flow for a component that holds an SVID on disk:
//! [`Credentials::load_dir`] → [`CredentialStore::new`] → [`server_config`] /
//! [`client_config`] → after the handshake, [`peer_spiffe_id`].
#![forbid(unsafe_code)]

pub mod b64;
pub mod bundle;
pub mod ca;
pub mod ca_rotation;
mod constrained_path;
pub mod credentials;
pub mod federation;
mod name_constraints;
pub mod pem;
pub mod provider;
pub mod spiffe_id;
pub mod tls;
pub mod verify;

pub use bundle::{BundleError, SpiffeBundle, SpiffeBundleError, TrustBundle};
pub use ca::{CaError, CaOptions, CertificateAuthority, IssuedSvid};
pub use credentials::{CredentialStore, Credentials, CredentialsError};
pub use federation::{FederatedBundles, FederationError};
pub use spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};
pub use tls::{
    TlsError, TlsOptions, client_config, client_config_with, peer_spiffe_id, server_config,
    server_config_with, server_verified_client_config,
};
pub use verify::{PeerRole, SvidError, verify_svid_chain};
