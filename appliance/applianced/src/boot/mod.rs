//! applianced as PID 1 of the appliance image: the boot ([`stage1`] in the
//! initramfs, [`stage2`] on the root filesystem), the first-boot
//! configuration ([`seed`], [`firstconfig`]) and the power handling
//! ([`power`]). Pure logic (the command line, module order, superblocks,
//! console lists, input events) is apart from the syscalls and tested
//! without root.
//!
//! PID 1 never exits (the kernel would panic): every fatal error is shown on
//! the consoles, and the machine reboots after [`FATAL_DELAY`].

pub mod blockdev;
pub mod cmdline;
pub mod datapart;
pub mod firstconfig;
pub mod gpt;
pub mod modules;
pub mod mounts;
pub mod power;
pub mod seed;
pub mod stage1;
pub mod stage2;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::console::announce;

/// How long a fatal error stays on the screen before the reboot.
pub const FATAL_DELAY: Duration = Duration::from_secs(10);

/// Seconds since the kernel started (`/proc/uptime`), for the boot lines.
pub fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Shows `msg`, waits [`FATAL_DELAY`], then syncs, puts `data` (the mounted
/// data partition, if any) in a consistent state and reboots.
pub fn fatal(msg: &str, data: Option<&Path>) -> ! {
    announce(&format!("applianced: FATAL: {msg}"));
    announce(&format!(
        "applianced: rebooting in {} s",
        FATAL_DELAY.as_secs()
    ));
    if data.is_some() {
        // Services keep files open on /data; they go first.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(-1),
            nix::sys::signal::Signal::SIGKILL,
        );
        crate::logging::close_file();
    }
    std::thread::sleep(FATAL_DELAY);
    power::final_steps(crate::daemon::StopReason::Reboot, data)
}

/// The data mount point the panic hook makes consistent.
static PANIC_DATA: OnceLock<PathBuf> = OnceLock::new();

/// Installs the panic hook of PID 1: the panic goes to every console, then
/// the machine syncs and reboots after [`FATAL_DELAY`]. It runs before the
/// abort of release builds (`panic = "abort"`), which would otherwise take
/// the kernel down with "Attempted to kill init".
pub fn install_panic_hook(data: Option<PathBuf>) {
    if let Some(d) = data {
        let _ = PANIC_DATA.set(d);
    }
    std::panic::set_hook(Box::new(|info| {
        let text = format!("applianced: PANIC: {info}");
        // Straight to stderr too, in case the consoles were never opened.
        let _ = writeln!(std::io::stderr(), "{text}");
        announce(&text);
        fatal(
            "applianced panicked",
            PANIC_DATA.get().map(PathBuf::as_path),
        );
    }));
}

/// Turns the kernel's reboot-on-panic on (10 s) when the command line left
/// it off, so a kernel panic does not hang the appliance for good.
pub fn reboot_on_kernel_panic(path: &Path) -> Result<bool, std::io::Error> {
    let now = std::fs::read_to_string(path)?;
    if now.trim() == "0" {
        std::fs::write(path, "10\n")?;
        return Ok(true);
    }
    Ok(false)
}

/// Brings the loopback interface up: services and their health checks talk
/// over 127.0.0.1, and only PID 1 is there to do it.
pub fn loopback_up() -> std::io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned here alone.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the interface named in `req` and writes its
    // flags into `req`, which lives for the whole call.
    if unsafe { libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS just filled the `ifru_flags` member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let up = libc::IFF_UP as libc::c_short;
    if flags & up != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | up;
    // SAFETY: SIOCSIFFLAGS reads `req` (name and flags), valid for the call.
    if unsafe { libc::ioctl(raw, libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_panic_reboot_is_set_only_when_off() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("panic");
        std::fs::write(&p, "0\n").unwrap();
        assert!(reboot_on_kernel_panic(&p).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "10\n");
        std::fs::write(&p, "30\n").unwrap();
        assert!(!reboot_on_kernel_panic(&p).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "30\n");
    }
}
