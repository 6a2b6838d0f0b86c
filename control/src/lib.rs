//! The Palisade control plane: loads the cluster's manifests, compiles per-workload
//! configs, and serves identities and configs to sidecars.
#![forbid(unsafe_code)]
