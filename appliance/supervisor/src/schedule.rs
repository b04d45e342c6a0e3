//! When to probe a service's health after each start.
//!
//! Two kinds of probe share one schedule:
//! - **regular** probes every `[health] interval_ms`, counted from the spawn. Only these count
//!   toward `failures_before_restart`, so a service that never becomes healthy is declared
//!   unhealthy, killed and restarted at exactly the times it would be without early probes.
//! - **early** probes, only until the first success: the first [`FIRST_EARLY_PROBE`] after the
//!   spawn, then with a gap that doubles while it stays below the interval. A failed early probe
//!   changes nothing; a passing one makes the service healthy at once, so dependents and
//!   readiness do not wait a whole interval for a service that was up in milliseconds.

use std::time::Duration;

use tokio::time::Instant;

/// Delay from the spawn to the first early probe.
pub(crate) const FIRST_EARLY_PROBE: Duration = Duration::from_millis(20);

/// Which probe is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Before the first success; its failure does not count.
    Early,
    /// On the interval; its failure counts.
    Regular,
}

#[derive(Debug, Clone)]
pub(crate) struct ProbeSchedule {
    /// The manifest's interval: the regular period and the cap of the early gaps.
    interval: Duration,
    /// When the next regular probe is due (spawn + k × interval).
    next_regular: Instant,
    /// The next early probe and the gap that led to it; `None` once healthy or once the gap
    /// has grown to the interval.
    next_early: Option<(Instant, Duration)>,
}

impl ProbeSchedule {
    /// The schedule of a child spawned at `spawned`.
    pub fn new(spawned: Instant, interval: Duration) -> Self {
        ProbeSchedule {
            interval,
            next_regular: spawned + interval,
            next_early: (FIRST_EARLY_PROBE < interval)
                .then(|| (spawned + FIRST_EARLY_PROBE, FIRST_EARLY_PROBE)),
        }
    }

    /// The next probe and when it is due; a regular probe wins a tie.
    pub fn next(&self) -> (Instant, Probe) {
        match self.next_early {
            Some((at, _)) if at < self.next_regular => (at, Probe::Early),
            _ => (self.next_regular, Probe::Regular),
        }
    }

    /// How long an early probe started at `now` may take: its timeout, but never past the next
    /// regular probe, which must not be delayed by it.
    pub fn early_limit(&self, timeout: Duration, now: Instant) -> Duration {
        timeout.min(self.next_regular.saturating_duration_since(now))
    }

    /// Records that `probe` finished at `now`. A regular probe moves on by one interval from
    /// its due time (late probes catch up, as `tokio::time::interval` does); the next early
    /// probe waits twice the previous gap from `now`, and early probing ends once that gap
    /// would reach the interval, where regular probing takes over.
    pub fn done(&mut self, probe: Probe, now: Instant) {
        match probe {
            Probe::Regular => self.next_regular += self.interval,
            Probe::Early => {
                self.next_early = self.next_early.and_then(|(_, gap)| {
                    let gap = gap.saturating_mul(2);
                    (gap < self.interval).then(|| (now + gap, gap))
                });
            }
        }
    }

    /// The service passed a probe: only regular probes from now on.
    pub fn healthy(&mut self) {
        self.next_early = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// Runs the schedule for `until` after the spawn with probes that take no time and never
    /// pass; returns each probe's offset from the spawn in ms and its kind.
    fn failing_run(interval: Duration, until: Duration) -> Vec<(u128, Probe)> {
        let spawned = Instant::now();
        let mut s = ProbeSchedule::new(spawned, interval);
        let mut seen = Vec::new();
        for _ in 0..1000 {
            let (at, probe) = s.next();
            if at > spawned + until {
                break;
            }
            seen.push(((at - spawned).as_millis(), probe));
            s.done(probe, at);
        }
        seen
    }

    #[test]
    fn early_probes_double_until_the_interval_and_regular_ones_keep_their_times() {
        use Probe::{Early as E, Regular as R};
        let seen = failing_run(MS(2_000), MS(6_000));
        let want = [
            (20, E),
            (60, E),
            (140, E),
            (300, E),
            (620, E),
            (1_260, E),
            (2_000, R),
            (2_540, E),
            (4_000, R),
            (6_000, R),
        ];
        assert_eq!(seen, want);
        // Exactly the regular times of a plain interval: the failure deadline is unchanged.
        let regular: Vec<_> = seen
            .iter()
            .filter(|(_, p)| *p == R)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(regular, [2_000, 4_000, 6_000]);
    }

    #[test]
    fn short_intervals_get_few_or_no_early_probes() {
        use Probe::{Early as E, Regular as R};
        assert_eq!(
            failing_run(MS(50), MS(150)),
            [(20, E), (50, R), (60, E), (100, R), (150, R)]
        );
        assert_eq!(failing_run(MS(20), MS(60)), [(20, R), (40, R), (60, R)]);
        assert_eq!(failing_run(MS(10), MS(30)), [(10, R), (20, R), (30, R)]);
    }

    #[test]
    fn after_a_success_only_regular_probes_remain() {
        let spawned = Instant::now();
        let mut s = ProbeSchedule::new(spawned, MS(2_000));
        assert_eq!(s.next(), (spawned + MS(20), Probe::Early));
        s.done(Probe::Early, spawned + MS(21));
        s.healthy();
        assert_eq!(s.next(), (spawned + MS(2_000), Probe::Regular));
        s.done(Probe::Regular, spawned + MS(2_001));
        assert_eq!(s.next(), (spawned + MS(4_000), Probe::Regular));
    }

    #[test]
    fn slow_early_probes_back_off_from_when_they_finish() {
        let spawned = Instant::now();
        let mut s = ProbeSchedule::new(spawned, MS(2_000));
        s.done(Probe::Early, spawned + MS(500));
        assert_eq!(s.next(), (spawned + MS(540), Probe::Early));
    }

    #[test]
    fn early_probes_never_run_into_the_regular_one() {
        let spawned = Instant::now();
        let s = ProbeSchedule::new(spawned, MS(2_000));
        assert_eq!(s.early_limit(MS(1_000), spawned + MS(20)), MS(1_000));
        assert_eq!(s.early_limit(MS(1_000), spawned + MS(1_800)), MS(200));
        assert_eq!(
            s.early_limit(MS(1_000), spawned + MS(2_100)),
            Duration::ZERO
        );
    }
}
