//! Bounded exponential backoff with jitter for reconnects.
//!
//! Pure: the caller supplies the random source, so the schedule is tested
//! without sleeping. "Full jitter" would let a retry come almost at once;
//! we keep at least half the nominal delay so a flapping peer is not
//! hammered, and spread the other half so a fleet that lost the same
//! ingest does not come back in lockstep.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
        }
    }
}

impl Backoff {
    /// Nominal delay before retry number `attempt` (1-based), capped at `max`.
    pub fn nominal(&self, attempt: u32) -> Duration {
        let exp = self.factor.powi(attempt.saturating_sub(1).min(32) as i32);
        let secs = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs)
    }

    /// Delay with jitter: uniformly within [nominal/2, nominal]. `unit` is a
    /// random number in [0, 1).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let n = self.nominal(attempt).as_secs_f64();
        Duration::from_secs_f64(n / 2.0 + n / 2.0 * unit.clamp(0.0, 1.0))
    }

    /// Delay with jitter from the thread's random generator.
    pub fn delay_random(&self, attempt: u32) -> Duration {
        self.delay(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let b = Backoff::default();
        assert_eq!(b.nominal(1), Duration::from_millis(500));
        assert_eq!(b.nominal(2), Duration::from_secs(1));
        assert_eq!(b.nominal(3), Duration::from_secs(2));
        assert_eq!(b.nominal(20), Duration::from_secs(30));
        assert_eq!(b.nominal(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_in_upper_half() {
        let b = Backoff::default();
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(2));
        let mid = b.delay(3, 0.5);
        assert!(mid > Duration::from_secs(1) && mid < Duration::from_secs(2));
    }
}
