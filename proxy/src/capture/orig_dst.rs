//! The original destination of a connection that the capture rules redirected
//! to the sidecar: `SO_ORIGINAL_DST` (IPv4) and `IP6T_SO_ORIGINAL_DST` (IPv6),
//! read with `getsockopt`. This is the crate's one use of `unsafe`.
//!
//! Without capture (a laptop, a benchmark, loopback tests) the kernel has no
//! NAT entry for the connection; [`orig_dst_addr_or_default`] then falls back
//! to the listener's own address, as ztunnel's `src/socket.rs` does.
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use tokio::net::TcpStream;

use super::addrs::{OrigDstAddr, to_canonical};

/// The destination the client connected to before redirection. Fails when the
/// connection was not redirected (no conntrack NAT entry: `ENOENT`).
pub fn orig_dst_addr(stream: &TcpStream) -> io::Result<OrigDstAddr> {
    let fd = stream.as_raw_fd();
    let local = stream.local_addr()?;
    // A dual-stack IPv6 socket carrying IPv4 traffic answers the IPv4 option
    // only, so the address family of the local end decides which to ask first.
    let addr = match local {
        SocketAddr::V4(_) => original_dst_v4(fd)?,
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => original_dst_v4(fd)?,
        SocketAddr::V6(_) => match original_dst_v6(fd) {
            Ok(addr) => addr,
            Err(e6) => original_dst_v4(fd).map_err(|_| e6)?,
        },
    };
    Ok(OrigDstAddr(to_canonical(addr)))
}

/// [`orig_dst_addr`], or the connection's local address when it was not
/// redirected (explicit mode). Errors only if the socket has no local address
/// at all (it was closed under us).
pub fn orig_dst_addr_or_default(stream: &TcpStream) -> io::Result<OrigDstAddr> {
    match orig_dst_addr(stream) {
        Ok(addr) => Ok(addr),
        Err(e) => {
            tracing::trace!(error = %e, "no SO_ORIGINAL_DST; using the local address");
            Ok(OrigDstAddr(to_canonical(stream.local_addr()?)))
        }
    }
}

fn original_dst_v4(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
    getsockopt_into(fd, libc::SOL_IP, libc::SO_ORIGINAL_DST, &mut sin)?;
    if libc::c_int::from(sin.sin_family) != libc::AF_INET {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_ORIGINAL_DST returned a non-IPv4 address",
        ));
    }
    let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
    Ok(SocketAddr::V4(SocketAddrV4::new(
        ip,
        u16::from_be(sin.sin_port),
    )))
}

fn original_dst_v6(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
    let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    getsockopt_into(fd, libc::SOL_IPV6, libc::IP6T_SO_ORIGINAL_DST, &mut sin6)?;
    if libc::c_int::from(sin6.sin6_family) != libc::AF_INET6 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "IP6T_SO_ORIGINAL_DST returned a non-IPv6 address",
        ));
    }
    let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
    Ok(SocketAddr::V6(SocketAddrV6::new(
        ip,
        u16::from_be(sin6.sin6_port),
        sin6.sin6_flowinfo,
        sin6.sin6_scope_id,
    )))
}

/// `getsockopt(fd, level, name)` into a `sockaddr_*` value of type `T`.
fn getsockopt_into<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    out: &mut T,
) -> io::Result<()> {
    let mut len = mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `out` is a valid, exclusively borrowed `T` of `len` bytes for
    // the whole call; the kernel writes at most `len` bytes into it and
    // updates `len`. `fd` is borrowed from a live TcpStream.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (out as *mut T).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < mem::size_of::<T>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "original destination address too short",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Without a redirect there is no NAT entry: the option fails and the
    /// fallback is the address the client really connected to.
    #[tokio::test]
    async fn falls_back_to_local_addr_without_redirect() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert!(orig_dst_addr(&server).is_err());
        assert_eq!(
            orig_dst_addr_or_default(&server).unwrap(),
            OrigDstAddr(addr)
        );
    }

    #[tokio::test]
    async fn falls_back_on_ipv6_loopback() {
        let listener = TcpListener::bind("[::1]:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert!(orig_dst_addr(&server).is_err());
        assert_eq!(
            orig_dst_addr_or_default(&server).unwrap(),
            OrigDstAddr(addr)
        );
    }
}
