//! Sidecars in test pods: a throwaway mesh CA that writes SVID directories,
//! and [`Sidecar`], which runs the real `palisade-proxy init` and
//! `palisade-proxy run` inside a pod as the dedicated proxy UID.
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use palisade_identity::{CaOptions, CertificateAuthority, SpiffeId, TrustDomain};

use crate::netns::Pod;
use crate::{HarnessError, Result};

/// The UID the sidecars run as in the tests (Istio's convention).
pub const PROXY_UID: u32 = 1337;

/// A mesh CA for one test, and a temp dir for the files it writes.
pub struct MeshCa {
    ca: CertificateAuthority,
    dir: tempfile::TempDir,
}

impl MeshCa {
    pub fn new(trust_domain: &str) -> Result<MeshCa> {
        let td = TrustDomain::new(trust_domain).map_err(|e| HarnessError::Setup(e.to_string()))?;
        let ca = CertificateAuthority::create(&td, &CaOptions::default())
            .map_err(|e| HarnessError::Setup(e.to_string()))?;
        let dir = tempfile::Builder::new()
            .prefix("palisade-mesh-")
            .tempdir()?;
        chown(dir.path(), Some(PROXY_UID), Some(PROXY_UID))?;
        Ok(MeshCa { ca, dir })
    }

    /// Writes `svid.pem`, `svid.key`, `bundle.pem` for `id` into a fresh
    /// directory readable by the proxy UID only.
    pub fn svid_dir(&self, name: &str, id: &str) -> Result<PathBuf> {
        let id = SpiffeId::parse(id).map_err(|e| HarnessError::Setup(e.to_string()))?;
        let svid = self
            .ca
            .issue(&id, Duration::from_secs(3600))
            .map_err(|e| HarnessError::Setup(e.to_string()))?;
        let dir = self.dir.path().join(name);
        palisade_identity::credentials::write_svid_dir(
            &dir,
            &svid.chain,
            svid.key.as_ref(),
            self.ca.bundle(),
        )?;
        chown_tree(&dir)?;
        Ok(dir)
    }

    /// Writes a file (e.g. a ProxyConfig) the proxy UID can read.
    pub fn write(&self, name: &str, contents: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents)?;
        chown(&path, Some(PROXY_UID), Some(PROXY_UID))?;
        Ok(path)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn chown_tree(dir: &Path) -> Result<()> {
    chown(dir, Some(PROXY_UID), Some(PROXY_UID))?;
    for entry in std::fs::read_dir(dir)? {
        chown(entry?.path(), Some(PROXY_UID), Some(PROXY_UID))?;
    }
    Ok(())
}

/// A running sidecar in a pod.
pub struct Sidecar {
    pub pid: u32,
    pub log: PathBuf,
}

impl Sidecar {
    /// Installs capture with `palisade-proxy init` (the proxy UID excluded)
    /// and starts `palisade-proxy run` as the proxy UID; returns once its
    /// admin `/ready` answers 200. `extra` are further `run` flags.
    pub fn start(
        pod: &Pod,
        binary: &str,
        config: &Path,
        svid_dir: &Path,
        extra: &[&str],
    ) -> Result<Sidecar> {
        Self::start_with(pod, binary, config, svid_dir, extra, false)
    }

    /// [`Sidecar::start`]; with `net_admin` the proxy keeps CAP_NET_ADMIN
    /// (for `--netfilter`).
    pub fn start_with(
        pod: &Pod,
        binary: &str,
        config: &Path,
        svid_dir: &Path,
        extra: &[&str],
        net_admin: bool,
    ) -> Result<Sidecar> {
        let uid = PROXY_UID.to_string();
        let mut init = pod.command(binary);
        init.args(["init", "--proxy-uid", &uid]);
        let out = init.output()?;
        if !out.status.success() {
            return Err(HarnessError::Command {
                command: format!("{binary} init"),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let log = std::env::temp_dir().join(format!("palisade-sidecar-{}.log", pod.ns));
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = if net_admin {
            pod.command_as_net_admin(PROXY_UID, binary)
        } else {
            pod.command_as(PROXY_UID, binary)
        };
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .arg("--svid-dir")
            .arg(svid_dir)
            .args(["--config-poll", "200ms", "--workers", "1"])
            .args(extra)
            // PALISADE_SIDECAR_LOG=debug to see more when a test fails.
            .env(
                "RUST_LOG",
                std::env::var("PALISADE_SIDECAR_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log_file);
        let pid = pod.spawn(cmd)?;
        let sidecar = Sidecar { pid, log };
        sidecar.wait_ready(pod)?;
        Ok(sidecar)
    }

    fn wait_ready(&self, pod: &Pod) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = pod.exited(self.pid) {
                return Err(HarnessError::Setup(format!(
                    "the sidecar in {} exited with {status}: {}",
                    pod.ns,
                    self.log_text()
                )));
            }
            let out = pod.exec(&[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-m",
                "1",
                "http://127.0.0.1:15000/ready",
            ])?;
            if String::from_utf8_lossy(&out.stdout) == "200" {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(HarnessError::Setup(format!(
                    "the sidecar in {} was not ready within 10s: {}",
                    pod.ns,
                    self.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The sidecar's log so far (JSON lines), for assertions and failures.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}
