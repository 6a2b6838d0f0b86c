//! The network-namespace test harness shared by the end-to-end tests: test
//! "pods" in their own network namespaces, wired to a bridge that lives in a
//! dedicated `palisade-net-*` namespace (nothing touches the host network),
//! processes spawned inside them and killed on drop, packet capture on the
//! wire, and checks that fail with the Debian package to install.
//!
//! Everything is named with a `palisade-` prefix and removed on drop (also
//! when a test panics); [`cleanup_stale`] removes what a killed run left.
pub mod capture;
pub mod mesh;
pub mod netns;
pub mod require;
pub mod udp;

pub use capture::Capture;
pub use mesh::{MeshCa, PROXY_UID, Sidecar};
pub use netns::{Pod, TestNet, cleanup_stale};
pub use require::{require_root, require_tools};

/// Why a harness step failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
