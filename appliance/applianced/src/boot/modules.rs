//! Kernel modules: which a stage loads, in what order, and the loading with
//! `finit_module`.
//!
//! A stage lists its modules in `/etc/appliance/modules` (always loaded) and
//! `/etc/appliance/modules.hardware` (drivers, loaded only when the modalias
//! of a present device matches one of their patterns in depmod's
//! `modules.alias`, as udev would). Dependencies come from `modules.dep`,
//! load-first prerequisites from `modules.softdep`. Buses appear as their
//! drivers load (virtio devices behind virtio_pci, SCSI disks behind their
//! controller), so [`Loading`] rescans the devices after each round, for at
//! most [`MAX_ROUNDS`] rounds, and stage 1 rescans while it waits for the
//! root partition. An image without `modules.alias` (older than this) gets
//! every listed module loaded, as before.
//!
//! There is no modprobe in the image: applianced is the only loader. The
//! pure parts ([`plan`], [`fnmatch`], [`matching`], the parsers) are apart
//! from the syscall ([`load_file`]); the rounds take the loader as a closure.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

use crate::console::announce;

/// Rounds of "scan the devices, load the drivers that match" before giving
/// up on more buses appearing: PCI → virtio → SCSI is three.
pub const MAX_ROUNDS: usize = 4;
/// The list of hardware drivers, beside a stage's module list.
pub const HARDWARE_SUFFIX: &str = ".hardware";
/// Where sysfs is mounted.
pub const SYSFS: &str = "/sys";

/// Why a module cannot be planned, or a module file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModError {
    /// Neither in modules.dep nor built in.
    #[error("module {name} is not in modules.dep{}", needed_by.as_ref().map(|n| format!(" (needed by {n})")).unwrap_or_default())]
    Missing {
        /// The module.
        name: String,
        /// The module that depends on it, if it was not listed itself.
        needed_by: Option<String>,
    },
    /// Dependencies that loop.
    #[error("modules.dep has a dependency cycle: {}", chain.join(" -> "))]
    Cycle {
        /// The modules of the cycle, the first repeated at the end.
        chain: Vec<String>,
    },
    /// A line of a depmod file that is not in its format.
    #[error("{file} line {line}: {text:?} is not \"{expected}\"")]
    Syntax {
        /// The file: modules.dep, modules.alias or modules.softdep.
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
        /// The form expected.
        expected: &'static str,
    },
}

/// One module: its file (relative to the module directory) and the names of
/// everything it needs loaded first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepEntry {
    /// File, relative to `/lib/modules/<release>`.
    pub path: String,
    /// Names of its dependencies, as depmod lists them.
    pub deps: Vec<String>,
}

/// The module name of a path or a listed name: the file stem, with `-` as `_`
/// (the kernel treats both alike).
pub fn module_name(path_or_name: &str) -> String {
    let file = path_or_name.rsplit('/').next().unwrap_or(path_or_name);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The content lines of a depmod file, numbered from 1: comments and blank
/// lines skipped.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Parses depmod's `modules.dep`.
pub fn parse_dep(text: &str) -> Result<BTreeMap<String, DepEntry>, ModError> {
    let mut out = BTreeMap::new();
    for (line, text) in content_lines(text) {
        let syntax = || ModError::Syntax {
            file: "modules.dep",
            line,
            text: text.to_owned(),
            expected: "module.ko: dependency.ko ...",
        };
        let (path, deps) = text.split_once(':').ok_or_else(syntax)?;
        let path = path.trim();
        if path.is_empty() || !path.contains(".ko") {
            return Err(syntax());
        }
        out.insert(
            module_name(path),
            DepEntry {
                path: path.to_owned(),
                deps: deps.split_whitespace().map(module_name).collect(),
            },
        );
    }
    Ok(out)
}

/// Parses depmod's `modules.softdep` into module → the modules to load
/// before it (`pre:`; `post:` names are not needed by anything here).
pub fn parse_softdep(text: &str) -> Result<BTreeMap<String, Vec<String>>, ModError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (line, text) in content_lines(text) {
        let mut words = text.split_whitespace();
        let (Some("softdep"), Some(module)) = (words.next(), words.next()) else {
            return Err(ModError::Syntax {
                file: "modules.softdep",
                line,
                text: text.to_owned(),
                expected: "softdep module pre: module ... post: module ...",
            });
        };
        let pre = out.entry(module_name(module)).or_default();
        let mut in_pre = false;
        for w in words {
            match w {
                "pre:" => in_pre = true,
                "post:" => in_pre = false,
                w if in_pre => pre.push(module_name(w)),
                _ => {}
            }
        }
    }
    out.retain(|_, pre| !pre.is_empty());
    Ok(out)
}

/// One line of `modules.alias`: devices whose modalias matches `pattern`
/// (fnmatch) are driven by `module`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The pattern, e.g. `pci:v00001AF4d*sv*sd*bc*sc*i*`.
    pub pattern: String,
    /// The module name.
    pub module: String,
}

/// Parses depmod's `modules.alias` (`alias <pattern> <module>`).
pub fn parse_alias(text: &str) -> Result<Vec<Alias>, ModError> {
    content_lines(text)
        .map(|(line, text)| {
            let mut words = text.split_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("alias"), Some(pattern), Some(module), None) => Ok(Alias {
                    pattern: pattern.to_owned(),
                    module: module_name(module),
                }),
                _ => Err(ModError::Syntax {
                    file: "modules.alias",
                    line,
                    text: text.to_owned(),
                    expected: "alias pattern module",
                }),
            }
        })
        .collect()
}

/// Whether `text` matches the shell pattern `pattern` as `fnmatch(3)` with
/// no flags, which is how modprobe matches aliases: `*` any run (`/`
/// included), `?` any one byte, `[...]` a set (`a-z` ranges, `!` or `^`
/// negates, `]` first is literal), `\` escapes; an unclosed `[` is literal.
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and the text position it now covers up to:
    // on a mismatch it takes one more byte (classic linear backtracking; one
    // star remembered is enough since a later star supersedes the earlier).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => match bracket(p, pi + 1, t[ti]) {
                Some((true, next)) => Some(next - pi),
                Some((false, _)) => None,
                None => (t[ti] == b'[').then_some(1),
            },
            Some(b'\\') if pi + 1 < p.len() => (p[pi + 1] == t[ti]).then_some(2),
            Some(&c) => (c == t[ti]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(n), _) => {
                pi += n;
                ti += 1;
            }
            (None, Some((sp, st))) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the bracket expression starting at `p[i]` (just after
/// `[`): whether it matched and the index after the closing `]`, or `None`
/// when there is no closing `]`.
fn bracket(p: &[u8], mut i: usize, c: u8) -> Option<(bool, usize)> {
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if lo == b'\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&n| n != b']') {
            hi = p[i + 1];
            i += 2;
            if hi == b'\\' {
                hi = *p.get(i)?;
                i += 1;
            }
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

/// The devices seen so far (bus/devices/<name> → modalias, `None` without
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

/// Parses a module list: one name per line, `#` comments and blank lines skipped.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(module_name)
        .collect()
}

/// Names in `modules.builtin` (modules compiled into the kernel).
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(module_name)
        .collect()
}

/// A module to load, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Module name.
    pub name: String,
    /// File, relative to the module directory.
    pub path: String,
    /// Names of the planned modules it needs (so a failure can skip its dependents).
    pub deps: Vec<String>,
}

/// The load order of `wanted`: every softdep prerequisite and dependency
/// before its dependents, each module once, otherwise the order of the list.
/// A listed module whose dependencies are missing or loop is left out and
/// reported; the others are still planned. Modules in `skip` (built in, or
/// already loaded) need no loading and are left out; so are softdeps that
/// are not there (modprobe ignores those too).
pub fn plan(
    wanted: &[String],
    dep: &BTreeMap<String, DepEntry>,
    softdep: &BTreeMap<String, Vec<String>>,
    skip: &BTreeSet<String>,
) -> (Vec<Step>, Vec<ModError>) {
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    let mut errors = Vec::new();
    let ctx = PlanCtx { dep, softdep, skip };
    for name in wanted {
        let mut stack = Vec::new();
        let mut add = Vec::new();
        match ctx.visit(name, None, &done, &mut stack, &mut add) {
            Ok(()) => {
                for step in add {
                    done.insert(step.name.clone());
                    order.push(step);
                }
            }
            Err(e) => {
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
    }
    (order, errors)
}

struct PlanCtx<'a> {
    dep: &'a BTreeMap<String, DepEntry>,
    softdep: &'a BTreeMap<String, Vec<String>>,
    skip: &'a BTreeSet<String>,
}

impl PlanCtx<'_> {
    fn visit(
        &self,
        name: &str,
        needed_by: Option<&str>,
        done: &BTreeSet<String>,
        stack: &mut Vec<String>,
        add: &mut Vec<Step>,
    ) -> Result<(), ModError> {
        if self.skip.contains(name) || done.contains(name) || add.iter().any(|s| s.name == name) {
            return Ok(());
        }
        if let Some(pos) = stack.iter().position(|s| s == name) {
            let mut chain = stack[pos..].to_vec();
            chain.push(name.to_owned());
            return Err(ModError::Cycle { chain });
        }
        let Some(entry) = self.dep.get(name) else {
            return Err(ModError::Missing {
                name: name.to_owned(),
                needed_by: needed_by.map(str::to_owned),
            });
        };
        stack.push(name.to_owned());
        for pre in self.softdep.get(name).into_iter().flatten() {
            if self.dep.contains_key(pre) {
                self.visit(pre, Some(name), done, stack, add)?;
            }
        }
        // depmod lists the whole closure, deepest last; visiting each first
        // makes the order right whatever the listing order.
        for d in &entry.deps {
            self.visit(d, Some(name), done, stack, add)?;
        }
        stack.pop();
        add.push(Step {
            name: name.to_owned(),
            path: entry.path.clone(),
            deps: entry
                .deps
                .iter()
                .filter(|d| self.dep.contains_key(d.as_str()))
                .cloned()
                .collect(),
        });
        Ok(())
    }
}

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

/// What a stage's module files say.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Modules always loaded.
    pub always: Vec<String>,
    /// Hardware drivers: loaded when a device matches.
    pub hardware: Vec<String>,
    /// modules.dep.
    pub dep: BTreeMap<String, DepEntry>,
    /// modules.softdep (empty when absent).
    pub softdep: BTreeMap<String, Vec<String>>,
    /// modules.builtin (empty when absent).
    pub builtin: BTreeSet<String>,
    /// modules.alias; `None` when absent or unreadable: every hardware driver
    /// is then loaded.
    pub aliases: Option<Vec<Alias>>,
    /// What could not be read and what was done instead, for the console.
    pub notes: Vec<String>,
}

impl Catalog {
    /// Reads the stage's list `list`, the hardware list beside it (named
    /// with [`HARDWARE_SUFFIX`]; optional) and depmod's files in `dir`.
    pub fn read(list: &Path, dir: &Path) -> Result<Catalog, String> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let mut hw_list = list.as_os_str().to_owned();
        hw_list.push(HARDWARE_SUFFIX);
        let dep_file = dir.join("modules.dep");
        let mut cat = Catalog {
            always: parse_list(&read(list)?),
            hardware: std::fs::read_to_string(PathBuf::from(hw_list))
                .map(|t| parse_list(&t))
                .unwrap_or_default(),
            dep: parse_dep(&read(&dep_file)?)
                .map_err(|e| format!("{}: {e}", dep_file.display()))?,
            builtin: std::fs::read_to_string(dir.join("modules.builtin"))
                .map(|t| parse_builtin(&t))
                .unwrap_or_default(),
            ..Catalog::default()
        };
        let softdep_file = dir.join("modules.softdep");
        if let Ok(text) = std::fs::read_to_string(&softdep_file) {
            match parse_softdep(&text) {
                Ok(s) => cat.softdep = s,
                Err(e) => cat.notes.push(format!(
                    "{}: {e}; loading without soft dependencies",
                    softdep_file.display()
                )),
            }
        }
        let alias_file = dir.join("modules.alias");
        match std::fs::read_to_string(&alias_file) {
            Ok(text) => match parse_alias(&text) {
                Ok(a) => cat.aliases = Some(a),
                Err(e) => cat.notes.push(format!(
                    "{}: {e}; loading every hardware driver",
                    alias_file.display()
                )),
            },
            // An image from before modules.alias: everything is loaded, as then.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => cat.notes.push(format!(
                "cannot read {}: {e}; loading every hardware driver",
                alias_file.display()
            )),
        }
        Ok(cat)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko
kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/hv/hv-vmbus.ko:
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/virtio_scsi.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/vmw_pvscsi.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/ata/ata_piix.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/net/vmxnet3/vmxnet3.ko:
kernel/drivers/net/ethernet/intel/e1000/e1000.ko:
";

    const SOFTDEP: &str = "\
# Soft dependencies extracted from modules themselves.
softdep libcrc32c pre: crc32c_generic
";

    /// Lines of the image's modules.alias, as the builder writes them from
    /// the kernel's modinfo (6.1.0-56-amd64).
    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias pci:v00008086d00002922sv*sd*bc*sc*i* ahci
alias pci:v00008086d00007010sv*sd*bc*sc*i* ata_piix
alias pci:v00008086d00007111sv*sd*bc*sc*i* ata_piix
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias fs-erofs erofs
alias acpi*:VMBUS:* hv_vmbus
alias acpi*:VMBus:* hv_vmbus
alias scsi:t-0x00* sd_mod
alias scsi:t-0x0e* sd_mod
alias virtio:d00000002v* virtio_blk
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000008v* virtio_scsi
alias pci:v000015ADd000007B0sv*sd*bc*sc*i* vmxnet3
alias pci:v000015ADd000007C0sv*sd*bc*sc*i* vmw_pvscsi
";

    /// Modaliases read in QEMU 7.2 (i440fx, -nodefaults, a virtio disk and
    /// NIC, a pvscsi controller) before any module was loaded.
    const QEMU_PCI: &[(&str, &str)] = &[
        (
            "pci/devices/0000:00:00.0",
            "pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00",
        ),
        (
            "pci/devices/0000:00:01.1",
            "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80",
        ),
        (
            "pci/devices/0000:00:02.0",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
        ),
        (
            "pci/devices/0000:00:04.0",
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
        ),
        ("acpi/devices/LNXPWRBN:00", "acpi:LNXPWRBN:"),
        ("acpi/devices/ACPI0010:00", "acpi:ACPI0010:PNP0A05:"),
        ("platform/devices/serial8250", "platform:serial8250"),
        ("serio/devices/serio0", "serio:ty06pr00id00ex00"),
    ];

    fn names(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.name.as_str()).collect()
    }

    fn none() -> BTreeMap<String, Vec<String>> {
        BTreeMap::new()
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(module_name("kernel/drivers/hv/hv-vmbus.ko"), "hv_vmbus");
        assert_eq!(module_name("kernel/fs/ext4/ext4.ko.xz"), "ext4");
        assert_eq!(module_name("crc32c-generic"), "crc32c_generic");
        assert_eq!(
            parse_list("# stage 1\nvirtio_pci\n\n hv-vmbus # Hyper-V\n"),
            vec!["virtio_pci", "hv_vmbus"]
        );
    }

    #[test]
    fn dependencies_come_first_and_each_module_once() {
        let dep = parse_dep(DEP).unwrap();
        let wanted = parse_list("crc32c_generic\nvirtio_pci\nvirtio_blk\nerofs\nvirtio\n");
        let (steps, errors) = plan(&wanted, &dep, &none(), &BTreeSet::new());
        assert_eq!(errors, vec![]);
        assert_eq!(
            names(&steps),
            [
                "crc32c_generic",
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci",
                "virtio_blk",
                "libcrc32c",
                "erofs"
            ]
        );
        assert_eq!(steps[6].path, "kernel/drivers/block/virtio_blk.ko");
        assert_eq!(steps[6].deps, ["virtio", "virtio_ring"]);
    }

    #[test]
    fn softdeps_load_first_and_loaded_modules_are_left_out() {
        let dep = parse_dep(DEP).unwrap();
        let softdep = parse_softdep(SOFTDEP).unwrap();
        let (steps, errors) = plan(&parse_list("erofs\n"), &dep, &softdep, &BTreeSet::new());
        assert_eq!(errors, vec![]);
        assert_eq!(names(&steps), ["crc32c_generic", "libcrc32c", "erofs"]);
        // Softdeps are not hard dependencies: their failure skips nothing.
        assert!(steps[1].deps.is_empty());
        // In stage 2, what stage 1 loaded is in /sys/module.
        let loaded: BTreeSet<String> = ["libcrc32c", "crc32c_generic", "virtio", "virtio_ring"]
            .map(String::from)
            .into();
        let (steps, _) = plan(&parse_list("erofs\nvirtio_blk\n"), &dep, &softdep, &loaded);
        assert_eq!(names(&steps), ["erofs", "virtio_blk"]);
        // A softdep the image lacks is ignored, as modprobe does.
        let softdep = parse_softdep("softdep erofs pre: nothere\n").unwrap();
        let (steps, errors) = plan(&parse_list("erofs\n"), &dep, &softdep, &BTreeSet::new());
        assert_eq!(
            (names(&steps), errors),
            (vec!["libcrc32c", "erofs"], vec![])
        );
    }

    #[test]
    fn dependencies_listed_in_any_order_still_load_first() {
        // b needs c, but depmod (or a hand-made file) lists it before c's own need, d.
        let dep = parse_dep("a.ko: b.ko c.ko d.ko\nb.ko: c.ko d.ko\nc.ko: d.ko\nd.ko:\n").unwrap();
        let (steps, errors) = plan(&["a".to_owned()], &dep, &none(), &BTreeSet::new());
        assert_eq!(errors, vec![]);
        assert_eq!(names(&steps), ["d", "c", "b", "a"]);
    }

    #[test]
    fn missing_modules_are_reported_and_the_rest_planned() {
        let dep = parse_dep("a.ko: gone.ko\nb.ko:\n").unwrap();
        let builtin = parse_builtin("kernel/drivers/tty/serial/8250/8250.ko\n");
        let wanted = parse_list("a\nnothere\nb\n8250\n");
        let (steps, errors) = plan(&wanted, &dep, &none(), &builtin);
        assert_eq!(names(&steps), ["b"]);
        assert_eq!(
            errors,
            vec![
                ModError::Missing {
                    name: "gone".into(),
                    needed_by: Some("a".into())
                },
                ModError::Missing {
                    name: "nothere".into(),
                    needed_by: None
                },
            ]
        );
        assert_eq!(
            errors[0].to_string(),
            "module gone is not in modules.dep (needed by a)"
        );
    }

    #[test]
    fn cycles_are_errors() {
        let dep = parse_dep("a.ko: b.ko\nb.ko: c.ko\nc.ko: a.ko\nd.ko:\n").unwrap();
        let (steps, errors) = plan(&parse_list("a\nd\n"), &dep, &none(), &BTreeSet::new());
        assert_eq!(names(&steps), ["d"]);
        assert_eq!(
            errors[0].to_string(),
            "modules.dep has a dependency cycle: a -> b -> c -> a"
        );
    }

    #[test]
    fn bad_lines_are_refused_with_their_file_and_number() {
        let err = parse_dep("a.ko:\nthis is not a dep line\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "modules.dep line 2: \"this is not a dep line\" is not \"module.ko: dependency.ko ...\""
        );
        let err = parse_alias("# x\nalias a b\nalias pci:v* virtio_pci extra\n").unwrap_err();
        assert!(
            matches!(
                &err,
                ModError::Syntax {
                    file: "modules.alias",
                    line: 3,
                    ..
                }
            ),
            "{err}"
        );
        let err = parse_softdep("softdep\n").unwrap_err();
        assert!(
            matches!(
                &err,
                ModError::Syntax {
                    file: "modules.softdep",
                    line: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn alias_and_softdep_files_parse() {
        let aliases = parse_alias(ALIAS).unwrap();
        assert_eq!(aliases.len(), 15);
        assert_eq!(
            aliases[11],
            Alias {
                pattern: "pci:v00001AF4d*sv*sd*bc*sc*i*".into(),
                module: "virtio_pci".into()
            }
        );
        // Names are normalised as everywhere else.
        assert_eq!(
            parse_alias("alias acpi*:VMBUS:* hv-vmbus").unwrap()[0].module,
            "hv_vmbus"
        );
        let s = parse_softdep(
            "softdep ext4 pre: crc32c_generic\nsoftdep x post: y\nsoftdep z pre: a b post: c\n",
        )
        .unwrap();
        assert_eq!(s["ext4"], ["crc32c_generic"]);
        assert_eq!(s["z"], ["a", "b"]);
        assert!(!s.contains_key("x"));
    }

    #[test]
    fn real_aliases_match_real_modaliases() {
        let m = |p, t| fnmatch(p, t);
        // The brief's example and the kernel's own virtio_pci alias.
        let nic = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
        assert!(m("pci:v00001AF4d00001000sv*sd*bc*sc*i*", nic));
        assert!(m("pci:v00001AF4d*sv*sd*bc*sc*i*", nic));
        assert!(!m("pci:v00001AF4d00001001sv*sd*bc*sc*i*", nic));
        assert!(!m("pci:v000015ADd000007B0sv*sd*bc*sc*i*", nic));
        // AHCI by class: the PIIX IDE controller (class 01 01) is not AHCI (01 06 01).
        let ide = "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80";
        assert!(!m("pci:v*d*sv*sd*bc01sc06i01*", ide));
        assert!(m("pci:v00008086d00007010sv*sd*bc*sc*i*", ide));
        assert!(m(
            "pci:v*d*sv*sd*bc01sc06i01*",
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"
        ));
        assert!(m("virtio:d00000002v*", "virtio:d00000002v00001AF4"));
        assert!(!m("virtio:d00000002v*", "virtio:d00000001v00001AF4"));
        assert!(m("scsi:t-0x00*", "scsi:t-0x00"));
        assert!(!m("scsi:t-0x00*", "scsi:t-0x05"));
        assert!(m("acpi*:LNXPWRBN:*", "acpi:LNXPWRBN:"));
        assert!(m("acpi*:VMBUS:*", "acpi:VMBUS:"));
        assert!(!m("acpi*:VMBUS:*", "acpi:VMBus:"));
        assert!(m(
            "input:b*v*p*e*-e*k*r*a*m*l*s*f*w*",
            "input:b0011v0001p0001eAB41-e0,1,4,11,14,k71,72,73,ram4,l0,1,2,sfw"
        ));
        // Brackets, as in the kernel's USB and DMI aliases.
        let usb = "usb:v1554p5010d[0-2]*dc*dsc*dp*ic*isc*ip*in*";
        assert!(m(usb, "usb:v1554p5010d0100dc00dsc00dp00ic00isc00ip00in00"));
        assert!(!m(usb, "usb:v1554p5010d3000dc00dsc00dp00ic00isc00ip00in00"));
        let dmi = "dmi:*:[bs]vnD[Ee][Ll][Ll]*:*";
        assert!(m(dmi, "dmi:bvnDell Inc.:bvr1:svnDELL:pn"));
        assert!(!m(dmi, "dmi:bvnQEMU:bvr1:svnQEMU:pn"));
    }

    #[test]
    fn fnmatch_agrees_with_the_c_library() {
        let patterns = [
            "",
            "*",
            "?",
            "a",
            "a*",
            "*a",
            "*a*",
            "a?c",
            "a*c",
            "**",
            "a**c",
            "*?*",
            "[abc]",
            "[!abc]",
            "[^abc]",
            "[a-c]x",
            "[]]",
            "[]a]*",
            "[!]]",
            "[a-]",
            "[",
            "a[",
            "a[b",
            "\\*",
            "a\\?c",
            "[\\]]",
            "*[0-9A-E]*",
            "x*y*z",
            "*b*b",
            "a*b*c*d",
        ];
        let texts = [
            "", "a", "b", "ab", "abc", "aXc", "a*c", "a?c", "]", "-", "[", "a[", "a[b", "*", "xyz",
            "xaybzc", "bb", "abab", "abcd", "aabbccdd", "x7", "ba", "a/c", "acbacbd",
        ];
        for p in patterns {
            for t in texts {
                let (cp, ct) = (CString::new(p).unwrap(), CString::new(t).unwrap());
                // SAFETY: two NUL-terminated strings that outlive the call.
                let c = unsafe { libc::fnmatch(cp.as_ptr(), ct.as_ptr(), 0) } == 0;
                assert_eq!(fnmatch(p, t), c, "pattern {p:?} text {t:?}");
            }
        }
    }

    /// A sysfs tree in a temporary directory: `bus/<path>/modalias` files
    /// and `module/<name>` directories, as the kernel keeps them.
    struct FakeSys(tempfile::TempDir);

    impl FakeSys {
        fn new(devices: &[(&str, &str)]) -> FakeSys {
            let s = FakeSys(tempfile::tempdir().unwrap());
            std::fs::create_dir_all(s.0.path().join("module")).unwrap();
            for (path, modalias) in devices {
                s.device(path, modalias);
            }
            s
        }
        fn path(&self) -> &Path {
            self.0.path()
        }
        fn device(&self, path: &str, modalias: &str) {
            let d = self.path().join("bus").join(path);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("modalias"), format!("{modalias}\n")).unwrap();
        }
    }

    fn catalog(always: &str, hardware: &str, aliases: Option<&str>) -> Catalog {
        Catalog {
            always: parse_list(always),
            hardware: parse_list(hardware),
            dep: parse_dep(DEP).unwrap(),
            softdep: parse_softdep(SOFTDEP).unwrap(),
            aliases: aliases.map(|a| parse_alias(a).unwrap()),
            ..Catalog::default()
        }
    }

    const STAGE1_HW: &str =
        "virtio_pci\nvirtio_blk\nvirtio_scsi\nvmw_pvscsi\nahci\nata_piix\nsd_mod\nhv_vmbus\n";

    /// What the kernel does on loading: the module shows in /sys/module, and
    /// a bus driver's devices appear (`appear`: module, device path under
    /// bus/, modalias) — virtio_pci's virtio devices, a SCSI controller's disks.
    fn kernel<'a>(
        sys: &Path,
        appear: &'a [(&str, &str, &str)],
        log: &'a mut Vec<String>,
    ) -> impl FnMut(&Step) -> Outcome + 'a {
        let sys = sys.to_owned();
        move |step: &Step| {
            std::fs::create_dir_all(sys.join("module").join(&step.name)).unwrap();
            for (_, path, alias) in appear.iter().filter(|(m, _, _)| *m == step.name) {
                let d = sys.join("bus").join(path);
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("modalias"), alias).unwrap();
            }
            log.push(step.name.clone());
            Outcome::Loaded
        }
    }

    /// The virtio devices of [`QEMU_PCI`] (a NIC and a disk).
    const VIRTIO: &[(&str, &str, &str)] = &[
        (
            "virtio_pci",
            "virtio/devices/virtio0",
            "virtio:d00000001v00001AF4",
        ),
        (
            "virtio_pci",
            "virtio/devices/virtio1",
            "virtio:d00000002v00001AF4",
        ),
    ];

    #[test]
    fn rounds_follow_buses_as_their_drivers_appear() {
        let sys = FakeSys::new(QEMU_PCI);
        let mut log = Vec::new();
        let mut l = Loading::new(catalog("erofs\n", STAGE1_HW, Some(ALIAS)), sys.path());
        l.start_with(&mut kernel(sys.path(), VIRTIO, &mut log));
        assert_eq!(
            log,
            [
                // Round 1: PCI devices (drivers first), then the always-loaded.
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci",
                "scsi_common",
                "scsi_mod",
                "libata",
                "ata_piix",
                "crc32c_generic",
                "libcrc32c",
                "erofs",
                // Round 2: the virtio devices virtio_pci brought.
                "virtio_blk",
            ]
        );
        assert_eq!(l.report.rounds, 2);
        assert_eq!(
            l.without_hardware(),
            ["virtio_scsi", "vmw_pvscsi", "ahci", "sd_mod", "hv_vmbus"]
        );
        let line = l.summary();
        assert!(
            line.starts_with("13 module(s) loaded in ")
                && line.contains(
                    " ms matching devices), 2 round(s): virtio_pci ata_piix erofs virtio_blk (+9 dependencies); slowest: "
                )
                && line.ends_with("; no hardware for: virtio_scsi vmw_pvscsi ahci sd_mod hv_vmbus"),
            "{line}"
        );
        assert_eq!(l.report.took.len(), 13);
        // Nothing new: a rescan loads nothing.
        let mut log = Vec::new();
        assert!(l
            .rescan_with(&mut kernel(sys.path(), VIRTIO, &mut log))
            .is_empty());
        assert!(log.is_empty());
    }

    #[test]
    fn a_disk_behind_virtio_scsi_gets_its_driver_in_a_third_round() {
        // PCI → virtio_pci → a virtio SCSI controller → virtio_scsi → a disk → sd_mod.
        let sys = FakeSys::new(QEMU_PCI);
        let appear = [
            (
                "virtio_pci",
                "virtio/devices/virtio2",
                "virtio:d00000008v00001AF4",
            ),
            ("virtio_scsi", "scsi/devices/0:0:0:0", "scsi:t-0x00"),
        ];
        let mut log = Vec::new();
        let mut l = Loading::new(catalog("erofs\n", STAGE1_HW, Some(ALIAS)), sys.path());
        l.start_with(&mut kernel(sys.path(), &appear, &mut log));
        assert_eq!(l.report.rounds, 3);
        assert_eq!(log.last().map(String::as_str), Some("sd_mod"));
        let pos = |n: &str| log.iter().position(|l| l == n).unwrap();
        assert!(pos("erofs") < pos("virtio_scsi") && pos("virtio_scsi") < pos("sd_mod"));
        // Each module once, though virtio and SCSI drivers share dependencies.
        let unique: BTreeSet<&String> = log.iter().collect();
        assert_eq!(unique.len(), log.len());
        assert_eq!(
            l.without_hardware(),
            ["virtio_blk", "vmw_pvscsi", "ahci", "hv_vmbus"]
        );
    }

    #[test]
    fn a_controller_found_with_the_pci_devices_gets_its_disks_driver_next_round() {
        let mut devices = QEMU_PCI.to_vec();
        devices.push((
            "pci/devices/0000:00:03.0",
            "pci:v000015ADd000007C0sv000015ADsd000007C0bc01sc00i00",
        ));
        let sys = FakeSys::new(&devices);
        let mut appear = VIRTIO.to_vec();
        appear.push(("vmw_pvscsi", "scsi/devices/2:0:0:0", "scsi:t-0x00"));
        let mut log = Vec::new();
        let mut l = Loading::new(catalog("erofs\n", STAGE1_HW, Some(ALIAS)), sys.path());
        l.start_with(&mut kernel(sys.path(), &appear, &mut log));
        assert_eq!(l.report.rounds, 2);
        assert_eq!(log[log.len() - 2..], ["virtio_blk", "sd_mod"]);
    }

    #[test]
    fn a_device_found_later_is_picked_up_by_a_rescan() {
        let sys = FakeSys::new(QEMU_PCI);
        let mut log = Vec::new();
        let mut l = Loading::new(catalog("erofs\n", STAGE1_HW, Some(ALIAS)), sys.path());
        l.start_with(&mut kernel(sys.path(), VIRTIO, &mut log));
        // A VMBus or late SCSI disk shows up while stage 1 waits for the root.
        sys.device("scsi/devices/2:0:0:0", "scsi:t-0x00");
        let mut log = Vec::new();
        let done = l.rescan_with(&mut kernel(sys.path(), VIRTIO, &mut log));
        assert_eq!(done, [("sd_mod".to_owned(), Outcome::Loaded)]);
        assert!(!l.without_hardware().contains(&"sd_mod"));
    }

    #[test]
    fn rounds_are_bounded() {
        // Each driver's device appears only when the previous one loads: a
        // chain longer than MAX_ROUNDS stops after MAX_ROUNDS rounds.
        let dep = parse_dep("d0.ko:\nd1.ko:\nd2.ko:\nd3.ko:\nd4.ko:\nd5.ko:\n").unwrap();
        let alias: String = (0..6).map(|i| format!("alias chain:{i} d{i}\n")).collect();
        let cat = Catalog {
            hardware: parse_list("d0\nd1\nd2\nd3\nd4\nd5\n"),
            dep,
            aliases: Some(parse_alias(&alias).unwrap()),
            ..Catalog::default()
        };
        let sys = FakeSys::new(&[("chain/devices/0", "chain:0")]);
        let root = sys.path().to_owned();
        let mut loaded = Vec::new();
        let mut l = Loading::new(cat, sys.path());
        l.start_with(&mut |s: &Step| {
            let next: usize = s.name[1..].parse::<usize>().unwrap() + 1;
            let d = root.join(format!("bus/chain/devices/{next}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("modalias"), format!("chain:{next}")).unwrap();
            loaded.push(s.name.clone());
            Outcome::Loaded
        });
        assert_eq!(loaded, ["d0", "d1", "d2", "d3"]);
        assert_eq!(l.report.rounds, MAX_ROUNDS);
        assert_eq!(l.without_hardware(), ["d4", "d5"]);
    }

    #[test]
    fn without_modules_alias_every_listed_module_is_loaded() {
        let sys = FakeSys::new(QEMU_PCI);
        let mut log = Vec::new();
        let mut l = Loading::new(catalog("erofs\n", STAGE1_HW, None), sys.path());
        l.start_with(&mut kernel(sys.path(), VIRTIO, &mut log));
        for n in parse_list(STAGE1_HW).iter().chain(&["erofs".to_owned()]) {
            assert!(log.contains(n), "{n} not loaded: {log:?}");
        }
        assert_eq!(l.report.rounds, 1);
    }

    #[test]
    fn catalog_reads_the_image_files_and_old_images_lack_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("modules");
        std::fs::write(&list, "erofs\n").unwrap();
        std::fs::write(dir.path().join("modules.dep"), DEP).unwrap();
        // An old image: one list, no modules.alias, no modules.softdep.
        let cat = Catalog::read(&list, dir.path()).unwrap();
        assert_eq!((cat.always.len(), cat.hardware.len()), (1, 0));
        assert!(cat.aliases.is_none() && cat.softdep.is_empty() && cat.notes.is_empty());
        // This image.
        std::fs::write(dir.path().join("modules.hardware"), STAGE1_HW).unwrap();
        std::fs::write(dir.path().join("modules.alias"), ALIAS).unwrap();
        std::fs::write(dir.path().join("modules.softdep"), SOFTDEP).unwrap();
        let cat = Catalog::read(&list, dir.path()).unwrap();
        assert_eq!(cat.hardware.len(), 8);
        assert_eq!(cat.aliases.as_ref().map(Vec::len), Some(15));
        assert_eq!(cat.softdep["libcrc32c"], ["crc32c_generic"]);
        // A damaged modules.alias: every driver is loaded, and the console is told.
        std::fs::write(dir.path().join("modules.alias"), "garbage\n").unwrap();
        let cat = Catalog::read(&list, dir.path()).unwrap();
        assert!(cat.aliases.is_none());
        assert!(cat.notes[0].contains("modules.alias"), "{:?}", cat.notes);
        // No list at all is an error naming it.
        let err = Catalog::read(&dir.path().join("nope"), dir.path()).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn modaliases_are_read_from_every_bus() {
        let sys = FakeSys::new(QEMU_PCI);
        // A device without a modalias (a SCSI host) is passed over.
        std::fs::create_dir_all(sys.path().join("bus/scsi/devices/host0")).unwrap();
        let found = Devices::default().scan(sys.path());
        assert_eq!(found.len(), QEMU_PCI.len());
        assert!(found.contains("acpi:LNXPWRBN:"));
        assert!(Devices::default()
            .scan(&sys.path().join("nothere"))
            .is_empty());
        // A rescan reads only new devices' files.
        let mut devices = Devices::default();
        assert_eq!(devices.scan(sys.path()), found);
        sys.device("acpi/devices/LNXPWRBN:00", "acpi:CHANGED:");
        sys.device("virtio/devices/virtio0", "virtio:d00000001v00001AF4");
        let again = devices.scan(sys.path());
        assert!(again.contains("acpi:LNXPWRBN:") && !again.contains("acpi:CHANGED:"));
        assert!(again.contains("virtio:d00000001v00001AF4"));
        let hw = parse_list("virtio_pci\nvmxnet3\nata_piix\nahci\n")
            .into_iter()
            .collect();
        let hits = matching(&parse_alias(ALIAS).unwrap(), &found, &hw);
        assert_eq!(
            hits.into_iter().collect::<Vec<_>>(),
            ["ata_piix", "virtio_pci"]
        );
    }

    #[test]
    fn matching_by_literal_head_agrees_with_trying_every_pattern() {
        let mut text = ALIAS.to_owned();
        // Heads that are empty, end at `?`, `[` or `\`, or are a whole modalias.
        for (i, p) in [
            "*:LNXPWRBN:*",
            "?cpi:LNXPWRBN:",
            "[ap]ci:v00008086d00007010*",
            "platform\\:serial8250",
            "serio:ty06pr00id00ex00",
            "acpi:PNP0A0",
        ]
        .iter()
        .enumerate()
        {
            text.push_str(&format!("alias {p} extra{i}\n"));
        }
        let aliases = parse_alias(&text).unwrap();
        let present: BTreeSet<String> = QEMU_PCI.iter().map(|(_, m)| m.to_string()).collect();
        let all: BTreeSet<String> = aliases.iter().map(|a| a.module.clone()).collect();
        let brute: BTreeSet<String> = aliases
            .iter()
            .filter(|a| present.iter().any(|m| fnmatch(&a.pattern, m)))
            .map(|a| a.module.clone())
            .collect();
        assert_eq!(matching(&aliases, &present, &all), brute);
        assert_eq!(
            brute.iter().filter(|m| m.starts_with("extra")).count(),
            5,
            "{brute:?}"
        );
    }

    #[test]
    fn a_failed_dependency_skips_its_dependents() {
        let dir = tempfile::tempdir().unwrap();
        // Not a module: finit_module refuses it (or, unprivileged, is not allowed).
        std::fs::write(dir.path().join("base.ko"), b"not an ELF file").unwrap();
        let dep = parse_dep("base.ko:\ntop.ko: base.ko\n").unwrap();
        let (steps, _) = plan(&["top".to_owned()], &dep, &none(), &BTreeSet::new());
        let mut not_loaded = BTreeMap::new();
        let outcomes = run_steps(&steps, &mut not_loaded, &mut |s: &Step| {
            load_file(&dir.path().join(&s.path))
        });
        assert!(
            matches!(&outcomes[0], (n, Outcome::Failed(_)) if n == "base"),
            "{outcomes:?}"
        );
        assert_eq!(
            outcomes[1],
            ("top".to_owned(), Outcome::Skipped("base".into()))
        );
        // A later round does not try them again.
        let again = run_steps(&steps, &mut not_loaded, &mut |_: &Step| Outcome::Loaded);
        assert!(again.is_empty());
        let report = Report {
            outcomes,
            ..Report::default()
        };
        assert!(report.loaded().is_empty());
        assert_eq!(report.problems().len(), 2);
    }
}
