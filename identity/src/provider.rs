//! The rustls crypto provider, chosen explicitly by cargo feature (never the
//! process-wide default): `aws-lc-rs` (default) or `ring`.
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
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The ring provider.
#[cfg(feature = "ring")]
pub fn ring() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
