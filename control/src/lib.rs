//! The Palisade control plane: loads the cluster's manifests, compiles per-workload
//! configs, and serves identities and configs to sidecars; plus the operator CLI.
#![forbid(unsafe_code)]

pub mod cli;
pub mod server;
