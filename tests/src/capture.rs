//! Packet capture on a pod's wire: `tcpdump` on the pod's veth end in the hub
//! namespace, written to a pcap file and parsed here into TCP segments, so a
//! test can assert what crossed between namespaces (TLS records, not HTTP).
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::netns::Pod;
use crate::{HarnessError, Result};

/// A running capture; [`Capture::stop`] returns what it saw.
pub struct Capture {
    child: Option<Child>,
    path: PathBuf,
}

/// One captured TCP segment with payload.
#[derive(Debug, Clone)]
pub struct Segment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Capture {
    /// Starts capturing `filter` (pcap syntax, e.g. `tcp port 8080`) on
    /// `pod`'s veth; returns once tcpdump is listening.
    pub fn start(pod: &Pod, filter: &str) -> Result<Capture> {
        crate::require_tools(&[("tcpdump", "tcpdump")]);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("palisade-capture-{}-{n}.pcap", std::process::id()));
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                pod.hub(),
                "tcpdump",
                "-i",
                &pod.hub_veth,
                "-n",
                "--immediate-mode",
                "-U",
                "-s",
                "0",
                "-Z",
                "root",
                "-w",
            ])
            .arg(&path)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| HarnessError::Setup("tcpdump stderr".into()))?;
        let mut lines = BufReader::new(stderr).lines();
        let mut capture = Capture {
            child: Some(child),
            path,
        };
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("listening on") => break,
                Some(Ok(_)) => continue,
                _ => {
                    capture.kill();
                    return Err(HarnessError::Setup(
                        "tcpdump exited before listening".into(),
                    ));
                }
            }
        }
        // Keep draining stderr so tcpdump never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(capture)
    }

    /// Stops tcpdump (letting it flush) and parses the capture.
    pub fn stop(mut self) -> Result<Vec<Segment>> {
        // `--immediate-mode` hands each packet over at once; the pause lets
        // the last ones be written before the signal.
        std::thread::sleep(std::time::Duration::from_millis(200));
        if let Some(mut child) = self.child.take() {
            // SAFETY: SIGINT to our own child, which flushes and exits.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            child.wait()?;
        }
        let data = std::fs::read(&self.path)?;
        parse_pcap(&data)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// All payload bytes of `segments` sent to `port`, in capture order.
pub fn payload_to_port(segments: &[Segment], port: u16) -> Vec<u8> {
    segments
        .iter()
        .filter(|s| s.dst.port() == port)
        .flat_map(|s| s.payload.iter().copied())
        .collect()
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Parses a classic pcap file of Ethernet frames into TCP segments with
/// payload (IPv4 and IPv6 without extension headers).
pub fn parse_pcap(data: &[u8]) -> Result<Vec<Segment>> {
    let bad = |what: &str| HarnessError::Setup(format!("pcap: {what}"));
    if data.len() < 24 {
        return Err(bad("short file header"));
    }
    let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let le = match magic {
        0xa1b2c3d4 | 0xa1b23c4d => true,
        0xd4c3b2a1 | 0x4d3cb2a1 => false,
        _ => return Err(bad("unknown magic")),
    };
    let u32_at = |b: &[u8], i: usize| {
        let v = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    };
    if u32_at(data, 20) != 1 {
        return Err(bad("not an Ethernet capture"));
    }
    let mut segments = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let caplen = u32_at(data, at + 8) as usize;
        let start = at + 16;
        let end = start
            .checked_add(caplen)
            .filter(|e| *e <= data.len())
            .ok_or_else(|| bad("truncated record"))?;
        if let Some(seg) = parse_frame(&data[start..end]) {
            segments.push(seg);
        }
        at = end;
    }
    Ok(segments)
}

fn parse_frame(frame: &[u8]) -> Option<Segment> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(14..)?;
    let (src, dst, tcp) = match ethertype {
        0x0800 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            if *ip.get(9)? != 6 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                ip.get(ihl..total.min(ip.len()))?,
            )
        }
        0x86dd => {
            if *ip.get(6)? != 6 {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                ip.get(40..(40 + len).min(ip.len()))?,
            )
        }
        _ => return None,
    };
    let sport = u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]);
    let dport = u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]);
    let offset = usize::from(tcp.get(12)? >> 4) * 4;
    let payload = tcp.get(offset..)?.to_vec();
    if payload.is_empty() {
        return None;
    }
    Some(Segment {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        payload,
    })
}
