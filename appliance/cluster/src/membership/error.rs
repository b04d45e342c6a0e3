//! Why a change (or a received configuration) is refused: [`ChangeError`].

use std::net::IpAddr;

use appliance_config::hostname::NameError;

use super::{AdminError, MemberState};
use crate::identity::{CertFingerprint, NodeId};
use crate::placement::PlacementError;

/// Why a change (or a received configuration) was refused. Each message
/// names the node and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The change names a node that is not a member.
    #[error(
        "there is no node {node} in the cluster; list the members with `appliancectl cluster status`"
    )]
    UnknownNode {
        /// The node named.
        node: NodeId,
    },
    /// The node is already a member.
    #[error("{hostname} (node {node}) is already a member of the cluster; nothing to add")]
    AlreadyMember {
        /// The node.
        node: NodeId,
        /// Its hostname.
        hostname: String,
    },
    /// The hostname is taken.
    #[error(
        "the hostname {hostname:?} is already used by the member {existing}; \
         give the new node another hostname"
    )]
    DuplicateHostname {
        /// The hostname asked for.
        hostname: String,
        /// The member that has it (its node id).
        existing: NodeId,
    },
    /// An address is taken.
    #[error(
        "the address {address} of {hostname} is already used by {existing}; \
         give {hostname} an address no other node has"
    )]
    DuplicateAddress {
        /// The node bringing the address.
        hostname: String,
        /// The address.
        address: IpAddr,
        /// The hostname of the node that already has it (possibly the same node, listed twice).
        existing: String,
    },
    /// The certificate is already a member's.
    #[error(
        "the certificate of {hostname} (SHA-256 {fingerprint}) is already the certificate of {existing}; \
         each node must have its own certificate: regenerate the node's identity"
    )]
    DuplicateFingerprint {
        /// The node bringing the certificate.
        hostname: String,
        /// The fingerprint.
        fingerprint: CertFingerprint,
        /// The member that has it.
        existing: String,
    },
    /// A member without an address cannot be reached by its peers.
    #[error("{hostname} has no address; a member needs at least one address its peers can reach")]
    NoAddresses {
        /// The node.
        hostname: String,
    },
    /// Not a valid hostname.
    #[error("the hostname {hostname:?} {reason}")]
    InvalidHostname {
        /// The hostname.
        hostname: String,
        /// Why it is refused.
        reason: NameError,
    },
    /// A change that changes nothing.
    #[error("{hostname} {detail}; nothing to change")]
    NoChange {
        /// The node.
        hostname: String,
        /// What is already so.
        detail: String,
    },
    /// A role change that names no node.
    #[error("a change of roles must name at least one node")]
    EmptyChange,
    /// A state change that is not allowed.
    #[error("{hostname} is {from} and cannot become {to}{hint}")]
    BadTransition {
        /// The node.
        hostname: String,
        /// Its current state.
        from: MemberState,
        /// The state asked for.
        to: MemberState,
        /// What to do instead (starts with "; ", or empty).
        hint: String,
    },
    /// A node added in state `removing`.
    #[error("{hostname} cannot join in state removing; add it as joining (or active)")]
    AddedAsRemoving {
        /// The node.
        hostname: String,
    },
    /// A change to the accounts, settings or certificate is refused.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The resulting roles break a placement rule.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// The generation counter is at its maximum (it never is in practice).
    #[error(
        "the cluster configuration is at generation {generation}, which cannot be incremented"
    )]
    GenerationExhausted {
        /// The current generation.
        generation: u64,
    },
    /// A received configuration lists the same node twice.
    #[error("the cluster configuration lists node {node} twice")]
    DuplicateNode {
        /// The node.
        node: NodeId,
    },
}
