//! Golden-style tests of the planner: each case spells out the exact actions.

use super::*;
use crate::model::{InterfaceSpec, ObservedAddress, ObservedLink};
use crate::restore::restore;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn link(name: &str, index: u32, mtu: u32, up: bool) -> ObservedLink {
    ObservedLink {
        name: name.into(),
        index,
        mtu,
        up,
        promote_secondaries: Some(true),
    }
}

/// `lo` (1, up), `eth0` (2, down, 1500), `eth1` (3, up, 1500), nothing else.
fn bare() -> Observed {
    Observed {
        links: vec![
            link("lo", 1, 65536, true),
            link("eth0", 2, 1500, false),
            link("eth1", 3, 1500, true),
        ],
        addresses: vec![ObservedAddress {
            index: 1,
            addr: net("127.0.0.1/8"),
        }],
        routes: vec![],
    }
}

fn spec() -> NetworkSpec {
    NetworkSpec {
        interfaces: vec![InterfaceSpec {
            name: "eth0".into(),
            mtu: Some(9000),
            addresses: vec![net("10.77.0.2/24"), net("fd77::2/64")],
        }],
        gateway4: Some("10.77.0.1".parse().unwrap()),
        gateway6: Some("fd77::1".parse().unwrap()),
        routes: vec![(net("10.78.0.0/16"), ip("10.77.0.254"))],
    }
}

fn key(dst: &str, via: &str, link: Option<&str>) -> RouteKey {
    RouteKey {
        dst: net(dst),
        via: Some(ip(via)),
        link: link.map(Into::into),
    }
}

fn add_route(dst: &str, via: &str, link: &str, oif: u32) -> Action {
    Action::AddRoute(RouteAction {
        key: key(dst, via, Some(link)),
        oif: Some(oif),
        protocol: RTPROT_STATIC,
        priority: None,
    })
}

fn addr(link: &str, index: u32, a: &str, add: bool) -> Action {
    let (link, addr) = (link.to_string(), net(a));
    if add {
        Action::AddAddress { link, index, addr }
    } else {
        Action::DelAddress { link, index, addr }
    }
}

/// What the kernel would show after `plan` ran on `observed`.
fn simulate(observed: &Observed, actions: &[Action]) -> Observed {
    let mut o = observed.clone();
    for a in actions {
        match a {
            Action::SetMtu { index, mtu, .. } => o
                .links
                .iter_mut()
                .filter(|l| l.index == *index)
                .for_each(|l| l.mtu = *mtu),
            Action::SetUp { index, .. } => o
                .links
                .iter_mut()
                .filter(|l| l.index == *index)
                .for_each(|l| l.up = true),
            Action::PromoteSecondaries { link } => o
                .links
                .iter_mut()
                .filter(|l| l.name == *link)
                .for_each(|l| l.promote_secondaries = Some(true)),
            Action::AddAddress { index, addr, .. } => o.addresses.push(ObservedAddress {
                index: *index,
                addr: *addr,
            }),
            Action::DelAddress { index, addr, .. } => o
                .addresses
                .retain(|x| !(x.index == *index && x.addr == *addr)),
            Action::AddRoute(r) => o.routes.push(ObservedRoute {
                dst: r.key.dst,
                gateway: r.key.via,
                oif: r.oif,
                protocol: r.protocol,
                priority: r.priority,
            }),
            Action::DelRoute(r) => o
                .routes
                .retain(|x| !(x.dst == r.key.dst && x.gateway == r.key.via && x.oif == r.oif)),
        }
    }
    o
}

#[test]
fn fresh_node_gets_everything_in_order() {
    let p = plan(&spec(), &bare(), &Owned::default()).unwrap();
    assert_eq!(
        p.actions,
        vec![
            Action::SetMtu {
                link: "eth0".into(),
                index: 2,
                mtu: 9000,
                was: 1500
            },
            Action::SetUp {
                link: "eth0".into(),
                index: 2
            },
            addr("eth0", 2, "10.77.0.2/24", true),
            addr("eth0", 2, "fd77::2/64", true),
            add_route("0.0.0.0/0", "10.77.0.1", "eth0", 2),
            add_route("10.78.0.0/16", "10.77.0.254", "eth0", 2),
            add_route("::/0", "fd77::1", "eth0", 2),
        ]
    );
    assert_eq!(p.owned.addresses.len(), 2);
    assert_eq!(p.owned.routes.len(), 3);
    assert_eq!(p.intent, p.owned, "nothing owned before, so intent = final");
}

#[test]
fn replanning_after_apply_is_empty() {
    let p = plan(&spec(), &bare(), &Owned::default()).unwrap();
    let after = simulate(&bare(), &p.actions);
    let again = plan(&spec(), &after, &p.owned).unwrap();
    assert_eq!(again.actions, vec![]);
    assert_eq!(again.owned, p.owned);
}

#[test]
fn changed_address_deletes_owned_old_one_first() {
    let first = plan(&spec(), &bare(), &Owned::default()).unwrap();
    let now = simulate(&bare(), &first.actions);
    let mut s = spec();
    s.interfaces[0].addresses[0] = net("10.77.0.3/24");
    let p = plan(&s, &now, &first.owned).unwrap();
    assert_eq!(
        p.actions,
        vec![
            addr("eth0", 2, "10.77.0.2/24", false),
            addr("eth0", 2, "10.77.0.3/24", true)
        ]
    );
    assert!(
        p.intent
            .addresses
            .iter()
            .any(|a| a.addr == net("10.77.0.2/24")),
        "intent keeps the old one"
    );
    assert!(!p
        .owned
        .addresses
        .iter()
        .any(|a| a.addr == net("10.77.0.2/24")));
}

#[test]
fn removed_route_and_address_are_deleted_routes_first() {
    let first = plan(&spec(), &bare(), &Owned::default()).unwrap();
    let now = simulate(&bare(), &first.actions);
    let mut s = spec();
    s.interfaces[0].addresses.pop();
    s.gateway6 = None;
    let p = plan(&s, &now, &first.owned).unwrap();
    let del_route = RouteAction {
        key: key("::/0", "fd77::1", Some("eth0")),
        oif: Some(2),
        protocol: RTPROT_STATIC,
        priority: None,
    };
    assert_eq!(
        p.actions,
        vec![
            Action::DelRoute(del_route),
            addr("eth0", 2, "fd77::2/64", false)
        ]
    );
}

#[test]
fn foreign_address_and_route_are_kept() {
    let mut now = bare();
    now.addresses.push(ObservedAddress {
        index: 2,
        addr: net("10.79.0.9/24"),
    });
    let foreign = ObservedRoute {
        dst: net("10.80.0.0/16"),
        gateway: Some(ip("10.79.0.1")),
        oif: Some(2),
        protocol: 3,
        priority: None,
    };
    now.routes.push(foreign);
    let p = plan(&spec(), &now, &Owned::default()).unwrap();
    assert!(p
        .actions
        .iter()
        .all(|a| !matches!(a, Action::DelAddress { .. } | Action::DelRoute(_))));
    // Also when we own a route with the same key but the kernel's copy is not ours.
    let mut owned = Owned::default();
    owned.routes.insert(key("10.80.0.0/16", "10.79.0.1", None));
    let p = plan(&spec(), &now, &owned).unwrap();
    assert!(
        p.actions.iter().all(|a| !matches!(a, Action::DelRoute(_))),
        "proto boot route must stay"
    );
}

#[test]
fn desired_address_already_present_is_not_claimed() {
    let mut now = bare();
    now.addresses.push(ObservedAddress {
        index: 2,
        addr: net("10.77.0.2/24"),
    });
    let p = plan(&spec(), &now, &Owned::default()).unwrap();
    assert!(!p.actions.contains(&addr("eth0", 2, "10.77.0.2/24", true)));
    assert!(!p
        .owned
        .addresses
        .iter()
        .any(|a| a.addr == net("10.77.0.2/24")));
}

#[test]
fn mtu_change_only() {
    let first = plan(&spec(), &bare(), &Owned::default()).unwrap();
    let now = simulate(&bare(), &first.actions);
    let mut s = spec();
    s.interfaces[0].mtu = Some(1400);
    let p = plan(&s, &now, &first.owned).unwrap();
    assert_eq!(
        p.actions,
        vec![Action::SetMtu {
            link: "eth0".into(),
            index: 2,
            mtu: 1400,
            was: 9000
        }]
    );
    s.interfaces[0].mtu = None;
    assert_eq!(plan(&s, &now, &first.owned).unwrap().actions, vec![]);
}

#[test]
fn unlisted_interfaces_are_untouched() {
    let mut now = bare();
    now.addresses.push(ObservedAddress {
        index: 3,
        addr: net("192.0.2.5/24"),
    });
    let p = plan(&spec(), &now, &Owned::default()).unwrap();
    let touches_eth1 = |a: &Action| {
        matches!(
            a,
            Action::SetMtu { index: 3, .. }
                | Action::SetUp { index: 3, .. }
                | Action::AddAddress { index: 3, .. }
                | Action::DelAddress { index: 3, .. }
        )
    };
    assert!(!p.actions.iter().any(touches_eth1));
}

#[test]
fn unknown_link_is_named_with_the_existing_ones() {
    let mut s = spec();
    s.interfaces[0].name = "eth9".into();
    let err = plan(&s, &bare(), &Owned::default()).unwrap_err();
    assert_eq!(
        err,
        PlanError::UnknownLink {
            name: "eth9".into(),
            existing: vec!["eth0".into(), "eth1".into(), "lo".into()]
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("\"eth9\"") && msg.contains("eth0, eth1, lo"),
        "{msg}"
    );
}

#[test]
fn gateway_goes_out_of_the_interface_holding_it() {
    let mut s = spec();
    s.interfaces.push(InterfaceSpec {
        name: "eth1".into(),
        mtu: None,
        addresses: vec![net("10.90.0.2/24")],
    });
    s.gateway4 = Some("10.90.0.1".parse().unwrap());
    let routes = desired_routes(&s);
    assert!(routes.contains(&key("0.0.0.0/0", "10.90.0.1", Some("eth1"))));
    assert!(routes.contains(&key("10.78.0.0/16", "10.77.0.254", Some("eth0"))));
    s.gateway4 = Some("10.99.0.1".parse().unwrap());
    assert!(
        desired_routes(&s).contains(&key("0.0.0.0/0", "10.99.0.1", None)),
        "no holder: kernel picks"
    );
}

#[test]
fn owned_address_on_vanished_link_is_dropped() {
    let mut owned = Owned::default();
    owned.addresses.insert(OwnedAddress {
        link: "eth7".into(),
        addr: net("10.1.0.1/24"),
    });
    let p = plan(&NetworkSpec::default(), &bare(), &owned).unwrap();
    assert_eq!(p.actions, vec![]);
    assert!(p.owned.addresses.is_empty());
}

#[test]
fn restore_undoes_a_partial_apply() {
    let first = plan(&spec(), &bare(), &Owned::default()).unwrap();
    let before = simulate(&bare(), &first.actions);
    let mut s = spec();
    s.interfaces[0].addresses[0] = net("10.77.5.2/24");
    s.interfaces[0].mtu = Some(1400);
    s.gateway4 = Some("10.77.5.1".parse().unwrap());
    let p = plan(&s, &before, &first.owned).unwrap();
    // Everything but the last action (the failing route add) ran.
    let done = &p.actions[..p.actions.len() - 1];
    let now = simulate(&before, done);
    let back = restore(&before, &now, done);
    let restored = simulate(&now, &back);
    let sorted = |o: &Observed| {
        let (mut a, mut r) = (o.addresses.clone(), o.routes.clone());
        a.sort();
        r.sort();
        (o.links.clone(), a, r)
    };
    assert_eq!(sorted(&restored), sorted(&before));
    assert!(restore(&before, &restored, done).is_empty());
}

/// `bare()` with promote_secondaries off on every link (the kernel default).
fn bare_promote_off() -> Observed {
    let mut o = bare();
    for l in &mut o.links {
        l.promote_secondaries = Some(false);
    }
    o
}

#[test]
fn promote_secondaries_is_turned_on_first_and_only_on_configured_links() {
    let p = plan(&spec(), &bare_promote_off(), &Owned::default()).unwrap();
    let want = Action::PromoteSecondaries {
        link: "eth0".into(),
    };
    assert_eq!(p.actions[0], want);
    assert_eq!(p.actions.iter().filter(|a| **a == want).count(), 1);
    let expected_rest = plan(&spec(), &bare(), &Owned::default()).unwrap().actions;
    assert_eq!(p.actions[1..], expected_rest[..], "the rest is unchanged");
    let after = simulate(&bare_promote_off(), &p.actions);
    assert_eq!(plan(&spec(), &after, &p.owned).unwrap().actions, vec![]);
    assert_eq!(
        after
            .links
            .iter()
            .find(|l| l.name == "eth1")
            .unwrap()
            .promote_secondaries,
        Some(false),
        "unconfigured eth1 left alone"
    );
}

#[test]
fn promote_secondaries_comes_before_address_deletion() {
    let first = plan(&spec(), &bare(), &Owned::default()).unwrap();
    let mut now = simulate(&bare(), &first.actions);
    now.links[1].promote_secondaries = Some(false); // someone turned it off
    let mut s = spec();
    s.interfaces[0].addresses[0] = net("10.77.0.3/24");
    let p = plan(&s, &now, &first.owned).unwrap();
    assert_eq!(
        p.actions,
        vec![
            Action::PromoteSecondaries {
                link: "eth0".into()
            },
            addr("eth0", 2, "10.77.0.2/24", false),
            addr("eth0", 2, "10.77.0.3/24", true)
        ]
    );
}

#[test]
fn promote_secondaries_unknown_is_left_alone() {
    let mut now = bare();
    now.links[1].promote_secondaries = None; // no IPv4 devconf reported
    let p = plan(&spec(), &now, &Owned::default()).unwrap();
    assert!(!p
        .actions
        .iter()
        .any(|a| matches!(a, Action::PromoteSecondaries { .. })));
}

#[test]
fn restore_keeps_promote_secondaries_on() {
    let before = bare_promote_off();
    let p = plan(&spec(), &before, &Owned::default()).unwrap();
    // Only the sysctl and the MTU change ran before the failure.
    let done = &p.actions[..2];
    let now = simulate(&before, done);
    let back = restore(&before, &now, done);
    assert_eq!(
        back,
        vec![Action::SetMtu {
            link: "eth0".into(),
            index: 2,
            mtu: 1500,
            was: 9000
        }]
    );
}
