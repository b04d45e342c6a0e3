//! The one error type of this crate: every variant says what failed, with
//! nft's own words, and what to do about it.

use std::io;

/// Why a firewall operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The `nft` program is not installed.
    #[error("cannot run nft ({source}): install nftables (the `nft` program) on this node")]
    NftMissing {
        /// The spawn error.
        source: io::Error,
    },
    /// Starting or talking to `nft` failed for another reason.
    #[error("cannot run `nft {args}`: {source}")]
    Spawn {
        /// The arguments given to nft.
        args: String,
        /// The I/O error.
        source: io::Error,
    },
    /// nft ran and rejected the request.
    #[error("nft failed to {action} for {spec} (exit code {code:?}): {stderr}")]
    Nft {
        /// What we were doing, e.g. "apply the full ruleset".
        action: &'static str,
        /// Summary of the spec involved (see `FirewallSpec::summary`).
        spec: String,
        /// nft's exit code (None when killed by a signal).
        code: Option<i32>,
        /// nft's standard error, trimmed.
        stderr: String,
    },
    /// Our table does not exist (nothing applied yet, or someone deleted it).
    #[error("table inet appliance does not exist: apply a firewall spec first")]
    TableMissing,
    /// nft's JSON listing could not be understood.
    #[error("cannot parse `nft -j list table inet appliance` output: {reason}")]
    Listing {
        /// What was wrong with it.
        reason: String,
    },
}
