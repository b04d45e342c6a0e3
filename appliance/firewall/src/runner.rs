//! How `nft` is run: the [`NftRunner`] seam (applianced supplies one that
//! goes through its child reaper), [`SystemNft`] for tools and tests, and
//! [`CommandNft`] for running nft under a prefix such as
//! `ip netns exec NAME`.

use std::io;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Output of one run of `nft`.
#[derive(Debug, Clone)]
pub struct NftOutput {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl NftOutput {
    /// True when nft exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs the `nft` program. applianced runs it through its reaper (as PID 1 it
/// must reap every child itself); tools and tests use [`SystemNft`].
#[async_trait::async_trait]
pub trait NftRunner: Send + Sync {
    /// Runs `nft` with `args`, feeding `stdin` when given.
    async fn run(&self, args: &[String], stdin: Option<Vec<u8>>) -> std::io::Result<NftOutput>;
}

/// Runs `nft` with `tokio::process` (not for use inside applianced as PID 1).
#[derive(Debug, Clone, Default)]
pub struct SystemNft;

#[async_trait::async_trait]
impl NftRunner for SystemNft {
    async fn run(&self, args: &[String], stdin: Option<Vec<u8>>) -> io::Result<NftOutput> {
        run_command("nft", args, stdin).await
    }
}

/// Runs `program prefix... args...`, e.g. `ip netns exec fw-1 nft -j ...`,
/// so tests and hosted mode can aim nft at a network namespace.
#[derive(Debug, Clone)]
pub struct CommandNft {
    /// The program to start.
    pub program: String,
    /// Arguments placed before nft's own arguments.
    pub prefix: Vec<String>,
}

impl CommandNft {
    /// Runs nft inside the named network namespace (`ip netns exec NAME nft`).
    pub fn in_netns(name: &str) -> Self {
        CommandNft {
            program: "ip".into(),
            prefix: vec!["netns".into(), "exec".into(), name.into(), "nft".into()],
        }
    }
}

#[async_trait::async_trait]
impl NftRunner for CommandNft {
    async fn run(&self, args: &[String], stdin: Option<Vec<u8>>) -> io::Result<NftOutput> {
        let all: Vec<String> = self.prefix.iter().chain(args).cloned().collect();
        run_command(&self.program, &all, stdin).await
    }
}

async fn run_command(
    program: &str,
    args: &[String],
    stdin: Option<Vec<u8>>,
) -> io::Result<NftOutput> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Written before waiting: nft reads all of stdin before it prints
        // anything, so this cannot deadlock on a full stdout pipe.
        // A program that exits without reading all of it (a refusal) closes
        // the pipe: its exit status and stderr then say more than EPIPE.
        match pipe.write_all(&data).await {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e),
            _ => {}
        }
        drop(pipe);
    }
    let out = child.wait_with_output().await?;
    Ok(NftOutput {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    })
}
