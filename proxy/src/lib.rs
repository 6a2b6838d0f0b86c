//! The Palisade sidecar: a transparent inbound and outbound proxy that speaks
//! mTLS with SPIFFE identities and enforces NetworkPolicy and authorization.
//!
//! A connection's way: `listen` accepts, `outbound` (Service translation,
//! egress, peer lookup, pooled mTLS) or `inbound` (detect, L4, HTTP authz,
//! forward); `policy` is the one seam to the shared evaluators, `state` the
//! compiled config in force, `config_watch` its reloads.

pub mod addrs;
pub mod admin;
pub mod app;
pub mod app_probe;
pub mod batched_io;
pub mod cached_family;
pub mod capture;
pub mod config_watch;
pub mod control_client;
pub mod control_mode;
pub mod ctx;
pub mod detect;
pub mod drain;
pub mod early_response;
pub mod fast_map;
pub mod forward;
pub mod grpc;
pub mod h2_windows;
pub mod heap;
pub mod http_activity;
pub mod http_server;
pub mod identity_metrics;
pub mod idle_senders;
pub mod inbound;
pub mod io;
pub mod linger;
pub mod listen;
pub mod logs;
pub mod metrics;
pub mod outbound;
pub mod plain_pool;
pub mod policy;
pub mod prefetch;
pub mod state;
pub mod svid_watch;
pub mod tls;
pub mod tracker;
pub mod trust_change;
