//! Shared test helpers: one process-wide reaper (waitpid(-1) would steal children from a
//! second one), bounded waiting on supervisor status, and test manifests and supervisors.
#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use appliance_supervisor::{
    Manifest, Reaper, ServiceState, ServiceStatus, Supervisor, SupervisorOptions,
};

/// The reaper for this test process, running on its own thread and runtime so it outlives
/// each test's runtime.
pub fn reaper() -> Reaper {
    static REAPER: OnceLock<Reaper> = OnceLock::new();
    REAPER
        .get_or_init(|| {
            let reaper = Reaper::new();
            let run = reaper.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("reaper runtime");
                rt.block_on(run.run()).expect("reaper loop");
            });
            reaper
        })
        .clone()
}

/// Waits until `pred` holds for the status of `name` (bounded by `limit`), returning it.
pub async fn wait_for(
    sup: &Supervisor,
    name: &str,
    limit: Duration,
    pred: impl Fn(&ServiceStatus) -> bool,
) -> ServiceStatus {
    let mut rx = sup.subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let found = rx
            .borrow_and_update()
            .iter()
            .find(|s| s.name == name)
            .cloned();
        if let Some(s) = found.filter(|s| pred(s)) {
            return s;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            panic!("timed out waiting on {name}: {:#?}", sup.status());
        }
    }
}

/// A back-end manifest running `command args`, with `extra` TOML lines appended.
pub fn manifest(name: &str, command: &str, args: &[&str], extra: &str) -> Manifest {
    let text = format!(
        "version = 1\nname = {name:?}\nrole = \"backend\"\ncommand = {command:?}\nargs = {args:?}\n{extra}"
    );
    Manifest::parse(&text, Path::new(&format!("/test/{name}.toml"))).expect("valid test manifest")
}

/// A supervisor whose binaries and data live under `dir`, on this process's reaper.
pub fn supervisor(dir: &Path) -> Supervisor {
    Supervisor::new(SupervisorOptions::new(
        dir.join("bin"),
        dir.join("data"),
        reaper(),
    ))
}

/// Running with a pid.
pub fn running(s: &ServiceStatus) -> bool {
    s.state == ServiceState::Running && s.pid.is_some()
}
