//! A stage's module loading in rounds: load what is listed and what the
//! present devices need, rescan, load what new devices need, and report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::catalog::Catalog;
use super::devices::{matching, present_modules, Devices, SYSFS};
use super::error::ModError;
use super::load::{load_file, run_steps, Outcome};
use super::plan::{plan, Step};
use crate::console::announce;

/// Rounds of "scan the devices, load the drivers that match" before giving
/// up on more buses appearing: PCI → virtio → SCSI is three.
pub const MAX_ROUNDS: usize = 4;

/// What a stage's loading did so far.
#[derive(Debug, Default)]
pub struct Report {
    /// Per module, in load order, every round.
    pub outcomes: Vec<(String, Outcome)>,
    /// Listed modules that could not be planned.
    pub errors: Vec<ModError>,
    /// Time spent in the rounds.
    pub elapsed: Duration,
    /// Time each module took to load (its init, device probing included).
    pub took: BTreeMap<String, Duration>,
    /// Of `elapsed`, the time spent reading and matching modaliases.
    pub scanning: Duration,
    /// Rounds run (scans of the devices with something to load).
    pub rounds: usize,
}

impl Report {
    /// Modules loaded now.
    pub fn loaded(&self) -> Vec<&str> {
        self.outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::Loaded)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// One line per module that was not loaded (other than for lack of a
    /// device) or could not be planned, for the console.
    pub fn problems(&self) -> Vec<String> {
        let errors = self.errors.iter().map(ToString::to_string);
        let outcomes = self.outcomes.iter().filter_map(|(name, o)| match o {
            Outcome::Failed(why) => Some(format!("module {name} failed to load: {why}")),
            Outcome::Skipped(dep) => Some(format!(
                "module {name} not loaded: its dependency {dep} failed"
            )),
            _ => None,
        });
        errors.chain(outcomes).collect()
    }
}

/// A stage's module loading: the first rounds ([`Loading::start_with`]),
/// then rescans on demand ([`Loading::rescan_with`]) for devices that appear
/// later.
#[derive(Debug, Default)]
pub struct Loading {
    cat: Catalog,
    sys: PathBuf,
    /// Hardware drivers no present device has matched yet, in list order.
    waiting: Vec<String>,
    devices: Devices,
    not_loaded: BTreeMap<String, bool>,
    /// Everything done so far.
    pub report: Report,
}

impl Loading {
    /// A loading of `cat`'s modules, the devices read from the sysfs at `sys`.
    pub fn new(cat: Catalog, sys: &Path) -> Loading {
        Loading {
            waiting: cat.hardware.clone(),
            cat,
            sys: sys.to_owned(),
            ..Loading::default()
        }
    }

    /// Loads the matching hardware drivers and the always-loaded modules,
    /// then, while the last round found drivers to load (a bus driver may
    /// bring new devices), rescans: at most [`MAX_ROUNDS`] rounds.
    pub fn start_with(&mut self, load_one: &mut dyn FnMut(&Step) -> Outcome) {
        let mut matched = self.round(true, load_one);
        let mut rounds = 1;
        while matched > 0 && rounds < MAX_ROUNDS && !self.waiting.is_empty() {
            matched = self.round(false, load_one);
            rounds += 1;
        }
    }

    /// One more scan: loads the drivers of devices that appeared since.
    /// Returns what it loaded (and tried) now.
    pub fn rescan_with(
        &mut self,
        load_one: &mut dyn FnMut(&Step) -> Outcome,
    ) -> Vec<(String, Outcome)> {
        let before = self.report.outcomes.len();
        if !self.waiting.is_empty() {
            self.round(false, load_one);
        }
        self.report.outcomes[before..].to_vec()
    }

    /// Hardware drivers no device has matched (so far), and drivers that
    /// found no device (`ENODEV`), in list order.
    pub fn without_hardware(&self) -> Vec<&str> {
        let no_device: BTreeSet<&str> = self
            .report
            .outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::NoDevice)
            .map(|(n, _)| n.as_str())
            .collect();
        self.cat
            .hardware
            .iter()
            .filter(|n| self.waiting.contains(n) || no_device.contains(n.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// The stage's line for the console: what was loaded and which drivers
    /// had no hardware.
    pub fn summary(&self) -> String {
        let loaded = self.report.loaded();
        let listed: Vec<&str> = loaded
            .iter()
            .copied()
            .filter(|n| {
                self.cat
                    .always
                    .iter()
                    .chain(&self.cat.hardware)
                    .any(|l| l == n)
            })
            .collect();
        let deps = loaded.len() - listed.len();
        let absent = self.without_hardware();
        let mut slow: Vec<(&String, &Duration)> = self.report.took.iter().collect();
        slow.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let slow: Vec<String> = slow
            .iter()
            .take(3)
            .map(|(n, d)| format!("{n} {} ms", d.as_millis()))
            .collect();
        format!(
            "{} module(s) loaded in {} ms ({} ms matching devices), {} round(s): {}{}{}{}",
            loaded.len(),
            self.report.elapsed.as_millis(),
            self.report.scanning.as_millis(),
            self.report.rounds,
            if listed.is_empty() {
                "none".to_owned()
            } else {
                listed.join(" ")
            },
            if deps > 0 {
                format!(" (+{deps} dependencies)")
            } else {
                String::new()
            },
            if slow.is_empty() {
                String::new()
            } else {
                format!("; slowest: {}", slow.join(", "))
            },
            if absent.is_empty() {
                String::new()
            } else {
                format!("; no hardware for: {}", absent.join(" "))
            }
        )
    }

    /// One round: the waiting drivers that match a device now (all of them
    /// without modules.alias), plus the always-loaded modules on the first,
    /// planned and loaded. Returns how many drivers matched that were not
    /// loaded before.
    fn round(&mut self, with_always: bool, load_one: &mut dyn FnMut(&Step) -> Outcome) -> usize {
        let start = Instant::now();
        let matched: Vec<String> = match &self.cat.aliases {
            None => std::mem::take(&mut self.waiting),
            Some(_) if self.waiting.is_empty() => Vec::new(),
            Some(aliases) => {
                let candidates: BTreeSet<String> = self.waiting.iter().cloned().collect();
                let present = self.devices.scan(&self.sys);
                let hits = matching(aliases, &present, &candidates);
                self.report.scanning += start.elapsed();
                let (hit, wait) = std::mem::take(&mut self.waiting)
                    .into_iter()
                    .partition(|n| hits.contains(n));
                self.waiting = wait;
                hit
            }
        };
        // Drivers first: what they find (a SCSI scan, a VMBus offer) gets
        // going while the rest load.
        let mut wanted = matched.clone();
        if with_always {
            wanted.extend(self.cat.always.iter().cloned());
        }
        if wanted.is_empty() {
            self.report.elapsed += start.elapsed();
            return 0;
        }
        let mut skip = self.cat.builtin.clone();
        skip.extend(present_modules(&self.sys));
        // Drivers already there (stage 1's, seen again by stage 2) bring no
        // new devices: they need no further round.
        let new_drivers = matched.iter().filter(|n| !skip.contains(*n)).count();
        let (steps, errors) = plan(&wanted, &self.cat.dep, &self.cat.softdep, &skip);
        let took = &mut self.report.took;
        let outcomes = run_steps(&steps, &mut self.not_loaded, &mut |s: &Step| {
            let t = Instant::now();
            let o = load_one(s);
            took.insert(s.name.clone(), t.elapsed());
            o
        });
        self.report.outcomes.extend(outcomes);
        self.report.errors.extend(errors);
        self.report.rounds += 1;
        self.report.elapsed += start.elapsed();
        new_drivers
    }
}

/// `/lib/modules/<running kernel release>`.
pub fn module_dir(root: &Path) -> Result<PathBuf, std::io::Error> {
    let uts = nix::sys::utsname::uname()?;
    Ok(root.join(uts.release()))
}

/// The loading of a stage from the module directory `dir`, with
/// `finit_module`.
#[derive(Debug)]
pub struct StageModules {
    dir: PathBuf,
    loading: Loading,
}

impl StageModules {
    /// Loads the modules of the stage list `list` (from the module directory
    /// `dir`), reporting on the consoles. Nothing here is fatal: a missing
    /// disk driver shows as the root partition not appearing, a missing NIC
    /// driver as its interface missing from the network plan, each with its
    /// own message.
    pub fn load(list: &Path, dir: &Path) -> StageModules {
        let cat = match Catalog::read(list, dir) {
            Ok(cat) => cat,
            Err(e) => {
                announce(&format!("applianced: ERROR: modules: {e}"));
                Catalog::default()
            }
        };
        for n in &cat.notes {
            announce(&format!("applianced: ERROR: modules: {n}"));
        }
        let mut loading = Loading::new(cat, Path::new(SYSFS));
        loading.start_with(&mut |s: &Step| load_file(&dir.join(&s.path)));
        for p in loading.report.problems() {
            announce(&format!("applianced: ERROR: {p}"));
        }
        eprintln!("applianced: {}", loading.summary());
        StageModules {
            dir: dir.to_owned(),
            loading,
        }
    }

    /// Rescans the devices and loads the drivers of those that appeared
    /// since, telling the consoles when it did.
    pub fn rescan(&mut self) {
        let start = Instant::now();
        let dir = &self.dir;
        let done = self
            .loading
            .rescan_with(&mut |s: &Step| load_file(&dir.join(&s.path)));
        if done.is_empty() {
            return;
        }
        for (name, o) in &done {
            match o {
                Outcome::Failed(why) => announce(&format!(
                    "applianced: ERROR: module {name} failed to load: {why}"
                )),
                Outcome::Skipped(dep) => announce(&format!(
                    "applianced: ERROR: module {name} not loaded: its dependency {dep} failed"
                )),
                _ => {}
            }
        }
        let loaded: Vec<&str> = done
            .iter()
            .filter(|(_, o)| *o == Outcome::Loaded)
            .map(|(n, _)| n.as_str())
            .collect();
        eprintln!(
            "applianced: {} module(s) loaded in {} ms for devices found later: {}",
            loaded.len(),
            start.elapsed().as_millis(),
            loaded.join(" ")
        );
    }
}
