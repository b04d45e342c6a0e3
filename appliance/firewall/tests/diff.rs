//! Pure tests of incremental planning.

use std::collections::BTreeSet;
use std::net::IpAddr;

use appliance_firewall::{diff, Diff, FirewallSpec, PortSpec, Proto, SetDelta, SetElem, SetName};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn base() -> FirewallSpec {
    FirewallSpec {
        management_port: 443,
        public: BTreeSet::from([PortSpec {
            proto: Proto::Tcp,
            port: 80,
        }]),
        internal: BTreeSet::from([PortSpec {
            proto: Proto::Tcp,
            port: 7000,
        }]),
        peers: BTreeSet::from([ip("10.77.0.2")]),
        ..FirewallSpec::default()
    }
}

fn one(set: SetName, add: &[SetElem], remove: &[SetElem]) -> Diff {
    Diff::Sets(vec![SetDelta {
        set,
        add: add.to_vec(),
        remove: remove.to_vec(),
    }])
}

#[test]
fn identical_specs_need_nothing() {
    assert_eq!(diff(&base(), &base()), Diff::Same);
    assert_eq!(
        diff(&FirewallSpec::default(), &FirewallSpec::default()),
        Diff::Same
    );
}

#[test]
fn adding_a_peer_adds_one_element() {
    let mut new = base();
    new.peers.insert(ip("10.77.0.3"));
    let want = one(SetName::Peers4, &[SetElem::Addr(ip("10.77.0.3"))], &[]);
    assert_eq!(diff(&base(), &new), want);
}

#[test]
fn removing_a_peer_removes_one_element() {
    let mut new = base();
    new.peers.clear();
    let want = one(SetName::Peers4, &[], &[SetElem::Addr(ip("10.77.0.2"))]);
    assert_eq!(diff(&base(), &new), want);
}

#[test]
fn v6_peer_goes_to_peers6() {
    let mut new = base();
    new.peers.insert(ip("fd77::5"));
    let want = one(SetName::Peers6, &[SetElem::Addr(ip("fd77::5"))], &[]);
    assert_eq!(diff(&base(), &new), want);
}

#[test]
fn replacing_a_peer_is_one_delta() {
    let mut new = base();
    new.peers = BTreeSet::from([ip("10.77.0.9")]);
    let want = one(
        SetName::Peers4,
        &[SetElem::Addr(ip("10.77.0.9"))],
        &[SetElem::Addr(ip("10.77.0.2"))],
    );
    assert_eq!(diff(&base(), &new), want);
}

#[test]
fn ports_go_to_their_sets() {
    let mut new = base();
    new.public.insert(PortSpec {
        proto: Proto::Udp,
        port: 53,
    });
    new.internal.insert(PortSpec {
        proto: Proto::Tcp,
        port: 7001,
    });
    let Diff::Sets(deltas) = diff(&base(), &new) else {
        panic!("ports only change sets")
    };
    let sets: Vec<SetName> = deltas.iter().map(|d| d.set).collect();
    assert_eq!(sets, vec![SetName::PublicUdp, SetName::InternalTcp]);
    assert_eq!(deltas[0].add, vec![SetElem::Port(53)]);
    assert_eq!(deltas[1].add, vec![SetElem::Port(7001)]);
}

#[test]
fn management_port_change_needs_full() {
    let mut new = base();
    new.management_port = 8443;
    new.peers.insert(ip("10.77.0.3"));
    assert!(matches!(diff(&base(), &new), Diff::NeedsFull { .. }));
}
