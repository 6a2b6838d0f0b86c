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
    #[error("no PEM CERTIFICATE block found")]
    NoCertificate,
    #[error("no PEM private key block found")]
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
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64_encode(data: &[u8]) -> String {
    base64_encode_with(data, STANDARD, true)
}

/// RFC 4648 section 4 alphabet (PEM, JWK `x5c`).
pub(crate) const STANDARD: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// RFC 4648 section 5 alphabet (JWK key parameters, unpadded).
pub(crate) const URL_SAFE: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 of `data` with `alphabet`, padded with `=` if `pad`.
pub(crate) fn base64_encode_with(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Strict base64 decoding with `alphabet`: padding required if `pad`,
/// forbidden otherwise; no whitespace; unused trailing bits must be zero.
pub(crate) fn base64_decode_with(text: &str, alphabet: &[u8; 64], pad: bool) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let body = if pad {
        if !bytes.len().is_multiple_of(4) {
            return None;
        }
        let pads = bytes.iter().rev().take_while(|&&c| c == b'=').count();
        if pads > 2 {
            return None;
        }
        &bytes[..bytes.len() - pads]
    } else {
        bytes
    };
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut n: u32 = 0;
        for (i, c) in chunk.iter().enumerate() {
            let v = alphabet.iter().position(|a| a == c)?;
            n |= (v as u32) << (18 - 6 * i);
        }
        let [_, b0, b1, b2] = n.to_be_bytes();
        let full = [b0, b1, b2];
        let keep = chunk.len() - 1;
        // Bits past the last whole byte must be zero (canonical encoding).
        if full[keep..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&full[..keep]);
    }
    Some(out)
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
