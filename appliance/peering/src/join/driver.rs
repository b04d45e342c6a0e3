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
    Change, ClusterFacts, JoinCode, NodeId, PreflightFailure, Role, SecureChannel,
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
use crate::client::JoinConnection;
use crate::error::PeerError;
use crate::node::PeerNode;
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

    async fn drive_join(
        &self,
        address: SocketAddr,
        code: &JoinCode,
        roles: BTreeSet<Role>,
        ev: &Events,
    ) -> Result<(NodeId, u64), DriverError> {
        let membership = self.membership()?;
        let authority = self.authority()?;
        let timeouts = self.inner.timeouts;
        let clock = self.inner.clock.clone();
        ev.send(JoinProgress::Connecting { address }).await;

        // Reachability and the clock sample come from the Facts round trip.
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
        // The certificate the PAKE binds (by its fingerprint): the one
        // whose key the new node's certificate must be for.
        let join_cert = conn.peer_cert_der().to_vec();
        ev.send(JoinProgress::Facts {
            node: candidate.node_id,
            hostname: candidate.hostname.clone(),
            addresses: candidate.addresses.clone(),
            version: candidate.version.clone(),
            fingerprint: candidate.fingerprint,
        })
        .await;

        let state = authority.current().await.map_err(PeerError::from)?;
        let local = self.facts();
        let report = preflight::check(
            &ClusterFacts {
                config: &state.config,
                version: local.version,
                mtus: [(self.node_id(), local.mtu)].into_iter().collect(),
            },
            &candidate,
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

        // The PAKE, bound to this node's certificate and the one the connection shows.
        let (up, down) = conn.handshake().await?;
        let mut stream = AdminStream {
            up,
            down,
            step: timeouts.step,
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
        let mut channel = confirming
            .receive_confirm(&theirs)
            .map_err(DriverError::Pake)?;
        ev.send(JoinProgress::Handshake {
            session: channel.session_id(),
        })
        .await;

        // The request, then the admission: the node added and its
        // certificate signed in one step of the authority.
        let request = stream
            .next_sealed(&mut channel, "certificate request")
            .await?;
        let request = pb::JoinRequest::decode(request.as_slice()).map_err(|source| {
            DriverError::Undecodable {
                what: "join request",
                source,
            }
        })?;
        let csr = NodeCsr::from_der(request.csr_der);
        check_csr(&csr, &candidate, &join_cert)?;
        let node = candidate.node_id;
        let admission = authority
            .admit(&csr, candidate.member())
            .await
            .map_err(DriverError::Admit)?;
        let (cert, next) = (admission.cert, admission.state);
        ev.send(JoinProgress::Certified {
            node,
            fingerprint: cert.fingerprint(),
        })
        .await;
        let generation = next.generation();
        self.accept_local(&next).await;
        ev.send(JoinProgress::Added { node, generation }).await;

        // The bundle, sealed; then the appliance's acknowledgement.
        let delivered = self
            .deliver_bundle(&mut stream, &mut channel, &cert, &membership.ca, &next)
            .await;
        if let Err(reason) = delivered {
            return Err(self.roll_back_join(node, reason).await);
        }
        ev.send(JoinProgress::ConfigPushed { node, generation })
            .await;
        ev.send(JoinProgress::ConfigPushed {
            node: self.node_id(),
            generation,
        })
        .await;
        let pushes = self.distribute(&next, &[self.node_id(), node]).await?;
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
        Ok((node, generation))
    }

    async fn deliver_bundle(
        &self,
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
        stream.send(Body::Sealed(sealed)).await?;
        let ack = stream.next_sealed(channel, "acknowledgement").await?;
        let ack =
            pb::JoinAck::decode(ack.as_slice()).map_err(|source| DriverError::Undecodable {
                what: "acknowledgement",
                source,
            })?;
        if ack.accepted {
            Ok(())
        } else {
            Err(DriverError::MembershipRefused { detail: ack.detail })
        }
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
