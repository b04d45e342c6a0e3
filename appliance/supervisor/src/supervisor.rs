//! The `Supervisor` handle: reconciles the placed manifests with the running service tasks,
//! and publishes their status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinHandle;

use crate::manifest::{start_order, validate_set, Manifest, ManifestError};
use crate::reaper::Reaper;
use crate::service::{Control, ServiceTask};
use crate::status::ServiceStatus;

/// Why a supervisor request failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("service {service}: cannot run as user {user:?}: {reason}")]
    User {
        service: String,
        user: String,
        reason: String,
    },
    #[error("service {service}: cannot prepare data directory {path}: {source}")]
    DataDir {
        service: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("service {service}: command {path} does not exist; install it or fix `command`")]
    CommandNotFound { service: String, path: PathBuf },
    #[error("service {service}: cannot spawn {command}: {source}")]
    Spawn {
        service: String,
        command: PathBuf,
        source: std::io::Error,
    },
    #[error("no service named {name:?} is placed on this node")]
    UnknownService { name: String },
}

/// What the supervisor needs from the daemon.
#[derive(Clone)]
pub struct SupervisorOptions {
    /// Where plain command names are resolved.
    pub bin_dir: PathBuf,
    /// Each service gets `data_dir/<name>`, owned by its user (`APPLIANCE_DATA_DIR`).
    pub data_dir: PathBuf,
    /// The process-wide reaper (its `run` task must be running).
    pub reaper: Reaper,
    /// Extra environment for every service, e.g. `APPLIANCE_NODE`.
    pub extra_env: BTreeMap<String, String>,
    /// How long a service waits for its dependencies before starting anyway.
    pub dependency_timeout: Duration,
}

impl SupervisorOptions {
    /// Options with no extra environment and a 60 s dependency wait.
    pub fn new(bin_dir: PathBuf, data_dir: PathBuf, reaper: Reaper) -> Self {
        SupervisorOptions {
            bin_dir,
            data_dir,
            reaper,
            extra_env: BTreeMap::new(),
            dependency_timeout: Duration::from_secs(60),
        }
    }
}

/// State shared by the handle and the service tasks.
pub(crate) struct Shared {
    pub opts: SupervisorOptions,
    pub status: watch::Sender<Vec<ServiceStatus>>,
}

impl Shared {
    /// Applies `f` to the named row and notifies subscribers.
    pub fn update(&self, name: &str, f: impl FnOnce(&mut ServiceStatus)) {
        self.status.send_modify(|all| {
            if let Some(s) = all.iter_mut().find(|s| s.name == name) {
                f(s);
            }
        });
    }
}

struct Running {
    manifest: Manifest,
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<()>,
}

/// Supervises the services placed on this node.
pub struct Supervisor {
    shared: Arc<Shared>,
    /// Serialises reconciles; ordered by name.
    services: Mutex<BTreeMap<String, Running>>,
}

impl Supervisor {
    pub fn new(opts: SupervisorOptions) -> Self {
        let (status, _) = watch::channel(Vec::new());
        Supervisor {
            shared: Arc::new(Shared { opts, status }),
            services: Mutex::new(BTreeMap::new()),
        }
    }

    /// Reconciles to exactly `manifests`: stops removed or changed services (reverse dependency
    /// order, waiting for them), then starts new or changed ones in dependency order (each waits
    /// for its dependencies to be healthy). Unchanged services are left alone.
    pub async fn set_placed(&self, manifests: Vec<Manifest>) -> Result<(), SupervisorError> {
        validate_set(&manifests)?;
        let order = start_order(&manifests)?;
        let mut services = self.services.lock().await;
        let wanted: BTreeMap<String, Manifest> =
            manifests.into_iter().map(|m| (m.name.clone(), m)).collect();

        let current: Vec<Manifest> = services.values().map(|r| r.manifest.clone()).collect();
        let stop_order =
            start_order(&current).unwrap_or_else(|_| services.keys().cloned().collect());
        for name in stop_order.iter().rev() {
            let keep = matches!((wanted.get(name), services.get(name)),
                (Some(w), Some(r)) if *w == r.manifest);
            if !keep {
                if let Some(running) = services.remove(name) {
                    tracing::info!(service = %name, "stopping (no longer placed or changed)");
                    stop(running).await;
                    self.shared
                        .status
                        .send_modify(|all| all.retain(|s| s.name != *name));
                }
            }
        }
        for name in order {
            if services.contains_key(&name) {
                continue;
            }
            let Some(manifest) = wanted.get(&name).cloned() else {
                continue;
            };
            services.insert(name.clone(), self.start(manifest));
        }
        Ok(())
    }

    fn start(&self, manifest: Manifest) -> Running {
        let row = ServiceStatus::new(&manifest.name, manifest.role);
        self.shared
            .status
            .send_modify(|all| match all.iter_mut().find(|s| s.name == row.name) {
                Some(old) => *old = row,
                None => all.push(row),
            });
        let (control, rx) = mpsc::unbounded_channel();
        let task = ServiceTask::new(manifest.clone(), self.shared.clone(), rx);
        Running {
            manifest,
            control,
            task: tokio::spawn(task.run()),
        }
    }

    /// The latest status of every placed service, in start order.
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.shared.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<Vec<ServiceStatus>> {
        self.shared.status.subscribe()
    }

    /// Stops (if running) and starts the service again; also clears Failed.
    pub async fn restart(&self, name: &str) -> Result<(), SupervisorError> {
        let services = self.services.lock().await;
        let running = services
            .get(name)
            .ok_or_else(|| SupervisorError::UnknownService {
                name: name.to_string(),
            })?;
        running
            .control
            .send(Control::Restart)
            .map_err(|_| SupervisorError::UnknownService {
                name: name.to_string(),
            })
    }

    /// Stops every service in reverse dependency order and waits for each to exit.
    /// Their rows stay in `status()` as Stopped.
    pub async fn stop_all(&self) {
        let mut services = self.services.lock().await;
        let current: Vec<Manifest> = services.values().map(|r| r.manifest.clone()).collect();
        let order = start_order(&current).unwrap_or_else(|_| services.keys().cloned().collect());
        for name in order.iter().rev() {
            if let Some(running) = services.remove(name) {
                stop(running).await;
            }
        }
    }
}

/// Asks the task to stop and waits for it (bounded by the stop timeout inside the task).
async fn stop(running: Running) {
    let (tx, rx) = oneshot::channel();
    if running.control.send(Control::Stop(tx)).is_ok() {
        let _ = rx.await;
    }
    let _ = running.task.await;
}
