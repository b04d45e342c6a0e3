//! Calling other nodes: [`JoinConnection`] (an admin member to an appliance
//! being joined, over the join channel) and [`ClusterDialer`] (a member to
//! another member, over cluster mutual TLS, checking that the server is the
//! node it meant to call). Where a member is reached is the
//! [`PeerResolver`]'s answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use appliance_cluster::{CertFingerprint, Member, NodeId};
use appliance_pki::tls::{cluster_client_config, join_client_config};
use appliance_pki::{CaCert, NodeCert, NodeKey, SharedRevocations};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::error::PeerError;
use crate::pb::cluster_client::ClusterClient;
use crate::pb::join_client::JoinClient;
use crate::{pb, transport, Timeouts};

/// Where a member's peer port is.
pub trait PeerResolver: Send + Sync {
    /// The socket addresses to try, in order.
    fn addresses(&self, member: &Member) -> Vec<SocketAddr>;
}

/// Every member listens on the same port on each of its addresses (the product's case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamePort(pub u16);

impl PeerResolver for SamePort {
    fn addresses(&self, member: &Member) -> Vec<SocketAddr> {
        member
            .addresses
            .iter()
            .map(|ip| SocketAddr::new(*ip, self.0))
            .collect()
    }
}

/// A member's credentials for calling other members.
#[derive(Clone)]
pub struct ClusterDialer {
    ca: CaCert,
    cert: NodeCert,
    key: Arc<NodeKey>,
    revocations: SharedRevocations,
    resolver: Arc<dyn PeerResolver>,
    timeouts: Timeouts,
}

impl std::fmt::Debug for ClusterDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDialer")
            .field("node", &self.cert.node_id())
            .finish_non_exhaustive()
    }
}

impl ClusterDialer {
    /// Calls out with `cert` (signed by `ca`, for `key`), refusing servers
    /// whose certificate `revocations` lists.
    pub fn new(
        ca: CaCert,
        cert: NodeCert,
        key: Arc<NodeKey>,
        revocations: SharedRevocations,
        resolver: Arc<dyn PeerResolver>,
        timeouts: Timeouts,
    ) -> Self {
        ClusterDialer {
            ca,
            cert,
            key,
            revocations,
            resolver,
            timeouts,
        }
    }

    /// The certificate this dialer presents.
    pub fn cert(&self) -> &NodeCert {
        &self.cert
    }

    /// A client of `member`'s `Cluster` service, over one mutual TLS
    /// connection to the first of its addresses that answers.
    pub async fn connect(&self, member: &Member) -> Result<ClusterClient<Channel>, PeerError> {
        self.connect_checking(member, self.revocations.clone())
            .await
    }

    /// As [`ClusterDialer::connect`], with `rpc` as the time limit of each
    /// call instead of the usual one: for a call that waits for the server's
    /// own calls (the authority pushing to every member).
    pub(crate) async fn connect_with_rpc_limit(
        &self,
        member: &Member,
        rpc: Duration,
    ) -> Result<ClusterClient<Channel>, PeerError> {
        let mut patient = self.clone();
        patient.timeouts.rpc = rpc;
        patient.connect(member).await
    }

    /// As [`ClusterDialer::connect`], with another revocation list for the
    /// server's certificate (the last push to a removed node, whose
    /// certificate the current list already refuses).
    pub(crate) async fn connect_checking(
        &self,
        member: &Member,
        revocations: SharedRevocations,
    ) -> Result<ClusterClient<Channel>, PeerError> {
        let mut last = "it has no address".to_string();
        for address in self.resolver.addresses(member) {
            match self
                .connect_to(member.id, address, revocations.clone())
                .await
            {
                Ok(client) => return Ok(client),
                Err(e) => {
                    tracing::debug!(node = %member.id, %address, "cannot reach member: {e}");
                    last = e.to_string();
                }
            }
        }
        Err(PeerError::MemberUnreachable {
            node: member.id,
            hostname: member.hostname.clone(),
            detail: last,
        })
    }

    /// A client of the `Cluster` service at `address`, which must be node `node`.
    pub async fn connect_to(
        &self,
        node: NodeId,
        address: SocketAddr,
        revocations: SharedRevocations,
    ) -> Result<ClusterClient<Channel>, PeerError> {
        let config =
            cluster_client_config(&self.ca, &self.cert, &self.key, revocations, node.uuid())?;
        let (channel, _) = transport::connect(address, config, &self.timeouts).await?;
        Ok(ClusterClient::new(channel))
    }

    /// Whether `member` refuses this node's certificate: the TLS error it
    /// ends a fresh connection with (an alert such as `CertificateRevoked`),
    /// read before anything is written, so no other failure can come first.
    /// `None` if it said nothing within the connect time limit, or cannot
    /// be reached.
    pub(crate) async fn refusal_of_own_certificate(
        &self,
        member: &Member,
    ) -> Option<rustls::Error> {
        let address = self.resolver.addresses(member).into_iter().next()?;
        let config = cluster_client_config(
            &self.ca,
            &self.cert,
            &self.key,
            self.revocations.clone(),
            member.id.uuid(),
        )
        .ok()?;
        transport::tls_verdict(address, config, self.timeouts.connect).await
    }
}

/// An admin member's connection to an appliance being joined: one TLS
/// connection over the join channel, whose server certificate fingerprint
/// is what the PAKE binds.
#[derive(Debug, Clone)]
pub struct JoinConnection {
    client: JoinClient<Channel>,
    address: SocketAddr,
    peer: CertFingerprint,
    peer_cert: Vec<u8>,
}

impl JoinConnection {
    /// Connects to the join port at `address`, presenting `cert` (the
    /// caller's node certificate) with `key`.
    pub async fn connect(
        address: SocketAddr,
        cert: &NodeCert,
        key: &NodeKey,
        timeouts: &Timeouts,
    ) -> Result<JoinConnection, PeerError> {
        let config = join_client_config(cert, key)?;
        let (channel, seen) = transport::connect(address, config, timeouts).await?;
        Ok(JoinConnection {
            client: JoinClient::new(channel),
            address,
            peer: seen.fingerprint,
            peer_cert: seen.cert_der,
        })
    }

    /// The address connected to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// SHA-256 of the certificate the server showed on this connection.
    pub fn peer_fingerprint(&self) -> CertFingerprint {
        self.peer
    }

    /// The certificate the server showed (DER).
    pub fn peer_cert_der(&self) -> &[u8] {
        &self.peer_cert
    }

    /// Asks for the appliance's facts.
    pub async fn facts(&self) -> Result<pb::FactsReply, PeerError> {
        self.client
            .clone()
            .facts(pb::FactsRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| PeerError::Refused {
                peer: self.address.to_string(),
                call: "Facts",
                message: s.message().to_string(),
            })
    }

    /// Opens the `Handshake` stream: frames sent on the returned sender go
    /// up, the appliance's come back on the stream.
    pub async fn handshake(
        &self,
    ) -> Result<
        (
            mpsc::Sender<pb::HandshakeFrame>,
            Streaming<pb::HandshakeFrame>,
        ),
        PeerError,
    > {
        let (tx, rx) = mpsc::channel(4);
        let inbound = self
            .client
            .clone()
            .handshake(ReceiverStream::new(rx))
            .await
            .map_err(|s| PeerError::Refused {
                peer: self.address.to_string(),
                call: "Handshake",
                message: s.message().to_string(),
            })?
            .into_inner();
        Ok((tx, inbound))
    }
}
