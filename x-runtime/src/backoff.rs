//! Reconnect pacing: exponential backoff with configurable jitter, driven by random numbers
//! passed in (so the session stays deterministic under test).

use std::time::Duration;

/// How reconnects are paced. The delay before attempt `n` (counting from 0) is
/// `min(cap, base * 2^n)`, of which a random fraction up to `jitter` is taken away: `jitter`
/// 1.0 is "full jitter" (anywhere from 0 to the delay), 0.0 none (deterministic).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// The first delay.
    pub base: Duration,
    /// The longest delay; refusals that retrying cannot fix wait this long.
    pub cap: Duration,
    /// The random fraction taken off each delay, from 0.0 to 1.0.
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            jitter: 1.0,
        }
    }
}

/// The running state of a backoff: how many attempts failed in a row.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            failures: 0,
        }
    }

    /// Failures in a row since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets the failures (after a successful login).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay after one more failure; `random` is a uniform number in `[0, 1)`.
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let exp = self.failures.min(31);
        self.failures = self.failures.saturating_add(1);
        let full = self
            .config
            .base
            .saturating_mul(1u32 << exp)
            .min(self.config.cap);
        self.jittered(full, random)
    }

    /// The delay after a refusal that retrying soon cannot fix: the cap, jittered by at
    /// most half, so that a misconfigured fleet never hammers the platform.
    pub fn capped_delay(&mut self, random: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let cap = self.config.cap;
        cap.saturating_sub(cap.mul_f64(0.5 * self.jitter() * random.clamp(0.0, 1.0)))
    }

    fn jitter(&self) -> f64 {
        if self.config.jitter.is_finite() {
            self.config.jitter.clamp(0.0, 1.0)
        } else {
            1.0
        }
    }

    fn jittered(&self, full: Duration, random: f64) -> Duration {
        full.saturating_sub(full.mul_f64(self.jitter() * random.clamp(0.0, 1.0)))
    }
}

/// A small xorshift64* generator: enough for jitter, seeded by the caller.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// A uniform number in `[0, 1)`.
    pub(crate) fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jitter: f64) -> BackoffConfig {
        BackoffConfig {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(10),
            jitter,
        }
    }

    #[test]
    fn doubles_up_to_the_cap_without_jitter() {
        let mut b = Backoff::new(config(0.0));
        let delays: Vec<u64> = (0..6).map(|_| b.next_delay(0.7).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.next_delay(0.7), Duration::from_secs(1));
    }

    #[test]
    fn full_jitter_stays_within_the_delay() {
        let mut b = Backoff::new(config(1.0));
        let mut rng = Jitter::new(7);
        for n in 0..40 {
            let bound = Duration::from_secs(1 << n.min(4)).min(Duration::from_secs(10));
            assert!(b.next_delay(rng.next()) <= bound);
        }
    }

    #[test]
    fn capped_delay_is_at_least_half_the_cap() {
        let mut b = Backoff::new(config(1.0));
        for r in [0.0, 0.5, 0.999] {
            let d = b.capped_delay(r);
            assert!(
                d >= Duration::from_secs(5) && d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
    }

    #[test]
    fn jitter_numbers_are_in_range() {
        let mut rng = Jitter::new(0);
        assert!(
            (0..1000)
                .map(|_| rng.next())
                .all(|x| (0.0..1.0).contains(&x))
        );
    }
}
