//! The file trees of the two stages: the initramfs (applianced as `/init`,
//! stage 1's modules) and the root filesystem (our binaries, service
//! manifests, package files with their libraries, every module, and the few
//! files of `/etc`).

use std::path::{Path, PathBuf};

use super::{BuildOptions, PRODUCT, VERSION};
use crate::debs::Packages;
use crate::elf;
use crate::error::{Error, IoContext, Result};
use crate::manifest::Manifest;
use crate::modules::{KernelModules, Resolved};
use crate::tree::{canonical, Source, Tree};

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
pub(super) fn initramfs_tree(
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
pub(super) fn root_tree(
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
        // `management`: managementd's user; its group may use applianced's
        // API socket (root:management 0660).
        text(concat!(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n",
            "management:x:990:990:appliance management server:/nonexistent:/usr/sbin/nologin\n",
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        )),
        0o644,
        "builder",
    )?;
    t.file(
        "etc/group",
        text("root:x:0:\nmanagement:x:990:\nnogroup:x:65534:\n"),
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
