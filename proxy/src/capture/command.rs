//! Running the netfilter tools (`iptables`, `ip6tables`, `iptables-restore`,
//! `nft`) with errors that say how to fix the problem: which package is
//! missing, or which capability is lacking.
use std::io::{self, Write};
use std::process::{Command, Stdio};

/// Why a capture or netfilter step failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("`{tool}` was not found in PATH: install the Debian package `{package}`")]
    MissingTool { tool: String, package: &'static str },
    #[error(
        "`{command}` was not permitted ({stderr}): run it as root or with CAP_NET_ADMIN \
         in the pod's network namespace"
    )]
    NotPermitted { command: String, stderr: String },
    #[error("`{command}` failed with {status}: {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("running `{command}`: {source}")]
    Io { command: String, source: io::Error },
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

/// The Debian package that ships `tool`.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "nft" => "nftables",
        _ => "iptables",
    }
}

/// Runs `tool args...`, feeding `stdin` if given; returns stdout.
pub(crate) fn run(tool: &str, args: &[&str], stdin: Option<&str>) -> Result<String, CaptureError> {
    let command = format!("{tool} {}", args.join(" "));
    tracing::debug!(%command, "running");
    let mut child = match Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CaptureError::MissingTool {
                tool: tool.to_string(),
                package: package_of(tool),
            });
        }
        Err(source) => return Err(CaptureError::Io { command, source }),
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|source| CaptureError::Io {
                command: command.clone(),
                source,
            })?;
        // Dropping the pipe closes it, so the tool sees end of input.
    }
    let out = child
        .wait_with_output()
        .map_err(|source| CaptureError::Io {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("permission denied") || lower.contains("operation not permitted") {
        return Err(CaptureError::NotPermitted { command, stderr });
    }
    Err(CaptureError::Failed {
        command,
        status: out.status.to_string(),
        stderr,
    })
}

/// Runs `tool args...` and reports only whether it exited 0; used for the
/// `iptables -C` existence checks. A missing tool is still an error.
pub(crate) fn succeeds(tool: &str, args: &[&str]) -> Result<bool, CaptureError> {
    match run(tool, args, None) {
        Ok(_) => Ok(true),
        Err(CaptureError::Failed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_the_package() {
        let err = run("palisade-no-such-tool", &[], None).unwrap_err();
        assert!(matches!(err, CaptureError::MissingTool { .. }), "{err}");
        assert!(
            err.to_string().contains("install the Debian package"),
            "{err}"
        );
    }

    #[test]
    fn failure_carries_stderr() {
        let err = run("sh", &["-c", "echo boom >&2; exit 3"], None).unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        assert!(!succeeds("sh", &["-c", "exit 1"]).unwrap());
        assert!(succeeds("sh", &["-c", "exit 0"]).unwrap());
    }

    #[test]
    fn stdin_is_fed() {
        assert_eq!(run("cat", &[], Some("hello")).unwrap(), "hello");
    }
}
