//! Log lines with a fixed shape: one per denied connection or request
//! (target `palisade::deny`, naming layer, policy and rule), and the
//! switchable access log (target `palisade::access`). The binary renders
//! them as JSON.
use std::net::SocketAddr;

use crate::metrics::{Direction, Layer};
use crate::policy::Denied;

pub fn denied_connection(
    direction: Direction,
    layer: Layer,
    client: SocketAddr,
    dest: SocketAddr,
    identity: Option<&str>,
    denied: &Denied,
) {
    tracing::warn!(
        target: "palisade::deny",
        direction = ?direction,
        layer = ?layer,
        client = %client,
        dest = %dest,
        peer_identity = identity.unwrap_or(""),
        policy = %denied.policy,
        rule = %denied.rule,
        reason = %denied.reason,
        "connection denied"
    );
}

#[allow(clippy::too_many_arguments)]
pub fn denied_request(
    layer: Layer,
    client: SocketAddr,
    dest: SocketAddr,
    identity: Option<&str>,
    method: &str,
    path: &str,
    denied: &Denied,
) {
    tracing::warn!(
        target: "palisade::deny",
        direction = "Inbound",
        layer = ?layer,
        client = %client,
        dest = %dest,
        peer_identity = identity.unwrap_or(""),
        method,
        path,
        policy = %denied.policy,
        rule = %denied.rule,
        reason = %denied.reason,
        "request denied"
    );
}

pub fn access(
    direction: Direction,
    client: SocketAddr,
    dest: SocketAddr,
    identity: Option<&str>,
    method: &str,
    path: &str,
    status: u16,
) {
    tracing::info!(
        target: "palisade::access",
        direction = ?direction,
        client = %client,
        dest = %dest,
        peer_identity = identity.unwrap_or(""),
        method,
        path,
        status,
        "request"
    );
}
