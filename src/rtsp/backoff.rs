//! Capped exponential backoff with jitter: pure arithmetic, no clock (the supervisor sleeps).

use std::time::Duration;

/// Delays between reconnect attempts: `min`, then doubling per consecutive failure up to
/// `max`, each multiplied by a jitter factor in [0.75, 1.25) (never above `max`), so cameras
/// that failed together do not retry in lockstep. [`reset`](Self::reset) after a session
/// that worked.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// Consecutive failures so far.
    failures: u32,
    /// splitmix64 state; the seed is injectable so tests see fixed delays.
    rng: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
            rng: seed,
        }
    }

    /// Consecutive failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.failures.min(30);
        self.failures = self.failures.saturating_add(1);
        let base = self.min.saturating_mul(1u32 << exp).min(self.max);
        let jitter = 0.75 + 0.5 * self.unit();
        base.mul_f64(jitter).min(self.max)
    }

    /// A session worked: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// A pseudo-random number in [0, 1) (splitmix64).
    fn unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30), 7);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let base = Duration::from_millis(500)
                .saturating_mul(1 << i.min(30))
                .min(Duration::from_secs(30));
            assert!(*d >= base.mul_f64(0.75), "{i}: {d:?} vs {base:?}");
            assert!(
                *d <= base.mul_f64(1.25).min(Duration::from_secs(30)),
                "{i}: {d:?}"
            );
        }
        assert!(delays[11] <= Duration::from_secs(30));
        assert!(delays[11] >= Duration::from_millis(22_500));
        assert_eq!(b.failures(), 12);
        b.reset();
        let d = b.next_delay();
        assert!(d >= Duration::from_millis(375) && d < Duration::from_millis(625));
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let mut a = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 1);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 2);
        assert_ne!(a.next_delay(), b.next_delay());
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 3);
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
    }
}
