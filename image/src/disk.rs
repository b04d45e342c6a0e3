//! The GPT disk: partitioned with sgdisk (fixed disk and partition GUIDs),
//! gptmbr.bin in the first 440 bytes, partition images copied in at their
//! offsets without writing zeros (the raw file stays sparse); and a reader
//! of the partition table for image.json and for tests.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::manifest::{format_guid, Disk};
use crate::tools::run;

/// Bytes per logical sector.
pub const SECTOR: u64 = 512;
/// Linux root (x86-64) partition type.
pub const ROOT_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
/// EFI system partition type.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Linux filesystem data partition type.
pub const LINUX_DATA_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// One GPT partition as found on the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// 1-based partition number.
    pub number: u32,
    /// PARTLABEL.
    pub name: String,
    /// Partition type GUID.
    pub type_guid: String,
    /// Unique partition GUID.
    pub guid: String,
    /// Byte offset of the first sector.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// GPT attribute bits (bit 2: legacy BIOS bootable).
    pub attributes: u64,
}

/// A GPT partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// Disk GUID.
    pub disk_guid: String,
    /// Used entries, in table order.
    pub partitions: Vec<Partition>,
}

impl Gpt {
    /// The partition named `name`.
    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }
}

/// Reads the primary GPT of the disk image at `path`.
pub fn read_gpt(path: &Path) -> Result<Gpt> {
    let layout = |message: String| Error::Layout {
        path: path.to_owned(),
        message,
    };
    let mut f = std::fs::File::open(path).ctx("opening", path)?;
    let mut head = vec![0u8; 2 * SECTOR as usize];
    f.read_exact(&mut head).ctx("reading", path)?;
    let h = &head[SECTOR as usize..];
    if &h[0..8] != b"EFI PART" {
        return Err(layout("no GPT header in sector 1".into()));
    }
    let u64_at =
        |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
    let u32_at =
        |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
    let guid_at = |b: &[u8], o: usize| format_guid(&b[o..o + 16].try_into().unwrap_or_default());
    let entries_lba = u64_at(h, 72);
    let count = u32_at(h, 80);
    let entry_size = u32_at(h, 84) as usize;
    if !(128..=4096).contains(&entry_size) || count > 1024 {
        return Err(layout(format!(
            "implausible GPT: {count} entries of {entry_size} bytes"
        )));
    }
    let mut table = vec![0u8; count as usize * entry_size];
    f.read_exact_at(&mut table, entries_lba * SECTOR)
        .ctx("reading the partition entries of", path)?;
    let mut partitions = Vec::new();
    for (i, e) in table.chunks(entry_size).enumerate() {
        if e[0..16].iter().all(|b| *b == 0) {
            continue;
        }
        let first = u64_at(e, 32);
        let last = u64_at(e, 40);
        let name: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|c| *c != 0)
            .collect();
        partitions.push(Partition {
            number: i as u32 + 1,
            name: String::from_utf16_lossy(&name),
            type_guid: guid_at(e, 0),
            guid: guid_at(e, 16),
            offset: first * SECTOR,
            size: (last + 1 - first) * SECTOR,
            attributes: u64_at(e, 48),
        });
    }
    Ok(Gpt {
        disk_guid: guid_at(h, 56),
        partitions,
    })
}

/// Makes the raw disk at `raw` (replacing it): GPT, boot code, the ESP and
/// root images in place. Returns the partition table as written and the
/// bytes of the disk that hold data (the non-zero 64 KiB blocks of the
/// partition images plus the GPT areas) — unlike the file's allocated
/// blocks, this does not depend on the filesystem `raw` is on.
pub fn create(
    raw: &Path,
    disk: &Disk,
    gptmbr: &Path,
    esp: &Path,
    root: &Path,
) -> Result<(Gpt, u64)> {
    if raw.exists() {
        std::fs::remove_file(raw).ctx("removing", raw)?;
    }
    let f = std::fs::File::create(raw).ctx("creating", raw)?;
    f.set_len(disk.size_mib << 20).ctx("sizing", raw)?;
    drop(f);
    let mib = |n: u64| format!("+{n}M");
    run(Command::new("sgdisk")
        .arg(format!("--disk-guid={}", disk.disk_guid))
        .args(["-n", &format!("1:2048:{}", mib(disk.esp_mib))])
        .args(["-t", "1:EF00", "-c", "1:esp", "-A", "1:set:2"])
        .args(["-u", &format!("1:{}", disk.esp_guid)])
        .args(["-n", &format!("2:0:{}", mib(disk.root_mib))])
        .args(["-t", &format!("2:{ROOT_TYPE}"), "-c", "2:root-a"])
        .args(["-u", &format!("2:{}", disk.root_a_guid)])
        .args(["-n", &format!("3:0:{}", mib(disk.root_mib))])
        .args(["-t", &format!("3:{ROOT_TYPE}"), "-c", "3:root-b"])
        .args(["-u", &format!("3:{}", disk.root_b_guid)])
        .args(["-n", "4:0:0", "-t", "4:8300", "-c", "4:data"])
        .args(["-u", &format!("4:{}", disk.data_guid)])
        .arg(raw))?;
    let gpt = read_gpt(raw)?;
    let names: Vec<&str> = gpt.partitions.iter().map(|p| p.name.as_str()).collect();
    if names != ["esp", "root-a", "root-b", "data"] {
        return Err(Error::Layout {
            path: raw.to_owned(),
            message: format!("sgdisk made partitions {names:?}"),
        });
    }
    let out = OpenOptions::new()
        .write(true)
        .open(raw)
        .ctx("opening", raw)?;
    let mbr = std::fs::read(gptmbr).ctx("reading", gptmbr)?;
    if mbr.len() != 440 {
        return Err(Error::TooLarge {
            what: format!("{} (must be 440 bytes)", gptmbr.display()),
            size: mbr.len() as u64,
            limit: 440,
        });
    }
    out.write_all_at(&mbr, 0)
        .ctx("writing the boot code into", raw)?;
    // Protective MBR, primary and backup GPT.
    let mut populated = 2 * 34 * SECTOR;
    for (name, image) in [("esp", esp), ("root-a", root)] {
        if let Some(p) = gpt.partition(name) {
            populated += copy_sparse(image, &out, raw, p.offset, p.size)?;
        }
    }
    out.sync_all().ctx("syncing", raw)?;
    Ok((gpt, populated))
}

/// Copies `image` into `out` at `offset`, skipping all-zero 64 KiB blocks;
/// returns the bytes written.
fn copy_sparse(
    image: &Path,
    out: &std::fs::File,
    out_path: &Path,
    offset: u64,
    room: u64,
) -> Result<u64> {
    let mut src = std::fs::File::open(image).ctx("opening", image)?;
    let len = src.metadata().ctx("reading", image)?.len();
    if len > room {
        return Err(Error::TooLarge {
            what: image.display().to_string(),
            size: len,
            limit: room,
        });
    }
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = 0u64;
    let mut written = 0u64;
    loop {
        let n = read_full(&mut src, &mut buf).ctx("reading", image)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            out.write_all_at(&buf[..n], offset + pos)
                .ctx("writing", out_path)?;
            written += n as u64;
        }
        pos += n as u64;
    }
    Ok(written)
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Bytes a (sparse) file occupies on disk.
pub fn used_bytes(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).ctx("reading", path)?.blocks() * 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sgdisk is a host tool the builder installs; skip where it is absent.
    fn have_sgdisk() -> bool {
        crate::tools::which("sgdisk").is_some()
    }

    fn disk() -> Disk {
        let m = crate::manifest::Manifest::parse(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/image.toml")).unwrap(),
            Path::new("image.toml"),
        )
        .unwrap();
        Disk {
            size_mib: 600,
            esp_mib: 40,
            root_mib: 16,
            ..m.disk
        }
    }

    #[test]
    fn disk_layout_guids_and_sparse_images() {
        if !have_sgdisk() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let (mbr, esp, root) = (
            d.path().join("mbr"),
            d.path().join("esp"),
            d.path().join("root"),
        );
        std::fs::write(&mbr, [0xEB; 440]).unwrap();
        let mut esp_bytes = vec![0u8; 1 << 20];
        esp_bytes[0] = 0xAA;
        esp_bytes[(1 << 20) - 1] = 0x55;
        std::fs::write(&esp, &esp_bytes).unwrap();
        std::fs::write(&root, b"erofs").unwrap();
        let raw = d.path().join("disk.raw");
        let spec = disk();
        let (gpt, populated) = create(&raw, &spec, &mbr, &esp, &root).unwrap();
        assert_eq!(populated, 2 * 34 * 512 + 2 * (64 << 10) + 5);
        assert_eq!(gpt, read_gpt(&raw).unwrap());
        assert_eq!(gpt.disk_guid, spec.disk_guid);
        let esp_p = gpt.partition("esp").unwrap();
        assert_eq!((esp_p.offset, esp_p.size), (1 << 20, 40 << 20));
        assert_eq!(esp_p.type_guid, ESP_TYPE);
        assert_eq!(esp_p.attributes & 4, 4, "legacy BIOS bootable");
        assert_eq!(esp_p.guid, spec.esp_guid);
        let root_a = gpt.partition("root-a").unwrap();
        assert_eq!(
            (root_a.offset, root_a.type_guid.as_str()),
            (41 << 20, ROOT_TYPE)
        );
        assert_eq!(gpt.partition("root-b").unwrap().offset, 57 << 20);
        let data = gpt.partition("data").unwrap();
        assert_eq!(
            (data.offset, data.type_guid.as_str()),
            (73 << 20, LINUX_DATA_TYPE)
        );
        let bytes = std::fs::read(&raw).unwrap();
        assert_eq!(bytes.len(), 600 << 20);
        assert_eq!(&bytes[..440], &[0xEB; 440][..]);
        assert_eq!((bytes[1 << 20], bytes[(2 << 20) - 1]), (0xAA, 0x55));
        assert_eq!(&bytes[41 << 20..(41 << 20) + 5], b"erofs");
        assert!(
            used_bytes(&raw).unwrap() < 2 << 20,
            "sparse: {}",
            used_bytes(&raw).unwrap()
        );
        // Same inputs, same bytes.
        let raw2 = d.path().join("disk2.raw");
        create(&raw2, &spec, &mbr, &esp, &root).unwrap();
        assert!(bytes == std::fs::read(&raw2).unwrap());
        // A partition image larger than its partition is refused.
        std::fs::write(&root, vec![1u8; 17 << 20]).unwrap();
        let err = create(&raw, &spec, &mbr, &esp, &root)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than"), "{err}");
    }

    #[test]
    fn a_file_without_gpt_is_refused() {
        let d = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(d.path(), vec![0u8; 4096]).unwrap();
        assert!(read_gpt(d.path())
            .unwrap_err()
            .to_string()
            .contains("no GPT"));
    }
}
