//! The node firewall. (Stub: the firewall helper owns this crate.)

use std::collections::BTreeSet;
use std::net::IpAddr;

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A transport port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    /// Protocol.
    pub proto: Proto,
    /// Port number.
    pub port: u16,
}

/// Everything the ruleset is rendered from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallSpec {
    /// Management UI/API port (TCP), open to everyone.
    pub management_port: u16,
    /// Ports of the services placed on this node that everyone may reach.
    pub public: BTreeSet<PortSpec>,
    /// Ports that only cluster peers may reach.
    pub internal: BTreeSet<PortSpec>,
    /// Addresses of the other cluster nodes.
    pub peers: BTreeSet<IpAddr>,
}

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

/// Runs the `nft` program. applianced runs it through its reaper (as PID 1 it
/// must reap every child itself); tools and tests use [`SystemNft`].
#[async_trait::async_trait]
pub trait NftRunner: Send + Sync {
    /// Runs `nft` with `args`, feeding `stdin` when given.
    async fn run(&self, args: &[String], stdin: Option<Vec<u8>>) -> std::io::Result<NftOutput>;
}

/// Runs `nft` with `std::process` (not for use inside applianced).
#[derive(Debug, Clone, Default)]
pub struct SystemNft;
