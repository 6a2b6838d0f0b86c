//! Protocol detection on the first bytes of a connection: a TLS ClientHello
//! (and its ALPN list), the HTTP/2 preface, or an HTTP/1 request line. Pure
//! functions over a buffer, plus the one async step that reads the buffer
//! with a timeout (after linkerd `tls/src/server.rs` and
//! `http/detect/src/lib.rs`).
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The mesh ALPN token; the inner protocol is appended after `+`.
pub const MESH_ALPN: &[u8] = b"palisade/1";
pub const MESH_ALPN_H2: &[u8] = b"palisade/1+h2";
pub const MESH_ALPN_HTTP1: &[u8] = b"palisade/1+http1";

/// Largest prefix buffered while detecting (a ClientHello with many
/// extensions fits; anything larger is treated as not detected).
pub const MAX_DETECT_BYTES: usize = 8 * 1024;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the ALPN token of a mesh connection says about the tunnelled bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MeshInner {
    Opaque,
    Http1,
    H2,
}

impl MeshInner {
    pub fn alpn(self) -> &'static [u8] {
        match self {
            MeshInner::Opaque => MESH_ALPN,
            MeshInner::Http1 => MESH_ALPN_HTTP1,
            MeshInner::H2 => MESH_ALPN_H2,
        }
    }

    pub fn from_alpn(alpn: &[u8]) -> Option<Self> {
        match alpn {
            MESH_ALPN => Some(MeshInner::Opaque),
            MESH_ALPN_HTTP1 => Some(MeshInner::Http1),
            MESH_ALPN_H2 => Some(MeshInner::H2),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsDetect {
    /// More bytes are needed to decide.
    Incomplete,
    NotTls,
    /// A ClientHello; `mesh` is true when its ALPN list carries a mesh token.
    ClientHello {
        mesh: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpDetect {
    Incomplete,
    NotHttp,
    Http1,
    H2,
}

// === TLS ===

/// Parses the first TLS record as a ClientHello far enough to read ALPN.
pub fn detect_tls(buf: &[u8]) -> TlsDetect {
    // RFC 8446 5.1: ContentType handshake(22), legacy_record_version 0x03xx.
    if buf.is_empty() {
        return TlsDetect::Incomplete;
    }
    if buf[0] != 0x16 {
        return TlsDetect::NotTls;
    }
    if buf.len() < 5 {
        return TlsDetect::Incomplete;
    }
    if buf[1] != 0x03 {
        return TlsDetect::NotTls;
    }
    let record_len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if record_len == 0 || record_len > 16384 + 256 {
        return TlsDetect::NotTls;
    }
    let Some(record) = buf.get(5..5 + record_len) else {
        // A hello larger than our cap is not detected as mesh traffic.
        if 5 + record_len > MAX_DETECT_BYTES {
            return TlsDetect::ClientHello { mesh: false };
        }
        return TlsDetect::Incomplete;
    };
    match client_hello_extensions(record) {
        Some(hello) => TlsDetect::ClientHello {
            mesh: hello
                .alpns
                .iter()
                .any(|p| MeshInner::from_alpn(p).is_some()),
        },
        None => TlsDetect::NotTls,
    }
}

/// The server name (SNI, RFC 6066 3) a ClientHello at the start of `buf`
/// asks for: what authorization's `connection.sni` matches. `None` when
/// `buf` does not start with a complete ClientHello record or the hello
/// carries no host name.
pub fn client_hello_sni(buf: &[u8]) -> Option<String> {
    if buf.len() < 5 || buf[0] != 0x16 || buf[1] != 0x03 {
        return None;
    }
    let record_len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    let record = buf.get(5..5 + record_len)?;
    let name = client_hello_extensions(record)?.sni?;
    // A host name is ASCII (RFC 6066: "represented as a byte string using
    // ASCII encoding without a trailing dot"); anything else matches no
    // pattern rather than being guessed at.
    if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    std::str::from_utf8(name).ok().map(str::to_owned)
}

/// What detection and authorization read from a ClientHello.
struct HelloExtensions<'a> {
    alpns: Vec<&'a [u8]>,
    /// The `host_name` entry of the server_name extension.
    sni: Option<&'a [u8]>,
}

/// The ALPN protocol names and server name of a ClientHello handshake
/// message, or `None` when the bytes are not a well-formed ClientHello.
fn client_hello_extensions(msg: &[u8]) -> Option<HelloExtensions<'_>> {
    let mut r = Reader(msg);
    if r.u8()? != 0x01 {
        return None; // not a ClientHello
    }
    let len = r.u24()?;
    // A hello split over several records: read what the first one holds.
    let body = r.take(len.min(r.0.len()))?;
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    let sid = usize::from(r.u8()?);
    r.take(sid)?;
    let suites = usize::from(r.u16()?);
    r.take(suites)?;
    let comp = usize::from(r.u8()?);
    r.take(comp)?;
    let mut hello = HelloExtensions {
        alpns: Vec::new(),
        sni: None,
    };
    if r.0.is_empty() {
        return Some(hello);
    }
    let ext_len = usize::from(r.u16()?);
    let mut exts = Reader(r.take(ext_len.min(r.0.len()))?);
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let len = usize::from(exts.u16()?);
        let data = exts.take(len)?;
        if ty == 16 {
            // RFC 7301 3.1: ProtocolNameList protocol_name_list<2..2^16-1>
            let mut list = Reader(data);
            let list_len = usize::from(list.u16()?);
            let mut names = Reader(list.take(list_len)?);
            while !names.0.is_empty() {
                let n = usize::from(names.u8()?);
                hello.alpns.push(names.take(n)?);
            }
        } else if ty == 0 {
            // RFC 6066 3: ServerNameList server_name_list<1..2^16-1>, each
            // a NameType (host_name = 0) and an opaque HostName<1..2^16-1>.
            let mut list = Reader(data);
            let list_len = usize::from(list.u16()?);
            let mut names = Reader(list.take(list_len)?);
            while !names.0.is_empty() {
                let kind = names.u8()?;
                let n = usize::from(names.u16()?);
                let name = names.take(n)?;
                if kind == 0 && hello.sni.is_none() {
                    hello.sni = Some(name);
                }
            }
        }
    }
    Some(hello)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

// === HTTP ===

/// HTTP/2 prior knowledge (the connection preface) or an HTTP/1 request line.
pub fn detect_http(buf: &[u8]) -> HttpDetect {
    if buf.is_empty() {
        return HttpDetect::Incomplete;
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if buf.len() >= H2_PREFACE.len() {
            HttpDetect::H2
        } else {
            HttpDetect::Incomplete
        };
    }
    let mut headers = [httparse::EMPTY_HEADER; 0];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(buf);
    // The request line parsed (its version is known): HTTP/1, whether the
    // head is complete or the headers did not fit our empty array.
    if req.version.is_some() {
        return HttpDetect::Http1;
    }
    match parsed {
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            HttpDetect::Http1
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_DETECT_BYTES => HttpDetect::Incomplete,
        _ => HttpDetect::NotHttp,
    }
}

// === reading ===

/// Why reading a detection prefix stopped.
#[derive(Debug)]
pub enum ReadOutcome<T> {
    /// `decide` returned a verdict on the bytes read so far.
    Decided(T),
    /// The timeout passed before a verdict; fall back to opaque TCP.
    TimedOut,
    /// The peer closed (or the buffer cap was hit) before a verdict.
    Closed,
}

/// Reads into `buf` until `decide` returns `Some`, the stream ends, or
/// `timeout` passes. Every byte read stays in `buf` for replay.
pub async fn read_until_decided<I, T>(
    io: &mut I,
    buf: &mut BytesMut,
    timeout: Duration,
    mut decide: impl FnMut(&[u8]) -> Option<T>,
) -> std::io::Result<ReadOutcome<T>>
where
    I: AsyncRead + Unpin,
{
    let fut = async {
        loop {
            if let Some(v) = decide(buf) {
                return Ok(ReadOutcome::Decided(v));
            }
            if buf.len() >= MAX_DETECT_BYTES {
                return Ok(ReadOutcome::Closed);
            }
            buf.reserve(1024);
            if io.read_buf(buf).await? == 0 {
                return Ok(ReadOutcome::Closed);
            }
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Ok(ReadOutcome::TimedOut),
    }
}

/// Freezes a detection buffer for replay.
pub fn into_prefix(buf: BytesMut) -> Bytes {
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ClientHello from rustls with the given ALPN list.
    fn client_hello(alpn: &[&[u8]]) -> Vec<u8> {
        client_hello_for("x", alpn)
    }

    /// A real ClientHello from rustls for `server` (a DNS name sends SNI,
    /// an IP address does not).
    fn client_hello_for(server: &str, alpn: &[&[u8]]) -> Vec<u8> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        let ca = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        roots.add(ca.cert.der().clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        let mut conn = rustls::ClientConnection::new(
            std::sync::Arc::new(cfg),
            server.to_owned().try_into().unwrap(),
        )
        .unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn mesh_client_hello_is_detected() {
        let hello = client_hello(&[MESH_ALPN_H2]);
        assert_eq!(detect_tls(&hello), TlsDetect::ClientHello { mesh: true });
        assert_eq!(detect_tls(&hello[..10]), TlsDetect::Incomplete);
    }

    #[test]
    fn the_server_name_of_a_client_hello_is_read() {
        let hello = client_hello_for("api.example.com", &[b"h2"]);
        assert_eq!(client_hello_sni(&hello).as_deref(), Some("api.example.com"));
        let mesh = client_hello_for(
            "outbound_.80_._.web.default.svc.cluster.local",
            &[MESH_ALPN_H2],
        );
        assert_eq!(
            client_hello_sni(&mesh).as_deref(),
            Some("outbound_.80_._.web.default.svc.cluster.local")
        );
        // An IP address as the server sends no SNI (RFC 6066 3: "Literal
        // IPv4 and IPv6 addresses are not permitted in HostName").
        assert_eq!(client_hello_sni(&client_hello_for("192.0.2.7", &[])), None);
        // Incomplete, not TLS, or not a hello: nothing.
        assert_eq!(client_hello_sni(&hello[..hello.len() - 1]), None);
        assert_eq!(client_hello_sni(b"GET / HTTP/1.1\r\n\r\n"), None);
        for len in 0..hello.len() {
            let mut cut = hello[..len].to_vec();
            cut.extend((0..16).map(|i| i as u8));
            let _ = client_hello_sni(&cut);
        }
    }

    #[test]
    fn app_tls_is_not_mesh() {
        let hello = client_hello(&[b"h2", b"http/1.1"]);
        assert_eq!(detect_tls(&hello), TlsDetect::ClientHello { mesh: false });
        let hello = client_hello(&[]);
        assert_eq!(detect_tls(&hello), TlsDetect::ClientHello { mesh: false });
    }

    #[test]
    fn garbage_is_not_tls_and_never_panics() {
        assert_eq!(detect_tls(b"GET / HTTP/1.1\r\n"), TlsDetect::NotTls);
        assert_eq!(
            detect_tls(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 9, 9]),
            TlsDetect::NotTls
        );
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x16) as u8).collect();
            let _ = detect_tls(&junk);
            let _ = detect_http(&junk);
        }
    }

    #[test]
    fn http_detection() {
        assert_eq!(
            detect_http(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            HttpDetect::Http1
        );
        assert_eq!(detect_http(b"GET / HTTP/1.1\r\n"), HttpDetect::Http1);
        assert_eq!(detect_http(b"GET /"), HttpDetect::Incomplete);
        assert_eq!(detect_http(H2_PREFACE), HttpDetect::H2);
        assert_eq!(detect_http(&H2_PREFACE[..5]), HttpDetect::Incomplete);
        assert_eq!(detect_http(b"\x00\x01binary"), HttpDetect::NotHttp);
        assert_eq!(detect_http(b"SSH-2.0-OpenSSH\r\n"), HttpDetect::NotHttp);
    }
}
