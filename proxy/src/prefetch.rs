//! Response bodies proxied from upstream, with the first body frame read
//! before the response is handed on when the body is small and of known
//! length: the head and the body then leave in one write (one `writev` to
//! an HTTP/1 client, one HEADERS+DATA batch on HTTP/2) instead of two.
//!
//! Bodies of unknown length (chunked, streaming, server-sent events) and
//! larger ones are not waited for, so a head sent before its body still
//! reaches the client at once.
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::outbound::mesh_h2::MeshBody;

/// Largest declared body length whose first frame is awaited.
pub const PREFETCH_MAX: u64 = 64 * 1024;

/// The largest DATA frame payload whose frame (with its 9-byte HTTP/2
/// header) still fits one TLS record (16 KiB of plaintext). HTTP/2 writes
/// each DATA frame by itself, so a full 16 KiB frame costs a second TLS
/// record of 9 bytes: a second seal and open, record header and tag.
pub const RECORD_SIZED_DATA: usize = 16 * 1024 - 9;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where an upstream body comes from: a connection hyper reads (the app,
/// an unmeshed endpoint, HTTP/1 to a peer sidecar), or a stream of a
/// pooled HTTP/2 mesh connection.
#[derive(Debug)]
pub enum Upstream {
    Hyper(Incoming),
    Mesh(MeshBody),
}

impl Body for Upstream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Self::Mesh(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Hyper(b) => b.is_end_stream(),
            Self::Mesh(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Hyper(b) => b.size_hint(),
            Self::Mesh(b) => b.size_hint(),
        }
    }
}

impl From<Incoming> for Upstream {
    fn from(b: Incoming) -> Self {
        Self::Hyper(b)
    }
}

impl From<MeshBody> for Upstream {
    fn from(b: MeshBody) -> Self {
        Self::Mesh(b)
    }
}

/// An upstream body, possibly with its first frame already read.
#[derive(Debug)]
pub struct Proxied {
    first: Option<Result<Frame<Bytes>, BoxError>>,
    /// Data bytes in `first` (for the size hint).
    first_len: u64,
    rest: Upstream,
    /// Data frames longer than this are handed on in pieces of this size
    /// (slices of the same buffer, no copy).
    max_data: usize,
}

impl From<Incoming> for Proxied {
    fn from(rest: Incoming) -> Self {
        Self {
            first: None,
            first_len: 0,
            rest: rest.into(),
            max_data: usize::MAX,
        }
    }
}

impl Proxied {
    /// Hands data on in pieces of at most [`RECORD_SIZED_DATA`] bytes, for a
    /// body that may leave over HTTP/2 inside TLS.
    pub fn record_sized(mut self) -> Self {
        self.max_data = RECORD_SIZED_DATA;
        self
    }

    /// `frame`, or its first `max_data` bytes with the rest kept for the
    /// next poll.
    fn split_data(&mut self, frame: Frame<Bytes>) -> Frame<Bytes> {
        match frame.into_data() {
            Ok(mut data) if data.len() > self.max_data => {
                let head = data.split_to(self.max_data);
                self.first_len = data.len() as u64;
                self.first = Some(Ok(Frame::data(data)));
                Frame::data(head)
            }
            Ok(data) => Frame::data(data),
            Err(frame) => frame,
        }
    }
}

/// `resp` with its first body frame read, when the body is small and its
/// length known.
pub async fn with_first_frame(resp: Response<impl Into<Upstream>>) -> Response<Proxied> {
    let (parts, rest) = resp.into_parts();
    let mut rest: Upstream = rest.into();
    let small = !rest.is_end_stream()
        && rest
            .size_hint()
            .exact()
            .is_some_and(|n| n > 0 && n <= PREFETCH_MAX);
    let first = if small { rest.frame().await } else { None };
    let first_len = match &first {
        Some(Ok(f)) => f.data_ref().map_or(0, |d| d.len() as u64),
        _ => 0,
    };
    Response::from_parts(
        parts,
        Proxied {
            first,
            first_len,
            rest,
            max_data: usize::MAX,
        },
    )
}

impl Body for Proxied {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let next = match self.first.take() {
            Some(first) => {
                self.first_len = 0;
                Some(first)
            }
            None => std::task::ready!(Pin::new(&mut self.rest).poll_frame(cx)),
        };
        Poll::Ready(next.map(|frame| frame.map(|f| self.split_data(f))))
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(self.first_len));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(self.first_len));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;

    /// A response with `body` as one chunk, read back by a real HTTP/1 client.
    async fn fetched(body: Bytes, chunked: bool) -> Response<Incoming> {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req| {
                let body = body.clone();
                async move {
                    let mut resp = Response::new(Full::new(body.clone()));
                    if chunked {
                        resp.headers_mut()
                            .insert("transfer-encoding", "chunked".parse().unwrap());
                    }
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server_io), service)
                .await;
        });
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client_io))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        send.send_request(req).await.unwrap()
    }

    #[tokio::test]
    async fn record_sized_bodies_come_in_pieces_that_fit_one_tls_record_each() {
        let body: Bytes = (0..200_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        for chunked in [false, true] {
            let resp = with_first_frame(fetched(body.clone(), chunked).await).await;
            let (_, mut proxied) = resp.into_parts();
            proxied = proxied.record_sized();
            let mut got = Vec::new();
            let mut pieces = 0;
            while let Some(frame) = proxied.frame().await {
                let data = frame.unwrap().into_data().unwrap();
                assert!(data.len() <= RECORD_SIZED_DATA, "{} bytes", data.len());
                assert!(!data.is_empty());
                got.extend_from_slice(&data);
                pieces += 1;
            }
            assert_eq!(got, body, "chunked={chunked}");
            assert!(pieces >= body.len().div_ceil(RECORD_SIZED_DATA));
            // (hyper's chunked `Incoming` never says it has ended)
            assert!(chunked || proxied.is_end_stream());
        }
    }

    #[tokio::test]
    async fn the_size_hint_counts_a_kept_back_piece() {
        let body = Bytes::from(vec![7u8; 40_000]);
        let resp = with_first_frame(fetched(body, false).await).await;
        let mut proxied = resp.into_body().record_sized();
        assert_eq!(proxied.size_hint().exact(), Some(40_000));
        let first = proxied.frame().await.unwrap().unwrap().into_data().unwrap();
        let left = 40_000 - first.len() as u64;
        assert_eq!(proxied.size_hint().lower(), left);
        assert!(!proxied.is_end_stream());
    }

    #[tokio::test]
    async fn bodies_not_record_sized_pass_as_read() {
        let body = Bytes::from(vec![1u8; 40_000]);
        let resp = with_first_frame(fetched(body, false).await).await;
        let mut proxied = resp.into_body();
        let mut sizes = Vec::new();
        while let Some(frame) = proxied.frame().await {
            sizes.push(frame.unwrap().into_data().unwrap().len());
        }
        assert_eq!(sizes.iter().sum::<usize>(), 40_000);
        assert!(sizes.iter().any(|&n| n > RECORD_SIZED_DATA), "{sizes:?}");
    }
}
