//! One-time join tokens: `palisade token create` writes them, the control
//! plane consumes them when it signs a proxy's first CSR.
//!
//! Tokens are stored hashed (SHA-256) as `STATE/tokens/<hash>.json`, so a
//! leaked state directory does not leak usable tokens and a running control
//! plane sees new tokens without a restart. Using a token renames its file
//! into `STATE/tokens/used/`; the rename is atomic, so two concurrent uses of
//! one token cannot both win.
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::pki::now_unix;

/// Prefix that makes a join token recognisable in logs and files.
pub const TOKEN_PREFIX: &str = "pjt_";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "join token is not known to this control plane (never issued here, or the state dir differs)"
    )]
    Unknown,
    #[error("join token was already used; create a new one with `palisade token create`")]
    AlreadyUsed,
    #[error("join token expired {ago}s ago; create a new one with `palisade token create`")]
    Expired { ago: i64 },
    #[error("join token is bound to workload {bound}, not {asked}")]
    WrongWorkload { bound: String, asked: String },
    #[error("workload must be NS/POD, got {0:?}")]
    BadWorkload(String),
    #[error("token store {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("token record {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    workload: String,
    created_unix: i64,
    expires_unix: i64,
}

/// The token directory of one state dir.
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: PathBuf,
}

/// A token that passed every check and may be consumed.
#[derive(Debug)]
pub struct ValidToken {
    hash: String,
}

impl TokenStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("tokens"),
        }
    }

    /// Makes a token for `workload` (`NS/POD`) valid for `ttl`; returns it in
    /// clear text (the only time it exists so).
    pub fn create(&self, workload: &str, ttl: Duration) -> Result<String, TokenError> {
        check_workload(workload)?;
        let mut raw = [0u8; 32];
        rand::fill(&mut raw);
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(raw));
        let now = now_unix();
        let record = TokenRecord {
            workload: workload.to_owned(),
            created_unix: now,
            expires_unix: now + ttl.as_secs() as i64,
        };
        let io = |source| TokenError::Io {
            path: self.dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let body = serde_json::to_vec(&record).map_err(|e| TokenError::Corrupt {
            path: self.dir.display().to_string(),
            reason: e.to_string(),
        })?;
        // Write then rename, so the control plane never reads half a record.
        let tmp = self.dir.join(format!(".{}.tmp", hash(&token)));
        std::fs::write(&tmp, body).map_err(io)?;
        std::fs::rename(&tmp, self.path_of(&hash(&token))).map_err(io)?;
        Ok(token)
    }

    /// Checks `token` for `workload` without using it up.
    pub fn check(&self, token: &str, workload: &str) -> Result<ValidToken, TokenError> {
        let token = token.trim();
        if !token.starts_with(TOKEN_PREFIX) || token.len() != TOKEN_PREFIX.len() + 64 {
            return Err(TokenError::Unknown);
        }
        let h = hash(token);
        let path = self.path_of(&h);
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(if self.used_path_of(&h).exists() {
                    TokenError::AlreadyUsed
                } else {
                    TokenError::Unknown
                });
            }
            Err(source) => {
                return Err(TokenError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let record: TokenRecord =
            serde_json::from_slice(&body).map_err(|e| TokenError::Corrupt {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let now = now_unix();
        if now >= record.expires_unix {
            return Err(TokenError::Expired {
                ago: now - record.expires_unix,
            });
        }
        if record.workload != workload {
            return Err(TokenError::WrongWorkload {
                bound: record.workload,
                asked: workload.to_owned(),
            });
        }
        Ok(ValidToken { hash: h })
    }

    /// Uses the token up. Fails with `AlreadyUsed` if another request won.
    pub fn consume(&self, token: ValidToken) -> Result<(), TokenError> {
        let used = self.dir.join("used");
        std::fs::create_dir_all(&used).map_err(|source| TokenError::Io {
            path: used.display().to_string(),
            source,
        })?;
        match std::fs::rename(self.path_of(&token.hash), self.used_path_of(&token.hash)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(TokenError::AlreadyUsed),
            Err(source) => Err(TokenError::Io {
                path: self.dir.display().to_string(),
                source,
            }),
        }
    }

    fn path_of(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.json"))
    }

    fn used_path_of(&self, hash: &str) -> PathBuf {
        self.dir.join("used").join(format!("{hash}.json"))
    }
}

/// The text of a token file as the proxy reads it: the token, the workload,
/// the SPIFFE ID to ask for (when known), then the trust bundle PEM.
pub fn token_file_text(
    token: &str,
    workload: &str,
    identity: Option<&str>,
    bundle_pem: Option<&str>,
    ttl: Duration,
) -> String {
    let mut out = format!(
        "# Palisade join token: one use, bound to {workload}, valid {}s from creation.\ntoken: {token}\nworkload: {workload}\n",
        ttl.as_secs()
    );
    if let Some(id) = identity {
        out.push_str(&format!("identity: {id}\n"));
    }
    if let Some(b) = bundle_pem {
        out.push_str(b.trim_end());
        out.push('\n');
    }
    out
}

/// `NS/POD` with both parts non-empty and no further slash.
pub fn check_workload(workload: &str) -> Result<(), TokenError> {
    match workload.split_once('/') {
        Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') => Ok(()),
        _ => Err(TokenError::BadWorkload(workload.to_owned())),
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_one_time_and_bound_to_its_workload() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let t = store.create("ns1/pod-a", Duration::from_secs(60)).unwrap();
        assert!(matches!(
            store.check(&t, "ns1/pod-b"),
            Err(TokenError::WrongWorkload { .. })
        ));
        let ok = store.check(&t, "ns1/pod-a").unwrap();
        store.consume(ok).unwrap();
        assert!(matches!(
            store.check(&t, "ns1/pod-a"),
            Err(TokenError::AlreadyUsed)
        ));
        assert!(matches!(
            store.check("pjt_nope", "ns1/pod-a"),
            Err(TokenError::Unknown)
        ));
    }

    #[test]
    fn expired_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let t = store.create("ns1/pod-a", Duration::ZERO).unwrap();
        assert!(matches!(
            store.check(&t, "ns1/pod-a"),
            Err(TokenError::Expired { .. })
        ));
    }

    #[test]
    fn bad_workload_names_are_refused() {
        for w in ["", "ns", "/pod", "ns/", "a/b/c"] {
            assert!(check_workload(w).is_err(), "{w}");
        }
    }
}
