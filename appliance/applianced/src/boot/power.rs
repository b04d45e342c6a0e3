//! Power: the ACPI power button (an evdev device named "Power Button"), the
//! reasons to stop, and the last steps of a shutdown once the daemon has
//! stopped its services: kill what is left, sync, unmount `/data`, and
//! power off or reboot — PID 1 never exits.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::reboot::RebootMode;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use crate::console::announce;
use crate::daemon::StopReason;

/// Size of `struct input_event` on 64-bit Linux: a `timeval` (two 8-byte
/// fields), then type (u16), code (u16) and value (i32).
pub const INPUT_EVENT_SIZE: usize = 24;
/// `EV_KEY`: a key or button event.
pub const EV_KEY: u16 = 0x01;
/// `KEY_POWER`.
pub const KEY_POWER: u16 = 116;
/// The name the ACPI button driver gives its input devices.
pub const POWER_BUTTON_NAME: &str = "Power Button";

/// One input event, without its time stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputEvent {
    /// Event type (`EV_KEY` ...).
    pub kind: u16,
    /// Key or axis code.
    pub code: u16,
    /// 1 pressed, 0 released, 2 repeated (for keys).
    pub value: i32,
}

impl InputEvent {
    /// True for a press of the power key.
    pub fn is_power_press(&self) -> bool {
        self.kind == EV_KEY && self.code == KEY_POWER && self.value == 1
    }
}

/// Decodes one `struct input_event` (native byte order).
pub fn decode_event(raw: &[u8; INPUT_EVENT_SIZE]) -> InputEvent {
    InputEvent {
        kind: u16::from_ne_bytes([raw[16], raw[17]]),
        code: u16::from_ne_bytes([raw[18], raw[19]]),
        value: i32::from_ne_bytes([raw[20], raw[21], raw[22], raw[23]]),
    }
}

/// The event devices (`/dev/input/eventN`) of the power buttons listed under
/// `class` (normally `/sys/class/input`).
pub fn find_power_buttons(class: &Path, dev: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(class)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            if !name.starts_with("event") {
                return None;
            }
            let dev_name = std::fs::read_to_string(e.path().join("device/name")).ok()?;
            (dev_name.trim() == POWER_BUTTON_NAME).then(|| dev.join(name))
        })
        .collect();
    out.sort();
    out
}

/// Watches the power buttons: one message on `tx` per press. Returns how many
/// buttons are watched.
pub fn watch_power_buttons(devices: &[PathBuf], tx: mpsc::Sender<()>) -> usize {
    let mut watched = 0;
    for path in devices {
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("cannot open the power button {}: {e}", path.display());
                continue;
            }
        };
        // SAFETY: `file` owns its descriptor, which nothing else closes or
        // replaces while the AsyncFd holds it.
        let fd = match unsafe { AsyncFd::register(file) } {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!("cannot watch the power button {}: {e}", path.display());
                continue;
            }
        };
        let (path, tx) = (path.clone(), tx.clone());
        tokio::spawn(async move {
            if let Err(e) = read_events(fd, &tx).await {
                tracing::warn!("power button {}: {e}; no longer watched", path.display());
            }
        });
        watched += 1;
    }
    watched
}

async fn read_events(fd: AsyncFd<File>, tx: &mpsc::Sender<()>) -> io::Result<()> {
    let mut buf = [0u8; INPUT_EVENT_SIZE * 16];
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|inner| inner.get_ref().read(&mut buf)) {
            Ok(Ok(0)) => return Err(io::Error::other("end of file")),
            Ok(Ok(n)) => {
                for chunk in buf[..n].chunks_exact(INPUT_EVENT_SIZE) {
                    let mut raw = [0u8; INPUT_EVENT_SIZE];
                    raw.copy_from_slice(chunk);
                    if decode_event(&raw).is_power_press() {
                        let _ = tx.send(()).await;
                    }
                }
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
}

/// Processes other than us and kernel threads, from a `/proc/<pid>/stat`
/// line: `(pid, parent pid, state)`; `None` for a line that does not parse.
pub fn parse_stat(line: &str) -> Option<(i32, i32, char)> {
    let pid = line.split_whitespace().next()?.parse().ok()?;
    // The command name may hold spaces and parentheses: it ends at the last ')'.
    let rest = &line[line.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((pid, ppid, state))
}

/// User processes still running (not zombies), other than PID 1; kernel
/// threads (children of kthreadd, PID 2) are left out.
pub fn user_processes(proc_root: &Path) -> Vec<i32> {
    std::fs::read_dir(proc_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let line = std::fs::read_to_string(proc_root.join(format!("{pid}/stat"))).ok()?;
            parse_stat(&line)
        })
        .filter(|&(pid, ppid, state)| pid > 2 && ppid != 2 && ppid != 0 && state != 'Z')
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Sends `signal` to every process but us, then waits (at most `grace`) for
/// them to be gone. Returns how many are left.
async fn kill_all(signal: Signal, grace: Duration) -> usize {
    // pid -1: every process we may signal except ourselves (and, for PID 1, init).
    let _ = kill(Pid::from_raw(-1), signal);
    let until = tokio::time::Instant::now() + grace;
    loop {
        let left = user_processes(Path::new("/proc")).len();
        if left == 0 || tokio::time::Instant::now() >= until {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Last steps of a PID-1 shutdown, after the daemon stopped its services:
/// SIGTERM then SIGKILL to what is left, sync, unmount `data` (or remount it
/// read-only), then power off or reboot. Bounded by `deadline`; past it, the
/// remaining steps run without waiting. Never returns.
pub async fn finish(reason: StopReason, data: Option<&Path>, deadline: tokio::time::Instant) -> ! {
    let grace = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .min(Duration::from_secs(3));
    let left = kill_all(Signal::SIGTERM, grace).await;
    if left > 0 {
        announce(&format!(
            "applianced: {left} process(es) left after SIGTERM; sending SIGKILL"
        ));
        let left = kill_all(Signal::SIGKILL, Duration::from_secs(1)).await;
        if left > 0 {
            announce(&format!("applianced: {left} process(es) survived SIGKILL"));
        }
    }
    final_steps(reason, data)
}

/// Sync, unmount `data`, power off or reboot. Synchronous: also the path of
/// fatal errors and of the panic hook. Never returns.
pub fn final_steps(reason: StopReason, data: Option<&Path>) -> ! {
    nix::unistd::sync();
    if let Some(data) = data {
        match super::mounts::unmount_or_readonly(data) {
            Ok(what) => announce(&format!("applianced: {}: {what}", data.display())),
            Err(e) => {
                announce(&format!(
                    "applianced: ERROR: {e}; forcing every filesystem read-only"
                ));
                emergency_remount();
            }
        }
    }
    nix::unistd::sync();
    let mode = match reason {
        StopReason::Reboot => RebootMode::RB_AUTOBOOT,
        StopReason::PowerOff | StopReason::Exit => RebootMode::RB_POWER_OFF,
    };
    let err = nix::sys::reboot::reboot(mode).err();
    // Only reached when the kernel refused: nothing else to do but wait.
    announce(&format!(
        "applianced: ERROR: reboot({mode:?}) failed: {err:?}; halting here"
    ));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The kernel's emergency remount (SysRq `u`): every filesystem read-only,
/// open files or not. Asynchronous in the kernel, so give it a moment.
fn emergency_remount() {
    if std::fs::write("/proc/sysrq-trigger", b"u").is_ok() {
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: u16, code: u16, value: i32) -> [u8; INPUT_EVENT_SIZE] {
        let mut b = [0u8; INPUT_EVENT_SIZE];
        b[0..8].copy_from_slice(&1_700_000_000i64.to_ne_bytes());
        b[8..16].copy_from_slice(&123_456i64.to_ne_bytes());
        b[16..18].copy_from_slice(&kind.to_ne_bytes());
        b[18..20].copy_from_slice(&code.to_ne_bytes());
        b[20..24].copy_from_slice(&value.to_ne_bytes());
        b
    }

    #[test]
    fn input_events_decode() {
        let press = decode_event(&raw(EV_KEY, KEY_POWER, 1));
        assert_eq!(
            press,
            InputEvent {
                kind: 1,
                code: 116,
                value: 1
            }
        );
        assert!(press.is_power_press());
        // Release, a sync report, another key: not a press of the power key.
        assert!(!decode_event(&raw(EV_KEY, KEY_POWER, 0)).is_power_press());
        assert!(!decode_event(&raw(0, 0, 0)).is_power_press());
        assert!(!decode_event(&raw(EV_KEY, 30, 1)).is_power_press());
        assert_eq!(std::mem::size_of::<libc::input_event>(), INPUT_EVENT_SIZE);
    }

    #[test]
    fn power_buttons_are_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (ev, name) in [
            ("event0", "AT Translated Set 2 keyboard"),
            ("event1", "Power Button"),
            ("event3", "Power Button"),
        ] {
            std::fs::create_dir_all(dir.path().join(ev).join("device")).unwrap();
            std::fs::write(dir.path().join(ev).join("device/name"), format!("{name}\n")).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("input1")).unwrap();
        assert_eq!(
            find_power_buttons(dir.path(), Path::new("/dev/input")),
            vec![
                PathBuf::from("/dev/input/event1"),
                PathBuf::from("/dev/input/event3")
            ]
        );
    }

    #[test]
    fn stat_lines_parse_with_odd_command_names() {
        assert_eq!(
            parse_stat("412 (portal) S 1 412 412 0 -1 4194560 ..."),
            Some((412, 1, 'S'))
        );
        assert_eq!(parse_stat("77 (a) b (c)) Z 1 77 77"), Some((77, 1, 'Z')));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn user_processes_skip_kernel_threads_and_zombies() {
        let dir = tempfile::tempdir().unwrap();
        for (pid, line) in [
            (1, "1 (applianced) S 0 1 1"),
            (2, "2 (kthreadd) S 0 0 0"),
            (9, "9 (kworker/0:1) I 2 0 0"),
            (300, "300 (portal) S 1 300 300"),
            (301, "301 (audit) Z 1 301 301"),
        ] {
            std::fs::create_dir_all(dir.path().join(pid.to_string())).unwrap();
            std::fs::write(dir.path().join(format!("{pid}/stat")), line).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("self")).unwrap();
        assert_eq!(user_processes(dir.path()), vec![300]);
    }
}
