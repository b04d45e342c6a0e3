//! What the supervisor reports about each service.

use std::process::ExitStatus;
use std::time::SystemTime;

use crate::manifest_types::Role;

/// Lifecycle state of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    /// Waiting for dependencies, or spawned and not yet passing its health check.
    Starting,
    /// Up, and it has no health check.
    Running,
    /// Up and its last health check passed.
    Healthy,
    /// Up and its last health check failed.
    Unhealthy,
    /// Exited; restarts at `until`.
    Backoff { until: SystemTime },
    /// Too many consecutive failures; stays down until `Supervisor::restart`.
    Failed { reason: String },
    /// The stop signal was sent; waiting for the exit.
    Stopping,
    /// Not running, and not going to be restarted automatically.
    Stopped,
}

impl ServiceState {
    /// The state's name as the API, the CLI and the logs show it.
    pub fn name(&self) -> &'static str {
        match self {
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Healthy => "healthy",
            ServiceState::Unhealthy => "unhealthy",
            ServiceState::Backoff { .. } => "backoff",
            ServiceState::Failed { .. } => "failed",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
        }
    }
}

/// One row of `Supervisor::status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    pub name: String,
    pub role: Role,
    pub state: ServiceState,
    /// The running child's pid (also its process group).
    pub pid: Option<u32>,
    /// How many times the supervisor started it again (automatically or by request).
    pub restarts: u32,
    /// How the previous run ended.
    pub last_exit: Option<ExitStatus>,
    /// The latest problem: spawn error, failed health probe, dependency wait.
    pub last_error: Option<String>,
    /// When `state` last changed.
    pub since: SystemTime,
}

impl ServiceStatus {
    pub(crate) fn new(name: &str, role: Role) -> Self {
        ServiceStatus {
            name: name.to_string(),
            role,
            state: ServiceState::Starting,
            pid: None,
            restarts: 0,
            last_exit: None,
            last_error: None,
            since: SystemTime::now(),
        }
    }
}
