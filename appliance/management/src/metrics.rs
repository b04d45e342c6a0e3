//! `/metrics`: node, service, firewall-counter, membership and join figures
//! in the Prometheus text format, gathered from applianced at each scrape;
//! plus this server's own counters (sign-ins, joins seen through it).
//! Placeholder counters until the exposition lands.

use std::sync::atomic::{AtomicU64, Ordering};

/// This server's own counters.
#[derive(Default)]
pub struct Metrics {
    sign_ins_ok: AtomicU64,
    sign_ins_failed: AtomicU64,
    sign_ins_throttled: AtomicU64,
    joins_ok: AtomicU64,
    joins_failed: AtomicU64,
    last_join_ms: AtomicU64,
}

impl Metrics {
    /// A successful sign-in (web or API).
    pub fn sign_in_ok(&self) {
        self.sign_ins_ok.fetch_add(1, Ordering::Relaxed);
    }

    /// A failed sign-in.
    pub fn sign_in_failed(&self) {
        self.sign_ins_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A sign-in refused by the rate limiter.
    pub fn sign_in_throttled(&self) {
        self.sign_ins_throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// A `ClusterAdd` through this server ended, after `ms` milliseconds.
    pub fn join(&self, ok: bool, ms: u64) {
        if ok {
            self.joins_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.joins_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.last_join_ms.store(ms, Ordering::Relaxed);
    }
}
