//! The devices present, as sysfs lists them (their modaliases), and the
//! drivers whose aliases match them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::depmod::{module_name, Alias};
use super::fnmatch::fnmatch;

/// Where sysfs is mounted.
pub const SYSFS: &str = "/sys";

/// The devices seen so far (`bus/devices/<name>` → modalias, `None` without
/// one). A device's modalias does not change, so a rescan only lists the
/// buses and reads the files of new devices: under emulation each sysfs
/// read costs, and the ACPI bus alone has ~50 devices.
#[derive(Debug, Clone, Default)]
pub struct Devices(BTreeMap<(String, String), Option<String>>);

impl Devices {
    /// Reads the modaliases (`<sys>/bus/*/devices/*/modalias`) of devices
    /// not seen before; returns all there are.
    pub fn scan(&mut self, sys: &Path) -> BTreeSet<String> {
        if let Ok(buses) = std::fs::read_dir(sys.join("bus")) {
            for bus in buses.flatten() {
                let Ok(devices) = std::fs::read_dir(bus.path().join("devices")) else {
                    continue;
                };
                let bus_name = bus.file_name().to_string_lossy().into_owned();
                for dev in devices.flatten() {
                    let key = (
                        bus_name.clone(),
                        dev.file_name().to_string_lossy().into_owned(),
                    );
                    if self.0.contains_key(&key) {
                        continue;
                    }
                    let alias = std::fs::read_to_string(dev.path().join("modalias"))
                        .ok()
                        .map(|t| t.trim().to_owned())
                        .filter(|t| !t.is_empty());
                    self.0.insert(key, alias);
                }
            }
        }
        self.0.values().flatten().cloned().collect()
    }
}

/// The modules of `candidates` with an alias matching one of `modaliases`.
pub fn matching(
    aliases: &[Alias],
    modaliases: &BTreeSet<String>,
    candidates: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for a in aliases {
        if !candidates.contains(&a.module) || out.contains(&a.module) {
            continue;
        }
        // Only modaliases that start with the pattern's literal head can
        // match: a range of the sorted set, mostly empty or one entry. This
        // keeps the ~700 patterns × ~50 devices of a scan cheap under
        // emulation.
        let head = &a.pattern[..a
            .pattern
            .find(['*', '?', '[', '\\'])
            .unwrap_or(a.pattern.len())];
        if modaliases
            .range::<str, _>((std::ops::Bound::Included(head), std::ops::Bound::Unbounded))
            .take_while(|m| m.starts_with(head))
            .any(|m| fnmatch(&a.pattern, m))
        {
            out.insert(a.module.clone());
        }
    }
    out
}

/// Modules the kernel has now (loaded, or built in with parameters):
/// the directories of `<sys>/module`.
pub fn present_modules(sys: &Path) -> BTreeSet<String> {
    std::fs::read_dir(sys.join("module"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(module_name))
        .collect()
}
