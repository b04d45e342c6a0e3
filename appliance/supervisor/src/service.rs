//! One task per service: a small state machine that starts the child, probes its health,
//! restarts it per policy with backoff, and stops it on request.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{killpg, Signal};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, timeout};

use crate::manifest_types::{HealthCheck, RestartPolicy};
use crate::reaper::Spawned;
use crate::schedule::{Probe, ProbeSchedule};
use crate::spawn::{launch, resolve_command};
use crate::status::ServiceState;
use crate::supervisor::{Shared, SupervisorError};
use crate::{backoff, health, Manifest};

/// How long to wait for a SIGKILLed child to be reaped before giving up on it.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Why one health probe failed.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    /// The probe ran and failed.
    #[error(transparent)]
    Check(#[from] health::HealthError),
    /// The exec check's command is missing.
    #[error(transparent)]
    Command(#[from] SupervisorError),
}

/// Requests from the `Supervisor` handle.
pub(crate) enum Control {
    /// Stop (if running) and start again, clearing Failed and the failure count.
    Restart,
    /// Stop and end the task; the sender is told when the child is gone.
    Stop(oneshot::Sender<()>),
}

/// How one run of the child ended.
enum Outcome {
    /// Stop requested (reply to send) or the handle went away (`None`).
    Stop(Option<oneshot::Sender<()>>),
    /// Restart requested.
    Restart,
    /// The child ended by itself or was killed for failing health checks (`error`).
    Ended {
        status: Option<ExitStatus>,
        error: Option<String>,
        up_for: Option<Duration>,
    },
}

pub(crate) struct ServiceTask {
    pub manifest: Manifest,
    pub shared: Arc<Shared>,
    pub rx: mpsc::UnboundedReceiver<Control>,
    /// Consecutive failures, for backoff and the Failed verdict.
    failures: u32,
}

impl ServiceTask {
    pub fn new(
        manifest: Manifest,
        shared: Arc<Shared>,
        rx: mpsc::UnboundedReceiver<Control>,
    ) -> Self {
        ServiceTask {
            manifest,
            shared,
            rx,
            failures: 0,
        }
    }

    fn set_state(&self, state: ServiceState) {
        self.shared.update(&self.manifest.name, |s| {
            if s.state != state {
                s.state = state;
                s.since = SystemTime::now();
            }
        });
    }

    pub async fn run(mut self) {
        if let Some(reply) = self.wait_for_dependencies().await {
            return self.finish(reply);
        }
        loop {
            let (status, error, up_for) = match self.run_once().await {
                Outcome::Stop(reply) => return self.finish(reply),
                Outcome::Restart => {
                    self.failures = 0;
                    self.shared.update(&self.manifest.name, |s| s.restarts += 1);
                    continue;
                }
                Outcome::Ended {
                    status,
                    error,
                    up_for,
                } => (status, error, up_for),
            };
            let r = &self.manifest.restart;
            if up_for.is_some_and(|d| d >= Duration::from_millis(r.reset_after_ms)) {
                self.failures = 0;
            }
            let failed = error.is_some() || !status.is_some_and(|s| s.success());
            let error = error.or_else(|| status.map(|s| format!("exited: {s}")));
            self.shared.update(&self.manifest.name, |s| {
                s.pid = None;
                s.last_exit = status;
                s.last_error.clone_from(&error);
            });
            let restart = match r.policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => failed,
                RestartPolicy::Never => false,
            };
            let verdict = if !restart {
                Some(ServiceState::Stopped)
            } else {
                self.failures += 1;
                (self.failures > r.max_restarts).then(|| ServiceState::Failed {
                    reason: format!(
                        "{} consecutive failures (max_restarts = {}); last: {}",
                        self.failures,
                        r.max_restarts,
                        error.as_deref().unwrap_or("unknown")
                    ),
                })
            };
            if let Some(state) = verdict {
                // Down until somebody asks for a restart.
                tracing::warn!(service = %self.manifest.name, ?state, "service is down");
                self.set_state(state);
                match self.rx.recv().await {
                    Some(Control::Restart) => self.failures = 0,
                    Some(Control::Stop(reply)) => return self.finish(Some(reply)),
                    None => return self.finish(None),
                }
            } else {
                let delay = backoff::delay(
                    Duration::from_millis(r.backoff_initial_ms),
                    Duration::from_millis(r.backoff_max_ms),
                    self.failures,
                );
                tracing::info!(service = %self.manifest.name, ?delay, "restarting after backoff");
                self.set_state(ServiceState::Backoff {
                    until: SystemTime::now() + delay,
                });
                tokio::select! {
                    _ = sleep(delay) => {}
                    ctrl = self.rx.recv() => match ctrl {
                        Some(Control::Restart) => self.failures = 0,
                        Some(Control::Stop(reply)) => return self.finish(Some(reply)),
                        None => return self.finish(None),
                    },
                }
            }
            self.shared.update(&self.manifest.name, |s| s.restarts += 1);
        }
    }

    fn finish(&self, reply: Option<oneshot::Sender<()>>) {
        self.shared.update(&self.manifest.name, |s| s.pid = None);
        self.set_state(ServiceState::Stopped);
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
    }

    /// Waits (bounded) until every dependency is Healthy or Running. Returns a stop request
    /// that arrived meanwhile.
    async fn wait_for_dependencies(&mut self) -> Option<Option<oneshot::Sender<()>>> {
        let deps = self.manifest.depends_on.clone();
        if deps.is_empty() {
            return None;
        }
        let mut status = self.shared.status.subscribe();
        let deadline = tokio::time::Instant::now() + self.shared.opts.dependency_timeout;
        self.shared.update(&self.manifest.name, |s| {
            s.last_error = Some(format!("waiting for dependencies: {}", deps.join(", ")));
        });
        loop {
            let ready = {
                let all = status.borrow_and_update();
                deps.iter().all(|d| {
                    all.iter().any(|s| {
                        s.name == *d
                            && matches!(s.state, ServiceState::Healthy | ServiceState::Running)
                    })
                })
            };
            if ready {
                return None;
            }
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return Some(None) },
                _ = sleep_until(deadline) => {
                    tracing::warn!(service = %self.manifest.name, ?deps, "dependencies not ready in time; starting anyway");
                    return None;
                }
                ctrl = self.rx.recv() => match ctrl {
                    Some(Control::Restart) => {}
                    Some(Control::Stop(reply)) => return Some(Some(reply)),
                    None => return Some(None),
                },
            }
        }
    }

    /// Starts the child once and supervises it until it ends or a request arrives.
    async fn run_once(&mut self) -> Outcome {
        self.set_state(ServiceState::Starting);
        let opts = &self.shared.opts;
        let env = crate::spawn::LaunchEnv {
            bin_dir: &opts.bin_dir,
            data_dir: &opts.data_dir,
            extra_env: &opts.extra_env,
            reaper: &opts.reaper,
        };
        let spawned = match launch(&self.manifest, &env) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(service = %self.manifest.name, error = %e, "start failed");
                return Outcome::Ended {
                    status: None,
                    error: Some(e.to_string()),
                    up_for: None,
                };
            }
        };
        let Spawned { pid, mut exit, .. } = spawned;
        let started = Instant::now();
        let health = self.manifest.health.clone();
        self.shared.update(&self.manifest.name, |s| {
            s.pid = u32::try_from(pid.as_raw()).ok()
        });
        self.set_state(if health.is_some() {
            ServiceState::Starting
        } else {
            ServiceState::Running
        });
        tracing::info!(service = %self.manifest.name, pid = pid.as_raw(), "started");

        // Without a health check, being up counts as healthy for the reset_after rule.
        let mut healthy_since = health.is_none().then_some(started);
        let mut ever_healthy = false;
        let mut misses = 0u32;
        let mut schedule = health
            .as_ref()
            .map(|h| ProbeSchedule::new(tokio::time::Instant::from_std(started), h.interval()));
        loop {
            let due = schedule.as_ref().map(ProbeSchedule::next);
            let wake = async move {
                match due {
                    Some((at, _)) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = &mut exit => {
                    let up_for = healthy_since.map(|t| t.elapsed());
                    return Outcome::Ended { status: status.ok(), error: None, up_for };
                }
                ctrl = self.rx.recv() => {
                    self.stop_child(pid, &mut exit).await;
                    return match ctrl {
                        Some(Control::Restart) => Outcome::Restart,
                        Some(Control::Stop(reply)) => Outcome::Stop(Some(reply)),
                        None => Outcome::Stop(None),
                    };
                }
                () = wake => {
                    let (Some(h), Some(schedule), Some((_, kind))) = (&health, &mut schedule, due) else {
                        continue;
                    };
                    let limit = match kind {
                        Probe::Regular => h.timeout(),
                        Probe::Early => schedule.early_limit(h.timeout(), tokio::time::Instant::now()),
                    };
                    let result = self.probe(&h.check, limit).await;
                    schedule.done(kind, tokio::time::Instant::now());
                    match result {
                        Ok(()) => {
                            misses = 0;
                            ever_healthy = true;
                            schedule.healthy();
                            if healthy_since.is_none() {
                                tracing::info!(service = %self.manifest.name, after = ?started.elapsed(), "healthy");
                            }
                            healthy_since.get_or_insert_with(Instant::now);
                            self.shared.update(&self.manifest.name, |s| s.last_error = None);
                            self.set_state(ServiceState::Healthy);
                        }
                        // Only an opportunity to become healthy early: the regular probes
                        // decide about failure, on the same schedule as without early ones.
                        Err(e) if kind == Probe::Early => {
                            tracing::debug!(service = %self.manifest.name, error = %e, "early health probe failed");
                        }
                        Err(e) => {
                            let msg = format!("health check: {e}");
                            self.shared.update(&self.manifest.name, |s| s.last_error = Some(msg.clone()));
                            healthy_since = None;
                            if !ever_healthy && started.elapsed() < self.manifest.start_period() {
                                continue;
                            }
                            misses += 1;
                            self.set_state(ServiceState::Unhealthy);
                            if misses >= h.failures_before_restart {
                                tracing::warn!(service = %self.manifest.name, misses, "unhealthy; killing");
                                let _ = killpg(pid, Signal::SIGKILL);
                                let status = timeout(KILL_WAIT, &mut exit).await.ok().and_then(Result::ok);
                                let error = Some(format!("killed after {misses} failed health checks; last: {e}"));
                                return Outcome::Ended { status, error, up_for: None };
                            }
                        }
                    }
                }
            }
        }
    }

    async fn probe(&self, check: &HealthCheck, limit: Duration) -> Result<(), ProbeError> {
        let local = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let result = match check {
            HealthCheck::Tcp { port } => health::check_tcp(local(*port), limit).await,
            HealthCheck::Http { port, path } => health::check_http(local(*port), path, limit).await,
            HealthCheck::Exec { command, args } => {
                let opts = &self.shared.opts;
                let path = resolve_command(&self.manifest.name, &opts.bin_dir, command)?;
                health::check_exec(&opts.reaper, path, args, limit).await
            }
        };
        Ok(result?)
    }

    /// Sends the stop signal to the process group, escalates to SIGKILL after the timeout,
    /// waits for the exit, then kills any stragglers left in the group.
    async fn stop_child(&self, pid: nix::unistd::Pid, exit: &mut oneshot::Receiver<ExitStatus>) {
        self.set_state(ServiceState::Stopping);
        let signal = self.manifest.stop_signal();
        let grace = Duration::from_millis(self.manifest.stop.timeout_ms);
        let _ = killpg(pid, signal);
        let status = match timeout(grace, &mut *exit).await {
            Ok(status) => status.ok(),
            Err(_) => {
                tracing::warn!(service = %self.manifest.name, ?grace, "did not stop in time; SIGKILL");
                let _ = killpg(pid, Signal::SIGKILL);
                timeout(KILL_WAIT, exit).await.ok().and_then(Result::ok)
            }
        };
        // The leader is gone; a group member that outlived it would otherwise leak.
        let _ = killpg(pid, Signal::SIGKILL);
        self.shared.update(&self.manifest.name, |s| {
            s.pid = None;
            s.last_exit = status;
        });
        tracing::info!(service = %self.manifest.name, ?status, "stopped");
    }
}
