//! Sign-in attempts per source address and per account.
//!
//! After [`FREE_FAILURES`] failures within [`WINDOW_MS`], each further
//! attempt must wait, from the last failure, 1 s, then 2 s, 4 s, ... up to
//! [`MAX_WAIT_MS`]; an attempt during the wait is refused before any
//! password is hashed. Failures older than the window are forgotten.
//!
//! Memory is bounded: at most [`MAX_KEYS`] keys. Sources are keyed by the
//! IPv4 address or the IPv6 /64 (one host holds a whole /64), accounts only
//! when the account exists (the caller says so), so typed names cannot be
//! used to flush the table. When full, the key whose last failure is the
//! oldest is dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use super::sessions::now_ms;

/// Failures allowed within the window before attempts are slowed down.
pub const FREE_FAILURES: usize = 5;
/// How long a failure counts.
pub const WINDOW_MS: u64 = 15 * 60 * 1000;
/// The longest wait.
pub const MAX_WAIT_MS: u64 = 15 * 60 * 1000;
/// The bound on tracked keys.
pub const MAX_KEYS: usize = 10_000;
/// Failures remembered per key (more never lengthen the wait).
const MAX_REMEMBERED: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Source(IpAddr),
    Account(String),
}

/// An attempt refused: try again in `wait_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed sign-ins: try again in {wait_secs} s")]
pub struct Throttled {
    /// Seconds until the next attempt is accepted (at least 1).
    pub wait_secs: u64,
}

/// The failures per source and per account.
#[derive(Default)]
pub struct Limiter {
    map: Mutex<HashMap<Key, VecDeque<u64>>>,
    /// Keys whose refusal was already reported since their last failure:
    /// refusals are audited once per wait, so a flood of refused attempts
    /// cannot flood the audit trail.
    noted: Mutex<HashSet<Key>>,
    /// Keys with an attempt being checked now: one at a time per source and
    /// per account, so that parallel guesses cannot all pass the check
    /// before the first failure is recorded.
    in_flight: Mutex<HashSet<Key>>,
}

/// An attempt being checked; dropping it lets the next one in.
#[must_use = "the attempt ends when this is dropped"]
pub struct Attempt<'a> {
    limiter: &'a Limiter,
    keys: Vec<Key>,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .limiter
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for k in &self.keys {
            in_flight.remove(k);
        }
    }
}

fn source_key(ip: IpAddr) -> Key {
    match ip.to_canonical() {
        IpAddr::V4(v4) => Key::Source(IpAddr::V4(v4)),
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            Key::Source(IpAddr::from(o))
        }
    }
}

/// When the next attempt is allowed after `failures` (oldest first).
fn allowed_at(failures: &VecDeque<u64>, now: u64) -> u64 {
    let recent = failures
        .iter()
        .filter(|t| now.saturating_sub(**t) < WINDOW_MS)
        .count();
    if recent < FREE_FAILURES {
        return 0;
    }
    let doublings = u32::try_from(recent - FREE_FAILURES)
        .unwrap_or(u32::MAX)
        .min(20);
    let wait = 1000u64.saturating_mul(1 << doublings).min(MAX_WAIT_MS);
    failures.back().copied().unwrap_or(now).saturating_add(wait)
}

impl Limiter {
    /// Nothing tracked.
    pub fn new() -> Self {
        Self::default()
    }

    /// May `source` try to sign in as `account` now? `account` is `None`
    /// when no such account exists.
    pub fn check(&self, source: IpAddr, account: Option<&str>) -> Result<(), Throttled> {
        self.check_at(source, account, now_ms())
    }

    /// [`Limiter::check`] at a given time (tests).
    pub fn check_at(
        &self,
        source: IpAddr,
        account: Option<&str>,
        now: u64,
    ) -> Result<(), Throttled> {
        let map = self.lock();
        let mut until = 0;
        for key in keys(source, account) {
            if let Some(f) = map.get(&key) {
                until = until.max(allowed_at(f, now));
            }
        }
        if until > now {
            Err(Throttled {
                wait_secs: (until - now).div_ceil(1000),
            })
        } else {
            Ok(())
        }
    }

    /// Records a failed sign-in.
    pub fn failure(&self, source: IpAddr, account: Option<&str>) {
        self.failure_at(source, account, now_ms());
    }

    /// [`Limiter::failure`] at a given time (tests).
    pub fn failure_at(&self, source: IpAddr, account: Option<&str>, now: u64) {
        let mut map = self.lock();
        for key in keys(source, account) {
            if !map.contains_key(&key) && map.len() >= MAX_KEYS {
                map.retain(|_, f| f.back().is_some_and(|t| now.saturating_sub(*t) < WINDOW_MS));
                if map.len() >= MAX_KEYS {
                    let oldest = map
                        .iter()
                        .min_by_key(|(_, f)| f.back().copied().unwrap_or(0))
                        .map(|(k, _)| k.clone());
                    if let Some(k) = oldest {
                        map.remove(&k);
                    }
                }
            }
            self.noted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            let f = map.entry(key).or_default();
            while f
                .front()
                .is_some_and(|t| now.saturating_sub(*t) >= WINDOW_MS)
            {
                f.pop_front();
            }
            if f.len() >= MAX_REMEMBERED {
                f.pop_front();
            }
            f.push_back(now);
        }
    }

    /// Starts an attempt of `source` on `account`, or `None` while another
    /// attempt of the same source or account is being checked (refuse it:
    /// "try again in 1 s").
    pub fn begin(&self, source: IpAddr, account: Option<&str>) -> Option<Attempt<'_>> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<Key> = keys(source, account).collect();
        if keys.iter().any(|k| in_flight.contains(k)) {
            return None;
        }
        for k in &keys {
            in_flight.insert(k.clone());
        }
        Some(Attempt {
            limiter: self,
            keys,
        })
    }

    /// Called on a refusal: true the first time since the last failure of
    /// `source` (or `account`), when the refusal is worth an audit event;
    /// later ones only go to the log.
    pub fn first_refusal(&self, source: IpAddr, account: Option<&str>) -> bool {
        let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
        if noted.len() >= MAX_KEYS {
            noted.clear();
        }
        let mut first = false;
        for key in keys(source, account) {
            first |= noted.insert(key);
        }
        first
    }

    /// Records a successful sign-in: the account's failures are forgotten
    /// (the source's are kept, so one valid account cannot unlock guessing
    /// others from the same address).
    pub fn success(&self, account: &str) {
        self.lock().remove(&Key::Account(account.to_string()));
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, VecDeque<u64>>> {
        // Every change is one call on the map: a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn keys(source: IpAddr, account: Option<&str>) -> impl Iterator<Item = Key> {
    std::iter::once(source_key(source)).chain(account.map(|a| Key::Account(a.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn five_failures_are_free_then_the_wait_doubles_up_to_fifteen_minutes() {
        let l = Limiter::new();
        let mut now = 1_000_000;
        for _ in 0..FREE_FAILURES {
            assert_eq!(l.check_at(A, Some("ann"), now), Ok(()));
            l.failure_at(A, Some("ann"), now);
        }
        assert_eq!(
            l.check_at(A, Some("ann"), now),
            Err(Throttled { wait_secs: 1 })
        );
        now += 1000;
        assert_eq!(l.check_at(A, Some("ann"), now), Ok(()));
        l.failure_at(A, Some("ann"), now);
        assert_eq!(
            l.check_at(A, Some("ann"), now),
            Err(Throttled { wait_secs: 2 })
        );
        for _ in 0..20 {
            l.failure_at(A, Some("ann"), now);
        }
        assert_eq!(
            l.check_at(A, Some("ann"), now),
            Err(Throttled { wait_secs: 900 })
        );
        // Once the window has passed, everything is forgotten.
        now += WINDOW_MS;
        assert_eq!(l.check_at(A, Some("ann"), now), Ok(()));
    }

    #[test]
    fn per_account_across_sources_and_per_source_across_accounts() {
        let l = Limiter::new();
        for i in 0..FREE_FAILURES as u64 {
            l.failure_at(A, Some("ann"), i);
        }
        // Another source, same account: slowed.
        assert!(l.check_at(B, Some("ann"), 10).is_err());
        // Same source, another account: slowed.
        assert!(l.check_at(A, Some("bob"), 10).is_err());
        assert!(l.check_at(A, None, 10).is_err());
        // Another source and account: free.
        assert_eq!(l.check_at(B, Some("bob"), 10), Ok(()));
    }

    #[test]
    fn success_clears_the_account_not_the_source() {
        let l = Limiter::new();
        for i in 0..FREE_FAILURES as u64 {
            l.failure_at(A, Some("ann"), i);
        }
        l.success("ann");
        assert_eq!(l.check_at(B, Some("ann"), 10), Ok(()));
        assert!(l.check_at(A, Some("ann"), 10).is_err());
    }

    #[test]
    fn ipv6_sources_count_per_slash_64_and_mapped_v4_as_v4() {
        let l = Limiter::new();
        for i in 0..FREE_FAILURES as u16 {
            let ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i + 1));
            l.failure_at(ip, None, u64::from(i));
        }
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 9, 9, 9, 9));
        assert!(l.check_at(other, None, 10).is_err());
        let next_net = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert_eq!(l.check_at(next_net, None, 10), Ok(()));

        for i in 0..FREE_FAILURES as u64 {
            l.failure_at(
                IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped()),
                None,
                i,
            );
        }
        assert!(l
            .check_at(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), None, 10)
            .is_err());
    }

    #[test]
    fn a_refusal_is_reported_once_per_failure() {
        let l = Limiter::new();
        for i in 0..FREE_FAILURES as u64 {
            l.failure_at(A, Some("ann"), i);
        }
        assert!(l.first_refusal(A, Some("ann")));
        assert!(!l.first_refusal(A, Some("ann")));
        assert!(!l.first_refusal(A, None));
        // Another source trying the same account: its first.
        assert!(l.first_refusal(B, Some("ann")));
        l.failure_at(A, Some("ann"), 10);
        assert!(l.first_refusal(A, Some("ann")));
    }

    #[test]
    fn one_attempt_at_a_time_per_source_and_per_account() {
        let l = Limiter::new();
        let a = l.begin(A, Some("ann")).expect("first");
        assert!(l.begin(A, Some("bob")).is_none(), "same source");
        assert!(l.begin(B, Some("ann")).is_none(), "same account");
        let b = l.begin(B, Some("bob")).expect("other source and account");
        drop(a);
        assert!(l.begin(A, Some("ann")).is_some());
        drop(b);
    }

    #[test]
    fn memory_is_bounded() {
        let l = Limiter::new();
        for i in 0..(MAX_KEYS as u32 + 500) {
            l.failure_at(IpAddr::V4(Ipv4Addr::from(i)), None, u64::from(i));
        }
        assert_eq!(l.len(), MAX_KEYS);
    }
}
