//! The join token file written by `palisade token create`: the one-time
//! token, the workload it is bound to, the SPIFFE ID that workload runs as,
//! and the trust bundle (PEM) the proxy uses to verify the control plane
//! before it has an SVID of its own.
//!
//! ```text
//! token: pjt_...
//! workload: ns/pod
//! identity: spiffe://td/ns/ns/sa/sa
//! -----BEGIN CERTIFICATE-----
//! ...
//! ```
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path} has no `token:` line")]
    NoToken { path: String },
    #[error("token file {path}: line {line}: {reason}")]
    BadLine {
        path: String,
        line: usize,
        reason: String,
    },
}

/// A parsed token file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFile {
    pub token: String,
    pub workload: Option<String>,
    pub identity: Option<String>,
    /// The PEM certificates found in the file (may be empty).
    pub bundle_pem: String,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses the text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, TokenFileError> {
        let mut token = None;
        let mut workload = None;
        let mut identity = None;
        let mut bundle_pem = String::new();
        let mut in_pem = false;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.starts_with("-----BEGIN ") {
                in_pem = true;
            }
            if in_pem {
                bundle_pem.push_str(line);
                bundle_pem.push('\n');
                if line.starts_with("-----END ") {
                    in_pem = false;
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| TokenFileError::BadLine {
                path: origin.to_owned(),
                line: i + 1,
                reason: reason.to_owned(),
            };
            // A bare token line (older format / hand-made file).
            if !line.contains(':') && token.is_none() {
                token = Some(line.to_owned());
                continue;
            }
            let (key, value) = line
                .split_once(':')
                .ok_or_else(|| bad("expected `key: value`"))?;
            let value = value.trim().to_owned();
            match key.trim() {
                "token" => token = Some(value),
                "workload" => workload = Some(value),
                "identity" => identity = Some(value),
                "expires" | "created" => {}
                other => return Err(bad(&format!("unknown key {other:?}"))),
            }
        }
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TokenFileError::NoToken {
                path: origin.to_owned(),
            })?;
        Ok(Self {
            token,
            workload,
            identity,
            bundle_pem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_bundle() {
        let t = TokenFile::parse(
            "# c\ntoken: pjt_ab\nworkload: a/b\nidentity: spiffe://td/ns/a/sa/s\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "t",
        )
        .unwrap();
        assert_eq!(t.token, "pjt_ab");
        assert_eq!(t.workload.as_deref(), Some("a/b"));
        assert_eq!(t.identity.as_deref(), Some("spiffe://td/ns/a/sa/s"));
        assert!(t.bundle_pem.contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn missing_token_and_junk_are_errors() {
        assert!(matches!(
            TokenFile::parse("workload: a/b\n", "t"),
            Err(TokenFileError::NoToken { .. })
        ));
        assert!(matches!(
            TokenFile::parse("token: x\nfoo: bar\n", "t"),
            Err(TokenFileError::BadLine { line: 2, .. })
        ));
    }
}
