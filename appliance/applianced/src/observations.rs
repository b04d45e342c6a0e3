//! The last observation of each reconciler (network, firewall, services), as
//! shown by `status`: always what a reconciler last saw, never a guess; and
//! the loop that re-runs them, so drift is repaired and observations stay fresh.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::warn;

use crate::node::Node;

/// Reconciler names, in the order they are shown.
pub const NAMES: [&str; 3] = ["network", "firewall", "services"];

/// One reconciler's last run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// True when the last run converged.
    pub ok: bool,
    /// Generation of the desired state it worked on.
    pub generation: u64,
    /// What it did, or why it failed.
    pub message: String,
    /// Unix time (ms) of the run.
    pub at_unix_ms: u64,
}

/// Observations of all reconcilers.
#[derive(Debug, Default)]
pub struct Observations {
    inner: Mutex<BTreeMap<&'static str, Observation>>,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Observations {
    /// Records a run of `name`.
    pub fn record(&self, name: &'static str, generation: u64, result: Result<String, String>) {
        let (ok, message) = match result {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        let obs = Observation {
            ok,
            generation,
            message,
            at_unix_ms: unix_ms(SystemTime::now()),
        };
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, obs);
    }

    /// Every reconciler's last observation (default when it never ran).
    pub fn all(&self) -> Vec<(&'static str, Observation)> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        NAMES
            .iter()
            .map(|n| (*n, map.get(n).cloned().unwrap_or_default()))
            .collect()
    }

    /// True when every reconciler ran and converged.
    pub fn all_ok(&self) -> bool {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        NAMES.iter().all(|n| map.get(n).is_some_and(|o| o.ok))
    }
}

/// Reconciles every `every` until `stop` turns true, so drift is repaired and
/// the status stays a fresh observation. A run is never cancelled half-way:
/// `stop` is only looked at between runs.
pub async fn reconcile_loop(
    node: Arc<Node>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        match node.reconcile().await {
            Ok(changes) if !changes.is_empty() => warn!("repaired drift: {}", changes.join("; ")),
            Ok(_) => {}
            Err(e) => warn!("reconcile failed: {e}"),
        }
    }
}
