//! The baseline for the boot benchmark: the image's kernel with a busybox
//! initramfs that only reports and powers off.

use std::path::Path;

use super::{epoch, kernel, BuildOptions};
use crate::cpio;
use crate::debs::Packages;
use crate::error::{IoContext, Result};
use crate::manifest::Manifest;
use crate::tree::{Source, Tree};

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
