//! The consoles: stdio on `/dev/console`, and the lines meant for the
//! administrator (banner, `applianced: ready`, errors, shutdown), which as
//! PID 1 go to every console the kernel lists as active — the serial port and
//! the screen alike — since `/dev/console` reaches only the last `console=`.
//! In hosted mode those lines go to stdout, as they always did.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Where the kernel lists the active consoles.
pub const ACTIVE: &str = "/sys/class/tty/console/active";
/// The console device.
pub const CONSOLE: &str = "/dev/console";

/// The device files of the active consoles listed in `text` (the contents of
/// [`ACTIVE`], such as `tty0 ttyS0`), under `dev`. A name may carry a `-`
/// suffix on some kernels' listings of unregistered consoles; those are skipped.
pub fn parse_active(text: &str, dev: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for name in text.split_whitespace() {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
        let path = dev.join(name);
        if ok && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// The administrator's consoles, once opened (PID 1 only).
static CONSOLES: OnceLock<Mutex<Vec<File>>> = OnceLock::new();

/// Opens the active consoles for [`announce`]; falls back to `/dev/console`
/// when none can be read or opened. PID 1 only; later calls do nothing.
pub fn init() {
    let listed = std::fs::read_to_string(ACTIVE)
        .map(|t| parse_active(&t, Path::new("/dev")))
        .unwrap_or_default();
    let mut files: Vec<File> = listed.iter().filter_map(|p| open(p).ok()).collect();
    if files.is_empty() {
        files.extend(open(Path::new(CONSOLE)).ok());
    }
    let _ = CONSOLES.set(Mutex::new(files));
}

fn open(path: &Path) -> io::Result<File> {
    // Non-blocking: a console nobody drains must not hang the boot or the
    // shutdown; a line that does not fit is dropped after a few tries.
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

fn write_bounded(file: &mut File, mut buf: &[u8]) {
    for _ in 0..50 {
        match file.write(buf) {
            Ok(n) if n == buf.len() => return,
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Shows `line` to the administrator: on every active console as PID 1, on
/// stdout otherwise.
pub fn announce(line: &str) {
    match CONSOLES.get() {
        Some(consoles) => {
            let mut consoles = consoles.lock().unwrap_or_else(|e| e.into_inner());
            let text = format!("{line}\n");
            for file in consoles.iter_mut() {
                write_bounded(file, text.as_bytes());
            }
        }
        None => {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// True when `fd` is open.
fn is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags of `fd`; no memory is involved.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Puts `/dev/console` on stdin, stdout and stderr: all three when `force`
/// (stage 1, whose descriptors the kernel opened on the initramfs's node),
/// otherwise only those that are closed.
pub fn stdio_on_console(force: bool) -> io::Result<()> {
    if !force && (0..=2).all(is_open) {
        return Ok(());
    }
    let console = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(CONSOLE)?;
    let dups: [fn(&File) -> nix::Result<()>; 3] = [
        |f| nix::unistd::dup2_stdin(f),
        |f| nix::unistd::dup2_stdout(f),
        |f| nix::unistd::dup2_stderr(f),
    ];
    for (fd, dup) in dups.iter().enumerate() {
        if force || !is_open(fd as i32) {
            dup(&console).map_err(io::Error::from)?;
        }
    }
    // `console` itself may have landed on 0..2 when they were closed.
    if console.as_raw_fd() <= 2 {
        std::mem::forget(console);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_consoles_map_to_device_files() {
        let dev = Path::new("/dev");
        assert_eq!(
            parse_active("tty0 ttyS0\n", dev),
            vec![PathBuf::from("/dev/tty0"), PathBuf::from("/dev/ttyS0")]
        );
        assert_eq!(
            parse_active("hvc0\n", dev),
            vec![PathBuf::from("/dev/hvc0")]
        );
        assert!(parse_active("\n", dev).is_empty());
    }

    #[test]
    fn odd_names_and_repeats_are_skipped() {
        let dev = Path::new("/dev");
        assert_eq!(
            parse_active("ttyS0 ../x ttyS0 tty0-\n", dev),
            vec![PathBuf::from("/dev/ttyS0")]
        );
    }
}
