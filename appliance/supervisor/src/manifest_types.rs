//! The value types inside a manifest (ports, health, restart, stop), with their defaults.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Which tier a service belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Frontend,
    Backend,
    /// Part of the appliance itself (e.g. the management server): runs on
    /// every node, member or not, whatever its roles; the cluster's
    /// placement never sees it.
    System,
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// Who may reach a port: anyone (`public`), only cluster peers
/// (`internal`), or the node's management port (`management`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exposure {
    Public,
    Internal,
    /// The node's management port (TCP only, one per manifest): the daemon
    /// puts the node's configured port in place of the declared one (also
    /// in a health check on it) and the firewall's management rule, with
    /// its allowed sources, covers it; it is never opened as a public port.
    Management,
}

/// One `[[port]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Label, e.g. "http".
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    pub exposure: Exposure,
}

/// What a health check probes. Exactly one of `[health.tcp]`, `[health.http]`, `[health.exec]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// A TCP connect to 127.0.0.1:port succeeds.
    Tcp { port: u16 },
    /// `GET path` on 127.0.0.1:port answers 2xx.
    Http { port: u16, path: String },
    /// The command exits 0.
    Exec { command: String, args: Vec<String> },
}

/// The `[health]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawHealth")]
pub struct Health {
    pub check: HealthCheck,
    /// Period of the probes that count toward `failures_before_restart`, from each start.
    /// Until the first success the supervisor also probes sooner (from 20 ms after the spawn,
    /// doubling), so a service that is up at once is healthy at once.
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Grace after each start before failures count.
    pub start_period_ms: u64,
    /// Consecutive failures that make the supervisor kill and restart the service.
    pub failures_before_restart: u32,
}

impl Health {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    tcp: Option<TcpCheck>,
    http: Option<HttpCheck>,
    exec: Option<ExecCheck>,
    #[serde(default = "default_interval")]
    interval_ms: u64,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_start_period")]
    start_period_ms: u64,
    #[serde(default = "default_failures")]
    failures_before_restart: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpCheck {
    port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpCheck {
    port: u16,
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecCheck {
    command: String,
    #[serde(default)]
    args: Vec<String>,
}

/// A `[health]` table with none or several of its check kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("health needs exactly one of [health.tcp], [health.http], [health.exec]")]
pub struct HealthKindError {
    /// How many of the three were given (0, 2 or 3).
    pub given: usize,
}

impl TryFrom<RawHealth> for Health {
    type Error = HealthKindError;
    fn try_from(raw: RawHealth) -> Result<Self, HealthKindError> {
        let given = [raw.tcp.is_some(), raw.http.is_some(), raw.exec.is_some()]
            .into_iter()
            .filter(|&g| g)
            .count();
        let check = match (raw.tcp, raw.http, raw.exec) {
            (Some(t), None, None) => HealthCheck::Tcp { port: t.port },
            (None, Some(h), None) => HealthCheck::Http {
                port: h.port,
                path: h.path,
            },
            (None, None, Some(e)) => HealthCheck::Exec {
                command: e.command,
                args: e.args,
            },
            _ => return Err(HealthKindError { given }),
        };
        Ok(Health {
            check,
            interval_ms: raw.interval_ms,
            timeout_ms: raw.timeout_ms,
            start_period_ms: raw.start_period_ms,
            failures_before_restart: raw.failures_before_restart,
        })
    }
}

fn default_interval() -> u64 {
    5_000
}
fn default_timeout() -> u64 {
    2_000
}
fn default_start_period() -> u64 {
    10_000
}
fn default_failures() -> u32 {
    3
}

/// When a service that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Any exit (even status 0) restarts it.
    #[default]
    Always,
    /// Only a non-zero exit or a signal restarts it.
    OnFailure,
    /// It stays stopped.
    Never,
}

/// The `[restart]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Restart {
    pub policy: RestartPolicy,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Restarts allowed in a row; the next failure marks the service Failed.
    pub max_restarts: u32,
    /// Staying up (healthy, or running without a check) this long resets the failure count.
    pub reset_after_ms: u64,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            policy: RestartPolicy::Always,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            max_restarts: 5,
            reset_after_ms: 60_000,
        }
    }
}

/// The `[stop]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Stop {
    /// Signal name sent to the process group first, e.g. "SIGTERM".
    pub signal: String,
    /// Grace before SIGKILL.
    pub timeout_ms: u64,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            signal: "SIGTERM".to_string(),
            timeout_ms: 10_000,
        }
    }
}
