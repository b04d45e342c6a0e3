//! Tests of the data partition: fsck codes, superblocks, the partition search.

use super::blkpg::*;
use super::ext4::*;
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
fn the_filesystem_size_is_read_from_its_superblock() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("data.img");
    mkfs(&img);
    // 4 MiB: mke2fs picks 1 KiB blocks for so small a filesystem.
    assert_eq!(read_fs_bytes(&img).unwrap(), Some(4 * MIB));
    // Grown offline (the image grows online, with the same count).
    std::fs::File::options()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    let out = Command::new("resize2fs")
        .args(["-f"])
        .arg(&img)
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .output()
        .expect("resize2fs (e2fsprogs) runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(read_fs_bytes(&img).unwrap(), Some(64 * MIB));
    let sb = std::fs::read(&img).unwrap();
    assert_eq!(parse_fs_bytes(&sb[1024..2048]), Some(64 * MIB));
    assert_eq!(parse_fs_bytes(&[0u8; 1024]), None);
}

#[test]
fn filesystems_grow_when_the_table_did_or_much_is_unused() {
    let gib = 1024 * MIB;
    // The table grew: any whole MiB.
    assert!(fs_needs_growing(3 * gib, 2 * gib, true));
    assert!(fs_needs_growing(2 * gib + MIB, 2 * gib, true));
    assert!(!fs_needs_growing(2 * gib + 4096, 2 * gib, true));
    // It did not: only what a stop between table and filesystem leaves,
    // not the few MiB mke2fs leaves out on purpose.
    assert!(!fs_needs_growing(2 * gib + 6 * MIB, 2 * gib, false));
    assert!(fs_needs_growing(2 * gib + FS_SLACK, 2 * gib, false));
    assert!(!fs_needs_growing(2 * gib, 3 * gib, false));
    assert_eq!(
        grown_line(1_542_438_400, 2_616_180_224),
        "data partition: grown from 1470 to 2494 MiB"
    );
}

#[test]
fn blkpg_structures_match_the_kernels() {
    // <linux/blkpg.h> on x86_64: 8 + 8 + 4 + 64 + 64 (+ 4 padding).
    assert_eq!(std::mem::size_of::<BlkpgPartition>(), 152);
    assert_eq!(std::mem::size_of::<BlkpgIoctlArg>(), 24);
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
    assert_eq!(fsck_meaning(0).ok(), Some("no errors"));
    assert_eq!(fsck_meaning(1).ok(), Some("errors corrected"));
    assert_eq!(
        fsck_meaning(4).unwrap_err().to_string(),
        "e2fsck exit code 4: errors left uncorrected"
    );
    assert!(fsck_meaning(12)
        .unwrap_err()
        .to_string()
        .contains("operational error"));
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
        find(&devs, (254, 0)).unwrap_err().to_string(),
        "the root filesystem is on vda, which is not a partition"
    );
    assert!(find(&devs, (8, 1)).unwrap_err().to_string().contains("8:1"));
}
