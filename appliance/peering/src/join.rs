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
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, UNIX_EPOCH};

use appliance_cluster::pake::{AdminHandshake, PakeError};
use appliance_cluster::preflight::{self, ClockSample, Reachability};
use appliance_cluster::rand_core::OsRng;
use appliance_cluster::{
    CandidateFacts, CertFingerprint, Change, ClusterFacts, JoinCode, NodeId, PreflightFailure,
    Role, SecureChannel,
};
use appliance_pki::{CaCert, NodeCert, NodeCsr, PkiError};
use futures::Stream;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use uuid::Uuid;

use crate::authority::AuthorityError;
use crate::client::JoinConnection;
use crate::error::PeerError;
use crate::node::PeerNode;
use crate::pb::handshake_frame::Body;
use crate::pb::{self, HandshakeFrame};
use crate::state::ClusterState;

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

struct Events(mpsc::Sender<JoinProgress>);

impl Events {
    async fn send(&self, e: JoinProgress) {
        // An administrator who stopped listening does not stop the join.
        let _ = self.0.send(e).await;
    }
}

/// The admin side of one join's `Handshake` stream.
struct AdminStream {
    up: mpsc::Sender<HandshakeFrame>,
    down: Streaming<HandshakeFrame>,
    step: Duration,
}

impl AdminStream {
    async fn send(&self, body: Body) -> Result<(), JoinError> {
        self.up
            .send(HandshakeFrame { body: Some(body) })
            .await
            .map_err(|_| JoinError::HungUp)
    }

    async fn next(&mut self, what: &'static str) -> Result<Body, JoinError> {
        let limit = self.step;
        match tokio::time::timeout(limit, self.down.message()).await {
            Err(_) => Err(JoinError::Silent { what, limit }),
            Ok(Err(s)) => Err(JoinError::RefusedBefore {
                what,
                message: s.message().to_string(),
            }),
            Ok(Ok(None)) => Err(JoinError::HungUpBefore { what }),
            Ok(Ok(Some(HandshakeFrame { body: None }))) => Err(JoinError::EmptyFrame { what }),
            Ok(Ok(Some(HandshakeFrame { body: Some(b) }))) => Ok(b),
        }
    }

    async fn next_pake(&mut self, what: &'static str) -> Result<Vec<u8>, JoinError> {
        match self.next(what).await? {
            Body::Pake(m) => Ok(m),
            Body::Sealed(_) => Err(JoinError::SealedInstead { what }),
        }
    }

    async fn next_sealed(
        &mut self,
        channel: &mut SecureChannel,
        what: &'static str,
    ) -> Result<Vec<u8>, JoinError> {
        match self.next(what).await? {
            Body::Sealed(s) => Ok(channel.open(&s)?),
            Body::Pake(_) => Err(JoinError::PakeInstead { what }),
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
    ) -> Result<(NodeId, u64), JoinError> {
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
                return Err(JoinError::Preflight {
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
            return Err(JoinError::Preflight {
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
        let (confirming, confirm) = hs.receive_reply(&reply).map_err(JoinError::Pake)?;
        stream.send(Body::Pake(confirm)).await?;
        let theirs = stream.next_pake("handshake confirmation").await?;
        let mut channel = confirming
            .receive_confirm(&theirs)
            .map_err(JoinError::Pake)?;
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
            JoinError::Undecodable {
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
            .map_err(JoinError::Admit)?;
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
    ) -> Result<(), JoinError> {
        let bundle = pb::JoinBundle {
            node_cert_der: cert.der().to_vec(),
            ca_cert_der: ca.der().to_vec(),
            state: Some(state.to_pb().map_err(PeerError::from)?),
        };
        let sealed = channel.seal(&bundle.encode_to_vec())?;
        stream.send(Body::Sealed(sealed)).await?;
        let ack = stream.next_sealed(channel, "acknowledgement").await?;
        let ack = pb::JoinAck::decode(ack.as_slice()).map_err(|source| JoinError::Undecodable {
            what: "acknowledgement",
            source,
        })?;
        if ack.accepted {
            Ok(())
        } else {
            Err(JoinError::MembershipRefused { detail: ack.detail })
        }
    }

    /// The appliance did not confirm it stored its membership: take it out
    /// again (its certificate revoked), so the cluster does not wait for a
    /// node that does not know it is a member.
    async fn roll_back_join(&self, node: NodeId, reason: JoinError) -> JoinError {
        let reason = Box::new(reason);
        match self.apply_change(Change::Remove { node }).await {
            Ok(report) => JoinError::TakenOut {
                reason,
                generation: report.state.generation(),
            },
            Err(error) => JoinError::TakeOutFailed { reason, error },
        }
    }
}

/// The candidate as its facts and its connection show it.
fn candidate_facts(
    conn: &JoinConnection,
    facts: &pb::FactsReply,
    roles: BTreeSet<Role>,
    (sent, received): (std::time::SystemTime, std::time::SystemTime),
) -> Result<CandidateFacts, JoinError> {
    let bad = |what: &'static str, detail: String| JoinError::Unreadable {
        address: conn.address(),
        what,
        detail,
    };
    let node_id = Uuid::parse_str(&facts.node_id)
        .map(NodeId)
        .map_err(|e| bad("node id", format!("{:?}: {e}", facts.node_id)))?;
    let addresses = facts
        .addresses
        .iter()
        .map(|a| {
            a.parse::<IpAddr>()
                .map_err(|e| bad("address", format!("{a:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ms = facts.unix_time_ms.unsigned_abs();
    let candidate = if facts.unix_time_ms >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_millis(ms))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_millis(ms))
    }
    .ok_or_else(|| bad("time", facts.unix_time_ms.to_string()))?;
    let shown = conn.peer_fingerprint();
    if facts.fingerprint != shown.to_string() {
        // Only the PAKE can tell a relay from a mistake; it binds `shown`.
        tracing::warn!(
            address = %conn.address(),
            announced = %facts.fingerprint,
            shown = %shown,
            "the appliance announces another certificate than its connection shows"
        );
    }
    Ok(CandidateFacts {
        node_id,
        hostname: facts.hostname.clone(),
        addresses,
        version: facts.version.clone(),
        fingerprint: shown,
        roles,
        mtu: facts.mtu,
        clock: ClockSample {
            cluster_sent: sent,
            candidate,
            cluster_received: received,
        },
        reachability: Reachability::Reachable,
    })
}

/// The request must name the node preflight checked, with its hostname and
/// addresses, and be for the key of `join_cert` (DER), the certificate the
/// appliance's connection showed and the PAKE bound: the certificate signed
/// is then for the key that was authenticated, not one the appliance (or a
/// relay that knew the code) chose afterwards.
fn check_csr(
    csr: &NodeCsr,
    candidate: &CandidateFacts,
    join_cert: &[u8],
) -> Result<(), CsrMismatch> {
    let verified = csr.verify().map_err(CsrMismatch::Unverified)?;
    match verified.matches_certificate(join_cert) {
        Ok(true) => {}
        Ok(false) => {
            return Err(CsrMismatch::OtherKey {
                join_cert: candidate.fingerprint,
            })
        }
        Err(e) => return Err(CsrMismatch::JoinCert(e)),
    }
    let subject = verified.subject;
    if subject.node_id != candidate.node_id.uuid() {
        return Err(CsrMismatch::Node {
            asked: subject.node_id,
            facts: candidate.node_id,
        });
    }
    if !subject.hostname.eq_ignore_ascii_case(&candidate.hostname) {
        return Err(CsrMismatch::Host {
            asked: subject.hostname,
            facts: candidate.hostname.clone(),
        });
    }
    let asked: BTreeSet<IpAddr> = subject.addresses.iter().copied().collect();
    let facts: BTreeSet<IpAddr> = candidate.addresses.iter().copied().collect();
    if asked != facts {
        return Err(CsrMismatch::Addresses { asked, facts });
    }
    Ok(())
}

/// Why a join stopped (the admin side). Each message says what changed in
/// the cluster: nothing, unless it says so.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JoinError {
    /// This node's own part failed (not a member, no authority, a push).
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The appliance is unreachable or does not fit the cluster.
    #[error("preflight failed: {failures}; nothing was changed")]
    Preflight {
        /// Every failure, joined with "; ".
        failures: String,
    },
    /// Its facts do not read.
    #[error("the appliance at {address} sent an unreadable {what}: {detail}; nothing was changed")]
    Unreadable {
        /// Its join port.
        address: SocketAddr,
        /// The fact.
        what: &'static str,
        /// The value and what is wrong with it.
        detail: String,
    },
    /// The handshake stream is closed.
    #[error("the appliance hung up")]
    HungUp,
    /// No message within the step limit.
    #[error("the appliance sent no {what} within {limit:?}")]
    Silent {
        /// The message waited for.
        what: &'static str,
        /// The step limit.
        limit: Duration,
    },
    /// The appliance ended the stream with an error status.
    #[error("the appliance refused before its {what}: {message}")]
    RefusedBefore {
        /// The message waited for.
        what: &'static str,
        /// The status message.
        message: String,
    },
    /// The stream ended.
    #[error("the appliance hung up before its {what}")]
    HungUpBefore {
        /// The message waited for.
        what: &'static str,
    },
    /// A frame without a body.
    #[error("the appliance sent an empty frame instead of its {what}")]
    EmptyFrame {
        /// The message waited for.
        what: &'static str,
    },
    /// A sealed payload where a handshake message belongs.
    #[error("the appliance sent a sealed payload instead of its {what}")]
    SealedInstead {
        /// The message waited for.
        what: &'static str,
    },
    /// A handshake message where a sealed payload belongs.
    #[error("the appliance sent a handshake message instead of its {what}")]
    PakeInstead {
        /// The message waited for.
        what: &'static str,
    },
    /// The secure channel refused to seal or open a payload.
    #[error(transparent)]
    Channel(PakeError),
    /// The PAKE failed (wrong code, another certificate, a malformed message).
    #[error("{0}; nothing was changed")]
    Pake(PakeError),
    /// A sealed payload that is not the message expected.
    #[error("the appliance's {what} does not decode: {source}")]
    Undecodable {
        /// The message.
        what: &'static str,
        /// The protobuf error.
        source: prost::DecodeError,
    },
    /// The certificate request does not match what the join checked.
    #[error("{0}; nothing was changed")]
    Csr(#[from] CsrMismatch),
    /// The authority refused to add the node or sign its certificate.
    #[error("{0}; nothing was changed")]
    Admit(AuthorityError),
    /// The appliance refused the bundle.
    #[error("the appliance refused its membership: {detail}")]
    MembershipRefused {
        /// Its reason.
        detail: String,
    },
    /// The appliance did not acknowledge, and was taken out again.
    #[error("{reason}; the node was taken out of the cluster again (generation {generation})")]
    TakenOut {
        /// Why it did not acknowledge.
        reason: Box<JoinError>,
        /// The generation without it.
        generation: u64,
    },
    /// The appliance did not acknowledge, and taking it out failed.
    #[error(
        "{reason}; taking the node out again failed too: {error}; remove it with \
         `appliancectl cluster remove`"
    )]
    TakeOutFailed {
        /// Why it did not acknowledge.
        reason: Box<JoinError>,
        /// Why the removal failed.
        error: PeerError,
    },
}

impl From<PakeError> for JoinError {
    fn from(e: PakeError) -> Self {
        JoinError::Channel(e)
    }
}

/// Why the appliance's certificate request is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CsrMismatch {
    /// Its signature or encoding does not verify.
    #[error("the appliance's {0}")]
    Unverified(PkiError),
    /// Its key is not the join certificate's.
    #[error(
        "the appliance's certificate request is for another key than its join certificate \
         {join_cert} (the one the handshake confirmed)"
    )]
    OtherKey {
        /// The join certificate's fingerprint.
        join_cert: CertFingerprint,
    },
    /// The join certificate does not read.
    #[error("the appliance's join certificate: {0}")]
    JoinCert(PkiError),
    /// Another node id than its facts.
    #[error("the appliance's certificate request names node {asked}, its facts node {facts}")]
    Node {
        /// In the request.
        asked: Uuid,
        /// In the facts.
        facts: NodeId,
    },
    /// Another hostname than its facts.
    #[error("the appliance's certificate request names host {asked:?}, its facts {facts:?}")]
    Host {
        /// In the request.
        asked: String,
        /// In the facts.
        facts: String,
    },
    /// Other addresses than its facts.
    #[error(
        "the appliance's certificate request names the addresses {asked:?}, its facts {facts:?}"
    )]
    Addresses {
        /// In the request.
        asked: BTreeSet<IpAddr>,
        /// In the facts.
        facts: BTreeSet<IpAddr>,
    },
}
