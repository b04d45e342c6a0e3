//! How applianced runs: as PID 1 in the image (stage 1 in the initramfs,
//! stage 2 on the root filesystem), or hosted as an ordinary process inside a
//! network namespace. Decided once, at the top of `main`.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The two ways applianced runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// PID 1 of the appliance: boot steps, then the daemon.
    Pid1,
    /// An ordinary process in a network namespace, for tests and trials.
    Hosted,
}

impl Mode {
    /// As shown in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Pid1 => "pid1",
            Mode::Hosted => "hosted",
        }
    }
}

/// Which program applianced is this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// PID 1 in the initramfs: find and switch to the root filesystem.
    Stage1,
    /// PID 1 on the root filesystem: boot the machine, then the daemon.
    Stage2,
    /// An ordinary process.
    Hosted,
}

/// The marker file of the initramfs.
pub const INITRD_RELEASE: &str = "/etc/initrd-release";

impl Start {
    /// Decides from our pid and whether `initrd_release` exists.
    pub fn detect_from(pid: u32, initrd_release: &Path) -> Self {
        match pid {
            1 if initrd_release.exists() => Start::Stage1,
            1 => Start::Stage2,
            _ => Start::Hosted,
        }
    }

    /// Decides for this process.
    pub fn detect() -> Self {
        Self::detect_from(std::process::id(), Path::new(INITRD_RELEASE))
    }
}

/// Where hosted applianced runs, as far as its network is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsCheck {
    /// A namespace of its own: safe to configure.
    Own,
    /// The machine's own namespace: configuring it would change the machine.
    Initial,
    /// Init's namespace cannot be read and ours is no named (`ip netns`) one.
    Unknown(String),
}

/// Files that identify network namespaces; arguments so tests can swap them.
#[derive(Debug, Clone)]
pub struct NetnsPaths {
    /// Our namespace (`/proc/self/ns/net`).
    pub ours: PathBuf,
    /// Init's namespace (`/proc/1/ns/net`).
    pub init: PathBuf,
    /// Named namespaces made by `ip netns add` (`/run/netns`).
    pub named: PathBuf,
}

impl Default for NetnsPaths {
    fn default() -> Self {
        Self {
            ours: "/proc/self/ns/net".into(),
            init: "/proc/1/ns/net".into(),
            named: "/run/netns".into(),
        }
    }
}

fn id(path: &Path) -> io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Decides whether hosted applianced may configure the namespace it runs in.
/// Fails closed: where init's namespace cannot be read (hardened machines hide
/// it even from root), only a namespace made by `ip netns` counts as its own,
/// matched by device and inode as `ip netns identify` does.
pub fn check_netns(paths: &NetnsPaths) -> NetnsCheck {
    let ours = match id(&paths.ours) {
        Ok(ours) => ours,
        Err(e) => return NetnsCheck::Unknown(format!("cannot read {}: {e}", paths.ours.display())),
    };
    let init_err = match id(&paths.init) {
        Ok(init) if init == ours => return NetnsCheck::Initial,
        Ok(_) => return NetnsCheck::Own,
        Err(e) => e,
    };
    let named = std::fs::read_dir(&paths.named)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| id(&entry.path()).is_ok_and(|n| n == ours));
    if named {
        NetnsCheck::Own
    } else {
        NetnsCheck::Unknown(format!(
            "cannot read {} ({init_err}) and this is not a namespace listed in {}",
            paths.init.display(),
            paths.named.display()
        ))
    }
}

/// Hosted mode: give the process its own UTS namespace, so the configured
/// hostname stays inside it, and become the subreaper of every descendant, so
/// orphans of services are reaped here as they would be by PID 1.
/// Must run before any thread is started (unshare acts on the calling thread).
pub fn enter_hosted() -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS).map_err(|e| {
        io::Error::other(format!(
            "unshare(CLONE_NEWUTS) failed: {e}; hosted mode needs root"
        ))
    })?;
    appliance_supervisor::reaper::set_child_subreaper()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regular files stand in for namespace files: only device and inode count.
    fn setup() -> (tempfile::TempDir, NetnsPaths) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ours"), "").unwrap();
        std::fs::write(dir.path().join("other"), "").unwrap();
        std::fs::create_dir(dir.path().join("named")).unwrap();
        let paths = NetnsPaths {
            ours: dir.path().join("ours"),
            init: dir.path().join("init"),
            named: dir.path().join("named"),
        };
        (dir, paths)
    }

    #[test]
    fn stages_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("initrd-release");
        assert_eq!(Start::detect_from(1, &marker), Start::Stage2);
        assert_eq!(Start::detect_from(4242, &marker), Start::Hosted);
        std::fs::write(&marker, "").unwrap();
        assert_eq!(Start::detect_from(1, &marker), Start::Stage1);
        assert_eq!(Start::detect_from(4242, &marker), Start::Hosted);
        assert_eq!(Start::detect(), Start::Hosted);
    }

    #[test]
    fn init_namespace_is_refused_and_another_accepted() {
        let (dir, paths) = setup();
        std::fs::hard_link(dir.path().join("ours"), &paths.init).unwrap();
        assert_eq!(check_netns(&paths), NetnsCheck::Initial);
        std::fs::remove_file(&paths.init).unwrap();
        std::fs::hard_link(dir.path().join("other"), &paths.init).unwrap();
        assert_eq!(check_netns(&paths), NetnsCheck::Own);
    }

    #[test]
    fn unreadable_init_fails_closed_unless_the_namespace_is_named() {
        let (dir, paths) = setup();
        assert!(
            matches!(check_netns(&paths), NetnsCheck::Unknown(m) if m.contains("not a namespace listed"))
        );
        std::fs::hard_link(dir.path().join("other"), paths.named.join("someone-else")).unwrap();
        assert!(matches!(check_netns(&paths), NetnsCheck::Unknown(_)));
        std::fs::hard_link(dir.path().join("ours"), paths.named.join("qa-node")).unwrap();
        assert_eq!(check_netns(&paths), NetnsCheck::Own);
    }
}
