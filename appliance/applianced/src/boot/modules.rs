//! Kernel modules: the names listed in `/etc/appliance/modules`, their
//! dependencies from depmod's `modules.dep`, the order to load them in (pure,
//! [`plan`]) and the loading itself with `finit_module` ([`load`]).
//!
//! There is no modprobe in the image: applianced is the only loader. Modules
//! the kernel would request by alias (a `softdep`, `crypto-crc32c`, an NLS
//! codepage) are therefore listed by name in the image's module lists.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

/// Why a module cannot be planned.
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
    /// A line of modules.dep that is not `path: [path ...]`.
    #[error("modules.dep line {line}: {text:?} is not \"module.ko: dependency.ko ...\"")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
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

/// Parses depmod's `modules.dep`.
pub fn parse_dep(text: &str) -> Result<BTreeMap<String, DepEntry>, ModError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((path, deps)) = line.split_once(':') else {
            return Err(ModError::Syntax {
                line: i + 1,
                text: line.to_owned(),
            });
        };
        let path = path.trim();
        if path.is_empty() || !path.contains(".ko") {
            return Err(ModError::Syntax {
                line: i + 1,
                text: line.to_owned(),
            });
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

/// The load order of `wanted`: every dependency before its dependents, each
/// module once, otherwise the order of the list. A listed module whose
/// dependencies are missing or loop is left out and reported; the others are
/// still planned. Built-in modules need no loading and are skipped.
pub fn plan(
    wanted: &[String],
    dep: &BTreeMap<String, DepEntry>,
    builtin: &BTreeSet<String>,
) -> (Vec<Step>, Vec<ModError>) {
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    let mut errors = Vec::new();
    for name in wanted {
        let mut stack = Vec::new();
        let mut add = Vec::new();
        match visit(name, None, dep, builtin, &done, &mut stack, &mut add) {
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

fn visit(
    name: &str,
    needed_by: Option<&str>,
    dep: &BTreeMap<String, DepEntry>,
    builtin: &BTreeSet<String>,
    done: &BTreeSet<String>,
    stack: &mut Vec<String>,
    add: &mut Vec<Step>,
) -> Result<(), ModError> {
    if done.contains(name) || add.iter().any(|s| s.name == name) {
        return Ok(());
    }
    if let Some(pos) = stack.iter().position(|s| s == name) {
        let mut chain = stack[pos..].to_vec();
        chain.push(name.to_owned());
        return Err(ModError::Cycle { chain });
    }
    let Some(entry) = dep.get(name) else {
        if builtin.contains(name) {
            return Ok(());
        }
        return Err(ModError::Missing {
            name: name.to_owned(),
            needed_by: needed_by.map(str::to_owned),
        });
    };
    stack.push(name.to_owned());
    // depmod lists the whole closure, deepest last; visiting each first makes
    // the order right whatever the listing order.
    for d in &entry.deps {
        visit(d, Some(name), dep, builtin, done, stack, add)?;
    }
    stack.pop();
    add.push(Step {
        name: name.to_owned(),
        path: entry.path.clone(),
        deps: entry
            .deps
            .iter()
            .filter(|d| dep.contains_key(d.as_str()))
            .cloned()
            .collect(),
    });
    Ok(())
}

/// What happened to one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded now.
    Loaded,
    /// It was already loaded (`EEXIST`).
    AlreadyLoaded,
    /// Its hardware is absent (`ENODEV`, `ENXIO`): normal for drivers of other hypervisors.
    NoDevice,
    /// A dependency failed, so it was not tried.
    Skipped(String),
    /// It failed.
    Failed(String),
}

/// The outcome of every planned module.
#[derive(Debug, Default)]
pub struct Report {
    /// Per module, in load order.
    pub outcomes: Vec<(String, Outcome)>,
    /// Time spent.
    pub elapsed: Duration,
}

impl Report {
    /// Modules loaded now or before.
    pub fn loaded(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Loaded | Outcome::AlreadyLoaded))
            .count()
    }

    /// One line per module that was not loaded, for the console.
    pub fn problems(&self) -> Vec<String> {
        self.outcomes
            .iter()
            .filter_map(|(name, o)| match o {
                Outcome::Failed(why) => Some(format!("module {name} failed to load: {why}")),
                Outcome::Skipped(dep) => Some(format!(
                    "module {name} not loaded: its dependency {dep} failed"
                )),
                _ => None,
            })
            .collect()
    }

    /// Modules skipped for absent hardware.
    pub fn no_device(&self) -> Vec<&str> {
        self.outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::NoDevice)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// `/lib/modules/<running kernel release>`.
pub fn module_dir(root: &Path) -> Result<PathBuf, std::io::Error> {
    let uts = nix::sys::utsname::uname()?;
    Ok(root.join(uts.release()))
}

/// Reads the list `list` and `modules.dep` (and `modules.builtin`, if
/// present) of `dir`, and plans.
pub fn plan_from_files(list: &Path, dir: &Path) -> Result<(Vec<Step>, Vec<ModError>), String> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let wanted = parse_list(&read(list)?);
    let dep = parse_dep(&read(&dir.join("modules.dep"))?)
        .map_err(|e| format!("{}: {e}", dir.join("modules.dep").display()))?;
    let builtin = std::fs::read_to_string(dir.join("modules.builtin"))
        .map(|t| parse_builtin(&t))
        .unwrap_or_default();
    Ok(plan(&wanted, &dep, &builtin))
}

/// Loads the planned modules from `dir`, in order, each once.
pub fn load(steps: &[Step], dir: &Path) -> Report {
    let start = Instant::now();
    let mut report = Report::default();
    // Modules not loaded, and whether only for absent hardware: the
    // dependents of a driver without its device need no complaint either.
    let mut not_loaded: BTreeMap<&str, bool> = BTreeMap::new();
    for step in steps {
        let blocked = step
            .deps
            .iter()
            .find_map(|d| not_loaded.get(d.as_str()).map(|&absent| (d, absent)));
        let outcome = match blocked {
            Some((_, true)) => Outcome::NoDevice,
            Some((d, false)) => Outcome::Skipped(d.clone()),
            None => load_one(&dir.join(&step.path)),
        };
        match outcome {
            Outcome::NoDevice => {
                not_loaded.insert(&step.name, true);
            }
            Outcome::Failed(_) | Outcome::Skipped(_) => {
                not_loaded.insert(&step.name, false);
            }
            Outcome::Loaded | Outcome::AlreadyLoaded => {}
        }
        report.outcomes.push((step.name.clone(), outcome));
    }
    report.elapsed = start.elapsed();
    report
}

fn load_one(path: &Path) -> Outcome {
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
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/hv/hv-vmbus.ko:
";

    fn names(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.name.as_str()).collect()
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
        let (steps, errors) = plan(&wanted, &dep, &BTreeSet::new());
        assert_eq!(errors, vec![]);
        assert_eq!(
            names(&steps),
            [
                "crc32c_generic",
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio",
                "virtio_ring",
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
    fn dependencies_listed_in_any_order_still_load_first() {
        // b needs c, but depmod (or a hand-made file) lists it before c's own need, d.
        let dep = parse_dep("a.ko: b.ko c.ko d.ko\nb.ko: c.ko d.ko\nc.ko: d.ko\nd.ko:\n").unwrap();
        let (steps, errors) = plan(&["a".to_owned()], &dep, &BTreeSet::new());
        assert_eq!(errors, vec![]);
        assert_eq!(names(&steps), ["d", "c", "b", "a"]);
    }

    #[test]
    fn missing_modules_are_reported_and_the_rest_planned() {
        let dep = parse_dep("a.ko: gone.ko\nb.ko:\n").unwrap();
        let builtin = parse_builtin("kernel/drivers/tty/serial/8250/8250.ko\n");
        let wanted = parse_list("a\nnothere\nb\n8250\n");
        let (steps, errors) = plan(&wanted, &dep, &builtin);
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
        let (steps, errors) = plan(&parse_list("a\nd\n"), &dep, &BTreeSet::new());
        assert_eq!(names(&steps), ["d"]);
        assert_eq!(
            errors[0].to_string(),
            "modules.dep has a dependency cycle: a -> b -> c -> a"
        );
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let err = parse_dep("a.ko:\nthis is not a dep line\n").unwrap_err();
        assert_eq!(
            err,
            ModError::Syntax {
                line: 2,
                text: "this is not a dep line".into()
            }
        );
    }

    #[test]
    fn a_failed_dependency_skips_its_dependents() {
        let dir = tempfile::tempdir().unwrap();
        // Not a module: finit_module refuses it (or, unprivileged, is not allowed).
        std::fs::write(dir.path().join("base.ko"), b"not an ELF file").unwrap();
        let dep = parse_dep("base.ko:\ntop.ko: base.ko\n").unwrap();
        let (steps, _) = plan(&["top".to_owned()], &dep, &BTreeSet::new());
        let report = load(&steps, dir.path());
        assert!(
            matches!(&report.outcomes[0], (n, Outcome::Failed(_)) if n == "base"),
            "{:?}",
            report.outcomes
        );
        assert_eq!(
            report.outcomes[1],
            ("top".to_owned(), Outcome::Skipped("base".into()))
        );
        assert_eq!(report.loaded(), 0);
        assert_eq!(report.problems().len(), 2);
    }
}
