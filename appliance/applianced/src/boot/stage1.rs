//! Stage 1: applianced as `/init` of the initramfs. Synchronous, single
//! threaded: mount the API filesystems, load the initramfs modules, wait for
//! the root partition, mount it, switch to it and exec stage 2 from it.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::mount::MsFlags;

use super::{blockdev, cmdline, modules, mounts, uptime};
use crate::console;

/// Where the root filesystem is mounted before the switch.
pub const SYSROOT: &str = "/sysroot";
/// How long to wait for the root partition to appear.
pub const ROOT_WAIT: Duration = Duration::from_secs(30);
/// The program run from the root filesystem.
pub const STAGE2: &str = "/usr/sbin/applianced";
/// The module list of the initramfs.
pub const MODULE_LIST: &str = "/etc/appliance/modules";

/// Runs stage 1; on any failure, shows it and reboots.
pub fn run() -> ! {
    super::install_panic_hook(None);
    match boot() {
        Ok(never) => match never {},
        Err(e) => super::fatal(&format!("initramfs: {}", crate::error::report(&e)), None),
    }
}

fn boot() -> anyhow::Result<Infallible> {
    mounts::mount_table(&mounts::BASE)?;
    console::stdio_on_console(true).context("opening /dev/console")?;
    console::init();
    eprintln!("applianced: initramfs started at {:.2} s", uptime());

    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let params = cmdline::parse(&cmdline);
    let Some(label) = params.root_partlabel.clone() else {
        let why = params
            .errors
            .iter()
            .find(|e| e.param == "appliance.root")
            .map(|e| e.to_string())
            .unwrap_or_else(|| {
                "the kernel command line has no appliance.root=PARTLABEL=<name>".to_owned()
            });
        bail!("{why}");
    };

    let dir = modules::module_dir(Path::new("/lib/modules")).context("uname")?;
    let mut mods = modules::StageModules::load(Path::new(MODULE_LIST), &dir);

    // Devices that show up late (a VMBus offer, a slow SCSI scan) get their
    // drivers while we wait.
    let root = wait_for_partition(&label, ROOT_WAIT, || mods.rescan())?;
    let dev = root.dev_path();
    let sysroot = Path::new(SYSROOT);
    std::fs::create_dir_all(sysroot).context("creating /sysroot")?;
    mounts::mount_fs(
        &dev.display().to_string(),
        sysroot,
        "erofs",
        MsFlags::MS_RDONLY | MsFlags::MS_NODEV,
        None,
    )
    .with_context(|| format!("mounting the root filesystem (PARTLABEL={label})"))?;
    if !sysroot.join(STAGE2.trim_start_matches('/')).exists() {
        bail!("the root filesystem on {} has no {STAGE2}", dev.display());
    }
    eprintln!(
        "applianced: root filesystem {} (PARTLABEL={label}) mounted at {:.2} s",
        dev.display(),
        uptime()
    );
    switch_root(sysroot)
}

/// Polls sysfs until the partition named `label` and its device file exist,
/// calling `meanwhile` between polls.
fn wait_for_partition(
    label: &str,
    limit: Duration,
    mut meanwhile: impl FnMut(),
) -> anyhow::Result<blockdev::BlockDev> {
    let start = Instant::now();
    loop {
        let devs = blockdev::scan(Path::new("/sys/class/block"));
        if let Some(dev) = blockdev::find_partition(&devs, label, None) {
            // devtmpfs creates the node a moment after sysfs shows the device.
            if dev.dev_path().exists() {
                return Ok(dev.clone());
            }
        }
        if start.elapsed() >= limit {
            let seen: Vec<String> = devs
                .iter()
                .map(|d| match &d.partname {
                    Some(p) => format!("{} ({p})", d.name),
                    None => d.name.clone(),
                })
                .collect();
            bail!(
                "no partition named {label:?} appeared within {} s; block devices seen: {}",
                limit.as_secs(),
                if seen.is_empty() {
                    "none (is the disk driver in the initramfs?)".to_owned()
                } else {
                    seen.join(", ")
                }
            );
        }
        meanwhile();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Moves the API filesystems into `new_root`, frees the initramfs, makes
/// `new_root` the root and execs stage 2 — as util-linux's `switch_root`.
fn switch_root(new_root: &Path) -> anyhow::Result<Infallible> {
    for m in ["/dev", "/proc", "/sys", "/run"] {
        let to = new_root.join(m.trim_start_matches('/'));
        mounts::move_mount(Path::new(m), &to)?;
    }
    std::env::set_current_dir(new_root).context("chdir /sysroot")?;
    // Free the initramfs (it is RAM): only files on its own device, and only
    // when it really is the initramfs, never a disk someone booted us from.
    let root_meta = std::fs::metadata("/").context("stat /")?;
    if is_ramfs(Path::new("/")) {
        let failures = mounts::remove_tree_on(Path::new("/"), root_meta.dev());
        if failures > 0 {
            eprintln!("applianced: {failures} initramfs file(s) could not be removed");
        }
    }
    mounts::move_mount(Path::new("."), Path::new("/"))?;
    nix::unistd::chroot(".").context("chroot")?;
    std::env::set_current_dir("/").context("chdir /")?;
    eprintln!(
        "applianced: switching to the root filesystem at {:.2} s",
        uptime()
    );
    let prog = CString::new(STAGE2).context("program path")?;
    let err = nix::unistd::execv(&prog, &[&prog]).unwrap_err();
    bail!("cannot run {STAGE2} from the root filesystem: {err}")
}

fn is_ramfs(path: &Path) -> bool {
    use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};
    // linux/magic.h; neither nix nor libc names it.
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    statfs(path)
        .is_ok_and(|s| s.filesystem_type() == RAMFS_MAGIC || s.filesystem_type() == TMPFS_MAGIC)
}
