//! The wire contract between the control plane and the sidecar.
#![forbid(unsafe_code)]
