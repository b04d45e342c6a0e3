//! The one place the daemon spawns and reaps child processes.
//!
//! As PID 1 (or a child subreaper in hosted mode) the daemon inherits every orphan and must
//! `waitpid(-1)` them all. That would steal exit statuses from `std`/`tokio` process APIs, so
//! nothing else in the daemon may wait on children: everything is spawned here and every exit
//! status is delivered through a oneshot channel. Exactly one [`Reaper`] may run per process.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// How often the reaping loop polls even without SIGCHLD (signals coalesce and can be missed).
const TICK: Duration = Duration::from_secs(1);

/// Cheap, cloneable handle to the process-wide child registry.
#[derive(Clone, Default)]
pub struct Reaper {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Children we spawned and whose exit somebody awaits.
    registry: Mutex<HashMap<i32, oneshot::Sender<ExitStatus>>>,
    /// Reaped pids nobody registered (orphans re-parented to us); counted for observability.
    orphans: AtomicU64,
}

/// A freshly spawned child. Its pipes are tokio handles; `exit` resolves when it is reaped.
pub struct Spawned {
    /// The child's pid (also its process group id when it called `setsid`).
    pub pid: Pid,
    /// Write end of the child's stdin, when `Stdio::piped()` was requested.
    pub stdin: Option<pipe::Sender>,
    /// Read end of the child's stdout, when piped.
    pub stdout: Option<pipe::Receiver>,
    /// Read end of the child's stderr, when piped.
    pub stderr: Option<pipe::Receiver>,
    /// Resolves with the exit status once the reaping loop collected the child.
    pub exit: oneshot::Receiver<ExitStatus>,
}

impl std::fmt::Debug for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawned")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Reaper {
    /// A new registry. Call [`Reaper::run`] once (spawned as a task) to start reaping.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, oneshot::Sender<ExitStatus>>> {
        // A poisoned registry still holds valid senders; keep reaping rather than panicking.
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns `cmd` and registers its pid. Must be called inside a tokio runtime (pipes are
    /// registered with its reactor).
    pub fn spawn(&self, mut cmd: Command) -> io::Result<Spawned> {
        // The lock is held across fork+insert, and the reaping loop calls waitpid only while
        // holding it: so a child that exits at once is still found in the registry, and std's
        // own waitpid on an exec failure (inside `spawn`) cannot be raced by waitpid(-1).
        let mut registry = self.lock();
        let mut child = cmd.spawn()?;
        let raw = i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?;
        let (tx, exit) = oneshot::channel();
        registry.insert(raw, tx);
        drop(registry);
        // Dropping `child` never waits; only its pipes are taken.
        let stdin = child
            .stdin
            .take()
            .map(|s| pipe::Sender::from_owned_fd(s.into()))
            .transpose()?;
        let stdout = child
            .stdout
            .take()
            .map(|s| pipe::Receiver::from_owned_fd(s.into()))
            .transpose()?;
        let stderr = child
            .stderr
            .take()
            .map(|s| pipe::Receiver::from_owned_fd(s.into()))
            .transpose()?;
        Ok(Spawned {
            pid: Pid::from_raw(raw),
            stdin,
            stdout,
            stderr,
            exit,
        })
    }

    /// Runs `cmd` to completion: writes `stdin` (if any), collects stdout and stderr
    /// concurrently and awaits the exit status. Pipes are set up here.
    pub async fn output(&self, mut cmd: Command, stdin: Option<Vec<u8>>) -> io::Result<Output> {
        use std::process::Stdio;
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let spawned = self.spawn(cmd)?;
        let write = async move {
            if let (Some(mut pipe), Some(data)) = (spawned.stdin, stdin) {
                // A child that exits without reading gives EPIPE; its status tells the story.
                match pipe.write_all(&data).await {
                    Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e),
                    _ => {}
                }
            }
            Ok::<_, io::Error>(())
        };
        let (w, stdout, stderr) =
            tokio::join!(write, read_all(spawned.stdout), read_all(spawned.stderr));
        w?;
        let status = spawned
            .exit
            .await
            .map_err(|_| io::Error::other("reaper stopped before the child was reaped"))?;
        Ok(Output {
            status,
            stdout: stdout?,
            stderr: stderr?,
        })
    }

    /// Number of reaped children nobody had registered (orphans).
    pub fn orphans_reaped(&self) -> u64 {
        self.inner.orphans.load(Ordering::Relaxed)
    }

    /// The reaping loop: on SIGCHLD and on a periodic tick, collects every exited child.
    /// Runs forever; spawn it once per process. If SIGCHLD cannot be watched it logs that
    /// and keeps reaping on the tick alone (slower, never stuck).
    pub async fn run(self) -> io::Result<()> {
        let mut sigchld = match signal(SignalKind::child()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGCHLD; reaping on a timer only");
                None
            }
        };
        let mut tick = tokio::time::interval(TICK);
        loop {
            self.reap_all();
            tokio::select! {
                _ = async { sigchld.as_mut()?.recv().await }, if sigchld.is_some() => {}
                _ = tick.tick() => {}
            }
        }
    }

    /// Collects every exited child without blocking and delivers the statuses.
    pub fn reap_all(&self) {
        let mut registry = self.lock();
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: waitpid only writes the status into the valid local `status`; WNOHANG
            // keeps it from blocking while the registry lock is held.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                // 0: children remain but none exited; -1: ECHILD (none at all) or EINTR.
                if pid < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            let exit = ExitStatus::from_raw(status);
            match registry.remove(&pid) {
                // The receiver may be gone (nobody cares any more); that is fine.
                Some(tx) => drop(tx.send(exit)),
                None => {
                    self.inner.orphans.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(pid, %exit, "reaped orphan");
                }
            }
        }
    }
}

async fn read_all(pipe: Option<pipe::Receiver>) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut buf).await?;
    }
    Ok(buf)
}

/// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`), so orphaned descendants
/// are re-parented to it instead of PID 1. Used in hosted mode.
pub fn set_child_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}
