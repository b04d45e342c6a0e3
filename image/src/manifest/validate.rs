//! The checks a declaration must pass beyond its schema: names, sizes,
//! GUIDs, and that every file reference names a declared package.

use std::collections::BTreeSet;

use super::{parse_guid, FileRef, GuidError, Manifest};

impl Manifest {
    pub(super) fn validate(&self) -> std::result::Result<(), ManifestError> {
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
