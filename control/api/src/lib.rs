//! The wire contract between the control plane and the sidecar.
#![forbid(unsafe_code)]

pub mod config;
pub mod stream;
pub use config::*;
