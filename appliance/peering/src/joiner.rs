//! The appliance being joined: its `Join` service. `Facts` answers what
//! preflight needs; `Handshake` runs the joiner's side of the PAKE against
//! the node's join code slot (every attempt counted there; every refusal
//! logged with the peer's address), then sends its certificate request,
//! checks the bundle it gets back, has the daemon store it, switches the
//! node to cluster mode and acknowledges.
//!
//! Until the PAKE confirmation succeeded nothing received is trusted; after
//! it, the code is spent, so a join that fails later gets a new code.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use appliance_cluster::pake::{JoinerConfirming, JoinerFailure, JoinerHandshake, PakeError};
use appliance_cluster::rand_core::{CryptoRng, OsRng, RngCore};
use appliance_cluster::{
    CertFingerprint, ChangeError, JoinCodeSlot, NodeId, Refusal, SecureChannel,
};
use appliance_pki::{CaCert, NodeCert, PkiError};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::error::{HookError, PeerError};
use crate::node::{JoinedBundle, MemberSetup, PeerNode, Unjoined};
use crate::pb::handshake_frame::Body;
use crate::pb::{self, HandshakeFrame};
use crate::state::{ClusterState, WireError};
use crate::transport::{ChannelKind, PeerInfo};

/// A join code slot as the handshake uses it: [`JoinCodeSlot`] with any
/// RNG, behind one trait so the node can hold it without its type.
pub trait JoinSlot: Send {
    /// Joiner step 1: a `hello` from the admin side whose TLS certificate
    /// is `admin_fp`, this node's being `joiner_fp`.
    fn receive_hello(
        &mut self,
        msg: &[u8],
        joiner_fp: CertFingerprint,
        admin_fp: CertFingerprint,
        now: Instant,
    ) -> Result<(JoinerConfirming, Vec<u8>), JoinerFailure>;
    /// Joiner step 2: the admin's `confirm`.
    fn receive_confirm(
        &mut self,
        confirming: JoinerConfirming,
        msg: &[u8],
        now: Instant,
    ) -> Result<(SecureChannel, Vec<u8>), JoinerFailure>;
    /// The admin side went away between the steps.
    fn abandon(&mut self, confirming: JoinerConfirming, now: Instant) -> Refusal;
    /// A new code (the old one was spent on a join that did not complete).
    fn renew(&mut self, now: Instant);
}

impl<R: RngCore + CryptoRng + Send> JoinSlot for JoinCodeSlot<R> {
    fn receive_hello(
        &mut self,
        msg: &[u8],
        joiner_fp: CertFingerprint,
        admin_fp: CertFingerprint,
        now: Instant,
    ) -> Result<(JoinerConfirming, Vec<u8>), JoinerFailure> {
        JoinerHandshake::receive_hello(msg, self, joiner_fp, admin_fp, now, &mut OsRng)
    }

    fn receive_confirm(
        &mut self,
        confirming: JoinerConfirming,
        msg: &[u8],
        now: Instant,
    ) -> Result<(SecureChannel, Vec<u8>), JoinerFailure> {
        confirming.receive_confirm(msg, self, now)
    }

    fn abandon(&mut self, confirming: JoinerConfirming, now: Instant) -> Refusal {
        confirming.abandon(self, now)
    }

    fn renew(&mut self, now: Instant) {
        JoinCodeSlot::renew(self, now);
    }
}

/// The slot as the node holds it; the daemon keeps its own typed handle on
/// the same mutex to show the code.
pub type SharedSlot = Arc<Mutex<dyn JoinSlot>>;

fn lock(slot: &SharedSlot) -> std::sync::MutexGuard<'_, dyn JoinSlot + 'static> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct JoinService {
    node: PeerNode,
}

impl JoinService {
    pub(crate) fn new(node: PeerNode) -> Self {
        JoinService { node }
    }

    fn admit<T>(&self, req: &Request<T>) -> Result<(PeerInfo, Arc<Unjoined>), Status> {
        let info = req
            .extensions()
            .get::<PeerInfo>()
            .cloned()
            .ok_or_else(|| Status::internal("the connection carries no peer information"))?;
        if info.kind != ChannelKind::Join {
            return Err(Status::failed_precondition(
                "this node is a cluster member; it cannot be joined",
            ));
        }
        let unjoined = self
            .node
            .unjoined()
            .ok_or_else(|| Status::failed_precondition("this node is not waiting to be joined"))?;
        Ok((info, unjoined))
    }
}

#[tonic::async_trait]
impl pb::join_server::Join for JoinService {
    async fn facts(
        &self,
        req: Request<pb::FactsRequest>,
    ) -> Result<Response<pb::FactsReply>, Status> {
        let (info, unjoined) = self.admit(&req)?;
        let facts = self.node.facts();
        let now = (self.node.inner.clock)();
        let unix_time_ms = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        tracing::info!(peer = %info.remote, "join facts asked");
        Ok(Response::new(pb::FactsReply {
            node_id: self.node.node_id().to_string(),
            hostname: facts.hostname,
            addresses: facts.addresses.iter().map(ToString::to_string).collect(),
            version: facts.version,
            unix_time_ms,
            mtu: facts.mtu,
            fingerprint: unjoined.fingerprint.to_string(),
        }))
    }

    type HandshakeStream = ReceiverStream<Result<HandshakeFrame, Status>>;

    async fn handshake(
        &self,
        req: Request<Streaming<HandshakeFrame>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let (info, unjoined) = self.admit(&req)?;
        let (tx, rx) = mpsc::channel(4);
        let node = self.node.clone();
        let inbound = req.into_inner();
        tokio::spawn(async move {
            let peer = info.remote;
            let mut run = JoinerRun {
                node,
                unjoined,
                info,
                inbound,
                tx,
            };
            match run.run().await {
                Ok(()) => tracing::info!(%peer, "joined the cluster"),
                Err(e) => tracing::warn!(%peer, "join refused: {e}"),
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct JoinerRun {
    node: PeerNode,
    unjoined: Arc<Unjoined>,
    info: PeerInfo,
    inbound: Streaming<HandshakeFrame>,
    tx: mpsc::Sender<Result<HandshakeFrame, Status>>,
}

fn frame(body: Body) -> HandshakeFrame {
    HandshakeFrame { body: Some(body) }
}

impl JoinerRun {
    fn step(&self) -> Duration {
        self.node.inner.timeouts.step
    }

    async fn send(&self, body: Body) -> Result<(), JoinedError> {
        self.tx
            .send(Ok(frame(body)))
            .await
            .map_err(|_| JoinedError::HungUp)
    }

    /// The next frame, within the step time limit.
    async fn next(&mut self, what: &'static str) -> Result<Body, JoinedError> {
        let limit = self.step();
        match tokio::time::timeout(limit, self.inbound.message()).await {
            Err(_) => Err(JoinedError::Silent { what, limit }),
            Ok(Err(s)) => Err(JoinedError::StreamFailed {
                what,
                message: s.message().to_string(),
            }),
            Ok(Ok(None)) => Err(JoinedError::HungUpBefore { what }),
            Ok(Ok(Some(HandshakeFrame { body: None }))) => Err(JoinedError::EmptyFrame { what }),
            Ok(Ok(Some(HandshakeFrame { body: Some(b) }))) => Ok(b),
        }
    }

    async fn next_pake(&mut self, what: &'static str) -> Result<Vec<u8>, JoinedError> {
        match self.next(what).await? {
            Body::Pake(m) => Ok(m),
            Body::Sealed(_) => Err(JoinedError::SealedInstead { what }),
        }
    }

    async fn next_sealed(
        &mut self,
        channel: &mut SecureChannel,
        what: &'static str,
    ) -> Result<Vec<u8>, JoinedError> {
        match self.next(what).await? {
            Body::Sealed(s) => Ok(channel.open(&s)?),
            Body::Pake(_) => Err(JoinedError::PakeInstead { what }),
        }
    }

    async fn run(&mut self) -> Result<(), JoinedError> {
        let mut channel = self.confirm().await?;
        let now = Instant::now;
        // From here the code is spent: a join that does not complete gets a new one.
        match self.receive_membership(&mut channel).await {
            Ok(()) => Ok(()),
            Err(e) => {
                lock(&self.unjoined.slot).renew(now());
                let ack = pb::JoinAck {
                    accepted: false,
                    detail: e.to_string(),
                };
                if let Ok(sealed) = channel.seal(&ack.encode_to_vec()) {
                    let _ = self.send(Body::Sealed(sealed)).await;
                }
                Err(JoinedError::CodeReplaced(Box::new(e)))
            }
        }
    }

    /// The PAKE, joiner side: `hello` in, `reply` out, `confirm` in, `confirm` out.
    async fn confirm(&mut self) -> Result<SecureChannel, JoinedError> {
        let admin_fp = self.info.fingerprint;
        let joiner_fp = self.unjoined.fingerprint;
        let hello = self.next_pake("hello").await?;
        let step1 =
            lock(&self.unjoined.slot).receive_hello(&hello, joiner_fp, admin_fp, Instant::now());
        let confirming = match step1 {
            Ok((confirming, reply)) => {
                self.send(Body::Pake(reply)).await?;
                confirming
            }
            Err(failure) => {
                let _ = self.send(Body::Pake(failure.reply)).await;
                return Err(JoinedError::Pake(failure.error));
            }
        };
        let confirm = match self.next_pake("confirm").await {
            Ok(m) => m,
            Err(e) => {
                let refusal = lock(&self.unjoined.slot).abandon(confirming, Instant::now());
                return Err(JoinedError::Abandoned {
                    cause: Box::new(e),
                    refusal,
                });
            }
        };
        let step2 = lock(&self.unjoined.slot).receive_confirm(confirming, &confirm, Instant::now());
        match step2 {
            Ok((channel, mine)) => {
                self.send(Body::Pake(mine)).await?;
                tracing::info!(
                    peer = %self.info.remote,
                    session = %channel.session_id(),
                    cluster = %channel.cluster_id(),
                    "join handshake confirmed"
                );
                Ok(channel)
            }
            Err(failure) => {
                let _ = self.send(Body::Pake(failure.reply)).await;
                Err(JoinedError::Pake(failure.error))
            }
        }
    }

    /// After the PAKE: CSR up, bundle down, checked, stored, ack up.
    async fn receive_membership(&mut self, channel: &mut SecureChannel) -> Result<(), JoinedError> {
        let csr = self.node.csr()?;
        let request = pb::JoinRequest {
            csr_der: csr.der().to_vec(),
        };
        let sealed = channel.seal(&request.encode_to_vec())?;
        self.send(Body::Sealed(sealed)).await?;
        let bytes = self.next_sealed(channel, "join bundle").await?;
        let bundle =
            pb::JoinBundle::decode(bytes.as_slice()).map_err(JoinedError::UndecodableBundle)?;
        let bundle = self.check_bundle(bundle, channel)?;
        self.node
            .inner
            .hooks
            .joined(&bundle)
            .await
            .map_err(JoinedError::NotStored)?;
        self.node.become_member(MemberSetup {
            ca: bundle.ca,
            cert: bundle.cert,
            state: bundle.state,
            authority: None,
        })?;
        let ack = pb::JoinAck {
            accepted: true,
            detail: String::new(),
        };
        let sealed = channel.seal(&ack.encode_to_vec())?;
        self.send(Body::Sealed(sealed)).await?;
        Ok(())
    }

    fn check_bundle(
        &self,
        bundle: pb::JoinBundle,
        channel: &SecureChannel,
    ) -> Result<JoinedBundle, BundleError> {
        let ca = CaCert::from_der(bundle.ca_cert_der)?;
        let cert = NodeCert::from_der(bundle.node_cert_der)?;
        let me = self.node.node_id();
        if cert.node_id() != me.uuid() {
            return Err(BundleError::OtherNode {
                named: cert.node_id(),
                me,
            });
        }
        if !cert.matches_key(&self.node.inner.key) {
            return Err(BundleError::OtherKey);
        }
        if !ca.signed(cert.der()) {
            return Err(BundleError::NotSigned {
                ca: ca.fingerprint(),
            });
        }
        let state = bundle
            .state
            .as_ref()
            .ok_or(BundleError::NoConfiguration)
            .and_then(|s| Ok(ClusterState::from_pb(s)?))?;
        if state.config.cluster_id() != channel.cluster_id() {
            return Err(BundleError::OtherCluster {
                config: state.config.cluster_id(),
                handshake: channel.cluster_id(),
            });
        }
        state.config.validate().map_err(BundleError::Invalid)?;
        let member = state.config.member(&me).ok_or(BundleError::NotListed)?;
        if member.fingerprint != CertFingerprint::of_certificate_der(cert.der()) {
            return Err(BundleError::OtherCertificate);
        }
        Ok(JoinedBundle { ca, cert, state })
    }
}

/// Why a join of this appliance stopped (the side being joined).
#[derive(Debug, thiserror::Error)]
pub(crate) enum JoinedError {
    /// The handshake stream is closed.
    #[error("the admin side hung up")]
    HungUp,
    /// No message within the step limit.
    #[error("no {what} within {limit:?}")]
    Silent {
        /// The message waited for.
        what: &'static str,
        /// The step limit.
        limit: Duration,
    },
    /// The stream ended with an error status.
    #[error("the stream failed before the {what}: {message}")]
    StreamFailed {
        /// The message waited for.
        what: &'static str,
        /// The status message.
        message: String,
    },
    /// The stream ended.
    #[error("the admin side hung up before the {what}")]
    HungUpBefore {
        /// The message waited for.
        what: &'static str,
    },
    /// A frame without a body.
    #[error("an empty frame instead of the {what}")]
    EmptyFrame {
        /// The message waited for.
        what: &'static str,
    },
    /// A sealed payload where a handshake message belongs.
    #[error("a sealed payload instead of the {what}")]
    SealedInstead {
        /// The message waited for.
        what: &'static str,
    },
    /// A handshake message where a sealed payload belongs.
    #[error("a handshake message instead of the {what}")]
    PakeInstead {
        /// The message waited for.
        what: &'static str,
    },
    /// The PAKE refused the admin side, or the secure channel a payload.
    #[error(transparent)]
    Pake(#[from] PakeError),
    /// The admin side went away between the PAKE steps.
    #[error("{cause} ({refusal})")]
    Abandoned {
        /// How it went away.
        cause: Box<JoinedError>,
        /// What the join code slot counted.
        refusal: Refusal,
    },
    /// This node's own part (its request, becoming a member).
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The bundle is not protobuf.
    #[error("the join bundle does not decode: {0}")]
    UndecodableBundle(prost::DecodeError),
    /// The bundle does not check out.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The daemon could not store the membership.
    #[error("this appliance could not store its membership: {0}")]
    NotStored(HookError),
    /// A failure after the PAKE: the code is spent and was replaced.
    #[error("{0}; the join code was replaced")]
    CodeReplaced(Box<JoinedError>),
}

/// Why the bundle received is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BundleError {
    /// A certificate does not read.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The certificate is for another node.
    #[error("the certificate received names node {named}, not this node {me}")]
    OtherNode {
        /// The node it names.
        named: Uuid,
        /// This node.
        me: NodeId,
    },
    /// The certificate is for another key.
    #[error("the certificate received is not for this node's key")]
    OtherKey,
    /// The CA did not sign the certificate.
    #[error("the certificate received is not signed by the CA received ({ca})")]
    NotSigned {
        /// The CA's fingerprint.
        ca: String,
    },
    /// No state in the bundle.
    #[error("the join bundle has no cluster configuration")]
    NoConfiguration,
    /// The state does not decode.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The state is another cluster's than the handshake's.
    #[error("the configuration received is for cluster {config}, the handshake for {handshake}")]
    OtherCluster {
        /// The configuration's cluster.
        config: Uuid,
        /// The handshake's cluster.
        handshake: Uuid,
    },
    /// The configuration breaks the membership rules.
    #[error("the configuration received is not valid: {0}")]
    Invalid(ChangeError),
    /// The configuration does not list this node.
    #[error("the configuration received does not list this node")]
    NotListed,
    /// The configuration lists another certificate for this node.
    #[error("the configuration received lists another certificate for this node")]
    OtherCertificate,
}
