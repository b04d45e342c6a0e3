//! The declaration of the image (`image/image.toml`): its schema and
//! parsing here, its checks in `validate` ([`ManifestError`]), GPT's GUID
//! text form in [`guid`]. Pure: nothing here touches the disk except
//! [`Manifest::load`].

pub mod guid;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, IoContext, Result};

pub use guid::{format_guid, parse_guid, GuidError};
pub use validate::ManifestError;

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
}
