//! The data partition: `PARTNAME=data` on the root's disk, formatted ext4 on
//! the first boot, checked with `e2fsck -p` on the others, mounted on `/data`.
//! Before anything touches it, its superblock tells whether it was cleanly
//! unmounted last time; that line is what the image tests read.

use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::MsFlags;

use super::blockdev::{self, BlockDev};
use super::console::announce;
use super::mounts;

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

/// Byte offset of the ext2/3/4 superblock.
const SB_OFFSET: u64 = 1024;
/// Bytes of the superblock read (the fields used end well before).
const SB_LEN: usize = 1024;
const EXT4_MAGIC: u16 = 0xEF53;
/// `s_state`: cleanly unmounted.
const STATE_VALID_FS: u16 = 0x0001;
/// `s_state`: errors detected.
const STATE_ERROR_FS: u16 = 0x0002;
/// `s_feature_incompat`: the journal needs replaying.
const INCOMPAT_RECOVER: u32 = 0x0004;

/// What an ext4 superblock says about the last unmount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4State {
    /// `s_state` has VALID_FS and the journal needs no recovery.
    pub clean: bool,
    /// `s_state` has ERROR_FS.
    pub errors: bool,
    /// The journal needs recovery (`needs_recovery`).
    pub needs_recovery: bool,
    /// Volume label.
    pub label: String,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads an ext2/3/4 superblock (the [`SB_LEN`] bytes at offset 1024); `None`
/// when it has no ext magic.
pub fn parse_superblock(sb: &[u8]) -> Option<Ext4State> {
    if sb.len() < 0x88 || le16(sb, 0x38) != EXT4_MAGIC {
        return None;
    }
    let state = le16(sb, 0x3A);
    let incompat = le32(sb, 0x60);
    let label_raw = &sb[0x78..0x88];
    let end = label_raw.iter().position(|&b| b == 0).unwrap_or(16);
    let needs_recovery = incompat & INCOMPAT_RECOVER != 0;
    Some(Ext4State {
        clean: state & STATE_VALID_FS != 0 && !needs_recovery,
        errors: state & STATE_ERROR_FS != 0,
        needs_recovery,
        label: String::from_utf8_lossy(&label_raw[..end]).into_owned(),
    })
}

/// Reads the superblock of the filesystem on `dev` (a device or an image file).
pub fn read_superblock(dev: &Path) -> io::Result<Option<Ext4State>> {
    let mut f = std::fs::File::open(dev)?;
    f.seek(SeekFrom::Start(SB_OFFSET))?;
    let mut buf = vec![0u8; SB_LEN];
    match f.read_exact(&mut buf) {
        Ok(()) => Ok(parse_superblock(&buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// The console line for the state found.
pub fn state_line(state: &Ext4State) -> &'static str {
    if state.clean {
        "data filesystem: clean"
    } else {
        "data filesystem: not cleanly unmounted"
    }
}

/// What `e2fsck -p`'s exit code means (0 and 1 are fine).
pub fn fsck_meaning(code: i32) -> Result<&'static str, String> {
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
            Err(format!("e2fsck exit code {code}: {}", what.join(", ")))
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
pub fn find(devs: &[BlockDev], root_devnum: (u32, u32)) -> Result<&BlockDev, String> {
    let root = blockdev::find_devnum(devs, root_devnum).ok_or_else(|| {
        format!(
            "the root filesystem's device {}:{} is not in /sys/class/block",
            root_devnum.0, root_devnum.1
        )
    })?;
    let disk = root.disk.as_deref().ok_or_else(|| {
        format!(
            "the root filesystem is on {}, which is not a partition",
            root.name
        )
    })?;
    blockdev::find_partition(devs, PARTNAME, Some(disk))
        .ok_or_else(|| format!("no partition named {PARTNAME:?} on {disk}"))
}

fn run(program: &str, args: &[&str]) -> Result<i32, String> {
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin")
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
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
        Err(why) => {
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

fn prepare_partition(class: &Path, target: &Path) -> Result<PathBuf, String> {
    let root = std::fs::metadata("/").map_err(|e| format!("cannot stat /: {e}"))?;
    let devs = blockdev::scan(class);
    let part = find(&devs, blockdev::split_devnum(root.dev()))?;
    let dev = part.dev_path();
    let shown = dev.display().to_string();
    match read_superblock(&dev).map_err(|e| format!("cannot read {shown}: {e}"))? {
        None => {
            announce(&format!(
                "applianced: data filesystem: none yet, creating ext4 on {shown}"
            ));
            let code = run(MKE2FS, &["-t", "ext4", "-L", LABEL, "-q", &shown])?;
            if code != 0 {
                return Err(format!("mke2fs on {shown} failed with exit code {code}"));
            }
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
        .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    mounts::mount_fs(
        &shown,
        target,
        "ext4",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME,
        None,
    )
    .map_err(|e| e.to_string())?;
    Ok(dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfs(path: &Path) {
        let f = std::fs::File::create(path).unwrap();
        f.set_len(4 * 1024 * 1024).unwrap();
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "data"])
            .arg(path)
            .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
            .output()
            .expect("mkfs.ext4 (e2fsprogs) runs");
        assert!(out.status.success(), "{out:?}");
    }

    fn patch(path: &Path, offset: u64, bytes: &[u8]) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(SB_OFFSET + offset)).unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn fresh_ext4_is_clean_and_labelled() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("data.img");
        mkfs(&img);
        let state = read_superblock(&img).unwrap().unwrap();
        assert_eq!(
            state,
            Ext4State {
                clean: true,
                errors: false,
                needs_recovery: false,
                label: "data".into()
            }
        );
        assert_eq!(state_line(&state), "data filesystem: clean");
    }

    #[test]
    fn a_journal_to_replay_or_a_cleared_valid_bit_is_unclean() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("data.img");
        mkfs(&img);
        let incompat = le32(&std::fs::read(&img).unwrap()[1024..], 0x60);
        // What a crash leaves: needs_recovery set while mounted.
        patch(&img, 0x60, &(incompat | INCOMPAT_RECOVER).to_le_bytes());
        let state = read_superblock(&img).unwrap().unwrap();
        assert!(!state.clean && state.needs_recovery, "{state:?}");
        assert_eq!(state_line(&state), "data filesystem: not cleanly unmounted");
        // Without a journal to replay, a cleared VALID_FS bit alone also counts.
        patch(&img, 0x60, &incompat.to_le_bytes());
        patch(&img, 0x3A, &STATE_ERROR_FS.to_le_bytes());
        let state = read_superblock(&img).unwrap().unwrap();
        assert!(
            !state.clean && state.errors && !state.needs_recovery,
            "{state:?}"
        );
    }

    #[test]
    fn no_filesystem_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("zero.img");
        std::fs::write(&img, vec![0u8; 8192]).unwrap();
        assert_eq!(read_superblock(&img).unwrap(), None);
        std::fs::write(&img, b"short").unwrap();
        assert_eq!(read_superblock(&img).unwrap(), None);
    }

    #[test]
    fn fsck_codes_zero_and_one_are_fine() {
        assert_eq!(fsck_meaning(0), Ok("no errors"));
        assert_eq!(fsck_meaning(1), Ok("errors corrected"));
        assert_eq!(
            fsck_meaning(4).unwrap_err(),
            "e2fsck exit code 4: errors left uncorrected"
        );
        assert!(fsck_meaning(12).unwrap_err().contains("operational error"));
    }

    #[test]
    fn the_data_partition_is_the_one_on_the_roots_disk() {
        let dir = tempfile::tempdir().unwrap();
        let class = blockdev::tests::fake_sysfs(
            dir.path(),
            &[
                ("vda", None, None, 0, 0),
                ("vda1", Some("vda"), Some("data"), 0, 0),
                ("vdb", None, None, 16, 0),
                ("vdb2", Some("vdb"), Some("root-a"), 16, 0),
                ("vdb3", Some("vdb"), Some("data"), 16, 0),
            ],
        );
        let devs = blockdev::scan(&class);
        assert_eq!(find(&devs, (254, 19)).unwrap().name, "vdb3");
        assert_eq!(
            find(&devs, (254, 0)).unwrap_err(),
            "the root filesystem is on vda, which is not a partition"
        );
        assert!(find(&devs, (8, 1)).unwrap_err().contains("8:1"));
    }
}
