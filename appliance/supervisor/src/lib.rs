//! Service supervision for applianced.
//!
//! - [`reaper`]: the only place children are spawned and reaped (PID 1 reaps everything).
//! - [`manifest`] / [`manifest_types`]: the versioned service manifest, validation, start order.
//! - [`backoff`]: restart delays. [`health`]: tcp/http/exec probes. `schedule`: when to probe
//!   (quickly after a start until the first success, then on the manifest's interval).
//! - [`Supervisor`]: reconciles placed manifests into one supervised task per service.

pub mod backoff;
pub mod health;
pub mod manifest;
pub mod manifest_types;
mod order;
pub mod reaper;
mod schedule;
mod service;
mod spawn;
pub mod status;
mod supervisor;

pub use manifest::{load_dir, start_order, validate_set, Manifest, ManifestError};
pub use manifest_types::{
    Exposure, Health, HealthCheck, Port, Protocol, Restart, RestartPolicy, Role, Stop,
};
pub use reaper::{set_child_subreaper, Reaper, Spawned};
pub use status::{ServiceState, ServiceStatus};
pub use supervisor::{Supervisor, SupervisorError, SupervisorOptions};
