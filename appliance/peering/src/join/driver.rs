//! The admin side of a join ([`PeerNode::join_candidate`]), reported as a
//! stream of [`JoinProgress`].
//!
//! Order: connect to the appliance's join port and ask its facts (the
//! round trip proves it reachable and samples its clock); preflight; the
//! PAKE over `Handshake`, bound to this node's certificate and the one the
//! connection shows; the appliance's certificate request, which must be for
//! the key of that certificate; the admission (the node added and its
//! certificate signed, one step of the authority); the bundle, sealed; the
//! appliance's acknowledgement; then the push to every other member (by the
//! authority: members accept configurations from it only). Nothing in the
//! cluster changes before preflight passed, the PAKE confirmed both sides
//! and the request checked out; an appliance that does not acknowledge is
//! taken out again.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use appliance_cluster::pake::AdminHandshake;
use appliance_cluster::preflight::{self};
use appliance_cluster::rand_core::OsRng;
use appliance_cluster::{
    CandidateFacts, Change, ClusterFacts, JoinCode, NodeId, PreflightFailure, Role, SecureChannel,
};
use appliance_pki::{CaCert, NodeCert, NodeCsr};
use futures::Stream;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use super::checks::{candidate_facts, check_csr};
use super::error::DriverError;
use super::progress::{Events, JoinProgress};
use crate::authority::{Admission, Authority};
use crate::client::JoinConnection;
use crate::error::PeerError;
use crate::node::{Membership, PeerNode};
use crate::pb::handshake_frame::Body;
use crate::pb::{self, HandshakeFrame};
use crate::state::ClusterState;

/// The admin side of one join's `Handshake` stream.
struct AdminStream {
    up: mpsc::Sender<HandshakeFrame>,
    down: Streaming<HandshakeFrame>,
    step: Duration,
}

impl AdminStream {
    async fn send(&self, body: Body) -> Result<(), DriverError> {
        self.up
            .send(HandshakeFrame { body: Some(body) })
            .await
            .map_err(|_| DriverError::HungUp)
    }

    async fn next(&mut self, what: &'static str) -> Result<Body, DriverError> {
        let limit = self.step;
        match tokio::time::timeout(limit, self.down.message()).await {
            Err(_) => Err(DriverError::Silent { what, limit }),
            Ok(Err(s)) => Err(DriverError::RefusedBefore {
                what,
                message: s.message().to_string(),
            }),
            Ok(Ok(None)) => Err(DriverError::HungUpBefore { what }),
            Ok(Ok(Some(HandshakeFrame { body: None }))) => Err(DriverError::EmptyFrame { what }),
            Ok(Ok(Some(HandshakeFrame { body: Some(b) }))) => Ok(b),
        }
    }

    async fn next_pake(&mut self, what: &'static str) -> Result<Vec<u8>, DriverError> {
        match self.next(what).await? {
            Body::Pake(m) => Ok(m),
            Body::Sealed(_) => Err(DriverError::SealedInstead { what }),
        }
    }

    async fn next_sealed(
        &mut self,
        channel: &mut SecureChannel,
        what: &'static str,
    ) -> Result<Vec<u8>, DriverError> {
        match self.next(what).await? {
            Body::Sealed(s) => Ok(channel.open(&s)?),
            Body::Pake(_) => Err(DriverError::PakeInstead { what }),
        }
    }
}

impl PeerNode {
    /// Joins the appliance whose join port is `address`, with the `code`
    /// the administrator read on its console and the `roles` asked for.
    /// The stream ends with [`JoinProgress::Done`] or [`JoinProgress::Failed`].
    pub fn join_candidate(
        &self,
        address: SocketAddr,
        code: JoinCode,
        roles: BTreeSet<Role>,
    ) -> impl Stream<Item = JoinProgress> + Send + 'static {
        let (tx, rx) = mpsc::channel(32);
        let node = self.clone();
        tokio::spawn(async move {
            let events = Events(tx);
            let last = match node.drive_join(address, &code, roles, &events).await {
                Ok((node, generation)) => JoinProgress::Done { node, generation },
                Err(e) => {
                    let reason = e.to_string();
                    tracing::warn!(%address, "join failed: {reason}");
                    JoinProgress::Failed { reason }
                }
            };
            events.send(last).await;
        });
        ReceiverStream::new(rx)
    }

    /// The join, phase by phase; each phase reports its own events.
    async fn drive_join(
        &self,
        address: SocketAddr,
        code: &JoinCode,
        roles: BTreeSet<Role>,
        ev: &Events,
    ) -> Result<(NodeId, u64), DriverError> {
        let membership = self.membership()?;
        let authority = self.authority()?;
        ev.send(JoinProgress::Connecting { address }).await;
        let (conn, candidate) = self
            .connect_and_ask_facts(address, &membership, roles, ev)
            .await?;
        let state = authority.current().await.map_err(PeerError::from)?;
        self.preflight(&state, &candidate, ev).await?;
        let (mut stream, mut channel) = self
            .pake(&conn, code, &state, &membership, &candidate, ev)
            .await?;
        // The certificate the PAKE bound (by its fingerprint): the one
        // whose key the new node's certificate must be for.
        let csr = receive_csr(&mut stream, &mut channel, &candidate, conn.peer_cert_der()).await?;
        let node = candidate.node_id;
        let admission = self.admit(authority.as_ref(), &csr, &candidate, ev).await?;
        let (cert, next) = (admission.cert, admission.state);
        let generation = next.generation();
        let delivered = async {
            send_bundle(&mut stream, &mut channel, &cert, &membership.ca, &next).await?;
            receive_ack(&mut stream, &mut channel).await
        }
        .await;
        if let Err(reason) = delivered {
            return Err(self.roll_back_join(node, reason).await);
        }
        self.push_to_others(&next, node, ev).await?;
        Ok((node, generation))
    }

    /// Connects to the appliance's join port and asks its facts: the round
    /// trip proves it reachable and samples its clock. An appliance that
    /// cannot be reached fails preflight.
    async fn connect_and_ask_facts(
        &self,
        address: SocketAddr,
        membership: &Membership,
        roles: BTreeSet<Role>,
        ev: &Events,
    ) -> Result<(JoinConnection, CandidateFacts), DriverError> {
        let timeouts = self.inner.timeouts;
        let clock = self.inner.clock.clone();
        let reached = async {
            let conn =
                JoinConnection::connect(address, &membership.cert, &self.inner.key, &timeouts)
                    .await?;
            let sent = clock();
            let facts = conn.facts().await?;
            let received = clock();
            Ok::<_, PeerError>((conn, facts, sent, received))
        }
        .await;
        let (conn, facts, sent, received) = match reached {
            Ok(r) => r,
            Err(e) => {
                let failure = PreflightFailure::Unreachable {
                    hostname: address.ip().to_string(),
                    address,
                    detail: e.to_string(),
                };
                ev.send(JoinProgress::PreflightFailed {
                    failures: vec![failure.to_string()],
                })
                .await;
                return Err(DriverError::Preflight {
                    failures: failure.to_string(),
                });
            }
        };
        let candidate = candidate_facts(&conn, &facts, roles, (sent, received))?;
        ev.send(JoinProgress::Facts {
            node: candidate.node_id,
            hostname: candidate.hostname.clone(),
            addresses: candidate.addresses.clone(),
            version: candidate.version.clone(),
            fingerprint: candidate.fingerprint,
        })
        .await;
        Ok((conn, candidate))
    }

    /// Does the appliance fit the cluster as the authority has it now?
    async fn preflight(
        &self,
        state: &ClusterState,
        candidate: &CandidateFacts,
        ev: &Events,
    ) -> Result<(), DriverError> {
        let local = self.facts();
        let report = preflight::check(
            &ClusterFacts {
                config: &state.config,
                version: local.version,
                mtus: [(self.node_id(), local.mtu)].into_iter().collect(),
            },
            candidate,
        );
        if !report.is_ok() {
            let failures = report.messages();
            ev.send(JoinProgress::PreflightFailed {
                failures: failures.clone(),
            })
            .await;
            return Err(DriverError::Preflight {
                failures: failures.join("; "),
            });
        }
        ev.send(JoinProgress::PreflightPassed {
            warnings: report.warnings.iter().map(ToString::to_string).collect(),
        })
        .await;
        Ok(())
    }

    /// The PAKE over `Handshake`, bound to this node's certificate and the one
    /// the connection shows; on success, the secure channel for the rest.
    async fn pake(
        &self,
        conn: &JoinConnection,
        code: &JoinCode,
        state: &ClusterState,
        membership: &Membership,
        candidate: &CandidateFacts,
        ev: &Events,
    ) -> Result<(AdminStream, SecureChannel), DriverError> {
        let (up, down) = conn.handshake().await?;
        let mut stream = AdminStream {
            up,
            down,
            step: self.inner.timeouts.step,
        };
        let (hs, hello) = AdminHandshake::start(
            code,
            state.config.cluster_id(),
            membership.fingerprint,
            candidate.fingerprint,
            &mut OsRng,
        );
        stream.send(Body::Pake(hello)).await?;
        let reply = stream.next_pake("handshake reply").await?;
        let (confirming, confirm) = hs.receive_reply(&reply).map_err(DriverError::Pake)?;
        stream.send(Body::Pake(confirm)).await?;
        let theirs = stream.next_pake("handshake confirmation").await?;
        let channel = confirming
            .receive_confirm(&theirs)
            .map_err(DriverError::Pake)?;
        ev.send(JoinProgress::Handshake {
            session: channel.session_id(),
        })
        .await;
        Ok((stream, channel))
    }

    /// The admission: the node added and its certificate signed, in one
    /// step of the authority.
    async fn admit(
        &self,
        authority: &dyn Authority,
        csr: &NodeCsr,
        candidate: &CandidateFacts,
        ev: &Events,
    ) -> Result<Admission, DriverError> {
        let node = candidate.node_id;
        let admission = authority
            .admit(csr, candidate.member())
            .await
            .map_err(DriverError::Admit)?;
        ev.send(JoinProgress::Certified {
            node,
            fingerprint: admission.cert.fingerprint(),
        })
        .await;
        self.accept_local(&admission.state).await;
        ev.send(JoinProgress::Added {
            node,
            generation: admission.state.generation(),
        })
        .await;
        Ok(admission)
    }

    /// The new generation to every other member (by the authority: members
    /// accept configurations from it only). The new node and this one have it.
    async fn push_to_others(
        &self,
        next: &ClusterState,
        node: NodeId,
        ev: &Events,
    ) -> Result<(), DriverError> {
        let generation = next.generation();
        ev.send(JoinProgress::ConfigPushed { node, generation })
            .await;
        ev.send(JoinProgress::ConfigPushed {
            node: self.node_id(),
            generation,
        })
        .await;
        let pushes = self.distribute(next, &[self.node_id(), node]).await?;
        for p in pushes {
            ev.send(match p.result {
                Ok(generation) => JoinProgress::ConfigPushed {
                    node: p.node,
                    generation,
                },
                Err(reason) => JoinProgress::PushFailed {
                    node: p.node,
                    hostname: p.hostname,
                    reason: reason.to_string(),
                },
            })
            .await;
        }
        Ok(())
    }

    /// The appliance did not confirm it stored its membership: take it out
    /// again (its certificate revoked), so the cluster does not wait for a
    /// node that does not know it is a member.
    async fn roll_back_join(&self, node: NodeId, reason: DriverError) -> DriverError {
        let reason = Box::new(reason);
        match self.apply_change(Change::Remove { node }).await {
            Ok(report) => DriverError::TakenOut {
                reason,
                generation: report.state.generation(),
            },
            Err(error) => DriverError::TakeOutFailed { reason, error },
        }
    }
}

/// The appliance's certificate request, checked against its facts and
/// `join_cert` (DER), the certificate the PAKE bound.
async fn receive_csr(
    stream: &mut AdminStream,
    channel: &mut SecureChannel,
    candidate: &CandidateFacts,
    join_cert: &[u8],
) -> Result<NodeCsr, DriverError> {
    let request = stream.next_sealed(channel, "certificate request").await?;
    let request =
        pb::JoinRequest::decode(request.as_slice()).map_err(|source| DriverError::Undecodable {
            what: "join request",
            source,
        })?;
    let csr = NodeCsr::from_der(request.csr_der);
    check_csr(&csr, candidate, join_cert)?;
    Ok(csr)
}

/// The bundle (certificate, CA, state), sealed.
async fn send_bundle(
    stream: &mut AdminStream,
    channel: &mut SecureChannel,
    cert: &NodeCert,
    ca: &CaCert,
    state: &ClusterState,
) -> Result<(), DriverError> {
    let bundle = pb::JoinBundle {
        node_cert_der: cert.der().to_vec(),
        ca_cert_der: ca.der().to_vec(),
        state: Some(state.to_pb().map_err(PeerError::from)?),
    };
    let sealed = channel.seal(&bundle.encode_to_vec())?;
    stream.send(Body::Sealed(sealed)).await
}

/// The appliance's acknowledgement: it stored its membership, or why not.
async fn receive_ack(
    stream: &mut AdminStream,
    channel: &mut SecureChannel,
) -> Result<(), DriverError> {
    let ack = stream.next_sealed(channel, "acknowledgement").await?;
    let ack = pb::JoinAck::decode(ack.as_slice()).map_err(|source| DriverError::Undecodable {
        what: "acknowledgement",
        source,
    })?;
    if ack.accepted {
        Ok(())
    } else {
        Err(DriverError::MembershipRefused { detail: ack.detail })
    }
}
