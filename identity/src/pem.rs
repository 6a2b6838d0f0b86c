//! PEM reading and writing for certificates and keys, and the file writes that
//! must keep private keys at mode 0600.
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why PEM text could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// go-spiffe `x509svid.Parse`: "no certificates found".
    #[error("no certificates found: no PEM CERTIFICATE block")]
    NoCertificate,
    /// go-spiffe `x509svid.Parse`: "no private key found".
    #[error("no private key found: no PEM private key block")]
    NoKey,
    #[error("malformed PEM: {0}")]
    Malformed(String),
}

/// All `CERTIFICATE` blocks of `text`, in order. Fails if there is none.
pub fn certs(text: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Malformed(e.to_string()))?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certs)
}

/// The first private key of `text` (PKCS#8, SEC1 or PKCS#1).
pub fn private_key(text: &str) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => PemError::NoKey,
        other => PemError::Malformed(other.to_string()),
    })
}

/// Certificates as concatenated PEM blocks.
pub fn encode_certs(certs: &[CertificateDer<'_>]) -> String {
    certs.iter().map(|c| encode("CERTIFICATE", c)).collect()
}

/// One PEM block with 64-column base64.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = crate::b64::encode_standard(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes a public file (certificates, bundles), mode 0644, replacing it.
pub fn write_public(path: &Path, contents: &str) -> std::io::Result<()> {
    write_with_mode(path, contents, 0o644)
}

/// Writes a private key file with mode 0600, set at creation (never readable by
/// others, not even briefly), replacing it atomically.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    write_with_mode(path, contents, 0o600)
}

fn write_with_mode(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)
}
