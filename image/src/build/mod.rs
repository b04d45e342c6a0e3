//! The whole build, phase by phase: host tools, packages and the kernel's
//! modules (`fetch_inputs`), the initramfs, the root EROFS, the ESP, the
//! GPT disk, the hypervisor formats and OVA, SHA256SUMS and image.json; and
//! the baseline kernel + busybox initramfs.
//!
//! The files of the two stages are laid out in `trees`, the outputs beside
//! the raw disk (formats, checksums) in `outputs`, the baseline in
//! `baseline`.

mod baseline;
mod outputs;
mod trees;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cpio;
use crate::debs::Packages;
use crate::disk::{self, Gpt};
use crate::elf;
use crate::error::{Error, IoContext, Result};
use crate::esp;
use crate::info::{self, DiskInfo, ImageInfo, KernelInfo, Sizes};
use crate::manifest::{Manifest, ManifestError};
use crate::modules::{self, KernelModules, Resolved};
use crate::tools::{self, run};

pub use baseline::{baseline, BASELINE_INIT};

/// The product name in os-release, image.json and the OVF.
pub const PRODUCT: &str = "Appliance OS";
/// The product version: the workspace version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the build reads from and writes to.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The declaration (image/image.toml).
    pub manifest: PathBuf,
    /// The workspace root (service manifests are relative to it).
    pub workspace: PathBuf,
    /// Cargo's release directory holding our binaries.
    pub bin_dir: PathBuf,
    /// The output directory.
    pub out: PathBuf,
    /// Package cache (default `<out>/.cache`).
    pub cache: Option<PathBuf>,
}

impl BuildOptions {
    fn cache(&self) -> PathBuf {
        self.cache
            .clone()
            .unwrap_or_else(|| self.out.join(".cache"))
    }
}

/// `SOURCE_DATE_EPOCH` from the environment, else the declared one.
pub fn epoch(m: &Manifest) -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(m.source_date_epoch)
}

/// The artefact base name, e.g. `appliance-0.1.0`.
pub fn base_name() -> String {
    format!("appliance-{VERSION}")
}

/// A kernel and its modules, unpacked.
struct KernelParts {
    vmlinuz: PathBuf,
    modules: KernelModules,
}

fn kernel(m: &Manifest, pkgs: &mut Packages) -> Result<KernelParts> {
    let k = &m.kernel;
    let root = pkgs.add(&k.package, &k.version)?;
    let vmlinuz = root.join(format!("boot/vmlinuz-{}", k.release));
    let moddir = root.join(format!("lib/modules/{}", k.release));
    for p in [&vmlinuz, &moddir] {
        if !p.exists() {
            return Err(Error::NotInPackage {
                package: k.package.clone(),
                path: p.strip_prefix(&root).unwrap_or(p).display().to_string(),
                root: root.clone(),
            });
        }
    }
    Ok(KernelParts {
        vmlinuz,
        modules: KernelModules::scan(&moddir)?,
    })
}

/// The downloaded packages, the kernel and the module sets of both stages.
struct Inputs {
    pkgs: Packages,
    kernel: KernelParts,
    stage1: Resolved,
    stage2: Resolved,
}

impl Inputs {
    /// The unpacked packages, in declaration order, where libraries are
    /// looked up.
    fn roots(&self) -> Vec<elf::Root<'_>> {
        self.pkgs.in_order().collect()
    }
}

/// Downloads (or finds in the cache) the kernel and every declared package,
/// and resolves each stage's modules with their dependencies.
fn fetch_inputs(m: &Manifest, opts: &BuildOptions) -> Result<Inputs> {
    let mut pkgs = Packages::new(&opts.cache());
    let kernel = kernel(m, &mut pkgs)?;
    for p in &m.packages {
        pkgs.add(&p.name, &p.version)?;
    }
    let stage1 = modules::resolve(&kernel.modules, &m.modules.initramfs, &m.modules.aliases)?;
    let stage2 = modules::resolve(&kernel.modules, &m.modules.stage2, &m.modules.aliases)?;
    Ok(Inputs {
        pkgs,
        kernel,
        stage1,
        stage2,
    })
}

/// An empty `<out>/.work` for the intermediate files (removed at the end).
fn fresh_work_dir(out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out).ctx("creating", out)?;
    let work = out.join(".work");
    if work.exists() {
        std::fs::remove_dir_all(&work).ctx("removing", &work)?;
    }
    std::fs::create_dir_all(&work).ctx("creating", &work)?;
    Ok(work)
}

/// Stage 1: applianced as `/init` with its libraries and the disk drivers,
/// as a newc cpio archive.
fn build_initramfs(
    m: &Manifest,
    opts: &BuildOptions,
    inputs: &Inputs,
    epoch: u64,
) -> Result<Vec<u8>> {
    let applianced = m
        .binaries
        .iter()
        .find(|b| b.name == "applianced")
        .map(|b| opts.bin_dir.join(&b.name))
        .ok_or_else(|| Error::Manifest {
            path: opts.manifest.clone(),
            source: ManifestError::NoApplianced,
        })?;
    let tree = trees::initramfs_tree(
        m,
        &inputs.kernel.modules,
        &inputs.stage1,
        &applianced,
        &inputs.roots(),
    )?;
    let initrd = cpio::initramfs(&tree, epoch)?;
    tracing::info!(bytes = initrd.len(), files = tree.len(), "initramfs");
    Ok(initrd)
}

/// The root filesystem image and what image.json says of it.
struct RootFs {
    erofs: PathBuf,
    /// Size of the EROFS image.
    bytes: u64,
    /// Bytes of the files in it, uncompressed.
    content_bytes: u64,
}

/// Stage 2: the root tree materialized in `work` and packed into an
/// LZ4HC-compressed EROFS with fixed timestamps, owner and UUID.
fn build_root(
    m: &Manifest,
    opts: &BuildOptions,
    inputs: &Inputs,
    work: &Path,
    epoch: u64,
) -> Result<RootFs> {
    let tree = trees::root_tree(
        m,
        opts,
        &inputs.pkgs,
        &inputs.kernel.modules,
        &inputs.stage1,
        &inputs.stage2,
        &inputs.roots(),
    )?;
    let root_dir = work.join("root");
    tree.materialize(&root_dir)?;
    let erofs = work.join("root.erofs");
    run(Command::new("mkfs.erofs")
        .arg("-zlz4hc")
        .arg(format!("-T{epoch}"))
        .arg(format!("-U{}", m.disk.root_uuid.to_lowercase()))
        .args(["--all-root", "-x-1"])
        .arg(&erofs)
        .arg(&root_dir)
        .env("SOURCE_DATE_EPOCH", epoch.to_string()))?;
    let bytes = std::fs::metadata(&erofs).ctx("reading", &erofs)?.len();
    tracing::info!(bytes, files = tree.len(), "root EROFS");
    Ok(RootFs {
        erofs,
        bytes,
        content_bytes: tree.content_bytes()?,
    })
}

/// The raw disk `<out>/<base>.raw`: the ESP (boot loaders for BIOS and
/// UEFI, the kernel, the initramfs) and the root image in a GPT disk.
/// Returns its file name, its table and the bytes populated.
fn build_disk(
    m: &Manifest,
    opts: &BuildOptions,
    inputs: &Inputs,
    initrd: &[u8],
    root: &RootFs,
    work: &Path,
    epoch: u64,
) -> Result<(String, Gpt, u64)> {
    let esp_img = work.join("esp.img");
    let file = |r: &crate::manifest::FileRef| inputs.pkgs.file(&r.package, &r.path);
    esp::build(
        &esp_img,
        m.disk.esp_mib << 20,
        (1 << 20) / disk::SECTOR,
        &m.disk.esp_volume_id,
        epoch,
        &esp::EspContents {
            bios_installer: &file(&m.boot.bios_installer)?,
            efi_loader: &file(&m.boot.efi_loader)?,
            efi_ldlinux: &file(&m.boot.efi_ldlinux)?,
            vmlinuz: &inputs.kernel.vmlinuz,
            initrd,
            cmdline: &m.kernel.cmdline,
        },
    )?;
    let raw_name = format!("{}.raw", base_name());
    let raw = opts.out.join(&raw_name);
    let (gpt, populated) =
        disk::create(&raw, &m.disk, &file(&m.boot.gptmbr)?, &esp_img, &root.erofs)?;
    Ok((raw_name, gpt, populated))
}

/// Builds every artefact into `opts.out`.
pub fn build(opts: &BuildOptions) -> Result<ImageInfo> {
    let started = Instant::now();
    let m = Manifest::load(&opts.manifest)?;
    let epoch = epoch(&m);
    tools::ensure_host_tools()?;
    let work = fresh_work_dir(&opts.out)?;

    let inputs = fetch_inputs(&m, opts)?;
    tracing::info!(elapsed = ?started.elapsed(), "packages ready");
    let initrd = build_initramfs(&m, opts, &inputs, epoch)?;
    let root = build_root(&m, opts, &inputs, &work, epoch)?;
    let (raw_name, gpt, populated) = build_disk(&m, opts, &inputs, &initrd, &root, &work, epoch)?;
    tracing::info!(elapsed = ?started.elapsed(), "raw disk");

    let formats = outputs::hypervisor_formats(&m, &opts.out, &work, &raw_name, populated, epoch)?;
    tracing::info!(elapsed = ?started.elapsed(), "formats");
    let artefacts = outputs::checksums(&opts.out, raw_name, formats.names)?;

    let info = ImageInfo {
        product: PRODUCT.into(),
        version: VERSION.into(),
        kernel: KernelInfo {
            package: m.kernel.package.clone(),
            package_version: m.kernel.version.clone(),
            release: m.kernel.release.clone(),
        },
        cmdline: m.kernel.cmdline.clone(),
        source_date_epoch: epoch,
        disk: DiskInfo {
            size: m.disk.size_mib << 20,
            sector_size: disk::SECTOR,
            guid: gpt.disk_guid,
            partitions: gpt.partitions,
        },
        artefacts,
        sizes: Sizes {
            initramfs: initrd.len() as u64,
            vmlinuz: std::fs::metadata(&inputs.kernel.vmlinuz)
                .ctx("reading", &inputs.kernel.vmlinuz)?
                .len(),
            root_erofs: root.bytes,
            root_content: root.content_bytes,
            vmdk: formats.vmdk_size,
        },
    };
    info::write_image_info(&opts.out.join("image.json"), &info)?;
    std::fs::remove_dir_all(&work).ctx("removing", &work)?;
    tracing::info!(elapsed = ?started.elapsed(), "done");
    Ok(info)
}
