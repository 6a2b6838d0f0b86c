//! Transparent capture: the original destination of a redirected connection
//! ([`orig_dst`]), the iptables rules that redirect a pod's TCP traffic to the
//! sidecar ([`init`], run as `palisade-proxy init`), and the nftables rules
//! that enforce NetworkPolicy on the non-TCP traffic the proxy never sees
//! ([`netfilter`]).
//!
//! The data path uses [`orig_dst_addr_or_default`] on every accepted
//! connection, [`netfilter::apply`] on every config version, and the CLI adds
//! [`InitArgs`] as its `init` subcommand.
pub mod addrs;
pub mod cidr;
mod command;
pub mod init;
pub mod netfilter;
pub mod orig_dst;
pub mod service_nat;

pub use addrs::{ClientAddr, OrigDstAddr, to_canonical};
pub use cidr::Cidr;
pub use command::CaptureError;
pub use init::{InitArgs, InitOptions};
pub use orig_dst::{orig_dst_addr, orig_dst_addr_or_default};
