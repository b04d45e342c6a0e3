//! The authority is the only source of configurations and certificates: a
//! member that is not the authority cannot push a configuration, cannot
//! have a certificate signed for a node it does not add, and a joiner gets
//! a certificate only for the key its handshake confirmed. Changes made
//! through any member still reach everyone (pushed by the authority), a
//! removed node is still told last, and a node removed while it was down
//! says so when it catches up. Each refusal leaves the cluster as it was.
#![allow(clippy::unwrap_used)]

mod common;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use appliance_cluster::{
    CertFingerprint, Change, JoinCodeSlot, Member, MemberState, NodeId, SlotPolicy,
};
use appliance_peering::pb::handshake_frame::Body;
use appliance_peering::pb::{self, HandshakeFrame};
use appliance_peering::{
    ClusterDialer, ClusterState, JoinProgress, JoinSlot, NodeStatus, PeerError,
};
use appliance_pki::tls::join_server_config;
use appliance_pki::{self_signed_join_cert, NodeCsr, NodeKey, NodeSubject, SharedRevocations};
use common::*;
use prost::Message;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

/// A founder A (the authority) with B and C joined through it.
async fn three(lab: &Lab) -> (TestNode, TestNode, TestNode) {
    let a = lab.founder(11).await;
    let b = lab.candidate(lab.spec(12), 1, SlotPolicy::default()).await;
    assert!(done(&join(&a, b.addr, b.code(), &[F]).await));
    let c = lab.candidate(lab.spec(13), 2, SlotPolicy::default()).await;
    assert!(done(&join(&a, c.addr, c.code(), &[F]).await));
    assert_eq!(c.generation(), 3);
    (a, b, c)
}

/// The credentials a joined node got, for calling members directly.
fn dialer_of(node: &TestNode, lab: &Lab) -> ClusterDialer {
    let bundle = node.hooks.joined.lock().unwrap().clone().unwrap();
    ClusterDialer::new(
        bundle.ca,
        bundle.cert,
        node.key.clone(),
        SharedRevocations::default(),
        lab.resolver.clone(),
        lab.timeouts,
    )
}

fn member_of(node: &TestNode) -> Member {
    node.state().config.member(&node.id()).unwrap().clone()
}

fn wire(state: &ClusterState) -> pb::ClusterState {
    pb::ClusterState {
        config_json: serde_json::to_string(&state.config).unwrap(),
        revocations_json: serde_json::to_string(&state.revocations).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_is_not_the_authority_cannot_push() {
    let lab = Lab::new(31);
    let (a, b, c) = three(&lab).await;
    let before = snapshot(&a, &[&a, &b, &c]).await;
    // B makes up the next generation (C made active) and pushes it.
    let current = c.state();
    let forged = ClusterState {
        config: current
            .config
            .apply(&Change::SetState {
                node: c.id(),
                state: MemberState::Active,
            })
            .unwrap(),
        revocations: current.revocations,
    };
    assert_eq!(forged.generation(), 4);
    let dialer = dialer_of(&b, &lab);
    for target in [&c, &a] {
        let mut client = dialer.connect(&member_of(target)).await.unwrap();
        let err = client.push_config(wire(&forged)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        assert!(
            err.message().contains("is not the cluster's authority")
                && err.message().contains("node-11"),
            "{err:?}"
        );
    }
    assert_eq!(snapshot(&a, &[&a, &b, &c]).await, before);

    // The same change made through B is pushed by the authority, and taken.
    let report = b
        .node
        .apply_change(Change::SetState {
            node: c.id(),
            state: MemberState::Active,
        })
        .await
        .unwrap();
    assert_eq!(report.state.generation(), 4);
    let mut reached: Vec<NodeId> = report.pushes.iter().map(|p| p.node).collect();
    reached.sort();
    let mut others = vec![a.id(), c.id()];
    others.sort();
    assert_eq!(reached, others, "{:?}", report.pushes);
    assert!(
        report.pushes.iter().all(|p| p.result == Ok(4)),
        "{:?}",
        report.pushes
    );
    for n in [&a, &b, &c] {
        assert_eq!(n.state(), report.state);
    }
    assert_eq!(c.generations(), [3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_have_certificates_signed_for_other_nodes() {
    let lab = Lab::new(32);
    let (a, b, c) = three(&lab).await;
    let before = snapshot(&a, &[&a, &b, &c]).await;
    let mut client = dialer_of(&b, &lab).connect(&member_of(&a)).await.unwrap();
    // B's own key, in requests for other nodes.
    let key = NodeKey::generate().unwrap();
    let request = |member: &Member, named: &Member| {
        let subject = NodeSubject {
            node_id: named.id.uuid(),
            hostname: named.hostname.clone(),
            addresses: named.addresses.clone(),
        };
        pb::AdmitRequest {
            member_json: serde_json::to_string(member).unwrap(),
            csr_der: NodeCsr::build(&key, &subject).unwrap().der().to_vec(),
        }
    };
    let joining = |m: &Member| Member {
        state: MemberState::Joining,
        ..m.clone()
    };
    let a_member = member_of(&a);
    assert_eq!(a_member.state, MemberState::Active);
    let stranger = Member {
        id: NodeId(Uuid::new_v4()),
        hostname: "node-40".into(),
        addresses: vec![lab.ip(40)],
        ..joining(&member_of(&c))
    };
    let other_stranger = Member {
        id: NodeId(Uuid::new_v4()),
        ..stranger.clone()
    };
    let cases = [
        // An existing active member's id (the authority's own).
        (
            "active member",
            request(&joining(&a_member), &a_member),
            "already a member",
        ),
        // The caller's own id.
        (
            "caller",
            request(&joining(&member_of(&b)), &member_of(&b)),
            "already a member",
        ),
        // A random node id, not the one being added.
        (
            "random id",
            request(&stranger, &other_stranger),
            "request names node",
        ),
        // A new node, but not joining: it would count as running its services.
        (
            "active newcomer",
            request(
                &Member {
                    state: MemberState::Active,
                    ..stranger.clone()
                },
                &stranger,
            ),
            "not active",
        ),
    ];
    for (what, req, says) in cases {
        let err = client.admit(req).await.unwrap_err();
        assert!(err.message().contains(says), "{what}: {err:?}");
        assert_eq!(snapshot(&a, &[&a, &b, &c]).await, before, "{what}");
    }
    // Nothing was issued to the new ids either (the snapshot has the rest).
    let issued = a.record().await.issued;
    for id in [stranger.id, other_stranger.id] {
        assert!(!issued.contains_key(&id), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_through_a_member_tells_the_removed_node_last() {
    let lab = Lab::new(33);
    let (a, b, c) = three(&lab).await;
    let c_cert = c.hooks.joined.lock().unwrap().clone().unwrap().cert;
    let report = b.node.remove_member(c.id()).await.unwrap();
    assert_eq!(report.generation, 5);
    assert!(
        report.pushes.iter().all(|p| p.result.is_ok()),
        "{:?}",
        report.pushes
    );
    assert_eq!(report.removed_node.node, c.id());
    assert_eq!(report.removed_node.result, Ok(5));
    assert_eq!(*c.hooks.left.lock().unwrap(), Some(5));
    assert_eq!(c.node.status(), NodeStatus::Idle);
    assert_eq!(b.generations(), [2, 3, 4, 5]);
    for n in [&a, &b] {
        let s = n.state();
        assert_eq!(s, a.state());
        assert!(s.config.member(&c.id()).is_none());
        assert!(s.revocations.is_revoked(&c_cert));
    }

    // The authority cannot be removed through a member, nor its back-end
    // role given to another node (the CA key would not follow, and members
    // would refuse the next configuration from the old authority).
    let before = snapshot(&a, &[&a, &b]).await;
    let err = b.node.remove_member(a.id()).await.unwrap_err();
    assert!(
        err.to_string().contains("holds the cluster CA key"),
        "{err}"
    );
    let err = b
        .node
        .apply_change(Change::SetRoles {
            roles: [(a.id(), roles(&[F])), (b.id(), roles(&[F, B]))]
                .into_iter()
                .collect(),
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("holds the cluster CA key")
            && err
                .to_string()
                .contains("would make node-12 the back-end node"),
        "{err}"
    );
    assert_eq!(snapshot(&a, &[&a, &b]).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_removed_while_it_was_down_says_so_when_it_catches_up() {
    let lab = Lab::new(34);
    let (a, b, mut c) = three(&lab).await;
    c.stop().await;
    let report = a.node.remove_member(c.id()).await.unwrap();
    assert!(report.removed_node.result.is_err(), "{report:?}");
    lab.start(&mut c).await;
    let err = c.node.catch_up().await.unwrap_err();
    assert!(matches!(err, PeerError::RemovedWhileDown { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("this node was removed from the cluster while it was down"),
        "{err}"
    );
    assert_eq!(c.generation(), 3);
    // A member that was only down catches up from the authority, B's
    // (non-authority) answer not needed.
    let mut b = b;
    b.stop().await;
    a.node
        .apply_change(Change::set_roles(a.id(), [B]))
        .await
        .unwrap();
    lab.start(&mut b).await;
    assert_eq!(b.node.catch_up().await.unwrap(), 6);
    assert_eq!(b.state(), a.state());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_request_for_another_key_than_the_handshake_confirmed_is_refused() {
    let lab = Lab::new(35);
    let a = lab.founder(11).await;
    let b = lab.candidate(lab.spec(12), 1, SlotPolicy::default()).await;
    assert!(done(&join(&a, b.addr, b.code(), &[F]).await));
    let x = KeySwapJoiner::start(&lab, 13).await;
    let before = snapshot(&a, &[&a, &b]).await;
    let events = join(&a, x.addr, x.code(), &[F]).await;
    let reason = failure(&events);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, JoinProgress::Handshake { .. })),
        "the handshake itself succeeds (the joiner knows its code): {events:#?}"
    );
    assert!(
        reason.contains("another key than its join certificate"),
        "{reason}"
    );
    assert!(reason.contains("nothing was changed"), "{reason}");
    assert!(!events
        .iter()
        .any(|e| matches!(e, JoinProgress::Certified { .. })));
    assert!(!x.got_bundle.load(Ordering::SeqCst));
    assert_eq!(snapshot(&a, &[&a, &b]).await, before);
    assert!(!a.record().await.issued.contains_key(&x.id));
}

/// An appliance that runs the joiner's side of the handshake honestly, with
/// the code its slot shows, and then asks for a certificate for another key
/// than the one of its join certificate (the one the PAKE bound).
struct KeySwapJoiner {
    addr: SocketAddr,
    id: NodeId,
    slot: Slot,
    got_bundle: Arc<AtomicBool>,
}

#[derive(Clone)]
struct KeySwapService {
    facts: pb::FactsReply,
    fingerprint: CertFingerprint,
    slot: Slot,
    /// The fingerprint of the client certificate of the connection served.
    admin: Arc<Mutex<Option<CertFingerprint>>>,
    csr: Vec<u8>,
    got_bundle: Arc<AtomicBool>,
}

impl KeySwapJoiner {
    async fn start(lab: &Lab, n: u8) -> KeySwapJoiner {
        let key = NodeKey::generate().unwrap();
        let other = NodeKey::generate().unwrap();
        let id = NodeId(Uuid::new_v4());
        let subject = NodeSubject {
            node_id: id.uuid(),
            hostname: format!("node-{n}"),
            addresses: vec![lab.ip(n)],
        };
        let cert = self_signed_join_cert(&key, &subject, SystemTime::now()).unwrap();
        let fingerprint = CertFingerprint::of_certificate_der(cert.der());
        let slot: Slot = Arc::new(Mutex::new(JoinCodeSlot::new(
            StdRng::seed_from_u64(9),
            SlotPolicy::default(),
            Instant::now(),
        )));
        let got_bundle = Arc::new(AtomicBool::new(false));
        let service = KeySwapService {
            facts: pb::FactsReply {
                node_id: id.to_string(),
                hostname: subject.hostname.clone(),
                addresses: vec![lab.ip(n).to_string()],
                version: "0.1.0".into(),
                unix_time_ms: 0,
                mtu: 1500,
                fingerprint: fingerprint.to_string(),
            },
            fingerprint,
            slot: slot.clone(),
            admin: Arc::new(Mutex::new(None)),
            csr: NodeCsr::build(&other, &subject).unwrap().der().to_vec(),
            got_bundle: got_bundle.clone(),
        };
        let tls = TlsAcceptor::from(join_server_config(&cert, &key).unwrap());
        let listener = TcpListener::bind((lab.ip(n), 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (conns, incoming) = mpsc::channel::<Result<Conn, io::Error>>(4);
        let admin = service.admin.clone();
        tokio::spawn(async move {
            for _ in 0..4 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let Ok(stream) = tls.accept(tcp).await else {
                    continue;
                };
                let shown = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
                *admin.lock().unwrap() = Some(CertFingerprint::of_certificate_der(&shown));
                if conns.send(Ok(Conn(stream))).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::join_server::JoinServer::new(service))
                .serve_with_incoming(ReceiverStream::new(incoming)),
        );
        KeySwapJoiner {
            addr,
            id,
            slot,
            got_bundle,
        }
    }

    fn code(&self) -> appliance_cluster::JoinCode {
        self.slot
            .lock()
            .unwrap()
            .current(Instant::now())
            .unwrap()
            .0
            .clone()
    }
}

#[tonic::async_trait]
impl pb::join_server::Join for KeySwapService {
    async fn facts(
        &self,
        _: Request<pb::FactsRequest>,
    ) -> Result<Response<pb::FactsReply>, Status> {
        let mut facts = self.facts.clone();
        facts.unix_time_ms = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        Ok(Response::new(facts))
    }

    type HandshakeStream = ReceiverStream<Result<HandshakeFrame, Status>>;

    async fn handshake(
        &self,
        req: Request<Streaming<HandshakeFrame>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let this = self.clone();
        let admin = this.admin.lock().unwrap().unwrap();
        tokio::spawn(async move {
            let frame = |body| Ok(HandshakeFrame { body: Some(body) });
            let Some(Body::Pake(hello)) = next(&mut inbound).await else {
                return;
            };
            let (confirming, reply) = this
                .slot
                .lock()
                .unwrap()
                .receive_hello(&hello, this.fingerprint, admin, Instant::now())
                .unwrap();
            tx.send(frame(Body::Pake(reply))).await.unwrap();
            let Some(Body::Pake(confirm)) = next(&mut inbound).await else {
                return;
            };
            let (mut channel, mine) = this
                .slot
                .lock()
                .unwrap()
                .receive_confirm(confirming, &confirm, Instant::now())
                .unwrap();
            tx.send(frame(Body::Pake(mine))).await.unwrap();
            let request = pb::JoinRequest { csr_der: this.csr };
            let sealed = channel.seal(&request.encode_to_vec()).unwrap();
            tx.send(frame(Body::Sealed(sealed))).await.unwrap();
            // The admin side must hang up rather than send a bundle.
            if let Some(Body::Sealed(_)) = next(&mut inbound).await {
                this.got_bundle.store(true, Ordering::SeqCst);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn next(inbound: &mut Streaming<HandshakeFrame>) -> Option<Body> {
    tokio::time::timeout(LIMIT, inbound.message())
        .await
        .ok()?
        .ok()
        .flatten()
        .and_then(|f| f.body)
}

/// One accepted TLS connection, served by tonic.
struct Conn(tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for Conn {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
