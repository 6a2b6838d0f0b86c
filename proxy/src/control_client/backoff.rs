//! Jittered exponential backoff for reconnects and renewal retries ("full
//! jitter": a random delay between half and all of the current step, so a
//! thousand proxies that lost the control plane together do not return
//! together).
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            step: initial,
        }
    }

    /// The next delay; grows the step up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        half + step.mul_f64(rand::random::<f64>() * 0.5)
    }

    /// After a success, start small again.
    pub fn reset(&mut self) {
        self.step = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_max_within_jitter_bounds_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let mut steps = vec![];
        for _ in 0..6 {
            steps.push(b.next_delay());
        }
        assert!(steps[0] >= Duration::from_millis(50) && steps[0] <= Duration::from_millis(100));
        assert!(steps[5] >= Duration::from_millis(400) && steps[5] <= Duration::from_millis(800));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
