//! Two-phase shutdown (ztunnel `src/drain.rs`): on SIGTERM the listeners
//! stop accepting and HTTP connections are asked to finish; the process
//! waits for in-flight connections up to a deadline, then exits.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

#[derive(Clone)]
pub struct Drain {
    signal: watch::Sender<bool>,
    inner: Arc<Inner>,
}

struct Inner {
    in_flight: AtomicUsize,
    idle: Notify,
}

/// One in-flight connection; the drain waits for all of these to drop.
pub struct InFlight {
    inner: Arc<Inner>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.inner.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Self {
        let (signal, _) = watch::channel(false);
        Self {
            signal,
            inner: Arc::new(Inner {
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        }
    }

    pub fn track(&self) -> InFlight {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            inner: self.inner.clone(),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Resolves once draining has started.
    pub async fn signaled(&self) {
        let mut rx = self.signal.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    pub fn is_draining(&self) -> bool {
        *self.signal.borrow()
    }

    /// Starts draining and waits up to `deadline` for in-flight connections.
    /// Returns how many were still open at the deadline.
    pub async fn drain(&self, deadline: Duration) -> usize {
        self.signal.send_replace(true);
        let wait = async {
            loop {
                let idle = self.inner.idle.notified();
                if self.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        self.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_in_flight_then_gives_up() {
        let drain = Drain::new();
        let held = drain.track();
        let d2 = drain.clone();
        let t = tokio::spawn(async move { d2.drain(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(held);
        assert_eq!(t.await.unwrap(), 0);

        let _stuck = drain.track();
        assert_eq!(drain.drain(Duration::from_secs(2)).await, 1);
        assert!(drain.is_draining());
    }
}
