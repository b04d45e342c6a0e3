//! The whole build, in order: host tools, packages, initramfs, root EROFS,
//! ESP, GPT disk, hypervisor formats, OVA, image.json and SHA256SUMS; and
//! the baseline kernel + busybox initramfs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sha2::Digest;

use crate::cpio;
use crate::debs::Packages;
use crate::disk;
use crate::elf;
use crate::error::{Error, IoContext, Result};
use crate::esp;
use crate::formats;
use crate::info::{self, Artefact, Artefacts, DiskInfo, ImageInfo, KernelInfo, Sizes};
use crate::manifest::Manifest;
use crate::modules::{self, KernelModules, Resolved};
use crate::ovf;
use crate::tools::{self, run};
use crate::tree::{canonical, Source, Tree};

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

fn os_release() -> String {
    format!(
        "NAME=\"{PRODUCT}\"\nID=appliance\nVERSION_ID={VERSION}\nPRETTY_NAME=\"{PRODUCT} {VERSION}\"\n"
    )
}

fn add_modules(tree: &mut Tree, km: &KernelModules, release: &str, set: &Resolved) -> Result<()> {
    let dir = format!("usr/lib/modules/{release}");
    for name in &set.order {
        let rel = &set.paths[name];
        tree.host_file(
            &format!("{dir}/{rel}"),
            &km.host_path(rel),
            "kernel package",
        )?;
    }
    for (file, text) in [
        ("modules.dep", set.modules_dep()),
        ("modules.softdep", set.modules_softdep()),
        ("modules.alias", set.modules_alias()),
    ] {
        tree.file(
            &format!("{dir}/{file}"),
            Source::Bytes(text.into_bytes()),
            0o644,
            file,
        )?;
    }
    Ok(())
}

fn module_list<'a>(names: impl IntoIterator<Item = &'a String>) -> Source {
    Source::Bytes(
        names
            .into_iter()
            .map(|n| format!("{n}\n"))
            .collect::<String>()
            .into_bytes(),
    )
}

/// A stage's module lists: `/etc/appliance/modules` (always loaded) and
/// `/etc/appliance/modules.hardware` (loaded when a device matches), the
/// names as declared; applianced resolves their dependencies.
fn add_module_lists<'a>(
    tree: &mut Tree,
    m: &Manifest,
    names: impl IntoIterator<Item = &'a String>,
) -> Result<()> {
    let (hardware, always): (Vec<&String>, Vec<&String>) =
        names.into_iter().partition(|n| m.modules.is_hardware(n));
    tree.file(
        "etc/appliance/modules",
        module_list(always),
        0o644,
        "builder",
    )?;
    tree.file(
        "etc/appliance/modules.hardware",
        module_list(hardware),
        0o644,
        "builder",
    )
}

/// The initramfs tree (stage 1).
fn initramfs_tree(
    m: &Manifest,
    km: &KernelModules,
    stage1: &Resolved,
    applianced: &Path,
    roots: &[elf::Root<'_>],
) -> Result<Tree> {
    let mut t = Tree::new();
    t.merged_usr()?;
    elf::add_with_libraries(&mut t, "init", applianced, "applianced", roots)?;
    t.file(
        "etc/initrd-release",
        Source::Bytes(os_release().into_bytes()),
        0o644,
        "builder",
    )?;
    add_modules(&mut t, km, &m.kernel.release, stage1)?;
    add_module_lists(&mut t, m, &m.modules.initramfs)?;
    t.chardev("dev/console", 5, 1, 0o600)?;
    for d in ["proc", "sys", "dev", "run", "sysroot"] {
        t.dir(d, 0o755)?;
    }
    Ok(t)
}

/// The root filesystem tree (stage 2).
fn root_tree(
    m: &Manifest,
    opts: &BuildOptions,
    pkgs: &Packages,
    km: &KernelModules,
    stage1: &Resolved,
    stage2: &Resolved,
    roots: &[elf::Root<'_>],
) -> Result<Tree> {
    let mut t = Tree::new();
    t.merged_usr()?;
    for b in &m.binaries {
        let host = opts.bin_dir.join(&b.name);
        if !host.is_file() {
            return Err(Error::io(
                "finding our binary (build it with cargo build --release first)",
                host,
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        elf::add_with_libraries(&mut t, &canonical(&b.to), &host, &b.name, roots)?;
    }
    let services = opts.workspace.join(&m.services.from);
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&services)
        .ctx("listing", &services)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    manifests.sort();
    for p in manifests {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(&p).ctx("reading", &p)?;
        t.file(
            &format!("{}/{name}", canonical(&m.services.to)),
            Source::Bytes(bytes),
            0o644,
            "services",
        )?;
    }
    for p in &m.packages {
        for f in &p.files {
            // Names the file and package when the file is missing.
            pkgs.file(&p.name, f)?;
            let root = pkgs.root(&p.name).unwrap_or(Path::new("/"));
            let (image_path, host) =
                elf::add_package_path(&mut t, &p.name, root, f.trim_start_matches('/'))?;
            elf::add_with_libraries(
                &mut t,
                &image_path,
                &host,
                &format!("package {}", p.name),
                roots,
            )?;
        }
    }
    let mut all = stage1.clone();
    all.merge(stage2);
    add_modules(&mut t, km, &m.kernel.release, &all)?;
    // Stage 2 also gets stage 1's disk drivers: a device that shows up after
    // the root was found (a second SCSI disk, a CD-ROM drive) still gets its
    // driver. Modules already loaded are skipped at boot.
    let stage1_hardware = m
        .modules
        .initramfs
        .iter()
        .filter(|n| m.modules.is_hardware(n));
    add_module_lists(&mut t, m, stage1_hardware.chain(&m.modules.stage2))?;
    let text = |s: &str| Source::Bytes(s.as_bytes().to_vec());
    t.file(
        "etc/passwd",
        text("root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        0o644,
        "builder",
    )?;
    t.file(
        "etc/group",
        text("root:x:0:\nnogroup:x:65534:\n"),
        0o644,
        "builder",
    )?;
    t.file(
        "etc/nsswitch.conf",
        text("passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n"),
        0o644,
        "builder",
    )?;
    t.file(
        "etc/os-release",
        Source::Bytes(os_release().into_bytes()),
        0o644,
        "builder",
    )?;
    t.file(
        "etc/hosts",
        text("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"),
        0o644,
        "builder",
    )?;
    t.symlink("etc/resolv.conf", "/run/appliance/resolv.conf", "builder")?;
    t.symlink("etc/machine-id", "/run/machine-id", "builder")?;
    for d in ["proc", "sys", "dev", "run", "data", "root"] {
        t.dir(d, 0o755)?;
    }
    t.dir("tmp", 0o1777)?;
    Ok(t)
}

fn artefact(out: &Path, file: String) -> Result<Artefact> {
    let path = out.join(&file);
    Ok(Artefact {
        size: std::fs::metadata(&path).ctx("reading", &path)?.len(),
        sha256: ovf::sha256_file(&path)?,
        file,
    })
}

/// Builds every artefact into `opts.out`.
pub fn build(opts: &BuildOptions) -> Result<ImageInfo> {
    let started = Instant::now();
    let m = Manifest::load(&opts.manifest)?;
    let epoch = epoch(&m);
    tools::ensure_host_tools()?;
    std::fs::create_dir_all(&opts.out).ctx("creating", &opts.out)?;
    let work = opts.out.join(".work");
    if work.exists() {
        std::fs::remove_dir_all(&work).ctx("removing", &work)?;
    }
    std::fs::create_dir_all(&work).ctx("creating", &work)?;

    let mut pkgs = Packages::new(&opts.cache());
    let kp = kernel(&m, &mut pkgs)?;
    for p in &m.packages {
        pkgs.add(&p.name, &p.version)?;
    }
    tracing::info!(elapsed = ?started.elapsed(), "packages ready");
    let stage1 = modules::resolve(&kp.modules, &m.modules.initramfs, &m.modules.aliases)?;
    let stage2 = modules::resolve(&kp.modules, &m.modules.stage2, &m.modules.aliases)?;
    let roots: Vec<elf::Root<'_>> = pkgs.in_order().collect();

    let applianced = m
        .binaries
        .iter()
        .find(|b| b.name == "applianced")
        .map(|b| opts.bin_dir.join(&b.name))
        .ok_or_else(|| Error::Manifest {
            path: opts.manifest.clone(),
            message: "no [[binary]] named applianced (it is /init)".into(),
        })?;
    let initrd_tree = initramfs_tree(&m, &kp.modules, &stage1, &applianced, &roots)?;
    let initrd = cpio::initramfs(&initrd_tree, epoch)?;
    tracing::info!(bytes = initrd.len(), files = initrd_tree.len(), "initramfs");

    let tree = root_tree(&m, opts, &pkgs, &kp.modules, &stage1, &stage2, &roots)?;
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
    let root_erofs = std::fs::metadata(&erofs).ctx("reading", &erofs)?.len();
    tracing::info!(bytes = root_erofs, files = tree.len(), "root EROFS");

    let esp_img = work.join("esp.img");
    let file = |r: &crate::manifest::FileRef| pkgs.file(&r.package, &r.path);
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
            vmlinuz: &kp.vmlinuz,
            initrd: &initrd,
            cmdline: &m.kernel.cmdline,
        },
    )?;

    let base = base_name();
    let raw_name = format!("{base}.raw");
    let raw = opts.out.join(&raw_name);
    let (gpt, populated) = disk::create(&raw, &m.disk, &file(&m.boot.gptmbr)?, &esp_img, &erofs)?;
    tracing::info!(elapsed = ?started.elapsed(), "raw disk");

    let (qcow2_name, vhdx_name, ova_name) = (
        format!("{base}.qcow2"),
        format!("{base}.vhdx"),
        format!("{base}.ova"),
    );
    formats::qcow2(&raw, &opts.out.join(&qcow2_name))?;
    formats::vhdx(&raw, &opts.out.join(&vhdx_name), &m.disk.disk_guid)?;
    let vmdk_name = format!("{base}-disk1.vmdk");
    let vmdk = work.join(&vmdk_name);
    let cid = u32::from_str_radix(&m.disk.disk_guid[..8], 16).unwrap_or(0x0a11ce00);
    formats::vmdk(&raw, &vmdk, cid)?;
    let vmdk_size = std::fs::metadata(&vmdk).ctx("reading", &vmdk)?.len();
    let ovf_name = format!("{base}.ovf");
    let mf_name = format!("{base}.mf");
    let ovf_text = ovf::descriptor(&ovf::Descriptor {
        name: "appliance",
        product: PRODUCT,
        version: VERSION,
        vmdk_name: &vmdk_name,
        vmdk_size,
        capacity: m.disk.size_mib << 20,
        populated_size: populated,
        cpus: 2,
        memory_mib: 2048,
    })?;
    let mf = ovf::manifest(&[
        (
            &ovf_name,
            &ovf::hex(&sha2::Sha256::digest(ovf_text.as_bytes())),
        ),
        (&vmdk_name, &ovf::sha256_file(&vmdk)?),
    ]);
    ovf::write_tar(
        &opts.out.join(&ova_name),
        &[
            ovf::Member::Bytes(&ovf_name, ovf_text.as_bytes()),
            ovf::Member::Bytes(&mf_name, mf.as_bytes()),
            ovf::Member::File(&vmdk_name, &vmdk),
        ],
        epoch,
    )?;
    tracing::info!(elapsed = ?started.elapsed(), "formats");

    // Hashing 2 GiB of raw disk dominates the build's tail: one thread each.
    let names = [raw_name, qcow2_name, vhdx_name, ova_name];
    let hashed: Vec<Result<Artefact>> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .into_iter()
            .map(|n| s.spawn(|| artefact(&opts.out, n)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::io(
                        "hashing",
                        &opts.out,
                        std::io::Error::other("hash thread panicked"),
                    ))
                })
            })
            .collect()
    });
    let [raw_a, qcow2_a, vhdx_a, ova_a]: [Result<Artefact>; 4] =
        hashed.try_into().map_err(|_| {
            Error::io(
                "hashing",
                &opts.out,
                std::io::Error::other("artefact count"),
            )
        })?;
    let artefacts = Artefacts {
        raw: raw_a?,
        qcow2: qcow2_a?,
        vhdx: vhdx_a?,
        ova: ova_a?,
        sha256sums: "SHA256SUMS".into(),
    };
    let sums = opts.out.join(&artefacts.sha256sums);
    std::fs::write(&sums, info::sha256sums(&artefacts.all())).ctx("writing", &sums)?;
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
            guid: gpt.disk_guid.clone(),
            partitions: gpt.partitions.clone(),
        },
        artefacts,
        sizes: Sizes {
            initramfs: initrd.len() as u64,
            vmlinuz: std::fs::metadata(&kp.vmlinuz)
                .ctx("reading", &kp.vmlinuz)?
                .len(),
            root_erofs,
            root_content: tree.content_bytes()?,
            vmdk: vmdk_size,
        },
    };
    info::write_image_info(&opts.out.join("image.json"), &info)?;
    std::fs::remove_dir_all(&work).ctx("removing", &work)?;
    tracing::info!(elapsed = ?started.elapsed(), "done");
    Ok(info)
}

/// The baseline: the same kernel and a busybox initramfs whose /init prints
/// `baseline: ready` on the serial console and powers off. Writes
/// `vmlinuz` and `initrd.img` into `out`.
pub fn baseline(opts: &BuildOptions, out: &Path) -> Result<()> {
    let m = Manifest::load(&opts.manifest)?;
    let epoch = epoch(&m);
    let mut pkgs = Packages::new(&opts.cache());
    let kp = kernel(&m, &mut pkgs)?;
    let bb = &m.baseline.busybox;
    let version = m
        .package(&bb.package)
        .map(|p| p.version.clone())
        .unwrap_or_default();
    pkgs.add(&bb.package, &version)?;
    let busybox = pkgs.file(&bb.package, &bb.path)?;
    let tree = baseline_tree(&busybox)?;
    std::fs::create_dir_all(out).ctx("creating", out)?;
    let initrd = cpio::initramfs(&tree, epoch)?;
    std::fs::write(out.join("initrd.img"), &initrd).ctx("writing", out.join("initrd.img"))?;
    std::fs::copy(&kp.vmlinuz, out.join("vmlinuz")).ctx("copying", &kp.vmlinuz)?;
    tracing::info!(initrd = initrd.len(), "baseline");
    Ok(())
}

/// The script the baseline kernel runs as PID 1.
pub const BASELINE_INIT: &str = "#!/bin/busybox sh\n\
/bin/busybox mount -t devtmpfs devtmpfs /dev\n\
echo 'baseline: ready' > /dev/ttyS0\n\
/bin/busybox poweroff -f\n";

fn baseline_tree(busybox: &Path) -> Result<Tree> {
    let mut t = Tree::new();
    t.host_file("bin/busybox", busybox, "busybox-static")?;
    t.file(
        "init",
        Source::Bytes(BASELINE_INIT.as_bytes().to_vec()),
        0o755,
        "builder",
    )?;
    t.chardev("dev/console", 5, 1, 0o600)?;
    for d in ["proc", "sys"] {
        t.dir(d, 0o755)?;
    }
    Ok(t)
}
