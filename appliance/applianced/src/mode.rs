//! How applianced runs: as PID 1 in the image, or hosted as an ordinary process
//! inside a network namespace. Decided once, at the top of `main`.

use std::io;
use std::os::unix::fs::MetadataExt;

/// The two ways applianced runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// PID 1 of the appliance: boot steps, then the daemon.
    Pid1,
    /// An ordinary process in a network namespace, for tests and trials.
    Hosted,
}

impl Mode {
    /// PID 1 or not.
    pub fn detect() -> Self {
        if std::process::id() == 1 {
            Mode::Pid1
        } else {
            Mode::Hosted
        }
    }

    /// As shown in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Pid1 => "pid1",
            Mode::Hosted => "hosted",
        }
    }
}

/// True when this process shares the network namespace of the machine's init,
/// i.e. hosted applianced would reconfigure the machine itself.
pub fn in_initial_netns() -> io::Result<bool> {
    let ours = std::fs::metadata("/proc/self/ns/net")?;
    let init = std::fs::metadata("/proc/1/ns/net")?;
    Ok(ours.ino() == init.ino() && ours.dev() == init.dev())
}

/// Hosted mode: give the process its own UTS namespace, so the configured
/// hostname stays inside it, and become the subreaper of every descendant, so
/// orphans of services are reaped here as they would be by PID 1.
/// Must run before any thread is started (unshare acts on the calling thread).
pub fn enter_hosted() -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS).map_err(|e| {
        io::Error::other(format!(
            "unshare(CLONE_NEWUTS) failed: {e}; hosted mode needs root"
        ))
    })?;
    appliance_supervisor::reaper::set_child_subreaper()
}
