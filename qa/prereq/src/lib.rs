//! What a test needs from the machine, checked at its start: no silent skip.
//!
//! A test that touches the kernel or boots a VM calls [`opted_out`] first.
//! When everything it [`Need`]s is present, the call returns `false` and the
//! test runs. When something is missing, the test FAILS (panics) with what is
//! missing and how to get it, so a green `make test` means the test ran.
//!
//! The one exception is a named opt-out, for a developer's machine only (CI
//! never sets it): the environment variable [`OPT_OUT_VAR`],
//! `APPLIANCE_TEST_SKIP`, a comma-separated list of
//! - `root`: tests that need root, network namespaces, `nft` or `ip`
//!   (the kernel, hosted and VM layers);
//! - `vm`: tests that boot the image in QEMU (the VM layer).
//!
//! A test in an opted-out class whose needs are missing returns early, and
//! prints `SKIPPED (opt-out APPLIANCE_TEST_SKIP=...)` straight to the
//! process's stderr (past libtest's capture), where `make test` counts it.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable that names the opt-outs.
pub const OPT_OUT_VAR: &str = "APPLIANCE_TEST_SKIP";

/// The UEFI firmware the VM tests boot with (Debian's `ovmf` package).
pub const OVMF_FILES: [&str; 2] = [
    "/usr/share/OVMF/OVMF_CODE_4M.fd",
    "/usr/share/OVMF/OVMF_VARS_4M.fd",
];

/// One prerequisite of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Effective uid 0: namespaces, netlink, nft, sethostname, setuid.
    Root,
    /// The `nft` program (nftables).
    Nft,
    /// The `ip` program (iproute2), for creating namespaces and links.
    Ip,
    /// `qemu-system-x86_64` and `qemu-img`.
    Qemu,
    /// The OVMF firmware files ([`OVMF_FILES`]).
    Ovmf,
    /// The image `make image` built: `out/image.json` in the workspace.
    Image,
}

/// The kernel tests' needs: root, `ip` and `nft`.
pub const KERNEL: &[Need] = &[Need::Root, Need::Ip, Need::Nft];

/// The VM tests' needs: the kernel ones, QEMU, OVMF and the built image.
pub const VM: &[Need] = &[
    Need::Root,
    Need::Ip,
    Need::Nft,
    Need::Qemu,
    Need::Ovmf,
    Need::Image,
];

impl Need {
    /// The opt-out class that covers this need.
    pub fn opt_out(self) -> &'static str {
        match self {
            Need::Root | Need::Nft | Need::Ip => "root",
            Need::Qemu | Need::Ovmf | Need::Image => "vm",
        }
    }

    /// `None` when present, else what is missing and how to get it.
    pub fn missing(self) -> Option<String> {
        match self {
            Need::Root => (!is_root()).then(|| {
                "root (namespaces, netlink, nft, sethostname or setuid): run as root, \
                 e.g. `sudo make test`"
                    .to_string()
            }),
            Need::Nft => (!on_path("nft"))
                .then(|| "`nft`: install nftables (`make deps` as root)".to_string()),
            Need::Ip => {
                (!on_path("ip")).then(|| "`ip`: install iproute2 (`make deps` as root)".to_string())
            }
            Need::Qemu => {
                let gone: Vec<&str> = ["qemu-system-x86_64", "qemu-img"]
                    .into_iter()
                    .filter(|p| !on_path(p))
                    .collect();
                (!gone.is_empty()).then(|| {
                    format!(
                        "{}: install qemu-system-x86 and qemu-utils (`make deps` as root)",
                        gone.join(", ")
                    )
                })
            }
            Need::Ovmf => {
                let gone: Vec<&str> = OVMF_FILES
                    .into_iter()
                    .filter(|f| !Path::new(f).exists())
                    .collect();
                (!gone.is_empty())
                    .then(|| format!("{}: install ovmf (`make deps` as root)", gone.join(", ")))
            }
            Need::Image => {
                let json = image_json();
                (!json.exists()).then(|| format!("{}: run `make image` first", json.display()))
            }
        }
    }
}

/// Checks `needs` for the calling test. Returns `false` when all are present
/// (run the test). When some are missing, panics with the reasons, unless the
/// test's class is opted out in [`OPT_OUT_VAR`]: then prints a SKIPPED line
/// and returns `true` (return from the test).
pub fn opted_out(needs: &[Need]) -> bool {
    let missing: Vec<String> = needs.iter().filter_map(|n| n.missing()).collect();
    let opt_out = std::env::var(OPT_OUT_VAR).unwrap_or_default();
    match decide(needs, &missing, &opt_out, &test_name()) {
        Outcome::Run => false,
        Outcome::Skip(line) => {
            say(&line);
            true
        }
        Outcome::Fail { line, reason } => {
            say(&line);
            panic!("{reason}");
        }
    }
}

/// Writes `line` straight to fd 2 (libtest captures eprintln! of a passing
/// test), in one write so that the other test thread's output cannot split it.
fn say(line: &str) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// What a test does about its prerequisites.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Everything is present.
    Run,
    /// Opted out: the SKIPPED line to print.
    Skip(String),
    /// The MISSING PREREQUISITE line to print, and the panic message.
    Fail { line: String, reason: String },
}

/// The decision, apart from the machine: `missing` are the reasons of the
/// needs found missing, `opt_out` the value of [`OPT_OUT_VAR`].
fn decide(needs: &[Need], missing: &[String], opt_out: &str, test: &str) -> Outcome {
    if missing.is_empty() {
        return Outcome::Run;
    }
    let classes: Vec<&str> = opt_out.split(',').map(str::trim).collect();
    let missing = missing.join("; ");
    if let Some(class) = needs
        .iter()
        .map(|n| n.opt_out())
        .find(|c| classes.contains(c))
    {
        return Outcome::Skip(format!(
            "SKIPPED (opt-out {OPT_OUT_VAR}={class}): {test}: missing {missing}"
        ));
    }
    Outcome::Fail {
        line: format!("MISSING PREREQUISITE: {test} needs {missing}"),
        reason: format!(
            "{test} cannot run: missing {missing}. (Opt-out for a developer machine only, \
             never in CI: {OPT_OUT_VAR}={}.)",
            needs.last().map_or("root", |n| n.opt_out())
        ),
    }
}

/// True when the effective uid is 0.
pub fn is_root() -> bool {
    // /proc/self/status has "Uid: real effective saved fs"; no libc needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The workspace's `out/image.json`, which `make image` writes.
pub fn image_json() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../out/image.json")
}

/// True when `program` is an executable file in a `$PATH` directory (or
/// the sbin directories a non-root PATH may lack).
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .any(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        });
    found
}

/// The running test's name: libtest names each test's thread after it.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_needs_run_the_test() {
        // /proc is always there; an empty list needs nothing.
        assert!(!opted_out(&[]));
    }

    #[test]
    fn missing_needs_fail_unless_their_class_is_opted_out() {
        let gone = ["root (...)".to_string()];
        assert_eq!(decide(KERNEL, &[], "", "t"), Outcome::Run);
        let Outcome::Fail { line, reason } = decide(KERNEL, &gone, "", "t") else {
            panic!("missing root without an opt-out must fail");
        };
        assert_eq!(line, "MISSING PREREQUISITE: t needs root (...)");
        assert!(reason.contains("APPLIANCE_TEST_SKIP=root"), "{reason}");
        // Another class's opt-out does not cover a kernel test.
        assert!(matches!(
            decide(KERNEL, &gone, "vm", "t"),
            Outcome::Fail { .. }
        ));
        assert_eq!(
            decide(KERNEL, &gone, "vm, root", "t"),
            Outcome::Skip(
                "SKIPPED (opt-out APPLIANCE_TEST_SKIP=root): t: missing root (...)".into()
            )
        );
        // `vm` skips a VM test whatever it misses, root included.
        assert!(matches!(decide(VM, &gone, "vm", "t"), Outcome::Skip(_)));
        let Outcome::Fail { reason, .. } = decide(VM, &gone, "", "t") else {
            panic!("a VM test without its needs must fail");
        };
        assert!(reason.contains("APPLIANCE_TEST_SKIP=vm"), "{reason}");
    }

    #[test]
    fn every_need_names_its_opt_out_class() {
        for n in VM {
            assert!(matches!(n.opt_out(), "root" | "vm"), "{n:?}");
        }
    }
}
