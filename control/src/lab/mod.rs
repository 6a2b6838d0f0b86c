//! `palisade lab`: the cluster of a manifest directory brought up as real
//! network namespaces on this host, with real sidecars, so what policies
//! allow can be observed and compared with what `palisade check` predicts.
//!
//! Layout (every name starts with `palisade-lab`, so `lab down` finds all):
//! - `palisade-lab-net`: the hub namespace, holding the bridge
//!   `palisade-br0` (198.19.254.1/15) and the control plane;
//! - `palisade-lab-p<i>`: one namespace per Pod, `eth0` at its
//!   `status.podIP` (from 198.18.0.0/15), running the capture rules, the
//!   sidecar, `palisade lab echo` and, for UDP and SCTP Services, the
//!   lab's stand-in for kube-proxy (`kube_proxy`);
//! - `palisade-lab-outside`: the world outside the cluster, holding every
//!   external address as a host address and answering on every port.
//!
//! State (addresses, PIDs, logs) lives in the state directory, by default
//! `/run/palisade-lab`.

mod capture;
pub mod cli;
mod echo;
mod host;
mod kube_proxy;
mod matrix;
mod plan;
mod probe;
mod report;
mod run;

pub use capture::{WireSummary, summarize};
pub use echo::EchoArgs;
pub use plan::{LabPlan, LabPod};
pub use probe::{ProbeResult, Verdict};

use thiserror::Error;

/// Default state directory.
pub const STATE_DIR: &str = "/run/palisade-lab";
/// Prefix of every namespace the lab creates.
pub const NETNS_PREFIX: &str = "palisade-lab";
pub const HUB_NETNS: &str = "palisade-lab-net";
pub const OUTSIDE_NETNS: &str = "palisade-lab-outside";
pub const BRIDGE: &str = "palisade-br0";

#[derive(Debug, Error)]
pub enum LabError {
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
