//! Health probes: TCP connect, a minimal HTTP/1.1 GET, and an exec check run via the reaper.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::reaper::Reaper;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("probe of {target} timed out after {after:?}")]
    Timeout { target: String, after: Duration },
    #[error("probe of {target} failed: {source}")]
    Io { target: String, source: io::Error },
    #[error("GET {target} answered {status_line:?}, expected a 2xx status")]
    Status { target: String, status_line: String },
    #[error("check command {command} exited with {status}")]
    Exit {
        command: String,
        status: std::process::ExitStatus,
    },
}

/// Succeeds when a TCP connection to `addr` opens within `limit`.
pub async fn check_tcp(addr: SocketAddr, limit: Duration) -> Result<(), HealthError> {
    let target = addr.to_string();
    match timeout(limit, TcpStream::connect(addr)).await {
        Err(_) => Err(HealthError::Timeout {
            target,
            after: limit,
        }),
        Ok(Err(source)) => Err(HealthError::Io { target, source }),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Succeeds when `GET path` on `addr` answers a 2xx status line within `limit`.
pub async fn check_http(addr: SocketAddr, path: &str, limit: Duration) -> Result<(), HealthError> {
    let target = format!("http://{addr}{path}");
    let status_line = match timeout(limit, http_status_line(addr, path)).await {
        Err(_) => {
            return Err(HealthError::Timeout {
                target,
                after: limit,
            })
        }
        Ok(Err(source)) => return Err(HealthError::Io { target, source }),
        Ok(Ok(line)) => line,
    };
    // "HTTP/1.1 200 OK": the second word is the status code.
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    if status_line.starts_with("HTTP/1.") && code.len() == 3 && code.starts_with('2') {
        Ok(())
    } else {
        Err(HealthError::Status {
            target,
            status_line,
        })
    }
}

/// Sends the request and returns the first response line (bounded to 1 KiB).
async fn http_status_line(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: applianced-health\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 1024 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or(&[]);
    Ok(String::from_utf8_lossy(line).trim_end().to_string())
}

/// Runs `command args` (own process group, no stdio) and succeeds when it exits 0 within
/// `limit`; on timeout the whole group is killed.
pub async fn check_exec(
    reaper: &Reaper,
    command: PathBuf,
    args: &[String],
    limit: Duration,
) -> Result<(), HealthError> {
    let target = command.display().to_string();
    let mut cmd = Command::new(&command);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let spawned = reaper.spawn(cmd).map_err(|source| HealthError::Io {
        target: target.clone(),
        source,
    })?;
    let mut exit = spawned.exit;
    match timeout(limit, &mut exit).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(HealthError::Exit {
            command: target,
            status,
        }),
        Ok(Err(_)) => Err(HealthError::Io {
            target,
            source: io::Error::other("reaper stopped"),
        }),
        Err(_) => {
            // ESRCH only means it exited meanwhile.
            let _ = killpg(spawned.pid, Signal::SIGKILL);
            let _ = timeout(Duration::from_secs(5), exit).await;
            Err(HealthError::Timeout {
                target,
                after: limit,
            })
        }
    }
}
