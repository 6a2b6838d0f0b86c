//! UDP probes between pods: bind inside a pod, send, and report whether the
//! datagram arrived within a short timeout.
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::Result;
use crate::netns::Pod;

/// A UDP socket bound to `addr` inside `pod`, with a 400 ms read timeout.
pub fn bind(pod: &Pod, addr: SocketAddr) -> Result<UdpSocket> {
    let sock = pod.enter(move || UdpSocket::bind(addr))??;
    sock.set_read_timeout(Some(Duration::from_millis(400)))?;
    Ok(sock)
}

/// Sends `msg` from `from` to `to` and reports whether `receiver` got it. A
/// send refused by a local netfilter drop (EPERM) counts as not delivered.
/// A call a signal interrupts (EINTR: a child process of a test running
/// beside this one exited) is made again.
pub fn delivered(
    from: &UdpSocket,
    to: SocketAddr,
    receiver: &UdpSocket,
    msg: &[u8],
) -> Result<bool> {
    match retry_interrupted(|| from.send_to(msg, to)) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let mut buf = [0u8; 512];
    match retry_interrupted(|| receiver.recv_from(&mut buf)) {
        Ok((n, _)) if &buf[..n] == msg => Ok(true),
        Ok((n, _)) => Err(crate::HarnessError::Setup(format!(
            "a different datagram arrived: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ))),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// `op`, made again while a signal interrupts it.
fn retry_interrupted<T>(mut op: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
