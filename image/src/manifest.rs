//! The declaration of the image (`image/image.toml`): its schema, parsing and
//! validation. Pure: nothing here touches the disk except [`Manifest::load`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, IoContext, Result};

/// Everything that goes into the image.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Timestamp for every file when `SOURCE_DATE_EPOCH` is unset.
    pub source_date_epoch: u64,
    /// The kernel package and command line.
    pub kernel: Kernel,
    /// Kernel modules for stage 1 and stage 2.
    pub modules: Modules,
    /// Disk geometry and fixed identifiers.
    pub disk: Disk,
    /// Our programs from cargo's release directory.
    #[serde(rename = "binary", default)]
    pub binaries: Vec<Binary>,
    /// Service manifests.
    pub services: Services,
    /// Pinned Debian packages.
    #[serde(rename = "package", default)]
    pub packages: Vec<Package>,
    /// Boot loader files.
    pub boot: Boot,
    /// The baseline initramfs.
    pub baseline: Baseline,
}

/// The kernel.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// Debian package name.
    pub package: String,
    /// Pinned package version.
    pub version: String,
    /// `uname -r` (KVER): names /lib/modules/KVER and /boot/vmlinuz-KVER.
    pub release: String,
    /// Default kernel command line (syslinux APPEND).
    pub cmdline: String,
}

/// Kernel modules by name (dependencies are resolved, not listed).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Modules {
    /// Softdep alias → module name.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Loaded in stage 1.
    pub initramfs: Vec<String>,
    /// Loaded in stage 2.
    pub stage2: Vec<String>,
    /// The hardware drivers among `initramfs` and `stage2`: loaded only when
    /// a present device's modalias matches one of their aliases. The others
    /// are always loaded.
    #[serde(default)]
    pub hardware: Vec<String>,
}

impl Modules {
    /// Whether `name` is a hardware driver.
    pub fn is_hardware(&self, name: &str) -> bool {
        self.hardware.iter().any(|h| h == name)
    }
}

/// Disk geometry and identifiers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Virtual size of the disk.
    pub size_mib: u64,
    /// Size of the ESP.
    pub esp_mib: u64,
    /// Size of each root partition.
    pub root_mib: u64,
    /// GPT disk GUID.
    pub disk_guid: String,
    /// Partition GUID of `esp`.
    pub esp_guid: String,
    /// Partition GUID of `root-a`.
    pub root_a_guid: String,
    /// Partition GUID of `root-b`.
    pub root_b_guid: String,
    /// Partition GUID of `data`.
    pub data_guid: String,
    /// FAT volume id of the ESP, 8 hex digits.
    pub esp_volume_id: String,
    /// UUID of the root EROFS.
    pub root_uuid: String,
}

/// One of our binaries.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Binary {
    /// File name in cargo's release directory.
    pub name: String,
    /// Absolute path in the root filesystem.
    pub to: String,
}

/// Where the service manifests come from and go.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// Directory (relative to the workspace) whose `*.toml` are taken.
    pub from: PathBuf,
    /// Absolute directory in the root filesystem.
    pub to: String,
}

/// A pinned Debian package.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Exact version (with epoch if any).
    pub version: String,
    /// Absolute paths inside the package to put into the root filesystem.
    #[serde(default)]
    pub files: Vec<String>,
}

/// Boot loader files, each `package:/path`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// syslinux's mtools installer.
    pub bios_installer: FileRef,
    /// MBR boot code for GPT disks.
    pub gptmbr: FileRef,
    /// syslinux.efi.
    pub efi_loader: FileRef,
    /// ldlinux.e64.
    pub efi_ldlinux: FileRef,
}

/// The baseline initramfs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// The static busybox.
    pub busybox: FileRef,
}

/// A file inside a declared package, written `package:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// Package name.
    pub package: String,
    /// Absolute path inside the package.
    pub path: String,
}

impl<'de> Deserialize<'de> for FileRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.split_once(':') {
            Some((package, path)) if !package.is_empty() && path.starts_with('/') => Ok(FileRef {
                package: package.to_owned(),
                path: path.to_owned(),
            }),
            _ => Err(serde::de::Error::custom(format!(
                "{s:?} is not of the form \"package:/absolute/path\""
            ))),
        }
    }
}

impl std::fmt::Display for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.package, self.path)
    }
}

impl Manifest {
    /// Reads and validates the declaration at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).ctx("reading", path)?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let err = |source: ManifestError| Error::Manifest {
            path: path.to_owned(),
            source,
        };
        let m: Manifest = toml::from_str(text).map_err(|e| err(e.into()))?;
        m.validate().map_err(err)?;
        Ok(m)
    }

    /// The declared package named `name`.
    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }

    fn validate(&self) -> std::result::Result<(), ManifestError> {
        use ManifestError as E;
        let k = &self.kernel;
        for (field, v) in [
            ("kernel.package", &k.package),
            ("kernel.version", &k.version),
            ("kernel.release", &k.release),
            ("kernel.cmdline", &k.cmdline),
        ] {
            if v.trim().is_empty() {
                return Err(E::Empty { field });
            }
        }
        if k.cmdline.contains('\n') {
            return Err(E::CmdlineLines {
                cmdline: k.cmdline.clone(),
            });
        }
        for (field, list) in [
            ("modules.initramfs", &self.modules.initramfs),
            ("modules.stage2", &self.modules.stage2),
            ("modules.hardware", &self.modules.hardware),
        ] {
            let mut seen = BTreeSet::new();
            for name in list {
                if name.is_empty() || name.contains(['/', ' ', '.']) {
                    return Err(E::ModuleName {
                        field,
                        name: name.clone(),
                    });
                }
                if !seen.insert(name) {
                    return Err(E::ModuleTwice {
                        field,
                        name: name.clone(),
                    });
                }
            }
        }
        for name in &self.modules.hardware {
            if !self.modules.initramfs.contains(name) && !self.modules.stage2.contains(name) {
                return Err(E::HardwareWithoutStage { name: name.clone() });
            }
        }
        let d = &self.disk;
        let first_partitions = 1 + d.esp_mib + 2 * d.root_mib;
        if d.esp_mib < 33 || d.root_mib == 0 || d.size_mib < first_partitions + 2 {
            return Err(E::DiskTooSmall {
                size_mib: d.size_mib,
                esp_mib: d.esp_mib,
                root_mib: d.root_mib,
            });
        }
        for (field, v) in [
            ("disk.disk_guid", &d.disk_guid),
            ("disk.esp_guid", &d.esp_guid),
            ("disk.root_a_guid", &d.root_a_guid),
            ("disk.root_b_guid", &d.root_b_guid),
            ("disk.data_guid", &d.data_guid),
            ("disk.root_uuid", &d.root_uuid),
        ] {
            parse_guid(v).map_err(|source| E::Guid { field, source })?;
        }
        if d.esp_volume_id.len() != 8 || u32::from_str_radix(&d.esp_volume_id, 16).is_err() {
            return Err(E::VolumeId {
                value: d.esp_volume_id.clone(),
            });
        }
        let mut names = BTreeSet::new();
        for p in &self.packages {
            if p.name.is_empty() || p.version.is_empty() {
                return Err(E::PackageUnpinned {
                    name: p.name.clone(),
                    version: p.version.clone(),
                });
            }
            if p.name == k.package {
                return Err(E::PackageIsKernel {
                    name: p.name.clone(),
                });
            }
            if !names.insert(p.name.as_str()) {
                return Err(E::PackageTwice {
                    name: p.name.clone(),
                });
            }
            for f in &p.files {
                if !f.starts_with('/') {
                    return Err(E::PackageFileRelative {
                        package: p.name.clone(),
                        file: f.clone(),
                    });
                }
            }
        }
        for (field, r) in [
            ("boot.bios_installer", &self.boot.bios_installer),
            ("boot.gptmbr", &self.boot.gptmbr),
            ("boot.efi_loader", &self.boot.efi_loader),
            ("boot.efi_ldlinux", &self.boot.efi_ldlinux),
            ("baseline.busybox", &self.baseline.busybox),
        ] {
            if !names.contains(r.package.as_str()) {
                return Err(E::UndeclaredPackage {
                    field,
                    file: r.clone(),
                });
            }
        }
        let mut bins = BTreeSet::new();
        for b in &self.binaries {
            if b.name.is_empty() || b.name.contains('/') || !b.to.starts_with('/') {
                return Err(E::Binary {
                    name: b.name.clone(),
                    to: b.to.clone(),
                });
            }
            if !bins.insert(b.to.as_str()) {
                return Err(E::BinaryTwice { to: b.to.clone() });
            }
        }
        if !self.services.to.starts_with('/') {
            return Err(E::ServicesRelative {
                to: self.services.to.clone(),
            });
        }
        for (alias, module) in &self.modules.aliases {
            if module.is_empty() {
                return Err(E::EmptyAlias {
                    alias: alias.clone(),
                });
            }
        }
        Ok(())
    }
}

/// What is wrong with a declaration; each names the field and its value.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not TOML, or not the schema (an unknown field, a missing one).
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("kernel.cmdline must be one line: {cmdline:?}")]
    CmdlineLines { cmdline: String },
    #[error("{field}: {name:?} is not a module name")]
    ModuleName { field: &'static str, name: String },
    #[error("{field}: {name:?} is listed twice")]
    ModuleTwice { field: &'static str, name: String },
    #[error("modules.hardware: {name:?} is in neither modules.initramfs nor modules.stage2")]
    HardwareWithoutStage { name: String },
    #[error(
        "disk: size_mib = {size_mib} cannot hold 1 MiB + esp_mib = {esp_mib} (at least 33 for \
         FAT32) + 2 × root_mib = {root_mib} + a data partition"
    )]
    DiskTooSmall {
        size_mib: u64,
        esp_mib: u64,
        root_mib: u64,
    },
    #[error("{field}: {source}")]
    Guid {
        field: &'static str,
        source: GuidError,
    },
    #[error("disk.esp_volume_id: {value:?} is not 8 hex digits")]
    VolumeId { value: String },
    #[error("package {name:?}: name and version must be set (version {version:?})")]
    PackageUnpinned { name: String, version: String },
    #[error("package {name:?} is the kernel; declare it in [kernel] only")]
    PackageIsKernel { name: String },
    #[error("package {name:?} is declared twice")]
    PackageTwice { name: String },
    #[error("package {package:?}: file {file:?} must be an absolute path")]
    PackageFileRelative { package: String, file: String },
    #[error(
        "{field} = \"{file}\": package {:?} is not declared as a [[package]]",
        file.package
    )]
    UndeclaredPackage { field: &'static str, file: FileRef },
    #[error("binary {name:?} -> {to:?}: name must be a file name and `to` an absolute path")]
    Binary { name: String, to: String },
    #[error("two binaries go to {to:?}")]
    BinaryTwice { to: String },
    /// Found by the build, which needs applianced as `/init`.
    #[error("no [[binary]] named applianced (it is /init)")]
    NoApplianced,
    #[error("services.to = {to:?} must be an absolute path")]
    ServicesRelative { to: String },
    #[error("modules.aliases.{alias} is empty")]
    EmptyAlias { alias: String },
}

/// A GUID that is not `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` in hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a GUID (XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)")]
pub struct GuidError {
    /// The text given.
    pub input: String,
}

/// Parses a GUID in its textual form (`8-4-4-4-12` hex digits) into the
/// 16 bytes of GPT's mixed-endian encoding.
pub fn parse_guid(s: &str) -> std::result::Result<[u8; 16], GuidError> {
    let err = || GuidError {
        input: s.to_owned(),
    };
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens != [8, 4, 4, 4, 12] || !s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()) {
        return Err(err());
    }
    let hex: String = groups.concat();
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| err())?;
    }
    // The first three groups are little-endian on disk.
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Ok(b)
}

/// Formats GPT's mixed-endian GUID bytes as upper-case text.
pub fn format_guid(b: &[u8; 16]) -> String {
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/image.toml")).unwrap()
    }

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(text, Path::new("image.toml"))
    }

    fn message(text: &str) -> String {
        match parse(text) {
            Err(Error::Manifest { source, .. }) => source.to_string(),
            other => panic!("expected a manifest error, got {other:?}"),
        }
    }

    #[test]
    fn the_real_declaration_parses() {
        let m = parse(&real()).unwrap();
        assert_eq!(m.kernel.release, "6.1.0-56-amd64");
        assert!(m.modules.initramfs.iter().any(|n| n == "erofs"));
        assert!(m.modules.stage2.iter().any(|n| n == "nft_ct"));
        assert!(m.modules.is_hardware("virtio_pci") && m.modules.is_hardware("e1000"));
        assert!(!m.modules.is_hardware("erofs") && !m.modules.is_hardware("button"));
        assert_eq!(m.boot.gptmbr.package, "syslinux-common");
        assert_eq!(m.package("nftables").unwrap().files, ["/usr/sbin/nft"]);
        assert_eq!(m.binaries[0].name, "applianced");
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let text = real().replacen("[kernel]\n", "[kernel]\nflavour = \"cloud\"\n", 1);
        assert!(message(&text).contains("flavour"), "{}", message(&text));
    }

    #[test]
    fn an_undeclared_boot_package_is_named() {
        let text = real().replace("gptmbr = \"syslinux-common:", "gptmbr = \"syslinux-mbr:");
        let m = message(&text);
        assert!(
            m.contains("boot.gptmbr") && m.contains("syslinux-mbr"),
            "{m}"
        );
    }

    #[test]
    fn a_file_ref_without_a_path_is_refused() {
        let text = real().replace(
            "busybox = \"busybox-static:/bin/busybox\"",
            "busybox = \"busybox-static\"",
        );
        assert!(message(&text).contains("package:/absolute/path"));
    }

    #[test]
    fn duplicate_packages_and_modules_are_refused() {
        let text = real() + "\n[[package]]\nname = \"libmd0\"\nversion = \"1\"\n";
        // The appended table lands after [baseline]; TOML allows that.
        assert!(message(&text).contains("\"libmd0\" is declared twice"));
        let text = real().replace("\"evdev\",", "\"evdev\",\n    \"button\",");
        assert!(message(&text).contains("\"button\" is listed twice"));
    }

    #[test]
    fn hardware_drivers_must_be_listed_for_a_stage() {
        let text = real().replacen("hardware = [", "hardware = [\n    \"pcnet32\",", 1);
        let m = message(&text);
        assert!(
            m.contains("modules.hardware") && m.contains("pcnet32"),
            "{m}"
        );
    }

    #[test]
    fn bad_guids_and_volume_ids_name_their_field() {
        let text = real().replace("AA544B47-8467", "AA544B47-846");
        assert!(message(&text).starts_with("disk.disk_guid"));
        let text = real().replace("\"A11CE0E5\"", "\"A11CE0E\"");
        assert!(message(&text).starts_with("disk.esp_volume_id"));
    }

    #[test]
    fn guid_round_trips_in_gpt_byte_order() {
        let g = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
        let b = parse_guid(g).unwrap();
        assert_eq!(b[0], 0xE3);
        assert_eq!(b[8], 0x96);
        assert_eq!(format_guid(&b), g);
        assert!(parse_guid("4F68BCE3E8CD4DB196E7FBCAF984B709").is_err());
    }
}
