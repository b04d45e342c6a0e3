//! The inter-node protocol: joining an appliance to a cluster, distributing
//! the cluster configuration, and discovery beacons; a library applianced
//! embeds. The rules (membership, placement, join codes, the PAKE,
//! preflight) are appliance-cluster's, the certificates and TLS
//! configurations appliance-pki's; this crate puts them on the network.
//!
//! Layout:
//! - [`node`]: [`PeerNode`], a node's peer side: idle, waiting to be joined
//!   or a member; one server on the peer port that follows that state; the
//!   [`NodeHooks`] through which the daemon stores what is accepted;
//! - [`join`]: joining an appliance, both sides: `join::driver`, the
//!   admin side, run by a member, with progress events; `join::candidate`,
//!   the appliance being joined (`Join` service: facts, the candidate's
//!   half of the handshake, the bundle check);
//! - [`admin`]: what else a member does for an administrator (change,
//!   remove) and for itself (catch up, renew);
//! - `cluster_service`: the `Cluster` service a member serves;
//! - [`authority`]: the single authority for changes and certificates
//!   ([`Authority`], [`LocalAuthority`] with a [`Persist`] seam,
//!   [`RemoteAuthority`]);
//! - [`client`]: dialling the join channel and cluster mutual TLS;
//! - `transport`: TLS under tonic (accepting, connecting, peer info);
//! - [`trail`]: the audit trail ([`Event`], the [`EventLog`] seam,
//!   [`EventTrail`]), kept by the authority for the cluster;
//! - [`beacon`]: the UDP discovery beacon, sent and heard;
//! - [`pb`]: the generated `appliance.peer.v1` code (`proto/peer.proto`).

pub mod admin;
pub mod authority;
pub mod beacon;
pub mod client;
mod cluster_service;
mod error;
pub mod join;
pub mod node;
mod state;
pub mod trail;
mod transport;

use std::time::Duration;

pub use admin::{ChangeReport, PushFailure, PushOutcome, RemoveReport};
pub use authority::{
    Authority, AuthorityError, AuthorityRecord, LocalAuthority, MemoryPersist, Persist,
    RemoteAuthority, SignedManagementCert,
};
pub use client::{ClusterDialer, JoinConnection, PeerResolver, SamePort};
pub use error::{HookError, PeerError};
pub use join::{JoinProgress, JoinSlot, SharedSlot};
pub use node::{
    authority_member, system_clock, Clock, FormedCluster, JoinedBundle, LocalFacts, MemberSetup,
    NodeHooks, NodeSetup, NodeStatus, PeerNode,
};
pub use state::{ClusterState, StatePart, WireError};
pub use trail::{Event, EventLog, EventSpan, EventTrail, MemoryEventLog};
pub use transport::{ChannelKind, PeerInfo};

/// Generated code for `appliance.peer.v1`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("appliance.peer.v1");
}

/// The TCP port of the peer service (join before, cluster after joining).
pub const DEFAULT_PEER_PORT: u16 = 7443;

/// Time limits of the peer protocol; every wait is bounded by one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A server-side TLS handshake.
    pub tls_handshake: Duration,
    /// A client's TCP connection and TLS handshake.
    pub connect: Duration,
    /// One unary call (a push, a configuration fetch, a proposal).
    pub rpc: Duration,
    /// One step of the join handshake (waiting for the peer's next message).
    pub step: Duration,
    /// TLS handshakes in progress at once on the server; more are dropped.
    pub max_pending_handshakes: usize,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tls_handshake: Duration::from_secs(10),
            connect: Duration::from_secs(5),
            rpc: Duration::from_secs(10),
            step: Duration::from_secs(15),
            max_pending_handshakes: 64,
        }
    }
}
