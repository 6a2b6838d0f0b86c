//! The rustls crypto provider, chosen explicitly by cargo feature (never the
//! process-wide default): `aws-lc-rs` (default) or `ring`, with the cipher
//! suites in the mesh's order of preference.
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!("palisade-identity needs the `aws-lc-rs` or the `ring` feature");

/// The provider Palisade uses: aws-lc-rs when its feature is on, else ring.
/// Built once, then shared.
pub fn default_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            #[cfg(feature = "aws-lc-rs")]
            {
                aws_lc_rs()
            }
            #[cfg(not(feature = "aws-lc-rs"))]
            {
                ring()
            }
        })
        .clone()
}

/// The aws-lc-rs provider.
#[cfg(feature = "aws-lc-rs")]
pub fn aws_lc_rs() -> Arc<CryptoProvider> {
    Arc::new(aes128_first(rustls::crypto::aws_lc_rs::default_provider()))
}

/// The ring provider.
#[cfg(feature = "ring")]
pub fn ring() -> Arc<CryptoProvider> {
    Arc::new(aes128_first(rustls::crypto::ring::default_provider()))
}

/// Puts the AES-128-GCM suites first, keeping the rest in the provider's
/// order. rustls offers AES-256-GCM first; BoringSSL (Envoy, so Istio's
/// sidecars) and Go prefer AES-128-GCM on CPUs with AES instructions, which
/// is as strong for a mesh link (128-bit security, like the P-256 keys) and
/// about 6% less sidecar CPU per byte in `MODES=bulk bench/mesh.sh` (ten
/// alternating rounds of 1 GiB). Peers that prefer AES-256 still get it: a
/// rustls server follows the client's order.
fn aes128_first(mut provider: CryptoProvider) -> CryptoProvider {
    use rustls::CipherSuite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS13_AES_128_GCM_SHA256,
    };
    provider.cipher_suites.sort_by_key(|suite| {
        let aes128 = matches!(
            suite.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        (suite.tls13().is_none(), !aes128)
    });
    provider
}

#[cfg(all(test, feature = "aws-lc-rs"))]
mod tests {
    use super::*;

    #[test]
    fn aes128_gcm_is_preferred_and_no_suite_is_lost() {
        let original = rustls::crypto::aws_lc_rs::default_provider().cipher_suites;
        let ordered = default_provider().cipher_suites.clone();
        assert_eq!(ordered.len(), original.len());
        assert_eq!(
            ordered[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        // TLS 1.3 suites still come before TLS 1.2 ones, AES-128 first in each.
        let names: Vec<_> = ordered.iter().map(|s| format!("{:?}", s.suite())).collect();
        let first_tls12 = names
            .iter()
            .position(|n| !n.starts_with("TLS13"))
            .unwrap_or(names.len());
        assert!(
            names[..first_tls12].iter().all(|n| n.starts_with("TLS13")),
            "{names:?}"
        );
    }
}
