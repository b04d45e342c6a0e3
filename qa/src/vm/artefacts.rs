//! What the VMs boot: the image `make image` built in `out/` ([`Built`],
//! read through its `image.json`), private sparse copies of a disk image
//! ([`Disk`]), and the UEFI firmware files each VM copies its variable store
//! from.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::dirs::{private_dir, remove_stale_dirs};
use super::gpt::Partition;

/// The UEFI firmware (read-only) and the template of its variable store.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// Copied for each VM: the firmware writes its variables into it.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// A private, sparse copy of a disk image, deleted on drop; it outlives the
/// VMs that boot it, so one disk can be booted again.
#[derive(Debug)]
pub struct Disk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Disk {
    /// Copies `image` (keeping its holes) into a private directory.
    pub fn copy_of(image: &Path) -> anyhow::Result<Self> {
        remove_stale_dirs();
        let dir = private_dir()?;
        let name = image
            .file_name()
            .with_context(|| format!("{} has no file name", image.display()))?;
        let path = dir.path().join(name);
        crate::netns::run(
            Command::new("cp")
                .arg("--sparse=always")
                .arg(image)
                .arg(&path),
        )?;
        Ok(Self { path, _dir: dir })
    }

    /// The copy's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The image built by `make image`: `out/` and its `image.json`.
#[derive(Debug, Clone)]
pub struct Built {
    out: PathBuf,
    /// The parsed `out/image.json`.
    pub info: appliance_image::info::ImageInfo,
}

impl Built {
    /// The workspace's `out/` directory.
    pub fn default_out() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../out")
    }

    /// Reads `out/image.json`; fails with what to run when it is missing.
    pub fn load() -> anyhow::Result<Self> {
        Self::load_from(&Self::default_out())
    }

    /// Reads `image.json` in `out`.
    pub fn load_from(out: &Path) -> anyhow::Result<Self> {
        let json = out.join("image.json");
        anyhow::ensure!(
            json.exists(),
            "{} is missing: run `make image` first",
            json.display()
        );
        let info = appliance_image::info::read_image_info(&json)?;
        Ok(Self {
            out: out.to_owned(),
            info,
        })
    }

    /// The output directory.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// The raw disk image.
    pub fn raw(&self) -> PathBuf {
        self.out.join(&self.info.artefacts.raw.file)
    }

    /// The qcow2 image.
    pub fn qcow2(&self) -> PathBuf {
        self.out.join(&self.info.artefacts.qcow2.file)
    }

    /// The VHDX image.
    pub fn vhdx(&self) -> PathBuf {
        self.out.join(&self.info.artefacts.vhdx.file)
    }

    /// The OVA.
    pub fn ova(&self) -> PathBuf {
        self.out.join(&self.info.artefacts.ova.file)
    }

    /// The checksum file.
    pub fn sha256sums(&self) -> PathBuf {
        self.out.join(&self.info.artefacts.sha256sums)
    }

    /// The default kernel command line (syslinux's APPEND).
    pub fn cmdline(&self) -> &str {
        &self.info.cmdline
    }

    /// The partition named `name`, as image.json describes it.
    pub fn partition(&self, name: &str) -> anyhow::Result<Partition> {
        let p = self
            .info
            .disk
            .partition(name)
            .with_context(|| format!("image.json lists no partition {name:?}"))?;
        Ok(Partition {
            offset: p.offset,
            size: p.size,
        })
    }

    /// Size in bytes of the root filesystem (the EROFS image).
    pub fn root_size(&self) -> u64 {
        self.info.sizes.root_erofs
    }

    /// Copies the kernel and initramfs out of the raw image's ESP into `dir`
    /// (for a direct kernel boot of the image's own stages); returns their
    /// paths.
    pub fn extract_boot_files(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        let mut paths = Vec::new();
        for name in ["a/vmlinuz", "a/initrd.img"] {
            let bytes = appliance_image::esp::read_esp_file(&self.raw(), name)?;
            let to = dir.join(name.replace('/', "-"));
            std::fs::write(&to, bytes).with_context(|| format!("writing {}", to.display()))?;
            paths.push(to);
        }
        let initrd = paths.pop().context("no initrd extracted")?;
        let kernel = paths.pop().context("no kernel extracted")?;
        Ok((kernel, initrd))
    }
}

impl Disk {
    /// A private copy of the built raw image with `params` appended to the
    /// kernel command line (`appliance.ip=...` and the like).
    pub fn appliance<S: AsRef<str>>(built: &Built, params: &[S]) -> anyhow::Result<Self> {
        let disk = Self::copy_of(&built.raw())?;
        if !params.is_empty() {
            let params: Vec<&str> = params.iter().map(AsRef::as_ref).collect();
            appliance_image::esp::append_kernel_params(disk.path(), &params.join(" "))?;
        }
        Ok(disk)
    }
}
