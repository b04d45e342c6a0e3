//! Tests of the GPT reader and grower, against tables built here.

use super::*;
use std::path::Path;
use std::process::Command;

const SS: u64 = 512;
const MIB_SECTORS: u64 = MIB / SS;

fn sgdisk(disk: &Path, args: &[&str]) -> String {
    let out = Command::new("sgdisk")
        .args(args)
        .arg(disk)
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .output()
        .expect("sgdisk (gdisk) runs");
    assert!(out.status.success(), "sgdisk {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A disk like the image's, scaled down: 1 MiB aligned esp, root-a,
/// root-b, then data to the end.
fn image_like(dir: &Path, mib: u64) -> std::path::PathBuf {
    let disk = dir.join("disk.img");
    File::create(&disk).unwrap().set_len(mib * MIB).unwrap();
    sgdisk(
        &disk,
        &[
            "-a",
            "2048",
            "-n",
            "1:2048:+4M",
            "-t",
            "1:EF00",
            "-c",
            "1:esp",
            "-n",
            "2:0:+8M",
            "-c",
            "2:root-a",
            "-n",
            "3:0:+8M",
            "-c",
            "3:root-b",
            "-n",
            "4:0:0",
            "-c",
            "4:data",
        ],
    );
    disk
}

fn read(disk: &Path) -> Gpt {
    Gpt::read(&mut File::open(disk).unwrap(), SS).unwrap()
}

fn sectors(disk: &Path) -> u64 {
    std::fs::metadata(disk).unwrap().len() / SS
}

fn verified(disk: &Path) -> bool {
    sgdisk(disk, &["-v"]).contains("No problems found")
}

#[test]
fn grows_the_data_partition_to_the_new_end() {
    let dir = tempfile::tempdir().unwrap();
    let disk = image_like(dir.path(), 64);
    let before = read(&disk);
    let data = before.partition("data").unwrap().clone();
    assert_eq!(data.number, 4);
    assert_eq!(data.first_lba % MIB_SECTORS, 0);
    assert_eq!(before.disk_sectors(), sectors(&disk));

    File::options()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(100 * MIB)
        .unwrap();
    assert!(!verified(&disk), "sgdisk should see the misplaced backup");
    let plan = read(&disk)
        .plan_grow("data", sectors(&disk))
        .unwrap()
        .unwrap();
    assert_eq!(plan.number, 4);
    assert_eq!(plan.first_lba, data.first_lba);
    assert_eq!(plan.old_last_lba, data.last_lba);
    assert_eq!(plan.old_disk_sectors, 64 * MIB_SECTORS);
    assert_eq!(plan.new_disk_sectors, 100 * MIB_SECTORS);
    assert_eq!(plan.new_bytes() - plan.old_bytes(), 36 * MIB);
    apply(&File::options().write(true).open(&disk).unwrap(), &plan).unwrap();

    let text = sgdisk(&disk, &["-v"]);
    assert!(text.contains("No problems found"), "{text}");
    let after = read(&disk);
    let grown = after.partition("data").unwrap();
    assert_eq!(grown.first_lba, data.first_lba);
    assert_eq!(grown.last_lba, after.header.last_usable_lba);
    assert_eq!(after.header.alternate_lba, sectors(&disk) - 1);
    // What sgdisk says agrees (its "last usable sector" and the partition's end).
    let printed = sgdisk(&disk, &["-p"]);
    assert!(
        printed.contains(&format!("last usable sector is {}", grown.last_lba)),
        "{printed}"
    );
    let info = sgdisk(&disk, &["-i", "4"]);
    assert!(
        info.contains(&format!("First sector: {} ", data.first_lba))
            && info.contains(&format!("Last sector: {} ", grown.last_lba)),
        "{info}"
    );
    // The backup is the same table.
    let backup = Gpt::read_backup(&mut File::open(&disk).unwrap(), SS, sectors(&disk) - 1).unwrap();
    assert_eq!(backup.entries, after.entries);
    assert_eq!(backup.header.alternate_lba, 1);
    // The other partitions did not move, and sgdisk -e would change nothing more.
    assert_eq!(&after.entries[..3], &before.entries[..3]);
    // The protective MBR covers the new disk.
    let mbr = std::fs::read(&disk).unwrap();
    assert_eq!(u64::from(le32(&mbr, MBR_RECORD + 12)), sectors(&disk) - 1);

    // Growing again is a no-op: nothing planned.
    assert_eq!(after.plan_grow("data", sectors(&disk)).unwrap(), None);
}

#[test]
fn a_disk_that_is_not_larger_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let disk = image_like(dir.path(), 64);
    let bytes = std::fs::read(&disk).unwrap();
    let gpt = read(&disk);
    assert_eq!(gpt.plan_grow("data", sectors(&disk)).unwrap(), None);
    // A smaller disk than the table is an error, not a shrink.
    let e = gpt.plan_grow("data", sectors(&disk) - 1).unwrap_err();
    assert!(e.to_string().contains("alternate_lba is"), "{e}");
    assert_eq!(std::fs::read(&disk).unwrap(), bytes);
}

#[test]
fn a_stop_after_the_backup_writes_leaves_the_old_primary_and_a_new_backup() {
    let dir = tempfile::tempdir().unwrap();
    let disk = image_like(dir.path(), 64);
    let before = read(&disk);
    let f = File::options().write(true).open(&disk).unwrap();
    f.set_len(80 * MIB).unwrap();
    let plan = read(&disk)
        .plan_grow("data", sectors(&disk))
        .unwrap()
        .unwrap();
    assert_eq!(plan.writes[0].what, "backup partition entries");
    assert_eq!(plan.writes[1].what, "backup GPT header");
    apply_first(&f, &plan, 2).unwrap();
    // The primary is still the old, valid table, so Linux boots with it
    // and the next boot grows again; its old backup is intact too.
    let primary = read(&disk);
    assert_eq!(primary.entries, before.entries);
    assert_eq!(primary.header, before.header);
    Gpt::read_backup(
        &mut File::open(&disk).unwrap(),
        SS,
        before.header.alternate_lba,
    )
    .unwrap();
    // The new backup at the end already describes the grown table.
    let backup = Gpt::read_backup(&mut File::open(&disk).unwrap(), SS, sectors(&disk) - 1).unwrap();
    assert_eq!(
        backup.partition("data").unwrap().last_lba,
        plan.new_last_lba
    );
    // Planning again from the unchanged primary gives the same writes.
    assert_eq!(
        primary.plan_grow("data", sectors(&disk)).unwrap().unwrap(),
        plan
    );
    apply(&f, &plan).unwrap();
    assert!(verified(&disk));
}

#[test]
fn a_growth_smaller_than_the_backup_table_works() {
    // The new backup overlaps the old one: still consistent.
    let dir = tempfile::tempdir().unwrap();
    let disk = image_like(dir.path(), 64);
    let f = File::options().write(true).open(&disk).unwrap();
    f.set_len(64 * MIB + 8 * SS).unwrap();
    let plan = read(&disk)
        .plan_grow("data", sectors(&disk))
        .unwrap()
        .unwrap();
    assert_eq!(plan.new_last_lba, plan.old_last_lba + 8);
    apply(&f, &plan).unwrap();
    assert!(verified(&disk));
}

#[test]
fn corrupt_or_unexpected_tables_are_refused_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let disk = image_like(dir.path(), 64);
    let good = std::fs::read(&disk).unwrap();
    let bigger = sectors(&disk) + MIB_SECTORS;
    let check = |bytes: &[u8]| {
        Gpt::read(&mut io::Cursor::new(bytes), SS).and_then(|g| g.plan_grow("data", bigger))
    };
    assert!(check(&good).unwrap().is_some());

    // A flipped bit in the header: its CRC no longer matches.
    let mut bad = good.clone();
    bad[512 + H_LAST_USABLE] ^= 1;
    let e = check(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with("primary GPT header: header CRC32 is 0x"),
        "{e}"
    );

    // A flipped bit in an entry: the entries' CRC.
    let mut bad = good.clone();
    bad[1024 + 3 * 128 + E_LAST_LBA] ^= 1;
    let e = check(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with("primary GPT: partition entries CRC32 is 0x"),
        "{e}"
    );

    // No signature at all.
    let mut bad = good.clone();
    bad[512..520].copy_from_slice(b"NOT GPT!");
    let e = check(&bad).unwrap_err().to_string();
    assert_eq!(
        e,
        "primary GPT header: signature is \"NOT GPT!\", not \"EFI PART\""
    );

    // A well-formed header (CRC fixed) with an odd field.
    let with = |at: usize, v: u32| {
        let mut b = good.clone();
        put32(&mut b[512..1024], at, v);
        let crc = header_crc(&b[512..1024], 92);
        put32(&mut b[512..1024], H_CRC, crc);
        b
    };
    let e = check(&with(H_ENTRY_SIZE, 100)).unwrap_err().to_string();
    assert_eq!(
        e,
        "primary GPT header: size_of_partition_entry is 100, expected 128 × 2^n"
    );
    let e = check(&with(H_REVISION, 0x0002_0000))
        .unwrap_err()
        .to_string();
    assert!(e.contains("revision is 131072"), "{e}");

    // Nothing read from the file was written.
    assert_eq!(std::fs::read(&disk).unwrap(), good);
}

#[test]
fn only_the_last_partition_named_data_grows() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    File::create(&disk).unwrap().set_len(64 * MIB).unwrap();
    // data first, then another partition after it.
    sgdisk(
        &disk,
        &[
            "-n",
            "1:2048:+8M",
            "-c",
            "1:data",
            "-n",
            "2:0:+8M",
            "-c",
            "2:other",
        ],
    );
    File::options()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(80 * MIB)
        .unwrap();
    let gpt = read(&disk);
    let e = gpt
        .plan_grow("data", sectors(&disk))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "GPT partition 1 (\"data\", first sector 2048) is not the last on the disk: \
         partition 2 (\"other\") ends at sector 34815"
    );
    let e = gpt
        .plan_grow("nothing", sectors(&disk))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "no GPT partition is named \"nothing\"");
}
