//! Mounts of PID 1, as data tables, with the one `mount(2)` wrapper; the
//! switch from the initramfs to the root filesystem (`switch_root`).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// A mount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// `mount(2)` failed.
    #[error("cannot mount {fstype} {device} on {target}: {errno}")]
    Mount {
        /// Filesystem type.
        fstype: String,
        /// Device or pseudo source.
        device: String,
        /// Mount point.
        target: PathBuf,
        /// The error.
        errno: nix::errno::Errno,
    },
    /// The mount point could not be made.
    #[error("cannot create the mount point {path}: {source}")]
    MountPoint {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A move of a mount failed.
    #[error("cannot move the mount {from} to {to}: {errno}")]
    Move {
        /// Old place.
        from: PathBuf,
        /// New place.
        to: PathBuf,
        /// The error.
        errno: nix::errno::Errno,
    },
    /// At shutdown, neither an unmount nor a read-only remount worked.
    #[error("cannot unmount {target} ({umount}) nor remount it read-only ({remount})")]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// Why the unmount failed.
        umount: nix::errno::Errno,
        /// Why the read-only remount failed.
        remount: nix::errno::Errno,
    },
}

/// One filesystem to mount.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec {
    /// Source (a device, or a name for pseudo filesystems).
    pub source: &'static str,
    /// Mount point.
    pub target: &'static str,
    /// Filesystem type.
    pub fstype: &'static str,
    /// Flags.
    pub flags: MsFlags,
    /// Options.
    pub data: Option<&'static str>,
    /// Mode of the mount point when it must be created.
    pub mode: u32,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// The API filesystems every stage needs: mounted by stage 1 and moved into
/// the root; stage 2 mounts those it does not find (a boot without initramfs).
pub const BASE: [MountSpec; 4] = [
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        mode: 0o555,
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        mode: 0o555,
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
        mode: 0o755,
    },
    MountSpec {
        source: "run",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755,size=20%"),
        mode: 0o755,
    },
];

/// What stage 2 adds on the root filesystem.
pub const STAGE2: [MountSpec; 4] = [
    MountSpec {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("nsdelegate"),
        mode: 0o755,
    },
    MountSpec {
        source: "tmp",
        target: "/tmp",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777,size=20%"),
        mode: 0o1777,
    },
    MountSpec {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("mode=0620,ptmxmode=0666"),
        mode: 0o755,
    },
    MountSpec {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
        mode: 0o1777,
    },
];

/// The links into `/proc/self/fd` that udev would make and devtmpfs does not:
/// programs such as `nft -f /dev/stdin` need them.
pub const DEV_LINKS: [(&str, &str); 4] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// Makes the [`DEV_LINKS`] that are missing.
pub fn dev_links() -> io::Result<()> {
    for (link, target) in DEV_LINKS {
        match std::os::unix::fs::symlink(target, link) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// True when `path` is the root of a mount: its device differs from its
/// parent's. (A bind mount of the same filesystem is not seen; none is made here.)
pub fn is_mountpoint(path: &Path) -> bool {
    let Some(parent) = path.parent() else {
        return true;
    };
    match (fs::metadata(path), fs::metadata(parent)) {
        (Ok(m), Ok(p)) => m.dev() != p.dev(),
        _ => false,
    }
}

/// Mounts `source` on `target`.
pub fn mount_fs(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), MountError> {
    mount(Some(source), target, Some(fstype), flags, data).map_err(|errno| MountError::Mount {
        fstype: fstype.to_owned(),
        device: source.to_owned(),
        target: target.to_path_buf(),
        errno,
    })
}

/// Mounts every entry of `table` that is not mounted yet, creating mount
/// points as needed. Returns the targets it mounted.
pub fn mount_table(table: &[MountSpec]) -> Result<Vec<&'static str>, MountError> {
    let mut done = Vec::new();
    for m in table {
        let target = Path::new(m.target);
        if target.is_dir() && is_mountpoint(target) {
            continue;
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(m.mode)
            .create(target)
            .map_err(|source| MountError::MountPoint {
                path: target.to_path_buf(),
                source,
            })?;
        mount_fs(m.source, target, m.fstype, m.flags, m.data)?;
        done.push(m.target);
    }
    Ok(done)
}

/// Moves the mount at `from` to `to` (`mount --move`).
pub fn move_mount(from: &Path, to: &Path) -> Result<(), MountError> {
    mount(Some(from), to, None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|errno| {
        MountError::Move {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            errno,
        }
    })
}

/// Unmounts `target`; when it is busy, remounts it read-only instead, so its
/// filesystem is consistent on disk either way. Returns what was done.
pub fn unmount_or_readonly(target: &Path) -> Result<&'static str, MountError> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) => Ok("unmounted"),
        Err(umount_err) => {
            let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            match mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
                Ok(()) => Ok("remounted read-only (unmount failed: busy)"),
                Err(remount) => Err(MountError::Unmount {
                    target: target.to_path_buf(),
                    umount: umount_err,
                    remount,
                }),
            }
        }
    }
}

/// Deletes everything under `root` that lives on the device `dev`, without
/// crossing into other mounts (they are skipped whole), keeping `root`
/// itself. Used on the initramfs, as `switch_root` does, to give its memory
/// back. Returns how many entries could not be removed.
pub fn remove_tree_on(root: &Path, dev: u64) -> usize {
    let mut failures = 0;
    let Ok(entries) = fs::read_dir(root) else {
        return 1;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            failures += 1;
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            failures += remove_tree_on(&path, dev);
            // A directory holding a mount point stays; that is expected.
            if fs::remove_dir(&path).is_err() && !holds_other_mount(&path, dev) {
                failures += 1;
            }
        } else if fs::remove_file(&path).is_err() {
            failures += 1;
        }
    }
    failures
}

fn holds_other_mount(dir: &Path, dev: u64) -> bool {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| fs::symlink_metadata(e.path()).is_ok_and(|m| m.dev() != dev || m.is_dir()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_tree_and_keeps_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("initramfs");
        fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).unwrap();
        fs::create_dir_all(root.join("etc/appliance")).unwrap();
        fs::write(root.join("init"), b"elf").unwrap();
        fs::write(root.join("usr/lib/x86_64-linux-gnu/libc.so.6"), b"elf").unwrap();
        fs::write(root.join("etc/appliance/modules"), b"erofs\n").unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        // A symlink out of the tree must be removed, not followed.
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();

        let dev = fs::metadata(&root).unwrap().dev();
        assert_eq!(remove_tree_on(&root, dev), 0);
        assert!(root.is_dir());
        assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
        assert!(outside.join("keep").exists());
    }

    #[test]
    fn other_devices_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"x").unwrap();
        let dev = fs::metadata(dir.path()).unwrap().dev();
        assert_eq!(remove_tree_on(dir.path(), dev.wrapping_add(1)), 0);
        assert!(dir.path().join("f").exists());
    }

    #[test]
    fn mountpoints_are_told_apart() {
        assert!(is_mountpoint(Path::new("/")));
        assert!(is_mountpoint(Path::new("/proc")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mountpoint(dir.path()));
    }
}
