//! What the administrator sees of a join: [`JoinProgress`], one event per
//! step, sent by the admin side ([`super::driver`]) while it drives the join.

use std::net::{IpAddr, SocketAddr};

use appliance_cluster::{CertFingerprint, NodeId};
use tokio::sync::mpsc;

/// One step of a join, as the administrator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinProgress {
    /// Connecting to the appliance's join port.
    Connecting {
        /// The address given.
        address: SocketAddr,
    },
    /// The appliance answered with its facts.
    Facts {
        /// Its node id.
        node: NodeId,
        /// Its hostname.
        hostname: String,
        /// Its addresses.
        addresses: Vec<IpAddr>,
        /// Its version.
        version: String,
        /// The fingerprint its TLS connection shows (what the PAKE binds).
        fingerprint: CertFingerprint,
    },
    /// Every preflight check passed.
    PreflightPassed {
        /// Accepted but worth saying (two nodes, beyond the tested size).
        warnings: Vec<String>,
    },
    /// Preflight failed; every failure, each a sentence. Nothing changed.
    PreflightFailed {
        /// The failures.
        failures: Vec<String>,
    },
    /// Both sides proved the code and see the same certificates.
    Handshake {
        /// A short id of the session, the same in the appliance's log.
        session: String,
    },
    /// The authority signed the appliance's certificate.
    Certified {
        /// The node.
        node: NodeId,
        /// SHA-256 of its new certificate.
        fingerprint: String,
    },
    /// The authority added the node.
    Added {
        /// The node.
        node: NodeId,
        /// The generation that has it.
        generation: u64,
    },
    /// A member has the new generation (the new node, this node, each other member).
    ConfigPushed {
        /// The member.
        node: NodeId,
        /// Its generation now.
        generation: u64,
    },
    /// A member did not take the new generation (it catches up later).
    PushFailed {
        /// The member.
        node: NodeId,
        /// Its hostname.
        hostname: String,
        /// Why.
        reason: String,
    },
    /// The join is complete.
    Done {
        /// The new member.
        node: NodeId,
        /// The generation with it.
        generation: u64,
    },
    /// The join stopped; the reason says what changed (nothing, unless it says so).
    Failed {
        /// Why.
        reason: String,
    },
}

impl JoinProgress {
    /// True for the last event of a join.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JoinProgress::Done { .. } | JoinProgress::Failed { .. }
        )
    }
}

pub(super) struct Events(pub(super) mpsc::Sender<JoinProgress>);

impl Events {
    pub(super) async fn send(&self, e: JoinProgress) {
        // An administrator who stopped listening does not stop the join.
        let _ = self.0.send(e).await;
    }
}
