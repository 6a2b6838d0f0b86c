//! The Palisade sidecar: a transparent inbound and outbound proxy that speaks
//! mTLS with SPIFFE identities and enforces NetworkPolicy and authorization.

pub mod capture;
pub mod control_client;
