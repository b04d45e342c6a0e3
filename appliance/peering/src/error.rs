//! The crate's error type; every variant names the node, address or input at fault.

use std::net::SocketAddr;

use appliance_cluster::{ChangeError, NodeId};
use appliance_pki::PkiError;

use crate::authority::AuthorityError;
use crate::state::WireError;

/// Why a peering operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The operation needs a cluster member, and this node is not one.
    #[error("this node is not a cluster member (it is {state}); form a cluster or join one first")]
    NotMember {
        /// What the node is instead.
        state: &'static str,
    },
    /// A TCP or TLS connection could not be made.
    #[error("cannot reach {address}: {detail}")]
    Unreachable {
        /// The address dialled.
        address: SocketAddr,
        /// The connection error.
        detail: String,
    },
    /// No address of a member could be reached.
    #[error("cannot reach {hostname} (node {node}) on any of its addresses: {detail}")]
    MemberUnreachable {
        /// The member.
        node: NodeId,
        /// Its hostname.
        hostname: String,
        /// The last error.
        detail: String,
    },
    /// A call reached the peer and was refused.
    #[error("{peer} refused {call}: {message}")]
    Refused {
        /// Who refused (hostname or address).
        peer: String,
        /// The call.
        call: &'static str,
        /// The peer's reason.
        message: String,
    },
    /// The peer answered with something unreadable.
    #[error("{peer} sent an unreadable {what}: {detail}")]
    Protocol {
        /// Who sent it.
        peer: String,
        /// What it was meant to be.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The authority refused or failed.
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    /// A change refused by the membership rules.
    #[error(transparent)]
    Change(#[from] ChangeError),
    /// Certificates or TLS configuration.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The embedding daemon's hook refused.
    #[error("{0}")]
    Hook(#[from] HookError),
    /// A cluster state that cannot be put on the wire.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A request the caller should not make.
    #[error("{0}")]
    Invalid(String),
    /// Catching up: the authority refuses this node's certificate (revoked)
    /// or does not list it any more. The node was removed from the cluster
    /// while it was down; it cannot become a member again by catching up.
    #[error(
        "this node was removed from the cluster while it was down: the cluster's authority \
         {hostname} (node {node}) {detail}; it is no longer a member, and can come back only \
         by being joined again with a join code"
    )]
    RemovedWhileDown {
        /// The authority.
        node: NodeId,
        /// Its hostname.
        hostname: String,
        /// What the authority said.
        detail: String,
    },
    /// Serving the peer port failed.
    #[error("the peer port server failed: {0}")]
    Serve(String),
}

/// A refusal from the embedding daemon (it could not store or apply what it was given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HookError(pub String);

/// `e` and its sources, joined with ": ", each said once.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}
