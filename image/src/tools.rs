//! External programs: running them (a failure names the program, its
//! arguments and its stderr) and installing the host tools the builder needs.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::error::{Error, Result};

/// Host programs the build runs, and the Debian package that ships each.
pub const HOST_TOOLS: &[(&str, &str)] = &[
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
    ("sgdisk", "gdisk"),
    ("mkfs.fat", "dosfstools"),
    // The syslinux installer (from the pinned package) drives mtools.
    ("mcopy", "mtools"),
    ("mattrib", "mtools"),
    ("mkfs.erofs", "erofs-utils"),
    ("qemu-img", "qemu-utils"),
];

/// Runs `cmd`, returning its output when it exits with status 0.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let describe = |cmd: &Command| {
        (
            cmd.get_program().to_string_lossy().into_owned(),
            cmd.get_args()
                .map(OsStr::to_string_lossy)
                .collect::<Vec<_>>()
                .join(" "),
        )
    };
    tracing::debug!(command = ?cmd, "running");
    let out = cmd.output().map_err(|e| {
        let (program, args) = describe(cmd);
        Error::Command {
            program,
            args,
            status: format!("could not start: {e}"),
            stderr: String::new(),
        }
    })?;
    if out.status.success() {
        return Ok(out);
    }
    let (program, args) = describe(cmd);
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if stderr.is_empty() {
        stderr = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    Err(Error::Command {
        program,
        args,
        status: out.status.to_string(),
        stderr,
    })
}

/// Finds `program` in `PATH` (and the sbin directories, which a non-login
/// root shell may lack).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Installs, with apt-get, the packages of every host tool that is missing
/// (printing what it installs). Runs `apt-get update` once and retries if
/// the first install fails, as on a machine whose package lists are empty.
pub fn ensure_host_tools() -> Result<()> {
    let mut missing: Vec<&str> = HOST_TOOLS
        .iter()
        .filter(|(program, _)| which(program).is_none())
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    println!("mkimage: installing host tools: {}", missing.join(" "));
    let install = || {
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install().is_err() {
        run(Command::new("apt-get").arg("update"))?;
        install()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_is_named_with_its_arguments_and_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo broken >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`sh -c echo broken >&2; exit 3`"), "{text}");
        assert!(
            text.contains("exit status: 3") && text.ends_with("broken"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_program_is_named() {
        let err = run(&mut Command::new("/nonexistent/mkfs.nothing")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/mkfs.nothing"));
        assert!(which("sh").is_some());
        assert!(which("no-such-program-here").is_none());
    }
}
