//! Stage 2: applianced as PID 1 on the root filesystem. A synchronous part
//! before any thread (mounts, consoles, modules, the data partition), then the
//! daemon — the same code as hosted mode, with the image's paths — and, when
//! it stops, the power-off or reboot.

use std::path::{Path, PathBuf};

use super::{blockdev, cmdline, datapart, firstconfig, modules, mounts, power, uptime};
use crate::args::Args;
use crate::console;
use crate::console::announce;
use crate::daemon;
use crate::error::report;
use crate::mode::Mode;

/// The stage-2 module list.
pub const MODULE_LIST: &str = "/etc/appliance/modules";
/// Where the kernel's panic timeout is set.
const KERNEL_PANIC: &str = "/proc/sys/kernel/panic";
/// Where the machine id is published (`/etc/machine-id` links there).
pub const RUN_MACHINE_ID: &str = "/run/machine-id";
/// PATH of PID 1 and of what it runs.
pub const PATH: &str = "/usr/sbin:/usr/bin";

/// What the synchronous boot found, for the daemon and the shutdown.
#[derive(Debug, Clone)]
struct Booted {
    /// Inputs of the first-boot configuration.
    first_boot: firstconfig::Inputs,
    /// Event devices of the ACPI power buttons.
    power_buttons: Vec<PathBuf>,
    /// `/data` when the data partition is mounted there (unmounted at shutdown).
    data: Option<PathBuf>,
}

/// Runs stage 2; never returns.
pub fn run() -> ! {
    // The kernel starts init with no PATH; nft and the e2fs tools are found
    // through it. Set before any thread exists.
    std::env::set_var("PATH", PATH);
    let data_mount = Path::new(datapart::MOUNT_POINT);
    // What stage 1 mounted is already there; a boot without initramfs needs it all.
    let base = mounts::mount_table(&mounts::BASE);
    let _ = console::stdio_on_console(false);
    console::init();
    super::install_panic_hook(Some(data_mount.to_path_buf()));
    if let Err(e) = base {
        super::fatal(&e.to_string(), None);
    }
    eprintln!(
        "applianced: started from the root filesystem at {:.2} s",
        uptime()
    );
    let booted = boot();
    let data = booted.data.clone();
    let mut args = Args::image(booted.first_boot.params.log.clone());
    // Applied by the daemon once, when the node has no account.
    args.first_admin = booted.first_boot.params.admin.clone();
    if let Err(e) = daemon::prepare_common(&mut args, false) {
        super::fatal(&report(&e), data.as_deref());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => super::fatal(
            &format!("cannot start the async runtime: {e}"),
            data.as_deref(),
        ),
    };
    runtime.block_on(async move {
        match daemon::run(args, Mode::Pid1, Some(pid1(booted))).await {
            Ok(stopped) => power::finish(stopped.reason, data.as_deref(), stopped.deadline).await,
            Err(e) => super::fatal(&report(&e), data.as_deref()),
        }
    })
}

/// What the daemon does only as PID 1, handed to it from the boot.
fn pid1(booted: Booted) -> daemon::Pid1 {
    let Booted {
        first_boot,
        power_buttons,
        data: _,
    } = booted;
    daemon::Pid1 {
        machine_id_file: PathBuf::from(RUN_MACHINE_ID),
        first_boot: Box::new(move |f| {
            firstconfig::prepare(
                f.store,
                f.state_dir,
                f.config_file,
                f.machine_id,
                &first_boot,
            )
        }),
        watch_power_buttons: Box::new(move |tx| power::watch_power_buttons(&power_buttons, tx)),
    }
}

/// The synchronous boot: everything before the daemon.
fn boot() -> Booted {
    if let Err(e) = mounts::mount_table(&mounts::STAGE2) {
        announce(&format!("applianced: ERROR: {e}"));
    }
    if let Err(e) = mounts::dev_links() {
        announce(&format!(
            "applianced: ERROR: cannot link /dev/stdin and co.: {e}"
        ));
    }
    let params = cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    for e in &params.errors {
        announce(&format!("applianced: ERROR: {e}"));
    }
    match modules::module_dir(Path::new("/lib/modules")) {
        Ok(dir) => {
            modules::StageModules::load(Path::new(MODULE_LIST), &dir);
        }
        Err(e) => announce(&format!(
            "applianced: ERROR: cannot tell the kernel release: {e}"
        )),
    }
    if let Err(e) = super::reboot_on_kernel_panic(Path::new(KERNEL_PANIC)) {
        announce(&format!(
            "applianced: ERROR: cannot set {KERNEL_PANIC}: {e}"
        ));
    }
    // Ctrl-Alt-Del then arrives as SIGINT, for an orderly reboot.
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        announce(&format!(
            "applianced: ERROR: cannot disable the Ctrl-Alt-Del reboot: {e}"
        ));
    }
    if let Err(e) = super::loopback_up() {
        announce(&format!(
            "applianced: ERROR: cannot bring up the loopback interface: {e}"
        ));
    }

    let class = Path::new("/sys/class/block");
    let data = match datapart::prepare(class) {
        datapart::DataMount::Partition(_) => Some(PathBuf::from(datapart::MOUNT_POINT)),
        datapart::DataMount::Tmpfs(_) => None,
    };
    let root_disk = std::fs::metadata("/").ok().and_then(|m| {
        use std::os::unix::fs::MetadataExt;
        let devs = blockdev::scan(class);
        let root = blockdev::find_devnum(&devs, blockdev::split_devnum(m.dev()))?;
        Some(root.disk.clone().unwrap_or_else(|| root.name.clone()))
    });
    let power_buttons =
        power::find_power_buttons(Path::new("/sys/class/input"), Path::new("/dev/input"));
    eprintln!("applianced: machine prepared at {:.2} s", uptime());
    Booted {
        first_boot: firstconfig::Inputs {
            params,
            root_disk,
            seed_mount: PathBuf::from("/run/appliance/seed"),
            block_class: class.to_path_buf(),
        },
        power_buttons,
        data,
    }
}
