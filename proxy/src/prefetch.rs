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

/// Largest declared body length whose first frame is awaited.
pub const PREFETCH_MAX: u64 = 64 * 1024;

/// An upstream body, possibly with its first frame already read.
#[derive(Debug)]
pub struct Proxied {
    first: Option<Result<Frame<Bytes>, hyper::Error>>,
    /// Data bytes in `first` (for the size hint).
    first_len: u64,
    rest: Incoming,
}

impl From<Incoming> for Proxied {
    fn from(rest: Incoming) -> Self {
        Self {
            first: None,
            first_len: 0,
            rest,
        }
    }
}

/// `resp` with its first body frame read, when the body is small and its
/// length known.
pub async fn with_first_frame(resp: Response<Incoming>) -> Response<Proxied> {
    let (parts, mut rest) = resp.into_parts();
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
        },
    )
}

impl Body for Proxied {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(first) = self.first.take() {
            self.first_len = 0;
            return Poll::Ready(Some(first));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
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
