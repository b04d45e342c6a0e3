//! Services left running by an applianced that died without stopping them.
//!
//! As PID 1 that cannot happen (the kernel reboots), but in hosted mode a
//! SIGKILLed applianced leaves its services holding their ports, and new copies
//! would crash-loop. The service states are stored with their pids; on boot,
//! every recorded process that still runs its service's program is killed with
//! its process group. The program check keeps a reused pid safe.

use std::path::Path;

use appliance_state::{StateError, Store};
use appliance_supervisor::{Manifest, ServiceStatus};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// State database key of the last observed service states.
const SERVICES_KEY: &str = "services/status";

/// A service's state as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Service name.
    pub name: String,
    /// State name, as shown by `services list`.
    pub state: String,
    /// Restarts so far.
    pub restarts: u32,
    /// When the state last changed.
    pub since_unix_ms: u64,
    /// The running process (and process group), if any.
    #[serde(default)]
    pub pid: Option<u32>,
}

/// Stores the current service states.
pub fn persist(store: &Store, services: &[ServiceStatus]) -> Result<(), StateError> {
    let rows: Vec<ServiceRecord> = services
        .iter()
        .map(|s| ServiceRecord {
            name: s.name.clone(),
            state: s.state.name().to_owned(),
            restarts: s.restarts,
            since_unix_ms: crate::time::unix_ms(s.since),
            pid: s.pid,
        })
        .collect();
    store.put(SERVICES_KEY, &rows)
}

/// True when `pid` (per `proc`, normally /proc) runs a program named like `command`.
fn runs(proc: &Path, pid: u32, command: &str) -> bool {
    let wanted = Path::new(command).file_name();
    std::fs::read_link(proc.join(pid.to_string()).join("exe"))
        .is_ok_and(|exe| exe.file_name() == wanted)
}

/// Kills the process groups of recorded services still running their program.
pub fn kill(store: &Store, manifests: &[Manifest], proc: &Path) {
    let rows = match store.get::<Vec<ServiceRecord>>(SERVICES_KEY) {
        Ok(rows) => rows.unwrap_or_default(),
        Err(e) => {
            warn!("cannot read the stored service states, leftovers not checked: {e}");
            return;
        }
    };
    for row in rows {
        let (Some(pid), Some(m)) = (row.pid, manifests.iter().find(|m| m.name == row.name)) else {
            continue;
        };
        if !runs(proc, pid, &m.command) {
            continue;
        }
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        // Services run in their own session, so the pid is also the group.
        match killpg(Pid::from_raw(raw), Signal::SIGKILL) {
            Ok(()) => {
                info!(service = %row.name, pid, "killed a copy left running by a previous applianced")
            }
            Err(e) => warn!(service = %row.name, pid, "cannot kill a leftover copy: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_pid_running_the_services_program_counts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("42")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/appliance/bin/portal", dir.path().join("42/exe"))
            .unwrap();
        assert!(runs(dir.path(), 42, "portal"));
        assert!(runs(dir.path(), 42, "/usr/lib/appliance/bin/portal"));
        assert!(
            !runs(dir.path(), 42, "audit"),
            "a reused pid running something else"
        );
        assert!(!runs(dir.path(), 43, "portal"), "a pid that is gone");
    }
}
