//! Unit tests of the network refusals: addresses, subnets, interfaces,
//! gateways and routes.

use super::{assert_refused, base, iface, net, GOOD};
use crate::*;

#[track_caller]
fn assert_addr_refused(addr: &str, phrase: &str) {
    let mut cfg = base();
    cfg.interfaces[0].addresses.push(net(addr));
    assert_refused(cfg, "interface[0].addresses[2]", phrase);
}

pub(super) fn route(to: &str, via: &str) -> StaticRoute {
    StaticRoute {
        to: net(to),
        via: via.parse().expect("ip"),
    }
}

#[test]
fn bad_host_addresses() {
    assert_addr_refused("10.77.0.0/24", "network address of 10.77.0.0/24");
    assert_addr_refused("10.77.0.255/24", "broadcast address");
    assert_addr_refused("fd77::/64", "subnet-router anycast");
    assert_addr_refused("0.0.0.0/24", "unspecified");
    assert_addr_refused("::/64", "unspecified");
    assert_addr_refused("127.0.0.2/8", "loopback");
    assert_addr_refused("::1/128", "loopback");
    assert_addr_refused("239.1.1.1/24", "multicast");
    assert_addr_refused("ff05::1/64", "multicast");
    assert_addr_refused("169.254.3.4/16", "link-local");
    assert_addr_refused("fe80::1/64", "link-local");
    assert_addr_refused("10.99.0.1/0", "prefix length 0");
}

#[test]
fn point_to_point_prefixes_are_fine() {
    let mut cfg = base();
    cfg.interfaces.push(iface(
        "wg0",
        &["10.1.0.0/31", "10.2.0.1/32", "fd01::/127", "fd02::/128"],
    ));
    validate(cfg).expect("/31, /32, /127 and /128 have no reserved addresses");
}

#[test]
fn prefix_out_of_range_is_a_parse_error() {
    let err = parse(&GOOD.replace("10.77.0.10/24", "10.77.0.10/33")).expect_err("/33");
    let ConfigError::Parse { message } = &err else {
        panic!("expected a parse error, got {err}")
    };
    assert!(message.contains("line 11"), "{message}");
    assert!(message.contains("10.77.0.10/33"), "{message}");
}

#[test]
fn gateway_outside_every_subnet() {
    let mut cfg = base();
    cfg.gateway4 = Some("10.78.0.1".parse().expect("ip"));
    assert_refused(
        cfg,
        "gateway4",
        "outside every configured IPv4 subnet (10.77.0.0/24)",
    );
    let mut cfg = base();
    cfg.gateway6 = Some("fd78::1".parse().expect("ip"));
    assert_refused(cfg, "gateway6", "outside every configured IPv6 subnet");
    let mut cfg = base();
    cfg.interfaces[0].addresses.truncate(1);
    cfg.gateway6 = Some("fd77::1".parse().expect("ip"));
    assert_refused(cfg, "gateway6", "no IPv6 subnet is configured");
}

#[test]
fn gateway_equal_to_own_address() {
    let mut cfg = base();
    cfg.gateway4 = Some("10.77.0.10".parse().expect("ip"));
    assert_refused(
        cfg,
        "gateway4",
        "node's own address (interface[0].addresses[0])",
    );
    let mut cfg = base();
    cfg.gateway6 = Some("fd77::10".parse().expect("ip"));
    assert_refused(cfg, "gateway6", "node's own address");
}

#[test]
fn gateway_on_broadcast_address() {
    let mut cfg = base();
    cfg.gateway4 = Some("10.77.0.255".parse().expect("ip"));
    assert_refused(cfg, "gateway4", "network or broadcast address");
}

#[test]
fn route_checks() {
    let mut cfg = base();
    cfg.routes = vec![
        route("10.80.0.0/16", "10.77.0.2"),
        route("fd80::/48", "fd77::2"),
    ];
    validate(cfg).expect("routes via hosts on configured subnets are fine");

    let mut cfg = base();
    cfg.routes = vec![route("10.80.0.1/16", "10.77.0.2")];
    assert_refused(
        cfg,
        "route[0].to",
        "host bits set; a route destination is a network, write 10.80.0.0/16",
    );

    let mut cfg = base();
    cfg.routes = vec![route("10.80.0.0/16", "fd77::2")];
    assert_refused(
        cfg,
        "route[0].via",
        "is IPv6 but route[0].to 10.80.0.0/16 is IPv4",
    );

    let mut cfg = base();
    cfg.routes = vec![route("10.80.0.0/16", "10.79.0.1")];
    assert_refused(cfg, "route[0].via", "outside every configured IPv4 subnet");

    let mut cfg = base();
    cfg.routes = vec![route("10.80.0.0/16", "10.77.0.10")];
    assert_refused(cfg, "route[0].via", "node's own address");

    let mut cfg = base();
    cfg.routes = vec![
        route("10.80.0.0/16", "10.77.0.2"),
        route("10.80.0.0/16", "10.77.0.3"),
    ];
    assert_refused(cfg, "route[1].to", "already defined by route[0].to");

    let mut cfg = base();
    cfg.routes = vec![route("0.0.0.0/0", "10.77.0.2")];
    assert_refused(cfg, "route[0].to", "already defined by gateway4");
}

#[test]
fn duplicate_addresses() {
    let mut cfg = base();
    cfg.interfaces.push(iface("eth1", &["10.77.0.10/16"]));
    assert_refused(
        cfg,
        "interface[1].addresses[0]",
        "already configured at interface[0].addresses[0]",
    );
    let mut cfg = base();
    cfg.interfaces[0].addresses.push(net("fd77::10/64"));
    assert_refused(cfg, "interface[0].addresses[2]", "already configured");
}

#[test]
fn overlapping_subnets_on_different_interfaces() {
    let mut cfg = base();
    cfg.interfaces.push(iface("eth1", &["10.77.0.20/25"]));
    assert_refused(
        cfg,
        "interface[1].addresses[0]",
        "overlaps 10.77.0.0/24 of interface[0].addresses[0] on interface \"eth0\"",
    );
}

#[test]
fn same_interface_subnets() {
    let mut cfg = base();
    cfg.interfaces[0].addresses.push(net("10.77.0.11/24"));
    validate(cfg).expect("a second address in the same subnet is fine");
    let mut cfg = base();
    cfg.interfaces[0].addresses.push(net("10.77.0.11/16"));
    assert_refused(
        cfg,
        "interface[0].addresses[2]",
        "overlaps but differs from 10.77.0.0/24",
    );
}

#[test]
fn interface_names() {
    for (bad, phrase) in [
        ("", "is empty"),
        ("a-very-long-name", "at most 15 bytes"),
        ("eth/0", "may not contain '/'"),
        ("eth 0", "may not contain"),
        ("eth0:1", "may not contain"),
        (".", "reserved"),
        ("..", "reserved"),
    ] {
        let mut cfg = base();
        cfg.interfaces[0].name = bad.into();
        assert_refused(cfg, "interface[0].name", phrase);
    }
    let mut cfg = base();
    cfg.interfaces.push(iface("eth0", &[]));
    assert_refused(cfg, "interface[1].name", "already listed as interface[0]");
}

#[test]
fn mtu_rules() {
    for (mtu, phrase) in [
        (575, "outside 576..=9216"),
        (9217, "outside 576..=9216"),
        (1279, "IPv6 minimum"),
    ] {
        let mut cfg = base();
        cfg.interfaces[0].mtu = Some(mtu);
        assert_refused(cfg, "interface[0].mtu", phrase);
    }
    let mut cfg = base();
    cfg.interfaces[0].addresses.truncate(1);
    cfg.interfaces[0].mtu = Some(576);
    validate(cfg).expect("576 is fine without IPv6");
}

#[test]
fn interface_without_addresses_is_allowed() {
    let mut cfg = base();
    cfg.interfaces.push(iface("eth1", &[]));
    validate(cfg).expect("an interface may just be brought up");
}
