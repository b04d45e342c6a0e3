//! Runs `nft` for the firewall through the reaper: applianced reaps every child
//! itself (as PID 1 it must), so no other process API may wait for one.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use appliance_firewall::{NftOutput, NftRunner};
use appliance_supervisor::reaper::Reaper;

/// The `nft` runner of applianced.
#[derive(Clone)]
pub struct ReaperNft {
    reaper: Reaper,
}

impl ReaperNft {
    /// A runner whose children are collected by `reaper`.
    pub fn new(reaper: Reaper) -> Self {
        Self { reaper }
    }
}

#[async_trait::async_trait]
impl NftRunner for ReaperNft {
    async fn run(&self, args: &[String], stdin: Option<Vec<u8>>) -> io::Result<NftOutput> {
        let mut cmd = Command::new("nft");
        cmd.args(args);
        let out = self.reaper.output(cmd, stdin).await.map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(e.kind(), "the nft program is missing: install nftables")
            } else {
                e
            }
        })?;
        Ok(NftOutput {
            code: out
                .status
                .code()
                .or_else(|| out.status.signal().map(|s| 128 + s)),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}
