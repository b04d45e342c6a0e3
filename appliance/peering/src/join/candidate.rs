//! The appliance being joined (the candidate): its `Join` service. `Facts` answers what
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

use appliance_cluster::pake::{JoinerConfirming, JoinerFailure, JoinerHandshake};
use appliance_cluster::rand_core::{CryptoRng, OsRng, RngCore};
use appliance_cluster::{CertFingerprint, JoinCodeSlot, Refusal, SecureChannel};
use appliance_pki::{CaCert, NodeCert};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::error::{BundleError, CandidateError};
use crate::node::{JoinedBundle, MemberSetup, PeerNode, Unjoined};
use crate::pb::handshake_frame::Body;
use crate::pb::{self, HandshakeFrame};
use crate::state::ClusterState;
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
            let mut run = CandidateRun {
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

struct CandidateRun {
    node: PeerNode,
    unjoined: Arc<Unjoined>,
    info: PeerInfo,
    inbound: Streaming<HandshakeFrame>,
    tx: mpsc::Sender<Result<HandshakeFrame, Status>>,
}

fn frame(body: Body) -> HandshakeFrame {
    HandshakeFrame { body: Some(body) }
}

impl CandidateRun {
    fn step(&self) -> Duration {
        self.node.inner.timeouts.step
    }

    async fn send(&self, body: Body) -> Result<(), CandidateError> {
        self.tx
            .send(Ok(frame(body)))
            .await
            .map_err(|_| CandidateError::HungUp)
    }

    /// The next frame, within the step time limit.
    async fn next(&mut self, what: &'static str) -> Result<Body, CandidateError> {
        let limit = self.step();
        match tokio::time::timeout(limit, self.inbound.message()).await {
            Err(_) => Err(CandidateError::Silent { what, limit }),
            Ok(Err(s)) => Err(CandidateError::StreamFailed {
                what,
                message: s.message().to_string(),
            }),
            Ok(Ok(None)) => Err(CandidateError::HungUpBefore { what }),
            Ok(Ok(Some(HandshakeFrame { body: None }))) => Err(CandidateError::EmptyFrame { what }),
            Ok(Ok(Some(HandshakeFrame { body: Some(b) }))) => Ok(b),
        }
    }

    async fn next_pake(&mut self, what: &'static str) -> Result<Vec<u8>, CandidateError> {
        match self.next(what).await? {
            Body::Pake(m) => Ok(m),
            Body::Sealed(_) => Err(CandidateError::SealedInstead { what }),
        }
    }

    async fn next_sealed(
        &mut self,
        channel: &mut SecureChannel,
        what: &'static str,
    ) -> Result<Vec<u8>, CandidateError> {
        match self.next(what).await? {
            Body::Sealed(s) => Ok(channel.open(&s)?),
            Body::Pake(_) => Err(CandidateError::PakeInstead { what }),
        }
    }

    async fn run(&mut self) -> Result<(), CandidateError> {
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
                Err(CandidateError::CodeReplaced(Box::new(e)))
            }
        }
    }

    /// The PAKE, joiner side: `hello` in, `reply` out, `confirm` in, `confirm` out.
    async fn confirm(&mut self) -> Result<SecureChannel, CandidateError> {
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
                return Err(CandidateError::Pake(failure.error));
            }
        };
        let confirm = match self.next_pake("confirm").await {
            Ok(m) => m,
            Err(e) => {
                let refusal = lock(&self.unjoined.slot).abandon(confirming, Instant::now());
                return Err(CandidateError::Abandoned {
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
                Err(CandidateError::Pake(failure.error))
            }
        }
    }

    /// After the PAKE: CSR up, bundle down, checked, stored, ack up.
    async fn receive_membership(
        &mut self,
        channel: &mut SecureChannel,
    ) -> Result<(), CandidateError> {
        let csr = self.node.csr()?;
        let request = pb::JoinRequest {
            csr_der: csr.der().to_vec(),
        };
        let sealed = channel.seal(&request.encode_to_vec())?;
        self.send(Body::Sealed(sealed)).await?;
        let bytes = self.next_sealed(channel, "join bundle").await?;
        let bundle =
            pb::JoinBundle::decode(bytes.as_slice()).map_err(CandidateError::UndecodableBundle)?;
        let bundle = self.check_bundle(bundle, channel)?;
        self.node
            .inner
            .hooks
            .joined(&bundle)
            .await
            .map_err(CandidateError::NotStored)?;
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
