//! A three-node cluster in one process (real servers on loopback TCP, real
//! TLS, real PAKE): forming, joining, pushing every generation, removing,
//! catching up, renewing; then every attack of the issue, each refused with
//! nothing changed in the cluster.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use appliance_cluster::{Change, ClusterConfig, Member, MemberState, NodeId, SlotPolicy};
use appliance_peering::pb::handshake_frame::Body;
use appliance_peering::pb::{self, HandshakeFrame};
use appliance_peering::{ClusterDialer, ClusterState, JoinConnection, JoinProgress, NodeStatus};
use appliance_pki::tls::{join_client_config, join_server_config};
use appliance_pki::{self_signed_join_cert, NodeKey, NodeSubject, SharedRevocations};
use common::*;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use uuid::Uuid;

fn fast_policy() -> SlotPolicy {
    SlotPolicy {
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..SlotPolicy::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_join_and_follow_every_generation() {
    let lab = Lab::new(1);
    let a = lab.founder(11).await;
    assert_eq!(a.generation(), 1);
    assert!(matches!(
        a.node.status(),
        NodeStatus::Member {
            generation: 1,
            authority: true,
            ..
        }
    ));

    // B joins through A (the authority).
    let b = lab.candidate(lab.spec(12), 1, SlotPolicy::default()).await;
    let t0 = Instant::now();
    let events = join(&a, b.addr, b.code(), &[F]).await;
    let join_b = t0.elapsed();
    assert!(done(&events), "{events:#?}");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            JoinProgress::Connecting { .. } => "connecting",
            JoinProgress::Facts { .. } => "facts",
            JoinProgress::PreflightPassed { .. } => "preflight",
            JoinProgress::Handshake { .. } => "handshake",
            JoinProgress::Certified { .. } => "certified",
            JoinProgress::Added { .. } => "added",
            JoinProgress::ConfigPushed { .. } => "pushed",
            JoinProgress::Done { .. } => "done",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "connecting",
            "facts",
            "preflight",
            "handshake",
            "certified",
            "added",
            "pushed",
            "pushed",
            "done"
        ]
    );
    // The preflight warned about the two-node cluster.
    assert!(events.iter().any(|e| matches!(e,
        JoinProgress::PreflightPassed { warnings } if warnings.iter().any(|w| w.contains("no high availability")))));
    assert_eq!(a.generation(), 2);
    assert_eq!(b.state(), a.state());
    assert!(matches!(
        b.node.status(),
        NodeStatus::Member {
            generation: 2,
            authority: false,
            ..
        }
    ));
    let bundle = b.hooks.joined.lock().unwrap().clone().unwrap();
    assert_eq!(bundle.ca, a.formed.as_ref().unwrap().ca);
    assert_eq!(bundle.cert.node_id(), b.id().uuid());
    assert_eq!(
        a.state()
            .config
            .member(&b.id())
            .unwrap()
            .fingerprint
            .to_string(),
        bundle.cert.fingerprint()
    );
    assert!(b.slot.as_ref().unwrap().lock().unwrap().is_used());

    // C joins through B (not the authority: signing and the change are
    // forwarded to A over mutual TLS).
    let c = lab.candidate(lab.spec(13), 2, SlotPolicy::default()).await;
    let t0 = Instant::now();
    let events = join(&b, c.addr, c.code(), &[F]).await;
    let join_c = t0.elapsed();
    assert!(done(&events), "{events:#?}");
    let pushed: Vec<NodeId> = events
        .iter()
        .filter_map(|e| match e {
            JoinProgress::ConfigPushed {
                node,
                generation: 3,
            } => Some(*node),
            _ => None,
        })
        .collect();
    assert_eq!(pushed.len(), 3, "{events:#?}");
    for n in [&a, &b, &c] {
        assert!(pushed.contains(&n.id()));
        assert_eq!(n.state(), a.state());
    }

    // A change proposed on C (forwarded to the authority), pushed to all.
    let report = c
        .node
        .apply_change(Change::SetState {
            node: b.id(),
            state: MemberState::Active,
        })
        .await
        .unwrap();
    assert_eq!(report.state.generation(), 4);
    assert!(
        report.pushes.iter().all(|p| p.result == Ok(4)),
        "{:?}",
        report.pushes
    );
    for n in [&a, &b, &c] {
        assert_eq!(n.state(), report.state);
    }

    // Every member saw every generation since it joined, in order.
    assert_eq!(a.generations(), [1, 2, 3, 4]);
    assert_eq!(b.generations(), [2, 3, 4]);
    assert_eq!(c.generations(), [3, 4]);

    // B renews its certificate; A then reaches B with it.
    let old = bundle.cert.fingerprint();
    let renewed = b.node.renew_certificate().await.unwrap();
    assert_ne!(renewed.fingerprint(), old);
    assert_eq!(*b.hooks.renewed.lock().unwrap(), [renewed.fingerprint()]);
    assert!(a.record().await.issued[&b.id()].contains(&renewed.fingerprint()));
    let report = a
        .node
        .apply_change(Change::SetState {
            node: c.id(),
            state: MemberState::Active,
        })
        .await
        .unwrap();
    assert!(
        report.pushes.iter().all(|p| p.result == Ok(5)),
        "{:?}",
        report.pushes
    );

    eprintln!(
        "join duration in-process: B via the authority {join_b:?}, C via a member {join_c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_was_down_catches_up() {
    let lab = Lab::new(2);
    let a = lab.founder(11).await;
    let mut b = lab.candidate(lab.spec(12), 1, SlotPolicy::default()).await;
    assert!(done(&join(&a, b.addr, b.code(), &[F]).await));
    b.stop().await;

    let c = lab.candidate(lab.spec(13), 2, SlotPolicy::default()).await;
    let events = join(&a, c.addr, c.code(), &[F]).await;
    assert!(done(&events), "{events:#?}");
    let down: Vec<&JoinProgress> = events
        .iter()
        .filter(|e| matches!(e, JoinProgress::PushFailed { node, .. } if *node == b.id()))
        .collect();
    assert_eq!(down.len(), 1, "B is reported as not reached: {events:#?}");
    assert_eq!(b.generation(), 2);

    lab.start(&mut b).await;
    assert_eq!(b.node.catch_up().await.unwrap(), 3);
    assert_eq!(b.state(), a.state());
    assert_eq!(b.generations(), [2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_is_told_and_refused_everywhere() {
    let lab = Lab::new(3);
    let a = lab.founder(11).await;
    let b = lab.candidate(lab.spec(12), 1, SlotPolicy::default()).await;
    assert!(done(&join(&a, b.addr, b.code(), &[F]).await));
    let c = lab.candidate(lab.spec(13), 2, SlotPolicy::default()).await;
    assert!(done(&join(&a, c.addr, c.code(), &[F]).await));
    let c_cert = c.hooks.joined.lock().unwrap().clone().unwrap().cert;
    let c_member = a.state().config.member(&c.id()).unwrap().clone();
    let a_member = a.state().config.member(&a.id()).unwrap().clone();

    // Before: C reaches A.
    let c_dialer = ClusterDialer::new(
        a.formed.as_ref().unwrap().ca.clone(),
        c_cert.clone(),
        c.key.clone(),
        SharedRevocations::default(),
        lab.resolver.clone(),
        lab.timeouts,
    );
    let mut client = c_dialer.connect(&a_member).await.unwrap();
    client
        .get_config(pb::GetConfigRequest { have_generation: 3 })
        .await
        .unwrap();

    let report = a.node.remove_member(c.id()).await.unwrap();
    assert_eq!(report.generation, 5);
    assert!(
        report.pushes.iter().all(|p| p.result.is_ok()),
        "{:?}",
        report.pushes
    );
    assert_eq!(report.removed_node.result, Ok(5));
    assert_eq!(b.generations(), [2, 3, 4, 5]);
    assert_eq!(*c.hooks.left.lock().unwrap(), Some(5));
    assert_eq!(c.node.status(), NodeStatus::Idle);
    for n in [&a, &b] {
        let s = n.state();
        assert!(s.config.member(&c.id()).is_none());
        assert!(s.revocations.is_revoked(&c_cert));
        assert_eq!(s, a.state());
    }
    assert!(!a
        .state()
        .config
        .peer_addresses()
        .contains(&c_member.addresses[0]));

    // After: C's next mutual-TLS call is refused, by A and by B.
    for target in [&a, &b] {
        let member = target.state().config.member(&target.id()).unwrap().clone();
        let refused = async {
            let mut client = c_dialer.connect(&member).await?;
            client
                .get_config(pb::GetConfigRequest { have_generation: 5 })
                .await
                .map_err(|s| appliance_peering::PeerError::Invalid(s.to_string()))
        }
        .await;
        assert!(
            refused.is_err(),
            "{} still answers the removed node",
            member.hostname
        );
    }
    // And C's peer port completes no TLS handshake any more (idle).
    let formed = a.formed.as_ref().unwrap();
    assert!(
        JoinConnection::connect(c.addr, &formed.cert, &a.key, &lab.timeouts)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_of_stale_or_foreign_configurations_are_refused() {
    let lab = Lab::new(4);
    let a = lab.founder(11).await;
    let b = lab.candidate(lab.spec(12), 1, SlotPolicy::default()).await;
    assert!(done(&join(&a, b.addr, b.code(), &[F]).await));
    let old = a.state();
    a.node
        .apply_change(Change::SetState {
            node: b.id(),
            state: MemberState::Active,
        })
        .await
        .unwrap();
    assert_eq!(b.generation(), 3);

    let formed = a.formed.as_ref().unwrap();
    let dialer = ClusterDialer::new(
        formed.ca.clone(),
        formed.cert.clone(),
        a.key.clone(),
        SharedRevocations::default(),
        lab.resolver.clone(),
        lab.timeouts,
    );
    let b_member = a.state().config.member(&b.id()).unwrap().clone();
    let push = |state: ClusterState| {
        let dialer = dialer.clone();
        let member = b_member.clone();
        async move {
            let mut c = dialer.connect(&member).await.unwrap();
            let wire = pb::ClusterState {
                config_json: serde_json::to_string(&state.config).unwrap(),
                revocations_json: serde_json::to_string(&state.revocations).unwrap(),
            };
            c.push_config(wire).await
        }
    };
    let stale = push(old).await.unwrap_err();
    assert!(
        stale.message().contains("older than generation 3"),
        "{stale:?}"
    );

    let founder: Member = a.state().config.member(&a.id()).unwrap().clone();
    let foreign = ClusterState {
        config: ClusterConfig::new(Uuid::new_v4(), founder)
            .unwrap()
            .apply(&Change::Add(b_member.clone()))
            .unwrap(),
        revocations: a.state().revocations,
    };
    let refused = push(foreign).await.unwrap_err();
    assert!(refused.message().contains("for cluster"), "{refused:?}");
    assert_eq!(b.generation(), 3);
    assert_eq!(b.generations(), [2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_serves_only_its_own_calls() {
    let lab = Lab::new(5);
    let a = lab.founder(11).await;
    let x = lab.candidate(lab.spec(12), 1, SlotPolicy::default()).await;
    let formed = a.formed.as_ref().unwrap();

    // A cluster call to an appliance that is not a member (join channel): refused.
    let conn = JoinConnection::connect(x.addr, &formed.cert, &a.key, &lab.timeouts)
        .await
        .unwrap();
    assert_eq!(
        conn.peer_fingerprint(),
        match x.node.status() {
            NodeStatus::Unjoined { fingerprint } => fingerprint,
            other => panic!("{other:?}"),
        }
    );
    let channel = raw_join_channel(x.addr, join_client_config(&formed.cert, &a.key).unwrap()).await;
    let err = pb::cluster_client::ClusterClient::new(channel)
        .get_config(pb::GetConfigRequest { have_generation: 0 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // A join call to a member (cluster channel): refused.
    let conn = JoinConnection::connect(a.addr, &formed.cert, &a.key, &lab.timeouts)
        .await
        .unwrap();
    let err = conn.facts().await.unwrap_err();
    assert!(err.to_string().contains("cannot be joined"), "{err}");

    // The same server switches once X has joined: it then refuses Facts.
    assert!(done(&join(&a, x.addr, x.code(), &[F]).await));
    let conn = JoinConnection::connect(x.addr, &formed.cert, &a.key, &lab.timeouts)
        .await
        .unwrap();
    assert!(conn.facts().await.is_err());
}

async fn raw_join_channel(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let config = config.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let tls = TlsConnector::from(config)
                    .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_do_not_stall_the_server() {
    let lab = Lab::new(6);
    let a = lab.founder(11).await;
    let b = lab.candidate(lab.spec(12), 1, SlotPolicy::default()).await;
    // Ten clients that connect and never start TLS.
    let mut stalled = Vec::new();
    for _ in 0..10 {
        stalled.push(TcpStream::connect(b.addr).await.unwrap());
    }
    let t0 = Instant::now();
    let events = join(&a, b.addr, b.code(), &[F]).await;
    assert!(done(&events), "{events:#?}");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // The server drops them once the TLS handshake time is up.
    for mut s in stalled {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            use tokio::io::AsyncReadExt;
            s.read(&mut buf).await
        })
        .await
        .expect("the stalled connection is closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}

// ---- Attacks: each refused, nothing changed in the cluster. ----

/// A cluster of A (authority) and B, ready for an attack.
async fn cluster(lab: &Lab) -> (TestNode, TestNode) {
    let a = lab.founder(11).await;
    let b = lab
        .candidate(lab.spec(12), 100, SlotPolicy::default())
        .await;
    assert!(done(&join(&a, b.addr, b.code(), &[F]).await));
    (a, b)
}

fn still_unjoined(x: &TestNode) {
    assert!(
        matches!(x.node.status(), NodeStatus::Unjoined { .. }),
        "{:?}",
        x.node.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_is_refused_and_counted() {
    let lab = Lab::new(10);
    let (a, b) = cluster(&lab).await;
    let x = lab.candidate(lab.spec(13), 1, fast_policy()).await;
    let before = snapshot(&a, &[&a, &b]).await;
    let events = join(&a, x.addr, wrong_code(&x.code()), &[F]).await;
    let reason = failure(&events);
    assert!(reason.contains("did not match"), "{reason}");
    assert!(reason.contains("nothing was changed"), "{reason}");
    assert!(!events
        .iter()
        .any(|e| matches!(e, JoinProgress::Handshake { .. })));
    assert_eq!(x.wrong_attempts(), 1);
    still_unjoined(&x);
    assert_eq!(snapshot(&a, &[&a, &b]).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_is_refused() {
    let lab = Lab::new(11);
    let (a, b) = cluster(&lab).await;
    let policy = SlotPolicy {
        lifetime: Duration::from_millis(300),
        ..fast_policy()
    };
    let x = lab.candidate(lab.spec(13), 1, policy).await;
    let code = x.code();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = snapshot(&a, &[&a, &b]).await;
    let reason = failure(&join(&a, x.addr, code, &[F]).await);
    assert!(reason.contains("expired"), "{reason}");
    still_unjoined(&x);
    assert_eq!(snapshot(&a, &[&a, &b]).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sixth_attempt_after_five_wrong_ones_is_refused() {
    let lab = Lab::new(12);
    let (a, b) = cluster(&lab).await;
    let x = lab.candidate(lab.spec(13), 1, fast_policy()).await;
    let right = x.code();
    let before = snapshot(&a, &[&a, &b]).await;
    for attempt in 1..=5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let reason = failure(&join(&a, x.addr, wrong_code(&right), &[F]).await);
        if attempt < 5 {
            assert!(
                reason.contains("did not match"),
                "attempt {attempt}: {reason}"
            );
        } else {
            assert!(
                reason.contains("too many wrong attempts"),
                "attempt {attempt}: {reason}"
            );
        }
    }
    // The code was replaced: the right one no longer works.
    assert!(!x.code().ct_eq(&right));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let reason = failure(&join(&a, x.addr, right, &[F]).await);
    assert!(reason.contains("did not match"), "{reason}");
    still_unjoined(&x);
    assert_eq!(snapshot(&a, &[&a, &b]).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_handshake_is_refused() {
    let lab = Lab::new(13);
    let (a, b) = cluster(&lab).await;
    let formed = a.formed.as_ref().unwrap();
    // Two appliances whose slots hold the same code.
    let x = lab.candidate(lab.spec(13), 7, fast_policy()).await;
    let y = lab.candidate(lab.spec(14), 7, fast_policy()).await;
    assert!(x.code().ct_eq(&y.code()));
    let before = snapshot(&a, &[&a, &b]).await;

    // A successful handshake with X, recording what the admin side sent.
    let conn = JoinConnection::connect(x.addr, &formed.cert, &a.key, &lab.timeouts)
        .await
        .unwrap();
    let (up, mut down) = conn.handshake().await.unwrap();
    let admin_fp = appliance_cluster::CertFingerprint::of_certificate_der(formed.cert.der());
    let (hs, hello) = appliance_cluster::AdminHandshake::start(
        &x.code(),
        a.state().config.cluster_id(),
        admin_fp,
        conn.peer_fingerprint(),
        &mut appliance_cluster::rand_core::OsRng,
    );
    let mut recorded = vec![hello.clone()];
    up.send(pake(hello)).await.unwrap();
    let reply = next_pake(&mut down).await;
    let (confirming, confirm) = hs.receive_reply(&reply).unwrap();
    recorded.push(confirm.clone());
    up.send(pake(confirm)).await.unwrap();
    let mut channel = confirming
        .receive_confirm(&next_pake(&mut down).await)
        .unwrap();
    // X went on to send its sealed certificate request: the run succeeded.
    let sealed = match next(&mut down).await {
        Some(Body::Sealed(s)) => s,
        other => panic!("{other:?}"),
    };
    assert!(channel.open(&sealed).is_ok());
    drop(up);

    // The same messages, replayed to Y.
    let conn = JoinConnection::connect(y.addr, &formed.cert, &a.key, &lab.timeouts)
        .await
        .unwrap();
    let (up, mut down) = conn.handshake().await.unwrap();
    up.send(pake(recorded[0].clone())).await.unwrap();
    let _fresh_reply = next_pake(&mut down).await;
    up.send(pake(recorded[1].clone())).await.unwrap();
    let refusal = String::from_utf8(next_pake(&mut down).await).unwrap();
    assert!(
        refusal.contains("refused") && refusal.contains("wrong_code"),
        "{refusal}"
    );
    assert!(next(&mut down).await.is_none(), "Y sends nothing more");
    assert_eq!(y.wrong_attempts(), 1);
    still_unjoined(&y);
    assert_eq!(snapshot(&a, &[&a, &b]).await, before);
}

fn pake(m: Vec<u8>) -> HandshakeFrame {
    HandshakeFrame {
        body: Some(Body::Pake(m)),
    }
}

async fn next(down: &mut tonic::Streaming<HandshakeFrame>) -> Option<Body> {
    tokio::time::timeout(LIMIT, down.message())
        .await
        .expect("a frame in time")
        .ok()
        .flatten()
        .and_then(|f| f.body)
}

async fn next_pake(down: &mut tonic::Streaming<HandshakeFrame>) -> Vec<u8> {
    match next(down).await {
        Some(Body::Pake(m)) => m,
        other => panic!("expected a handshake message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_man_in_the_middle_relaying_tls_cannot_join() {
    let lab = Lab::new(14);
    let (a, b) = cluster(&lab).await;
    let x = lab.candidate(lab.spec(13), 1, fast_policy()).await;
    let (proxy, relay) = mitm_proxy(lab.ip(66), x.addr).await;
    let before = snapshot(&a, &[&a, &b]).await;
    // The administrator typed the right code, at the proxy's address.
    let events = join(&a, proxy, x.code(), &[F]).await;
    let reason = failure(&events);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, JoinProgress::PreflightPassed { .. })),
        "the relay passes preflight (it relays the real facts): {events:#?}"
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, JoinProgress::Handshake { .. })));
    assert!(
        reason.contains("man in the middle") || reason.contains("did not match"),
        "{reason}"
    );
    assert_eq!(x.wrong_attempts(), 1);
    still_unjoined(&x);
    assert_eq!(snapshot(&a, &[&a, &b]).await, before);
    relay.abort();
}

/// A relay that terminates TLS on both sides with its own self-signed
/// certificate and copies the decrypted HTTP/2 (gRPC) bytes between them.
async fn mitm_proxy(
    ip: std::net::IpAddr,
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let key = NodeKey::generate().unwrap();
    let subject = NodeSubject {
        node_id: Uuid::new_v4(),
        hostname: "mallory".into(),
        addresses: vec![ip],
    };
    let cert = self_signed_join_cert(&key, &subject, SystemTime::now()).unwrap();
    let front = join_server_config(&cert, &key).unwrap();
    let back = join_client_config(&cert, &key).unwrap();
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (front, back) = (front.clone(), back.clone());
            tokio::spawn(async move {
                let Ok(mut f) = TlsAcceptor::from(front).accept(tcp).await else {
                    return;
                };
                let Ok(up) = TcpStream::connect(target).await else {
                    return;
                };
                let Ok(mut b) = TlsConnector::from(back)
                    .connect(ServerName::IpAddress(target.ip().into()), up)
                    .await
                else {
                    return;
                };
                let _ = tokio::time::timeout(LIMIT, tokio::io::copy_bidirectional(&mut f, &mut b))
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_refusals_change_nothing_and_spend_no_attempt() {
    let lab = Lab::new(15);
    let (a, b) = cluster(&lab).await;
    let a_member = a.state().config.member(&a.id()).unwrap().clone();
    let before = snapshot(&a, &[&a, &b]).await;

    let mut cases = Vec::new();
    let mut s = lab.spec(21);
    s.version = "0.2.0".into();
    cases.push((
        "version",
        s,
        vec![F],
        "runs version 0.2.0 but the cluster runs 0.1.0",
    ));
    let mut s = lab.spec(22);
    s.clock_offset = Duration::from_secs(60);
    cases.push(("clock", s, vec![F], "clock is"));
    let mut s = lab.spec(23);
    s.hostname = a_member.hostname.clone();
    cases.push(("hostname", s, vec![F], "hostname node-11 is already used"));
    let mut s = lab.spec(24);
    s.addresses.push(a_member.addresses[0]);
    cases.push(("address", s, vec![F], "is already used by node-11"));
    cases.push(("second back-end", lab.spec(25), vec![B], "second back-end"));
    let mut s = lab.spec(26);
    s.mtu = 9000;
    cases.push(("mtu", s, vec![F], "MTU is 9000"));

    for (what, spec, r, expect) in cases {
        let x = lab.candidate(spec, 1, fast_policy()).await;
        let events = join(&a, x.addr, x.code(), &r).await;
        let failures = preflight_failures(&events);
        assert!(
            failures.iter().any(|f| f.contains(expect)),
            "{what}: expected {expect:?} in {failures:#?}"
        );
        assert!(failure(&events).contains("nothing was changed"));
        assert_eq!(x.wrong_attempts(), 0, "{what}: preflight spends no attempt");
        still_unjoined(&x);
        assert_eq!(snapshot(&a, &[&a, &b]).await, before, "{what}");
    }

    // An address nobody answers on: unreachable, nothing changed.
    let closed = TcpListener::bind((lab.ip(27), 0)).await.unwrap();
    let nowhere = closed.local_addr().unwrap();
    drop(closed);
    let code = appliance_cluster::JoinCode::parse("0000000000").unwrap();
    let events = join(&a, nowhere, code, &[F]).await;
    let failures = preflight_failures(&events);
    assert!(
        failures[0].contains("cannot be reached on the join port"),
        "{failures:?}"
    );
    assert_eq!(snapshot(&a, &[&a, &b]).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_last_front_end_is_refused() {
    let lab = Lab::new(16);
    let (a, b) = cluster(&lab).await;
    // A keeps only the back-end role; B is the only front-end.
    a.node
        .apply_change(Change::set_roles(a.id(), [B]))
        .await
        .unwrap();
    let before = snapshot(&a, &[&a, &b]).await;
    let err = a.node.remove_member(b.id()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("would remove the last front-end node"),
        "{err}"
    );
    assert_eq!(snapshot(&a, &[&a, &b]).await, before);
    assert_eq!(
        b.state().config.member(&b.id()).unwrap().state,
        MemberState::Joining
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacons_are_heard_and_garbage_is_not() {
    use appliance_cluster::{Beacon, CertFingerprint, Discovered};
    use appliance_peering::beacon::{listen_beacons, send_beacons, ListenStats};
    use std::sync::Mutex;
    use tokio_util::sync::CancellationToken;

    init_tracing();
    let listener = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let table = Arc::new(Mutex::new(Discovered::default()));
    let cancel = CancellationToken::new();
    let heard = tokio::spawn(listen_beacons(listener, table.clone(), cancel.clone()));
    let beacon = Beacon {
        hostname: "node-x".into(),
        addresses: vec!["10.77.0.20".parse().unwrap()],
        version: "0.1.0".into(),
        fingerprint: CertFingerprint::of_certificate_der(b"x"),
        join_port: appliance_peering::DEFAULT_PEER_PORT,
    };
    // Garbage first: counted and dropped.
    let noise = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    noise.send_to(b"not a beacon", target).await.unwrap();
    noise.send_to(&[0u8; 600], target).await.unwrap();
    let sender = {
        let (beacon, cancel) = (beacon.clone(), cancel.clone());
        tokio::spawn(async move {
            send_beacons(&beacon, &[target], Duration::from_millis(20), cancel).await
        })
    };
    let t0 = Instant::now();
    loop {
        let n = table.lock().unwrap().list(std::time::Instant::now()).len();
        if n == 1 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no beacon heard");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
    let sent = tokio::time::timeout(LIMIT, sender)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let stats: ListenStats = tokio::time::timeout(LIMIT, heard).await.unwrap().unwrap();
    assert!(sent.rounds >= 2, "{sent:?}");
    assert_eq!(stats.refused, 2, "{stats:?}");
    assert!(stats.accepted >= 2, "{stats:?}");
    let t = table.lock().unwrap();
    let entry = t
        .get(&beacon.fingerprint, std::time::Instant::now())
        .unwrap();
    assert_eq!(entry.beacon, beacon);
    assert_eq!(entry.source, target.ip());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_that_cannot_store_its_membership_is_taken_out_again() {
    let lab = Lab::new(17);
    let (a, b) = cluster(&lab).await;
    let x = lab.candidate(lab.spec(13), 1, fast_policy()).await;
    x.hooks
        .refuse_join
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let code = x.code();
    let events = join(&a, x.addr, code.clone(), &[F]).await;
    let reason = failure(&events);
    assert!(reason.contains("no space left"), "{reason}");
    assert!(
        reason.contains("taken out of the cluster again (generation 4)"),
        "{reason}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, JoinProgress::Added { generation: 3, .. })));
    // Every member has the generation without X; the certificate signed
    // for X is revoked.
    let issued = a.record().await.issued[&x.id()].clone();
    for n in [&a, &b] {
        let s = n.state();
        assert_eq!(s.generation(), 4);
        assert!(s.config.member(&x.id()).is_none());
        for fp in &issued {
            assert!(s.revocations.fingerprints().any(|r| r == fp));
        }
    }
    // Generation 3 was pushed to nobody: pushes wait for the appliance's
    // acknowledgement, so B goes straight to the one without X.
    assert_eq!(b.generations(), [2, 4]);
    // X is still waiting, with a new code (the old one was spent).
    still_unjoined(&x);
    assert!(!x.code().ct_eq(&code));
    assert!(x.hooks.joined.lock().unwrap().is_none());
}
