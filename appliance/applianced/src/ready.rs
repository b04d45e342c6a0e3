//! Readiness: the node is ready when every reconciler converged and every
//! placed service is healthy (or running, without a health check). The first
//! time it is, applianced prints its "ready" line on the console; the image
//! tests and the boot benchmark wait for that line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use appliance_supervisor::{ServiceState, ServiceStatus};
use tracing::{info, warn};

use crate::node::Node;

/// The line printed once the node is ready.
pub const READY_LINE: &str = "applianced: ready";

/// Shared readiness flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// True once ready (and while it stays so).
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Our resident memory in KiB: total, anonymous and file-backed (`VmRSS`,
/// `RssAnon`, `RssFile` of `/proc/self/status`), for the log.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss: u64,
    anon: u64,
    file: u64,
}

fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
    }
}

/// How long after "ready" the idle memory is logged: start-up work (module
/// loading, first health checks, mke2fs on a first boot) is over by then.
const IDLE_MEMORY_AFTER: Duration = Duration::from_secs(10);

pub(crate) fn services_ok(services: &[ServiceStatus]) -> bool {
    services
        .iter()
        .all(|s| matches!(s.state, ServiceState::Healthy | ServiceState::Running))
}

fn summary(services: &[ServiceStatus]) -> String {
    if services.is_empty() {
        return "no services placed".to_owned();
    }
    services
        .iter()
        .map(|s| format!("{} {}", s.name, s.state.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Follows the service states: records the services reconciler's observation,
/// persists the states, and maintains readiness. Runs until applianced stops.
pub async fn watch(node: Arc<Node>, readiness: Readiness, warn_after: Duration) {
    let mut rx = node.supervisor.subscribe();
    let mut announced = false;
    let warn_at = tokio::time::Instant::now() + warn_after;
    let mut warned = false;
    // What was last written: the loop also wakes every second, and an idle
    // node must not sync its disk that often.
    let mut persisted: Option<Vec<ServiceStatus>> = None;
    loop {
        let services = rx.borrow_and_update().clone();
        let generation = node.desired().await.map(|d| d.generation).unwrap_or(0);
        let ok = services_ok(&services);
        let text = summary(&services);
        node.observations.record(
            "services",
            generation,
            if ok {
                Ok(text.clone())
            } else {
                Err(text.clone())
            },
        );
        if persisted.as_ref() != Some(&services) {
            node.persist_services(&services);
            persisted = Some(services.clone());
        }
        let ready = ok && node.observations.all_ok();
        readiness.0.store(ready, Ordering::Relaxed);
        if ready && !announced {
            announced = true;
            let m = memory();
            info!(
                rss_kib = m.rss,
                anon_kib = m.anon,
                file_kib = m.file,
                "node ready: {text}"
            );
            tokio::spawn(async {
                tokio::time::sleep(IDLE_MEMORY_AFTER).await;
                let m = memory();
                info!(
                    rss_kib = m.rss,
                    anon_kib = m.anon,
                    file_kib = m.file,
                    "idle memory, {} s after ready",
                    IDLE_MEMORY_AFTER.as_secs()
                );
            });
            // On the console for people and test harnesses alike.
            crate::console::announce(READY_LINE);
            #[cfg(feature = "failpoints")]
            fail::fail_point!(crate::failpoints::READY);
        }
        let timeout = tokio::time::sleep_until(warn_at);
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = timeout, if !warned && !announced => {
                warned = true;
                warn!("not ready after {warn_after:?}: {text}");
            }
            // Reconciler observations change without a service change.
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
