//! The cluster's audit trail and management certificates are the
//! authority's: events recorded through any member get one gapless,
//! increasing numbering there and are stored before the answer; any member
//! reads them from there; a node that is not a member (of another cluster,
//! or removed) can neither record nor read; the authority signs a member's
//! management certificate only for the names that member has in the
//! configuration.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;

use appliance_cluster::{Member, SlotPolicy};
use appliance_peering::pb;
use appliance_peering::{ClusterDialer, Event, PeerError};
use appliance_pki::{CaCert, SharedRevocations};
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

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

fn member_of(node: &TestNode) -> Member {
    node.state().config.member(&node.id()).unwrap().clone()
}

/// The credentials a joined node got.
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

fn event(actor: &str, action: &str) -> Event {
    Event {
        actor: actor.into(),
        source: "192.0.2.7".into(),
        action: action.into(),
        detail: format!("{action} by {actor}"),
        result: "ok".into(),
        ..Event::default()
    }
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_through_any_member_are_numbered_once_at_the_authority() {
    let lab = Lab::new(61);
    let (a, b, c) = three(&lab).await;
    let persist = a.persist.clone().unwrap();
    // Interleaved through the authority itself and two members; one claims
    // to come from another node.
    let mut recorded = Vec::new();
    for (i, n) in [&b, &a, &c, &b, &c, &a].into_iter().enumerate() {
        let mut e = event("admin", &format!("action.{i}"));
        if i == 3 {
            e.node = "node-13".into();
            e.seq = 999;
        }
        let stored = n.node.record_event(e).await.unwrap();
        // Stored at the authority before the answer.
        assert_eq!(persist.events().last(), Some(&stored));
        recorded.push(stored);
    }
    assert_eq!(seqs(&recorded), [1, 2, 3, 4, 5, 6]);
    assert!(recorded.iter().all(|e| e.at_unix_ms > 0));
    // A member's event names the member its certificate names.
    assert_eq!(recorded[0].node, "node-12");
    assert_eq!(recorded[2].node, "node-13");
    assert_eq!(recorded[3].node, "node-12");

    // Any member reads the one trail: after a number, and the newest `limit`.
    for n in [&a, &b, &c] {
        assert_eq!(n.node.events(0, 0).await.unwrap(), recorded);
    }
    assert_eq!(seqs(&c.node.events(2, 0).await.unwrap()), [3, 4, 5, 6]);
    assert_eq!(seqs(&b.node.events(0, 2).await.unwrap()), [5, 6]);
    assert_eq!(seqs(&b.node.events(3, 1).await.unwrap()), [6]);
    assert!(b.node.events(6, 10).await.unwrap().is_empty());

    // A field longer than the cap is cut with a marker, not refused.
    let long = Event {
        detail: "x".repeat(5000),
        ..event("admin", "long")
    };
    let stored = b.node.record_event(long).await.unwrap();
    assert_eq!(stored.seq, 7);
    assert!(
        stored.detail.len() <= appliance_peering::trail::MAX_FIELD_BYTES
            && stored.detail.ends_with(appliance_peering::trail::TRUNCATED),
        "{}",
        stored.detail.len()
    );
}

/// Every way `dialer` could record or read events at `target` fails.
async fn cannot_record_or_read(dialer: &ClusterDialer, target: &Member, who: &str) {
    let mut client = match dialer.connect(target).await {
        Ok(c) => c,
        // Refused at the TLS handshake: nothing reaches the service.
        Err(_) => return,
    };
    let recorded = client
        .record_event(pb::Event::from(event("mallory", "account.add")))
        .await;
    assert!(recorded.is_err(), "{who} recorded an event: {recorded:?}");
    let listed = client
        .list_events(pb::ListEventsRequest {
            after_seq: 0,
            limit: 0,
        })
        .await;
    assert!(listed.is_err(), "{who} read the trail: {listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_can_neither_record_nor_read_the_trail() {
    let lab = Lab::new(62);
    let (a, b, c) = three(&lab).await;
    a.node
        .record_event(event("admin", "sign-in"))
        .await
        .unwrap();
    let target = member_of(&a);

    // The founder of another cluster, with its own CA and certificate.
    let other = lab.founder(14).await;
    let formed = other.formed.as_ref().unwrap();
    let foreign = ClusterDialer::new(
        formed.ca.clone(),
        formed.cert.clone(),
        other.key.clone(),
        SharedRevocations::default(),
        lab.resolver.clone(),
        lab.timeouts,
    );
    cannot_record_or_read(&foreign, &target, "another cluster's node").await;
    // The same with this cluster's CA trusted: its certificate is not ours.
    let ours = a.formed.as_ref().unwrap().ca.clone();
    let foreign_cert = ClusterDialer::new(
        ours,
        formed.cert.clone(),
        other.key.clone(),
        SharedRevocations::default(),
        lab.resolver.clone(),
        lab.timeouts,
    );
    cannot_record_or_read(&foreign_cert, &target, "a certificate of another CA").await;

    // A member is served by the authority only.
    let mut at_c = dialer_of(&b, &lab).connect(&member_of(&c)).await.unwrap();
    let err = at_c
        .record_event(pb::Event::from(event("admin", "x")))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("not the cluster's authority"),
        "{err:?}"
    );

    // A removed member keeps its certificate, not its access.
    let c_dialer = dialer_of(&c, &lab);
    b.node.remove_member(c.id()).await.unwrap();
    cannot_record_or_read(&c_dialer, &target, "a removed member").await;
    let err = c.node.record_event(event("admin", "y")).await.unwrap_err();
    assert!(matches!(err, PeerError::NotMember { .. }), "{err}");

    // Nothing of theirs was recorded.
    let trail = a.node.events(0, 0).await.unwrap();
    assert_eq!(seqs(&trail), [1]);
    assert!(trail.iter().all(|e| e.actor != "mallory"));
}

/// A management certificate request for `names` (DNS) and `addresses`.
fn management_csr(names: &[&str], addresses: &[IpAddr]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .subject_alt_names
        .extend(addresses.iter().map(|a| rcgen::SanType::IpAddress(*a)));
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_certificates_are_signed_only_for_the_members_own_names() {
    let lab = Lab::new(63);
    let (a, b, c) = three(&lab).await;
    let ca = a.formed.as_ref().unwrap().ca.clone();

    // Through a member (forwarded) and on the authority itself.
    for (n, host) in [(&b, "node-12"), (&a, "node-11")] {
        let ip = member_of(n).addresses[0];
        let signed = n
            .node
            .sign_management(&management_csr(&[host], &[ip]))
            .await
            .unwrap();
        let der = CertificateDer::from_pem_slice(signed.cert_pem.as_bytes()).unwrap();
        assert!(ca.signed(der.as_ref()), "not signed by the cluster CA");
        assert_eq!(CaCert::from_pem(&signed.ca_pem).unwrap(), ca);
        // Upper case is the same name.
        n.node
            .sign_management(&management_csr(&[&host.to_uppercase()], &[]))
            .await
            .unwrap();
    }

    // Another member's name or address, or any other name, is refused by name.
    let b_ip = member_of(&b).addresses[0];
    let c_ip = member_of(&c).addresses[0];
    let cases: [(Vec<&str>, Vec<IpAddr>, String); 4] = [
        (vec!["node-13"], vec![], "\"node-13\"".into()),
        (vec!["node-12"], vec![c_ip], c_ip.to_string()),
        (
            vec!["node-12", "evil.example"],
            vec![b_ip],
            "\"evil.example\"".into(),
        ),
        (vec![], vec![], "no DNS name or IP address".into()),
    ];
    for (names, addresses, named) in cases {
        let err = b
            .node
            .sign_management(&management_csr(&names, &addresses))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&named), "{names:?} {addresses:?}: {err}");
    }
    // Garbage is refused, not signed.
    let err = b.node.sign_management("not a request").await.unwrap_err();
    assert!(!err.to_string().is_empty());
}
