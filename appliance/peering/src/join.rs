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

use appliance_cluster::pake::AdminHandshake;
use appliance_cluster::preflight::{self, ClockSample, Reachability};
use appliance_cluster::rand_core::OsRng;
use appliance_cluster::{
    CandidateFacts, CertFingerprint, Change, ClusterFacts, JoinCode, NodeId, PreflightFailure,
    Role, SecureChannel,
};
use appliance_pki::{CaCert, NodeCert, NodeCsr};
use futures::Stream;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use uuid::Uuid;

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
    async fn send(&self, body: Body) -> Result<(), String> {
        self.up
            .send(HandshakeFrame { body: Some(body) })
            .await
            .map_err(|_| "the appliance hung up".to_string())
    }

    async fn next(&mut self, what: &str) -> Result<Body, String> {
        let limit = self.step;
        match tokio::time::timeout(limit, self.down.message()).await {
            Err(_) => Err(format!("the appliance sent no {what} within {limit:?}")),
            Ok(Err(s)) => Err(format!(
                "the appliance refused before its {what}: {}",
                s.message()
            )),
            Ok(Ok(None)) => Err(format!("the appliance hung up before its {what}")),
            Ok(Ok(Some(HandshakeFrame { body: None }))) => Err(format!(
                "the appliance sent an empty frame instead of its {what}"
            )),
            Ok(Ok(Some(HandshakeFrame { body: Some(b) }))) => Ok(b),
        }
    }

    async fn next_pake(&mut self, what: &str) -> Result<Vec<u8>, String> {
        match self.next(what).await? {
            Body::Pake(m) => Ok(m),
            Body::Sealed(_) => Err(format!(
                "the appliance sent a sealed payload instead of its {what}"
            )),
        }
    }

    async fn next_sealed(
        &mut self,
        channel: &mut SecureChannel,
        what: &str,
    ) -> Result<Vec<u8>, String> {
        match self.next(what).await? {
            Body::Sealed(s) => channel.open(&s).map_err(|e| e.to_string()),
            Body::Pake(_) => Err(format!(
                "the appliance sent a handshake message instead of its {what}"
            )),
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
                Err(reason) => {
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
    ) -> Result<(NodeId, u64), String> {
        let membership = self.membership().map_err(|e| e.to_string())?;
        let authority = self.authority().map_err(|e| e.to_string())?;
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
                return Err(format!("preflight failed: {failure}; nothing was changed"));
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

        let state = authority.current().await.map_err(|e| e.to_string())?;
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
            return Err(format!(
                "preflight failed: {}; nothing was changed",
                failures.join("; ")
            ));
        }
        ev.send(JoinProgress::PreflightPassed {
            warnings: report.warnings.iter().map(ToString::to_string).collect(),
        })
        .await;

        // The PAKE, bound to this node's certificate and the one the connection shows.
        let (up, down) = conn.handshake().await.map_err(|e| e.to_string())?;
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
        let nothing = |e: &dyn std::fmt::Display| format!("{e}; nothing was changed");
        let (confirming, confirm) = hs.receive_reply(&reply).map_err(|e| nothing(&e))?;
        stream.send(Body::Pake(confirm)).await?;
        let theirs = stream.next_pake("handshake confirmation").await?;
        let mut channel = confirming
            .receive_confirm(&theirs)
            .map_err(|e| nothing(&e))?;
        ev.send(JoinProgress::Handshake {
            session: channel.session_id(),
        })
        .await;

        // The request, then the admission: the node added and its
        // certificate signed in one step of the authority.
        let request = stream
            .next_sealed(&mut channel, "certificate request")
            .await?;
        let request = pb::JoinRequest::decode(request.as_slice())
            .map_err(|e| format!("the appliance's join request does not decode: {e}"))?;
        let csr = NodeCsr::from_der(request.csr_der);
        check_csr(&csr, &candidate, &join_cert).map_err(|e| nothing(&e))?;
        let node = candidate.node_id;
        let admission = authority
            .admit(&csr, candidate.member())
            .await
            .map_err(|e| nothing(&e))?;
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
            return Err(self.roll_back_join(node, &reason).await);
        }
        ev.send(JoinProgress::ConfigPushed { node, generation })
            .await;
        ev.send(JoinProgress::ConfigPushed {
            node: self.node_id(),
            generation,
        })
        .await;
        let pushes = self
            .distribute(&next, &[self.node_id(), node])
            .await
            .map_err(|e| e.to_string())?;
        for p in pushes {
            ev.send(match p.result {
                Ok(generation) => JoinProgress::ConfigPushed {
                    node: p.node,
                    generation,
                },
                Err(reason) => JoinProgress::PushFailed {
                    node: p.node,
                    hostname: p.hostname,
                    reason,
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
    ) -> Result<(), String> {
        let bundle = pb::JoinBundle {
            node_cert_der: cert.der().to_vec(),
            ca_cert_der: ca.der().to_vec(),
            state: Some(state.to_pb()?),
        };
        let sealed = channel
            .seal(&bundle.encode_to_vec())
            .map_err(|e| e.to_string())?;
        stream.send(Body::Sealed(sealed)).await?;
        let ack = stream.next_sealed(channel, "acknowledgement").await?;
        let ack = pb::JoinAck::decode(ack.as_slice())
            .map_err(|e| format!("the appliance's acknowledgement does not decode: {e}"))?;
        if ack.accepted {
            Ok(())
        } else {
            Err(format!(
                "the appliance refused its membership: {}",
                ack.detail
            ))
        }
    }

    /// The appliance did not confirm it stored its membership: take it out
    /// again (its certificate revoked), so the cluster does not wait for a
    /// node that does not know it is a member.
    async fn roll_back_join(&self, node: NodeId, reason: &str) -> String {
        match self.apply_change(Change::Remove { node }).await {
            Ok(report) => format!(
                "{reason}; the node was taken out of the cluster again (generation {})",
                report.state.generation()
            ),
            Err(e) => format!(
                "{reason}; taking the node out again failed too: {e}; remove it with \
                 `appliancectl cluster remove`"
            ),
        }
    }
}

/// The candidate as its facts and its connection show it.
fn candidate_facts(
    conn: &JoinConnection,
    facts: &pb::FactsReply,
    roles: BTreeSet<Role>,
    (sent, received): (std::time::SystemTime, std::time::SystemTime),
) -> Result<CandidateFacts, String> {
    let bad = |what: &str, detail: String| {
        format!(
            "the appliance at {} sent an unreadable {what}: {detail}; nothing was changed",
            conn.address()
        )
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
fn check_csr(csr: &NodeCsr, candidate: &CandidateFacts, join_cert: &[u8]) -> Result<(), String> {
    let verified = csr.verify().map_err(|e| format!("the appliance's {e}"))?;
    match verified.matches_certificate(join_cert) {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "the appliance's certificate request is for another key than its join \
                 certificate {} (the one the handshake confirmed)",
                candidate.fingerprint
            ))
        }
        Err(e) => return Err(format!("the appliance's join certificate: {e}")),
    }
    let subject = verified.subject;
    if subject.node_id != candidate.node_id.uuid() {
        return Err(format!(
            "the appliance's certificate request names node {}, its facts node {}",
            subject.node_id, candidate.node_id
        ));
    }
    if !subject.hostname.eq_ignore_ascii_case(&candidate.hostname) {
        return Err(format!(
            "the appliance's certificate request names host {:?}, its facts {:?}",
            subject.hostname, candidate.hostname
        ));
    }
    let asked: BTreeSet<IpAddr> = subject.addresses.iter().copied().collect();
    let facts: BTreeSet<IpAddr> = candidate.addresses.iter().copied().collect();
    if asked != facts {
        return Err(format!(
            "the appliance's certificate request names the addresses {asked:?}, its facts {facts:?}"
        ));
    }
    Ok(())
}
