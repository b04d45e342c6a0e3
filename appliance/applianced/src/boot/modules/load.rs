//! Loading module files with `finit_module`, the one syscall here.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::path::Path;

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

use super::plan::Step;

/// What happened to one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded now.
    Loaded,
    /// It was already loaded (`EEXIST`).
    AlreadyLoaded,
    /// Its hardware is absent (`ENODEV`, `ENXIO`) although an alias matched.
    NoDevice,
    /// A dependency failed, so it was not tried.
    Skipped(String),
    /// It failed.
    Failed(String),
}

/// Loads the module file at `path`.
pub fn load_file(path: &Path) -> Outcome {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return Outcome::Failed(format!("cannot open {}: {e}", path.display())),
    };
    let params = CString::default();
    match finit_module(&file, &params, ModuleInitFlags::empty()) {
        Ok(()) => Outcome::Loaded,
        Err(Errno::EEXIST) => Outcome::AlreadyLoaded,
        Err(Errno::ENODEV | Errno::ENXIO) => Outcome::NoDevice,
        Err(e) => Outcome::Failed(format!("{} ({})", e.desc(), path.display())),
    }
}

/// Runs `steps` through `load_one`, in order. `not_loaded` holds the modules
/// that did not load (true: only for lack of their device), across rounds:
/// their dependents are not tried, and they are not tried again.
pub fn run_steps(
    steps: &[Step],
    not_loaded: &mut BTreeMap<String, bool>,
    load_one: &mut dyn FnMut(&Step) -> Outcome,
) -> Vec<(String, Outcome)> {
    let mut out = Vec::new();
    for step in steps {
        if not_loaded.contains_key(&step.name) {
            continue;
        }
        let blocked = step
            .deps
            .iter()
            .find_map(|d| not_loaded.get(d.as_str()).map(|&absent| (d, absent)));
        let outcome = match blocked {
            // The dependents of a driver without its device need no complaint either.
            Some((_, true)) => Outcome::NoDevice,
            Some((d, false)) => Outcome::Skipped(d.clone()),
            None => load_one(step),
        };
        match outcome {
            Outcome::NoDevice => {
                not_loaded.insert(step.name.clone(), true);
            }
            Outcome::Failed(_) | Outcome::Skipped(_) => {
                not_loaded.insert(step.name.clone(), false);
            }
            Outcome::Loaded | Outcome::AlreadyLoaded => {}
        }
        out.push((step.name.clone(), outcome));
    }
    out
}
