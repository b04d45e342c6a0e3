//! Restart delay: exponential, capped, jitter-free so it is predictable and testable.

use std::time::Duration;

/// Delay before restarting after the `failures`-th consecutive failure:
/// `min(initial * 2^(failures-1), max)`. Zero failures means no delay.
pub fn delay(initial: Duration, max: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
    initial.checked_mul(factor).map_or(max, |d| d.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_then_caps() {
        let got: Vec<_> = (0..7).map(|n| delay(MS(100), MS(1_000), n)).collect();
        let want = [0, 100, 200, 400, 800, 1_000, 1_000].map(MS);
        assert_eq!(got, want);
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        assert_eq!(delay(MS(500), MS(30_000), 40), MS(30_000));
        assert_eq!(delay(MS(500), MS(30_000), u32::MAX), MS(30_000));
        assert_eq!(delay(Duration::from_secs(u64::MAX / 2), MS(7), 3), MS(7));
    }
}
