//! What the embedding daemon gives a [`PeerNode`](super::PeerNode) and
//! hears from it: the setup (identity, facts, clock, member setup), the
//! [`NodeHooks`] through which it stores what changes, and the status and
//! bundles it is handed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use appliance_cluster::{CertFingerprint, NodeId};
use appliance_pki::{CaCert, NodeCert, NodeKey};
use async_trait::async_trait;
use uuid::Uuid;

use crate::authority::{Authority, LocalAuthority};
use crate::client::PeerResolver;
use crate::error::HookError;
use crate::state::ClusterState;
use crate::Timeouts;

/// The clock a node reads (wall time); tests inject a skewed one.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The system's wall clock.
pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// What a node tells about itself (join facts, the CSR, the member record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFacts {
    /// Its hostname.
    pub hostname: String,
    /// The addresses peers reach it on.
    pub addresses: Vec<IpAddr>,
    /// The software version it runs.
    pub version: String,
    /// The MTU of its cluster interface.
    pub mtu: u32,
}

/// What a joined appliance received, for the daemon to store.
#[derive(Debug, Clone)]
pub struct JoinedBundle {
    /// The cluster CA's certificate.
    pub ca: CaCert,
    /// This node's certificate, signed by the CA.
    pub cert: NodeCert,
    /// The configuration (with this node in it) and revocation list.
    pub state: ClusterState,
}

/// How the embedding daemon stores and follows what the peer side
/// accepts. A hook that returns an error refuses the step it was asked to
/// store: nothing is acknowledged to the peer.
#[async_trait]
pub trait NodeHooks: Send + Sync {
    /// The join handshake succeeded and the bundle checked out: store the
    /// certificate, the CA and the state (the node key is the caller's
    /// already). The node switches to cluster mode after this returns `Ok`.
    async fn joined(&self, bundle: &JoinedBundle) -> Result<(), HookError>;
    /// A newer configuration (or revocation list) was accepted: store it
    /// and converge (firewall peer sets, placed services).
    async fn config_changed(&self, state: &ClusterState) -> Result<(), HookError>;
    /// The configuration no longer lists this node: it was removed. The
    /// node is idle after this; the daemon decides what next (typically a
    /// new join code and [`PeerNode::become_unjoined`](super::PeerNode::become_unjoined)).
    async fn left(&self, state: &ClusterState);
    /// The node's certificate was renewed: store it.
    async fn certificate_renewed(&self, cert: &NodeCert) -> Result<(), HookError>;
}

/// What a node needs to run its peer side.
pub struct NodeSetup {
    /// Its node id.
    pub node_id: NodeId,
    /// Its key (the same for the join certificate and the cluster one).
    pub key: Arc<NodeKey>,
    /// What it tells about itself.
    pub facts: LocalFacts,
    /// Where what it accepts is stored.
    pub hooks: Arc<dyn NodeHooks>,
    /// Its wall clock.
    pub clock: Clock,
    /// Where other members' peer ports are.
    pub resolver: Arc<dyn PeerResolver>,
    /// Time limits.
    pub timeouts: Timeouts,
}

/// What a member needs (loaded by the daemon after a restart, or from a join).
pub struct MemberSetup {
    /// The cluster CA's certificate.
    pub ca: CaCert,
    /// This node's CA-signed certificate.
    pub cert: NodeCert,
    /// The last state it accepted.
    pub state: ClusterState,
    /// The authority, on the node that holds the CA key; `None` elsewhere
    /// (changes are then forwarded to the back-end member).
    pub authority: Option<Arc<dyn Authority>>,
}

/// What forming a cluster made, for the daemon to store.
pub struct FormedCluster {
    /// The CA's private key, PEM (back-end nodes only; mode 0600).
    pub ca_key_pem: String,
    /// The CA's certificate.
    pub ca: CaCert,
    /// This node's certificate.
    pub cert: NodeCert,
    /// Generation 1.
    pub state: ClusterState,
    /// The authority (its record is already saved once through `persist`).
    pub authority: Arc<LocalAuthority>,
}

/// What a node is, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStatus {
    /// Neither waiting to be joined nor a member: the peer port refuses connections.
    Idle,
    /// Waiting to be joined, showing a certificate with this fingerprint.
    Unjoined {
        /// SHA-256 of its self-signed join certificate.
        fingerprint: CertFingerprint,
    },
    /// A member.
    Member {
        /// Its cluster.
        cluster_id: Uuid,
        /// The generation it has.
        generation: u64,
        /// SHA-256 of its cluster certificate.
        fingerprint: CertFingerprint,
        /// Whether it is the authority for changes.
        authority: bool,
    },
}
