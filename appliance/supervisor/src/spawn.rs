//! Turning a manifest into a running child: command resolution, user, environment, data
//! directory, own session, and line-by-line log forwarding.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::{
    chown, geteuid, getgrouplist, setgid, setgroups, setsid, setuid, Gid, Uid, User,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::unix::pipe;

use crate::reaper::{Reaper, Spawned};
use crate::SupervisorError;

/// PATH given to services when the daemon itself has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Longest log line forwarded in one piece; longer lines are split.
const MAX_LINE: u64 = 8 * 1024;

/// Credentials a child switches to before exec.
#[derive(Debug, Clone)]
struct Identity {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
}

/// Everything `launch` needs besides the manifest.
pub(crate) struct LaunchEnv<'a> {
    pub bin_dir: &'a Path,
    pub data_dir: &'a Path,
    pub extra_env: &'a BTreeMap<String, String>,
    pub reaper: &'a Reaper,
}

/// Resolves `command` as an absolute path or a name in `bin_dir`; it must exist.
pub(crate) fn resolve_command(
    service: &str,
    bin_dir: &Path,
    command: &str,
) -> Result<PathBuf, SupervisorError> {
    let path = if command.starts_with('/') {
        PathBuf::from(command)
    } else {
        bin_dir.join(command)
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(SupervisorError::CommandNotFound {
            service: service.to_string(),
            path,
        })
    }
}

/// Looks the user up; returns `None` when no switch is needed (no user, or already that user).
fn resolve_user(service: &str, user: Option<&str>) -> Result<Option<Identity>, SupervisorError> {
    let Some(name) = user else { return Ok(None) };
    let err = |reason: String| SupervisorError::User {
        service: service.to_string(),
        user: name.to_string(),
        reason,
    };
    let found = User::from_name(name).map_err(|e| err(format!("lookup failed: {e}")))?;
    let found = found.ok_or_else(|| err("no such user in the user database".to_string()))?;
    if found.uid == geteuid() {
        return Ok(None);
    }
    if !geteuid().is_root() {
        return Err(err(
            "switching users needs root; run the daemon as root".to_string()
        ));
    }
    let cname = CString::new(name).map_err(|_| err("name contains NUL".to_string()))?;
    let groups = getgrouplist(&cname, found.gid).map_err(|e| err(format!("getgrouplist: {e}")))?;
    Ok(Some(Identity {
        uid: found.uid,
        gid: found.gid,
        groups,
    }))
}

/// Spawns the service's main process in its own session, as its user, with a cleared
/// environment, and forwards its output to the log.
pub(crate) fn launch(
    manifest: &crate::Manifest,
    env: &LaunchEnv<'_>,
) -> Result<Spawned, SupervisorError> {
    let name = manifest.name.as_str();
    let program = resolve_command(name, env.bin_dir, &manifest.command)?;
    let identity = resolve_user(name, manifest.user.as_deref())?;
    let data_dir = env.data_dir.join(name);
    let dir_err = |source| SupervisorError::DataDir {
        service: name.to_string(),
        path: data_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&data_dir).map_err(dir_err)?;
    if let Some(id) = &identity {
        chown(&data_dir, Some(id.uid), Some(id.gid)).map_err(|e| dir_err(e.into()))?;
    }

    let mut cmd = Command::new(&program);
    cmd.args(&manifest.args).current_dir(&data_dir).env_clear();
    cmd.env(
        "PATH",
        std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
    );
    cmd.envs(&manifest.environment).envs(env.extra_env);
    cmd.env("APPLIANCE_SERVICE", name)
        .env("APPLIANCE_DATA_DIR", &data_dir);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec, so it must be async-signal-safe: it only
    // makes raw syscalls (setsid, setgroups, setgid, setuid) on data allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            setsid()?;
            if let Some(id) = &identity {
                // Groups first, then gid, then uid: afterwards we lack the right to change them.
                setgroups(&id.groups)?;
                setgid(id.gid)?;
                setuid(id.uid)?;
            }
            Ok(())
        });
    }
    let mut spawned = env
        .reaper
        .spawn(cmd)
        .map_err(|source| SupervisorError::Spawn {
            service: name.to_string(),
            command: program.clone(),
            source,
        })?;
    forward_lines(name, spawned.stdout.take());
    forward_lines(name, spawned.stderr.take());
    Ok(spawned)
}

/// Logs each line of `pipe` as `info!(service = name)` until EOF.
fn forward_lines(name: &str, pipe: Option<pipe::Receiver>) {
    let Some(pipe) = pipe else { return };
    let name = name.to_string();
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match (&mut reader)
                .take(MAX_LINE)
                .read_until(b'\n', &mut buf)
                .await
            {
                Ok(0) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    let line = text.trim_end_matches(['\n', '\r']);
                    tracing::info!(service = %name, "{line}");
                }
                Err(e) => {
                    tracing::debug!(service = %name, error = %e, "log pipe failed");
                    break;
                }
            }
        }
    });
}
