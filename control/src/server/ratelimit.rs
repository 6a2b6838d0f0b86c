//! Per-workload rate limit on CSR signing: a token bucket per workload, so a
//! misbehaving (or stolen) identity cannot make the CA sign in a loop.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bucket size and refill period.
#[derive(Debug, Clone, Copy)]
pub struct SignLimit {
    pub burst: u32,
    pub refill_every: Duration,
}

impl Default for SignLimit {
    fn default() -> Self {
        Self {
            burst: 5,
            refill_every: Duration::from_secs(1),
        }
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    limit: SignLimit,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(limit: SignLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one signing from `workload`'s bucket; on refusal returns how
    /// long until the next one is allowed.
    pub fn try_take(&self, workload: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let burst = f64::from(self.limit.burst.max(1));
        let per = self.limit.refill_every.as_secs_f64().max(1e-6);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(workload.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() / per).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) * per))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_then_refilled_per_workload() {
        let rl = RateLimiter::new(SignLimit {
            burst: 2,
            refill_every: Duration::from_millis(50),
        });
        assert!(rl.try_take("a/x").is_ok());
        assert!(rl.try_take("a/x").is_ok());
        assert!(rl.try_take("a/x").is_err());
        // Another workload has its own bucket.
        assert!(rl.try_take("a/y").is_ok());
        std::thread::sleep(Duration::from_millis(60));
        assert!(rl.try_take("a/x").is_ok());
    }
}
