//! qa's own reader of a disk's GUID partition table: finds a partition by
//! its name (PARTLABEL).
//!
//! Kept independent on purpose. The tree has two other readers:
//! applianced's `boot/gpt.rs` (the code under test: it grows the data
//! partition to an enlarged disk and rewrites both tables) and the image
//! builder's `disk::read_gpt` (which describes the disk in `image.json`).
//! The VM tests use this one to check what those two wrote: that the grown
//! data partition ends at the disk's last usable sector, and that the
//! partition on the disk is where `image.json` says. Reusing either reader
//! would let a bug in it confirm itself.

use std::path::Path;

use anyhow::Context;

/// A GPT partition found by its name (PARTLABEL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Byte offset from the start of the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Finds the partition named `label` in the GPT of the disk image `disk`
/// (512-byte sectors), reading the table itself rather than trusting the
/// builder's description of it.
pub fn gpt_partition(disk: &Path, label: &str) -> anyhow::Result<Partition> {
    use std::os::unix::fs::FileExt;
    const SECTOR: u64 = 512;
    let f = std::fs::File::open(disk).with_context(|| format!("opening {}", disk.display()))?;
    let mut header = [0u8; 92];
    f.read_exact_at(&mut header, SECTOR)
        .with_context(|| format!("reading the GPT header of {}", disk.display()))?;
    anyhow::ensure!(
        &header[0..8] == b"EFI PART",
        "{} has no GPT header in sector 1",
        disk.display()
    );
    let le64 = |b: &[u8], at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let le32 = |b: &[u8], at: usize| {
        let mut a = [0u8; 4];
        a.copy_from_slice(&b[at..at + 4]);
        u32::from_le_bytes(a)
    };
    let entries_lba = le64(&header, 0x48);
    let count = le32(&header, 0x50).min(1024);
    let entry_size = le32(&header, 0x54) as usize;
    anyhow::ensure!(
        (128..=4096).contains(&entry_size),
        "{}: GPT entry size {entry_size} is not plausible",
        disk.display()
    );
    let mut table = vec![0u8; entry_size * count as usize];
    f.read_exact_at(&mut table, entries_lba * SECTOR)
        .with_context(|| format!("reading the GPT entries of {}", disk.display()))?;
    for entry in table.chunks_exact(entry_size) {
        if entry[0..16].iter().all(|b| *b == 0) {
            continue;
        }
        let name: Vec<u16> = entry[0x38..0x38 + 72]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|c| *c != 0)
            .collect();
        if String::from_utf16_lossy(&name) == label {
            let first = le64(entry, 0x20);
            let last = le64(entry, 0x28);
            return Ok(Partition {
                offset: first * SECTOR,
                size: (last + 1 - first) * SECTOR,
            });
        }
    }
    anyhow::bail!("{} has no partition named {label:?}", disk.display())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn finds_a_gpt_partition_by_name() {
        if Command::new("sgdisk").arg("--version").output().is_err() {
            eprintln!("skipped: sgdisk is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        crate::netns::run(
            Command::new("sgdisk")
                .args([
                    "-n",
                    "1:2048:+2M",
                    "-c",
                    "1:esp",
                    "-n",
                    "2:0:0",
                    "-c",
                    "2:data",
                ])
                .arg(&disk),
        )
        .unwrap();
        let esp = gpt_partition(&disk, "esp").unwrap();
        assert_eq!(
            esp,
            Partition {
                offset: 1 << 20,
                size: 2 << 20
            }
        );
        let data = gpt_partition(&disk, "data").unwrap();
        assert_eq!(data.offset, 3 << 20);
        assert!(gpt_partition(&disk, "root-a").is_err());
    }
}
