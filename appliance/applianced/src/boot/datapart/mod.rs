//! The data partition: `PARTNAME=data` on the root's disk, formatted ext4 on
//! the first boot, checked with `e2fsck -p` on the others, mounted on `/data`.
//! Before anything touches it, its superblock tells whether it was cleanly
//! unmounted last time; that line is what the image tests read.
//!
//! When the administrator has enlarged the virtual disk, the partition is
//! grown to the disk's end first ([`super::gpt`], then the kernel is told
//! with `BLKPG`), so a new filesystem is made at the new size and an
//! existing one is grown with `resize2fs` once mounted.

mod blkpg;
mod ext4;

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::MsFlags;

use super::blockdev::{self, BlockDev};
use super::gpt::{self, Gpt, MIB};
use super::mounts;
use crate::console::announce;
use blkpg::resize_kernel_partition;
use ext4::{read_fs_bytes, read_superblock, Ext4State};

/// GPT name of the data partition.
pub const PARTNAME: &str = "data";
/// Where it is mounted.
pub const MOUNT_POINT: &str = "/data";
/// Filesystem label given when formatting.
pub const LABEL: &str = "data";
/// The formatting tool in the image.
pub const MKE2FS: &str = "/usr/sbin/mke2fs";
/// The checking tool in the image.
pub const E2FSCK: &str = "/usr/sbin/e2fsck";
/// The growing tool in the image.
pub const RESIZE2FS: &str = "/usr/sbin/resize2fs";
/// A filesystem this much smaller than its partition is grown even on a boot
/// that did not grow the table (a stop between the two last time). Below
/// it is what mke2fs and resize2fs leave at the end on purpose: a last
/// block group too small for its own metadata (a few MiB) is left out.
pub const FS_SLACK: u64 = 16 * MIB;

/// Whether a filesystem of `fs` bytes on a partition of `partition` bytes
/// is to be grown: by any whole MiB after the table grew this boot, and
/// otherwise only when [`FS_SLACK`] or more is unused (see there).
pub fn fs_needs_growing(partition: u64, fs: u64, table_grown: bool) -> bool {
    let room = partition.saturating_sub(fs);
    room >= if table_grown { MIB } else { FS_SLACK }
}

/// The console line for a grown partition.
pub fn grown_line(old_bytes: u64, new_bytes: u64) -> String {
    format!(
        "data partition: grown from {} to {} MiB",
        old_bytes / MIB,
        new_bytes / MIB
    )
}

/// The console line for the state found.
pub fn state_line(state: &Ext4State) -> &'static str {
    if state.clean {
        "data filesystem: clean"
    } else {
        "data filesystem: not cleanly unmounted"
    }
}

/// Why the data partition cannot be found, grown, checked or mounted.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The root filesystem's device is not listed in sysfs.
    #[error("the root filesystem's device {}:{} is not in /sys/class/block", .devnum.0, .devnum.1)]
    RootUnlisted {
        /// Its major and minor numbers.
        devnum: (u32, u32),
    },
    /// The root filesystem is on a whole disk.
    #[error("the root filesystem is on {device}, which is not a partition")]
    RootNotPartition {
        /// The device.
        device: String,
    },
    /// The root filesystem's disk has no data partition.
    #[error("no partition named {PARTNAME:?} on {disk}")]
    NoPartition {
        /// The disk.
        disk: String,
    },
    /// The device to grow is not a partition.
    #[error("{device} is not a partition")]
    NotPartition {
        /// The device.
        device: String,
    },
    /// A file or program could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file or program.
        what: String,
        /// Why.
        source: io::Error,
    },
    /// mke2fs failed.
    #[error("mke2fs on {device} failed with exit code {code}")]
    Mke2fs {
        /// The partition.
        device: String,
        /// mke2fs's exit code.
        code: i32,
    },
    /// The partition could not be mounted.
    #[error("{0}")]
    Mount(#[from] mounts::MountError),
    /// A sysfs file does not hold a number.
    #[error("{}: {text:?} is not a number: {source}", path.display())]
    NotANumber {
        /// The file.
        path: PathBuf,
        /// What it holds.
        text: String,
        /// Why it is not a number.
        source: std::num::ParseIntError,
    },
    /// The disk's GPT cannot be read, planned or written.
    #[error("{disk}: {source}")]
    Gpt {
        /// The disk.
        disk: String,
        /// Why.
        source: gpt::GptError,
    },
    /// The kernel's partition is not the GPT's.
    #[error(
        "{disk}: the GPT's partition {PARTNAME:?} is number {gpt_number} at byte {gpt_start}, \
         the kernel's {device} is number {number} at byte {start}"
    )]
    KernelDisagrees {
        /// The disk.
        disk: String,
        /// The partition's number in the GPT.
        gpt_number: u32,
        /// Its start in the GPT, in bytes.
        gpt_start: u64,
        /// The kernel's name of the partition.
        device: String,
        /// The kernel's number.
        number: u64,
        /// The kernel's start, in bytes.
        start: u64,
    },
    /// The table is grown but the kernel was not told.
    #[error(
        "{disk}: the table is grown but the kernel keeps the old size of {device} until the \
         next boot: BLKPG_RESIZE_PARTITION: {source}"
    )]
    KernelResize {
        /// The disk.
        disk: String,
        /// The partition.
        device: String,
        /// Why.
        source: io::Error,
    },
    /// e2fsck found what it could not correct.
    #[error("e2fsck exit code {code}: {meaning}")]
    Fsck {
        /// Its exit code.
        code: i32,
        /// The meaning of the exit code's bits.
        meaning: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DataError {
    let what = what.into();
    move |source| DataError::Io { what, source }
}

/// What `e2fsck -p`'s exit code means (0 and 1 are fine).
pub fn fsck_meaning(code: i32) -> Result<&'static str, DataError> {
    match code {
        0 => Ok("no errors"),
        1 => Ok("errors corrected"),
        _ => {
            let mut what = Vec::new();
            for (bit, text) in [
                (2, "errors corrected, the system should be rebooted"),
                (4, "errors left uncorrected"),
                (8, "operational error"),
                (16, "usage error"),
                (32, "cancelled"),
                (128, "shared library error"),
            ] {
                if code & bit != 0 {
                    what.push(text);
                }
            }
            Err(DataError::Fsck {
                code,
                meaning: what.join(", "),
            })
        }
    }
}

/// Where `/data` came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataMount {
    /// The data partition, mounted.
    Partition(PathBuf),
    /// No usable partition: a tmpfs, so the node still runs (and forgets).
    Tmpfs(String),
}

/// The data partition on the disk that holds the root filesystem.
pub fn find(devs: &[BlockDev], root_devnum: (u32, u32)) -> Result<&BlockDev, DataError> {
    let root = blockdev::find_devnum(devs, root_devnum).ok_or(DataError::RootUnlisted {
        devnum: root_devnum,
    })?;
    let disk = root
        .disk
        .as_deref()
        .ok_or_else(|| DataError::RootNotPartition {
            device: root.name.clone(),
        })?;
    blockdev::find_partition(devs, PARTNAME, Some(disk)).ok_or_else(|| DataError::NoPartition {
        disk: disk.to_owned(),
    })
}

fn run(program: &str, args: &[&str]) -> Result<i32, DataError> {
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin")
        .output()
        .map_err(io_err(format!("cannot run {program}")))?;
    for line in String::from_utf8_lossy(&out.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&out.stdout).lines())
        .filter(|l| !l.trim().is_empty())
        .take(20)
    {
        eprintln!("{program}: {line}");
    }
    Ok(out.status.code().unwrap_or(-1))
}

/// Formats (first boot) or checks, then mounts the data partition on
/// `/data`; falls back to a tmpfs, loudly, when there is none or it cannot be
/// mounted, so the node still comes up and can be inspected.
pub fn prepare(class: &Path) -> DataMount {
    let target = Path::new(MOUNT_POINT);
    match prepare_partition(class, target) {
        Ok(dev) => DataMount::Partition(dev),
        Err(e) => {
            let why = e.to_string();
            announce(&format!(
                "applianced: ERROR: data partition unusable: {why}; using memory instead \
                 (nothing will survive a reboot)"
            ));
            let _ = std::fs::create_dir_all(target);
            if let Err(e) = mounts::mount_fs(
                "data",
                target,
                "tmpfs",
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=0755"),
            ) {
                announce(&format!("applianced: ERROR: {e}"));
            }
            DataMount::Tmpfs(why)
        }
    }
}

fn prepare_partition(class: &Path, target: &Path) -> Result<PathBuf, DataError> {
    let root = std::fs::metadata("/").map_err(io_err("cannot stat /"))?;
    let devs = blockdev::scan(class);
    let part = find(&devs, blockdev::split_devnum(root.dev()))?;
    let dev = part.dev_path();
    let shown = dev.display().to_string();
    // The table first, so that mke2fs and resize2fs see the partition's new
    // size. A table that cannot be grown leaves the partition as it is.
    let table_grown = match grow_partition(class, part) {
        Ok(Some(plan)) => {
            announce(&format!(
                "applianced: {}",
                grown_line(plan.old_bytes(), plan.new_bytes())
            ));
            true
        }
        Ok(None) => false,
        Err(e) => {
            announce(&format!("applianced: ERROR: data partition not grown: {e}"));
            false
        }
    };
    let mut made = false;
    match read_superblock(&dev).map_err(io_err(format!("cannot read {shown}")))? {
        None => {
            announce(&format!(
                "applianced: data filesystem: none yet, creating ext4 on {shown}"
            ));
            let code = run(MKE2FS, &["-t", "ext4", "-L", LABEL, "-q", &shown])?;
            if code != 0 {
                return Err(DataError::Mke2fs {
                    device: shown,
                    code,
                });
            }
            made = true;
        }
        Some(state) => {
            announce(&format!("applianced: {}", state_line(&state)));
            let code = run(E2FSCK, &["-p", &shown])?;
            match fsck_meaning(code) {
                Ok(what) => eprintln!("applianced: e2fsck {shown}: {what}"),
                // Reported; mounting is still tried: ext4 refuses what it cannot handle.
                Err(e) => announce(&format!("applianced: ERROR: checking {shown}: {e}")),
            }
        }
    }
    std::fs::create_dir_all(target)
        .map_err(io_err(format!("cannot create {}", target.display())))?;
    mounts::mount_fs(
        &shown,
        target,
        "ext4",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME,
        None,
    )?;
    if !made {
        grow_filesystem(class, part, &dev, table_grown);
    }
    match read_fs_bytes(&dev) {
        Ok(Some(bytes)) => announce(&format!("applianced: data filesystem: {} MiB", bytes / MIB)),
        Ok(None) => announce(&format!(
            "applianced: ERROR: no ext4 superblock on {shown} after mounting it"
        )),
        Err(e) => announce(&format!("applianced: ERROR: cannot read {shown}: {e}")),
    }
    Ok(dev)
}

/// Reads a number from a sysfs file.
fn sysfs_u64(path: &Path) -> Result<u64, DataError> {
    let text =
        std::fs::read_to_string(path).map_err(io_err(format!("cannot read {}", path.display())))?;
    text.trim().parse().map_err(|source| DataError::NotANumber {
        path: path.to_path_buf(),
        text: text.trim().to_owned(),
        source,
    })
}

/// Grows the data partition `part` to the end of its disk when the disk is
/// larger than its GPT says, then tells the kernel the partition's new
/// size. `None` (and nothing written) when the disk is not larger.
fn grow_partition(class: &Path, part: &BlockDev) -> Result<Option<gpt::GrowPlan>, DataError> {
    let disk = part
        .disk
        .as_deref()
        .ok_or_else(|| DataError::NotPartition {
            device: part.name.clone(),
        })?;
    let disk_dev = Path::new("/dev").join(disk);
    let shown = disk_dev.display().to_string();
    // The GPT counts in logical blocks; sysfs sizes are in 512-byte units.
    let sector_size = sysfs_u64(&class.join(disk).join("queue/logical_block_size")).unwrap_or(512);
    let gpt_err = |source| DataError::Gpt {
        disk: shown.clone(),
        source,
    };
    let mut f = File::open(&disk_dev).map_err(io_err(format!("cannot open {shown}")))?;
    let bytes = f
        .seek(SeekFrom::End(0))
        .map_err(io_err(format!("cannot tell the size of {shown}")))?;
    let table = Gpt::read(&mut f, sector_size).map_err(gpt_err)?;
    let Some(plan) = table
        .plan_grow(PARTNAME, bytes / sector_size)
        .map_err(gpt_err)?
    else {
        return Ok(None);
    };
    // The kernel must be using this very table: the same partition number
    // and start (BLKPG can only change a partition's length).
    let dir = class.join(&part.name);
    let number = sysfs_u64(&dir.join("partition"))?;
    let start = sysfs_u64(&dir.join("start"))? * 512;
    if number != u64::from(plan.number) || start != plan.start_bytes() {
        return Err(DataError::KernelDisagrees {
            disk: shown,
            gpt_number: plan.number,
            gpt_start: plan.start_bytes(),
            device: part.name.clone(),
            number,
            start,
        });
    }
    drop(f);
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk_dev)
        .map_err(io_err(format!("cannot open {shown} for writing")))?;
    gpt::apply(&rw, &plan).map_err(gpt_err)?;
    // The root partition on this disk is mounted, so the kernel cannot
    // re-read the whole table (BLKRRPART fails with EBUSY); it is told the
    // one change instead.
    resize_kernel_partition(&rw, plan.number, plan.start_bytes(), plan.new_bytes()).map_err(
        |source| DataError::KernelResize {
            disk: shown.clone(),
            device: part.name.clone(),
            source,
        },
    )?;
    Ok(Some(plan))
}

/// Grows the mounted filesystem on `dev` to its partition's size when
/// [`fs_needs_growing`] says so; problems are reported, not fatal.
///
/// Online, with the filesystem mounted: the kernel does it through ext4's
/// journal, so a stop half-way leaves a consistent filesystem, and it needs
/// no prior full check. Offline resize2fs wants a fresh `e2fsck -f` first
/// (the boot's `e2fsck -p` skips clean filesystems) and is not crash-safe.
fn grow_filesystem(class: &Path, part: &BlockDev, dev: &Path, table_grown: bool) {
    let shown = dev.display().to_string();
    let partition = match sysfs_u64(&class.join(&part.name).join("size")) {
        Ok(sectors) => sectors * 512,
        Err(e) => return announce(&format!("applianced: ERROR: {e}")),
    };
    let fs = match read_fs_bytes(dev) {
        Ok(Some(fs)) => fs,
        Ok(None) => return,
        Err(e) => return announce(&format!("applianced: ERROR: cannot read {shown}: {e}")),
    };
    if !fs_needs_growing(partition, fs, table_grown) {
        return;
    }
    eprintln!(
        "applianced: growing the data filesystem from {} to {} MiB",
        fs / MIB,
        partition / MIB
    );
    match run(RESIZE2FS, &[&shown]) {
        Ok(0) => {}
        Ok(code) => announce(&format!(
            "applianced: ERROR: resize2fs {shown} failed with exit code {code}"
        )),
        Err(e) => announce(&format!("applianced: ERROR: {e}")),
    }
}

#[cfg(test)]
mod tests;
