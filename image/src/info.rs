//! `out/image.json`: what was built, for tests and people — versions, the
//! artefacts with their sizes and SHA-256, the partition table with byte
//! offsets, the default kernel command line.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::disk::Partition;
use crate::error::{Error, IoContext, Result};

/// The contents of `out/image.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Product name.
    pub product: String,
    /// Product (workspace) version.
    pub version: String,
    /// The kernel.
    pub kernel: KernelInfo,
    /// The default kernel command line (syslinux APPEND).
    pub cmdline: String,
    /// Timestamp of every file in the image.
    pub source_date_epoch: u64,
    /// The disk.
    pub disk: DiskInfo,
    /// Artefacts in `out/`.
    pub artefacts: Artefacts,
    /// Sizes of the parts, in bytes.
    pub sizes: Sizes,
}

/// The kernel in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// Debian package.
    pub package: String,
    /// Package version.
    pub package_version: String,
    /// `uname -r`.
    pub release: String,
}

/// The GPT disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Virtual size in bytes.
    pub size: u64,
    /// Logical sector size.
    pub sector_size: u64,
    /// GPT disk GUID.
    pub guid: String,
    /// Partitions in table order.
    pub partitions: Vec<Partition>,
}

impl DiskInfo {
    /// The partition named `name`.
    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }
}

/// One artefact file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artefact {
    /// File name in `out/`.
    pub file: String,
    /// Size in bytes (apparent size; the raw disk is sparse).
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// The artefacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artefacts {
    /// Raw disk.
    pub raw: Artefact,
    /// qcow2.
    pub qcow2: Artefact,
    /// VHDX.
    pub vhdx: Artefact,
    /// OVA.
    pub ova: Artefact,
    /// The checksum file.
    pub sha256sums: String,
}

impl Artefacts {
    /// All four disk artefacts.
    pub fn all(&self) -> [&Artefact; 4] {
        [&self.raw, &self.qcow2, &self.vhdx, &self.ova]
    }
}

/// Sizes of the built parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// The compressed initramfs.
    pub initramfs: u64,
    /// The kernel.
    pub vmlinuz: u64,
    /// The root EROFS image.
    pub root_erofs: u64,
    /// Bytes of file contents in the root tree (uncompressed).
    pub root_content: u64,
    /// The streamOptimized VMDK inside the OVA.
    pub vmdk: u64,
}

/// Reads `out/image.json` (or any path to it).
pub fn read_image_info(path: &Path) -> Result<ImageInfo> {
    let text = std::fs::read(path).ctx("reading", path)?;
    serde_json::from_slice(&text).map_err(|source| Error::ImageInfo {
        path: path.to_owned(),
        source,
    })
}

/// Writes `info` as pretty JSON.
pub fn write_image_info(path: &Path, info: &ImageInfo) -> Result<()> {
    let mut text = serde_json::to_string_pretty(info).map_err(|source| Error::ImageInfo {
        path: path.to_owned(),
        source,
    })?;
    text.push('\n');
    std::fs::write(path, text).ctx("writing", path)
}

/// `SHA256SUMS` lines (`hex  name`), sorted by name.
pub fn sha256sums(artefacts: &[&Artefact]) -> String {
    let mut lines: Vec<String> = artefacts
        .iter()
        .map(|a| format!("{}  {}\n", a.sha256, a.file))
        .collect();
    lines.sort_by(|a, b| {
        a.split_once("  ")
            .map(|x| x.1)
            .cmp(&b.split_once("  ").map(|x| x.1))
    });
    lines.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artefact(file: &str) -> Artefact {
        Artefact {
            file: file.into(),
            size: 1,
            sha256: format!("{:0>64}", file.len()),
        }
    }

    #[test]
    fn image_json_round_trips_and_errors_name_the_file() {
        let info = ImageInfo {
            product: "Appliance OS".into(),
            version: "0.1.0".into(),
            kernel: KernelInfo {
                package: "linux-image-6.1.0-56-amd64".into(),
                package_version: "6.1.192-2".into(),
                release: "6.1.0-56-amd64".into(),
            },
            cmdline: "console=ttyS0".into(),
            source_date_epoch: 1,
            disk: DiskInfo {
                size: 2 << 30,
                sector_size: 512,
                guid: "AA544B47-8467-4B06-9384-4B571A47E972".into(),
                partitions: vec![Partition {
                    number: 1,
                    name: "esp".into(),
                    type_guid: crate::disk::ESP_TYPE.into(),
                    guid: "FC3681C4-D296-4529-AC39-1EAC4E7C8D55".into(),
                    offset: 1 << 20,
                    size: 64 << 20,
                    attributes: 4,
                }],
            },
            artefacts: Artefacts {
                raw: artefact("a.raw"),
                qcow2: artefact("a.qcow2"),
                vhdx: artefact("a.vhdx"),
                ova: artefact("a.ova"),
                sha256sums: "SHA256SUMS".into(),
            },
            sizes: Sizes {
                initramfs: 1,
                vmlinuz: 2,
                root_erofs: 3,
                root_content: 4,
                vmdk: 5,
            },
        };
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("image.json");
        write_image_info(&p, &info).unwrap();
        assert_eq!(read_image_info(&p).unwrap(), info);
        assert_eq!(info.disk.partition("esp").unwrap().offset, 1 << 20);
        std::fs::write(&p, "{\"product\": 1}").unwrap();
        assert!(read_image_info(&p)
            .unwrap_err()
            .to_string()
            .contains("image.json"));
        let sums = sha256sums(&info.artefacts.all());
        let names: Vec<&str> = sums
            .lines()
            .map(|l| l.split_once("  ").unwrap().1)
            .collect();
        assert_eq!(names, ["a.ova", "a.qcow2", "a.raw", "a.vhdx"]);
    }
}
