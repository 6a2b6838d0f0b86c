//! Typed socket addresses, so a connection's source can never stand where its
//! destination is expected (after linkerd's `proxy/transport/src/addrs.rs`).
use std::fmt;
use std::net::SocketAddr;

/// The remote end of an accepted connection: who connected to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);

/// Where the client meant to connect before the capture rules redirected the
/// connection to the sidecar (or, without capture, the listener's own address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrigDstAddr(pub SocketAddr);

impl ClientAddr {
    pub fn addr(self) -> SocketAddr {
        self.0
    }
}

impl OrigDstAddr {
    pub fn addr(self) -> SocketAddr {
        self.0
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for OrigDstAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the plain IPv4 address,
/// so policy matching sees one form of each address.
pub fn to_canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_unmaps_ipv4_mapped_ipv6() {
        let mapped: SocketAddr = "[::ffff:198.18.0.1]:80".parse().unwrap();
        assert_eq!(to_canonical(mapped), "198.18.0.1:80".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        assert_eq!(to_canonical(v6), v6);
    }
}
