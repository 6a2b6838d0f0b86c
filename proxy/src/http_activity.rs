//! What the sidecar watches on each HTTP connection it serves, to know when
//! to close it: requests in flight and started (an idle connection closes
//! after `--idle-timeout`), and requests the client cancelled early
//! (HTTP/2 rapid reset, CVE-2023-44487).
//!
//! Rapid reset: h2 already refuses a flood of streams reset before the
//! server accepts them (`too_many_resets`). A client that waits until each
//! request is accepted, so that it has reached the app, and then resets
//! it, passes that check: its streams never count against
//! `max_concurrent_streams`, and each cancel costs the app a request and
//! the sidecar an app connection. Such a connection is closed with Envoy's
//! rule (`overload.premature_reset_*`, Envoy 1.24.11 and later): a request
//! cancelled within one second of its start is premature, and the
//! connection goes once premature cancels reach half of its closed
//! requests, counted from 500 closed requests on (before that, once they
//! reach 250).
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use hyper::body::{Body, Frame, SizeHint};

use crate::metrics::{Direction, HttpCloseReason, Metrics};

/// A request cancelled within this long of its start is premature.
pub const PREMATURE_WITHIN: Duration = Duration::from_secs(1);
/// Closed requests from which on premature cancels are weighed against
/// them (Envoy's `premature_reset_total_stream_count`).
pub const PREMATURE_CHECK_FROM: u64 = 500;

/// Counters of one served HTTP connection, shared with its requests.
#[derive(Debug, Default)]
pub struct HttpActivity {
    in_flight: AtomicU32,
    started: AtomicU64,
    closed: AtomicU64,
    premature: AtomicU64,
    flooded: AtomicBool,
    /// Woken when `flooded` is set. An atomic waker, not a `Notify`: the
    /// connection task polls `flooded()` on each of its wakeups, and
    /// polling a waiting `Notify` takes a lock.
    flood: AtomicWaker,
}

/// One request's mark on its connection; dropping it without `finish`
/// means the request was cancelled (the client reset the stream or went
/// away before the response head).
#[derive(Debug)]
pub struct RequestMark {
    /// Taken by `finish`.
    activity: Option<Arc<HttpActivity>>,
    started_at: Instant,
}

/// A request whose response is still being sent: it keeps the connection
/// from counting as idle (a gRPC stream, a long download) until dropped
/// with the response body.
#[derive(Debug)]
pub struct InFlight(Arc<HttpActivity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that holds its request's [`InFlight`] until it is
/// dropped (sent in full, or given up).
#[derive(Debug)]
pub struct TrackedBody<B> {
    inner: B,
    _in_flight: Option<InFlight>,
}

impl<B> TrackedBody<B> {
    pub fn new(inner: B, in_flight: Option<InFlight>) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl HttpActivity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Marks a request as started; keep the mark until its response head,
    /// then the [`InFlight`] it turns into until the response is sent.
    pub fn begin(self: &Arc<Self>) -> RequestMark {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        RequestMark {
            activity: Some(self.clone()),
            started_at: Instant::now(),
        }
    }

    /// Requests cancelled prematurely so far.
    pub fn premature_cancels(&self) -> u64 {
        self.premature.load(Ordering::Relaxed)
    }

    /// Resolves once no request has been in flight or started for at least
    /// `timeout`: checked every quarter of it, so it resolves between 1 and
    /// 1.25 times `timeout` after the connection went quiet.
    pub async fn idle_for(&self, timeout: Duration) {
        let tick = (timeout / 4).max(Duration::from_millis(1));
        let mut last = self.started.load(Ordering::Relaxed);
        let mut quiet_ticks = 0u32;
        loop {
            tokio::time::sleep(tick).await;
            let now = self.started.load(Ordering::Relaxed);
            if now == last && self.in_flight.load(Ordering::Relaxed) == 0 {
                quiet_ticks += 1;
                // The first quiet tick may come just after the last
                // request; five make a whole `timeout` of quiet.
                if quiet_ticks >= 5 {
                    return;
                }
            } else {
                quiet_ticks = 0;
                last = now;
            }
        }
    }

    /// Resolves once the client's premature cancels pass the limit.
    pub async fn flooded(&self) {
        std::future::poll_fn(|cx| {
            self.flood.register(cx.waker());
            if self.flooded.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// A request ended (cancelled) or got its response head (not
    /// cancelled; then it stays in flight until its [`InFlight`] drops).
    fn request_closed(&self, cancelled: bool, premature: bool) {
        if cancelled {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        let closed = self.closed.fetch_add(1, Ordering::Relaxed) + 1;
        if !premature {
            return;
        }
        let premature = self.premature.fetch_add(1, Ordering::Relaxed) + 1;
        if premature_limit_reached(premature, closed) && !self.flooded.swap(true, Ordering::AcqRel)
        {
            self.flood.wake();
        }
    }
}

/// Envoy's rule: from `PREMATURE_CHECK_FROM` closed requests on, half of
/// them premature; before that, half of `PREMATURE_CHECK_FROM`.
fn premature_limit_reached(premature: u64, closed: u64) -> bool {
    premature.saturating_mul(2) >= closed.max(PREMATURE_CHECK_FROM)
}

impl RequestMark {
    /// The response head is ready: the request was not cancelled. It stays
    /// in flight while the returned guard lives (give it to the body).
    pub fn finish(mut self) -> Option<InFlight> {
        let activity = self.activity.take()?;
        activity.request_closed(false, false);
        Some(InFlight(activity))
    }
}

impl Drop for RequestMark {
    fn drop(&mut self) {
        if let Some(activity) = self.activity.take() {
            let premature = self.started_at.elapsed() < PREMATURE_WITHIN;
            activity.request_closed(true, premature);
        }
    }
}

/// Logs and counts the sidecar closing a served HTTP connection.
pub fn closing(
    metrics: &Metrics,
    direction: Direction,
    client: SocketAddr,
    reason: HttpCloseReason,
    activity: &HttpActivity,
) {
    match reason {
        HttpCloseReason::Idle => {
            tracing::debug!(?direction, %client, "closing an idle HTTP connection");
        }
        HttpCloseReason::PrematureResets => tracing::warn!(
            ?direction,
            %client,
            cancelled = activity.premature_cancels(),
            started = activity.started.load(Ordering::Relaxed),
            "closing an HTTP connection whose client cancels most requests right after starting them (HTTP/2 rapid reset)"
        ),
        // Logged by the tracker, which knows the connection.
        HttpCloseReason::Untrusted => {}
    }
    metrics.http_connection_closed(direction, reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premature_limit_follows_envoy() {
        // Before 500 closed requests: 250 premature cancels trip it.
        assert!(!premature_limit_reached(249, 249));
        assert!(premature_limit_reached(250, 250));
        assert!(premature_limit_reached(250, 400));
        // From 500 on: half of the closed requests.
        assert!(!premature_limit_reached(400, 1000));
        assert!(premature_limit_reached(500, 1000));
        assert!(!premature_limit_reached(u64::MAX / 2 - 1, u64::MAX - 1));
    }

    #[tokio::test]
    async fn finished_requests_never_flood_and_cancels_do() {
        let activity = HttpActivity::new();
        for _ in 0..10_000 {
            activity.begin().finish();
        }
        assert_eq!(activity.premature_cancels(), 0);
        assert!(!activity.flooded.load(Ordering::Relaxed));
        // Cancels: half of 10,000 closed requests plus these.
        for _ in 0..9_999 {
            drop(activity.begin());
        }
        assert!(!activity.flooded.load(Ordering::Relaxed), "9999 of 19999");
        drop(activity.begin());
        tokio::time::timeout(Duration::from_secs(1), activity.flooded())
            .await
            .expect("10000 of 20000 cancelled trips the limit");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_needs_no_request_in_flight_or_started() {
        let activity = HttpActivity::new();
        let timeout = Duration::from_secs(60);
        // A request in flight keeps the connection from going idle.
        let mark = activity.begin();
        assert!(
            tokio::time::timeout(Duration::from_secs(600), activity.idle_for(timeout))
                .await
                .is_err()
        );
        // Answered, but its response still streaming: still in flight.
        let streaming = mark.finish();
        assert!(
            tokio::time::timeout(Duration::from_secs(600), activity.idle_for(timeout))
                .await
                .is_err()
        );
        drop(streaming);
        let start = tokio::time::Instant::now();
        activity.idle_for(timeout).await;
        let took = start.elapsed();
        assert!(took >= timeout && took <= timeout * 5 / 4, "{took:?}");
        // Requests that keep starting keep it alive.
        let busy = async {
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                activity.begin().finish();
            }
        };
        tokio::select! {
            () = activity.idle_for(timeout) => panic!("idle while requests kept coming"),
            () = busy => unreachable!(),
            () = tokio::time::sleep(Duration::from_secs(900)) => {}
        }
    }
}
