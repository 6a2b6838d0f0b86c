//! The Palisade control plane: loads the cluster's manifests, compiles per-workload
//! configs, and serves identities and configs to sidecars; plus the operator CLI.
#![forbid(unsafe_code)]

pub mod check;
pub mod cli;
pub mod cluster;
pub mod compile;
pub mod inject;
pub mod kube_mirror;
pub mod lab;
pub mod lint;
pub mod load;
pub mod reach;
pub mod server;
