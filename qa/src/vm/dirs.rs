//! The private directories of VMs and disk copies (`qa-vm-<pid>-*` in the
//! temp dir), and the removal of those left by runs that were killed.

use std::path::Path;

use anyhow::Context;

/// Prefix of the private directories (the process id follows).
const DIR_PREFIX: &str = "qa-vm-";

/// A new private directory `qa-vm-<pid>-*` in the temp dir.
pub(super) fn private_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir()
        .context("creating a VM directory")
}

/// True when process `pid` exists.
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the private directories (disk copies included) of processes that
/// no longer run.
pub fn remove_stale_dirs() {
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(pid) = crate::vmnet::owner_pid(name, DIR_PREFIX) {
            if !process_alive(pid) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}
