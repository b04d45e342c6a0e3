//! The last observation of each reconciler (network, firewall, services), as
//! shown by `status`: always what a reconciler last saw, never a guess. The
//! reconcilers record here as they run (see the crate's top doc for where
//! they are).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::time::unix_ms;

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
