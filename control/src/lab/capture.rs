//! `palisade lab capture`: proof on the wire. Captures, on the lab's bridge,
//! the packets of one real request between two pods and reports whether the
//! bytes were TLS records or cleartext.
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{BRIDGE, HUB_NETNS, LabError};

/// What crossed the bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireSummary {
    pub packets: usize,
    pub payload_bytes: usize,
    /// TLS records seen at the start of a segment, by content type.
    pub tls_handshake_records: usize,
    pub tls_application_records: usize,
    /// The cleartext needle (e.g. the request line) appeared in a payload.
    pub cleartext_seen: bool,
}

impl WireSummary {
    /// Every payload byte crossed as TLS.
    pub fn is_tls_only(&self) -> bool {
        self.payload_bytes > 0 && self.tls_application_records > 0 && !self.cleartext_seen
    }
}

/// A running `tcpdump` on the bridge, writing to `file`.
pub struct BridgeCapture {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl BridgeCapture {
    /// Starts capturing TCP between `a` and `b`; returns once tcpdump listens.
    pub fn start(a: Ipv4Addr, b: Ipv4Addr, file: &Path) -> Result<Self, LabError> {
        use std::os::unix::process::CommandExt;
        let filter = format!("tcp and host {a} and host {b}");
        // Its own process group: `ip netns exec` may fork, and tcpdump
        // itself must get the SIGINT that makes it flush and exit.
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                HUB_NETNS,
                "tcpdump",
                "-i",
                BRIDGE,
                "--immediate-mode",
                "-U",
                "-n",
                "-s",
                "0",
                "-w",
            ])
            .arg(file)
            .arg(&filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| {
                LabError::Precondition(format!("cannot run tcpdump ({e}): apt-get install tcpdump"))
            })?;
        // tcpdump says "listening on" once the socket is open.
        let stderr = child.stderr.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            if let Some(stderr) = stderr {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if line.contains("listening on") {
                        let _ = tx.send(());
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        if rx.recv_timeout(deadline - Instant::now()).is_err() {
            let _ = child.kill();
            return Err(LabError::Setup(
                "tcpdump did not start listening on the bridge".into(),
            ));
        }
        Ok(BridgeCapture {
            child,
            file: file.to_path_buf(),
        })
    }

    /// Stops tcpdump and summarizes the capture, looking for `needle`.
    pub fn finish(mut self, needle: &[u8]) -> Result<WireSummary, LabError> {
        std::thread::sleep(Duration::from_millis(300));
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-INT", "--", &group]).status();
        let _ = self.child.wait();
        let data = std::fs::read(&self.file)?;
        summarize(&data, needle)
    }
}

/// Reads a classic pcap file (Ethernet, IPv4, TCP) and classifies payloads.
pub fn summarize(pcap: &[u8], needle: &[u8]) -> Result<WireSummary, LabError> {
    let bad = |what: &str| LabError::Setup(format!("capture file: {what}"));
    if pcap.len() < 24 {
        return Err(bad("too short"));
    }
    let little = match &pcap[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(bad("not a pcap file")),
    };
    let u32_at = |b: &[u8], i: usize| {
        let v = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if little {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    };
    let mut summary = WireSummary::default();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let caplen = u32_at(pcap, at + 8) as usize;
        let start = at + 16;
        let end = start
            .checked_add(caplen)
            .filter(|e| *e <= pcap.len())
            .ok_or_else(|| bad("truncated record"))?;
        let frame = &pcap[start..end];
        at = end;
        summary.packets += 1;
        let Some(payload) = tcp_payload(frame) else {
            continue;
        };
        if payload.is_empty() {
            continue;
        }
        summary.payload_bytes += payload.len();
        if !needle.is_empty() && payload.windows(needle.len()).any(|w| w == needle) {
            summary.cleartext_seen = true;
        }
        // Walk the TLS records that start in this segment.
        let mut rec = 0;
        while rec + 5 <= payload.len() && payload[rec + 1] == 3 && payload[rec + 2] <= 4 {
            match payload[rec] {
                22 => summary.tls_handshake_records += 1,
                23 => summary.tls_application_records += 1,
                20 | 21 => {}
                _ => break,
            }
            rec += 5 + usize::from(u16::from_be_bytes([payload[rec + 3], payload[rec + 4]]));
        }
    }
    Ok(summary)
}

fn tcp_payload(frame: &[u8]) -> Option<&[u8]> {
    // Ethernet II, IPv4 only (the lab is IPv4).
    if frame.len() < 14 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let tcp = ip.get(ihl..total)?;
    let offset = usize::from(tcp.get(12)? >> 4) * 4;
    tcp.get(offset..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend([0x08, 0x00]);
        let total = (20 + 20 + payload.len()) as u16;
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend(ip);
        let mut tcp = vec![0u8; 20];
        tcp[12] = 5 << 4;
        f.extend(tcp);
        f.extend(payload);
        f
    }

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        out.extend([0u8; 8]);
        out.extend(65535u32.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        for f in frames {
            out.extend([0u8; 8]);
            out.extend((f.len() as u32).to_le_bytes());
            out.extend((f.len() as u32).to_le_bytes());
            out.extend(f);
        }
        out
    }

    #[test]
    fn tls_records_and_cleartext_are_told_apart() {
        let hello = [22u8, 3, 1, 0, 2, 1, 0];
        let data = [23u8, 3, 3, 0, 3, 9, 9, 9, 23, 3, 3, 0, 1, 7];
        let s = summarize(&pcap(&[frame(&hello), frame(&data)]), b"GET /").unwrap();
        assert_eq!((s.tls_handshake_records, s.tls_application_records), (1, 2));
        assert!(s.is_tls_only());
        let s = summarize(&pcap(&[frame(b"GET / HTTP/1.1\r\n\r\n")]), b"GET /").unwrap();
        assert!(s.cleartext_seen && !s.is_tls_only());
        assert!(summarize(b"nonsense", b"x").is_err());
        assert!(summarize(&pcap(&[])[..20], b"x").is_err());
    }
}
