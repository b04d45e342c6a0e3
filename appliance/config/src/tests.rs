//! Unit tests of every refusal, on whole configs: each asserts the field path
//! and a key phrase of the reason. Round trips live here too.

use crate::*;

mod network;

use network::route;

pub(super) const GOOD: &str = r#"
version = 1
hostname = "node-a"
roles = ["frontend", "backend"]
gateway4 = "10.77.0.1"
[management]
port = 8443
[[interface]]
name = "eth0"
mtu = 1500
addresses = ["10.77.0.10/24", "fd77::10/64"]
[dns]
servers = ["10.77.0.53"]
search = ["corp.example"]
[ntp]
servers = ["ntp.corp.example"]
"#;

pub(super) fn base() -> NodeConfig {
    parse(GOOD)
        .expect("the example config is valid")
        .into_inner()
}

pub(super) fn net(s: &str) -> ipnet::IpNet {
    s.parse().expect("test address")
}

pub(super) fn iface(name: &str, addrs: &[&str]) -> Interface {
    Interface {
        name: name.into(),
        mtu: None,
        addresses: addrs.iter().map(|a| net(a)).collect(),
    }
}

pub(super) fn problems(cfg: NodeConfig) -> Vec<Problem> {
    match validate(cfg) {
        Ok(_) => panic!("config was accepted but should be refused"),
        Err(e) => e.problems().to_vec(),
    }
}

/// Asserts that `cfg` is refused with a problem at `field` whose reason contains `phrase`.
#[track_caller]
pub(super) fn assert_refused(cfg: NodeConfig, field: &str, phrase: &str) {
    let problems = problems(cfg);
    assert!(
        problems
            .iter()
            .any(|p| p.field == field && p.reason.contains(phrase)),
        "no problem at {field} containing {phrase:?}; got:\n{problems:#?}"
    );
}

#[test]
fn example_config_is_valid() {
    let cfg = base();
    assert_eq!(cfg.hostname, "node-a");
    assert_eq!(cfg.interfaces[0].addresses.len(), 2);
}

#[test]
fn version_other_than_1() {
    let mut cfg = base();
    cfg.version = 2;
    assert_refused(cfg, "version", "reads version 1 only");
    let err = parse(&GOOD.replace("version = 1", "version = 7")).expect_err("v7");
    assert_eq!(err.problems().len(), 1);
    assert!(err
        .to_string()
        .contains("format version 7 is not supported"));
}

#[test]
fn hostname_rules() {
    for (bad, phrase) in [
        ("", "is empty"),
        ("node_a", "contains '_'"),
        ("-node", "starts or ends with '-'"),
        ("node..a", "empty label"),
        ("node.123", "all-digit label"),
    ] {
        let mut cfg = base();
        cfg.hostname = bad.into();
        assert_refused(cfg, "hostname", phrase);
    }
    let mut cfg = base();
    cfg.hostname = "a".repeat(64);
    assert_refused(cfg, "hostname", "at most 63");
    let mut cfg = base();
    cfg.hostname = "Node-A.corp.example".into();
    validate(cfg).expect("dotted, mixed-case names are fine");
}

#[test]
fn roles_and_management() {
    let mut cfg = base();
    cfg.roles.clear();
    assert_refused(cfg, "roles", "at least one role");
    let mut cfg = base();
    cfg.management.port = 0;
    assert_refused(cfg, "management.port", "is 0");
}

#[test]
fn dns_rules() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
    let mut cfg = base();
    cfg.dns.servers = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        .map(ip)
        .to_vec();
    assert_refused(
        cfg,
        "dns.servers",
        "lists 4 servers; the resolver uses at most 3",
    );
    let mut cfg = base();
    cfg.dns.servers = vec![ip("10.0.0.1"), ip("10.0.0.1")];
    assert_refused(cfg, "dns.servers[1]", "already listed at dns.servers[0]");
    let mut cfg = base();
    cfg.dns.search = (0..7).map(|i| format!("d{i}.example")).collect();
    assert_refused(cfg, "dns.search", "at most 6");
    let mut cfg = base();
    cfg.dns.search = vec!["corp_example".into()];
    assert_refused(cfg, "dns.search[0]", "not a valid search domain");
    let mut cfg = base();
    cfg.dns.search = vec!["corp.example".into(), "CORP.example".into()];
    assert_refused(cfg, "dns.search[1]", "already listed at dns.search[0]");
}

#[test]
fn ntp_rules() {
    let mut cfg = base();
    cfg.ntp.servers = vec!["10.0.0.1".into(), "pool.ntp.org".into(), "fd77::123".into()];
    validate(cfg).expect("IPs and names are fine");
    for (bad, phrase) in [
        ("ntp server", "neither an IP address nor a valid host name"),
        ("10.0.0.300", "neither an IP address nor a valid host name"),
        ("0.0.0.0", "not a unicast address"),
    ] {
        let mut cfg = base();
        cfg.ntp.servers = vec![bad.into()];
        assert_refused(cfg, "ntp.servers[0]", phrase);
    }
    let mut cfg = base();
    cfg.ntp.servers = vec!["NTP.corp.example".into(), "ntp.corp.example".into()];
    assert_refused(cfg, "ntp.servers[1]", "already listed at ntp.servers[0]");
}

#[test]
fn unknown_keys_are_parse_errors_with_position() {
    let err =
        parse(&GOOD.replace("mtu = 1500", "mtu = 1500\nspeed = 10")).expect_err("unknown key");
    let text = err.to_string();
    assert!(
        text.starts_with("config is not valid TOML for format version 1: "),
        "{text}"
    );
    assert!(text.contains("line 11, column 1"), "{text}");
    assert!(text.contains("unknown field `speed`"), "{text}");
}

#[test]
fn reports_every_problem() {
    let mut cfg = base();
    cfg.hostname = "-bad".into();
    cfg.management.port = 0;
    cfg.interfaces[0].mtu = Some(100);
    let fields: Vec<String> = problems(cfg).into_iter().map(|p| p.field).collect();
    assert_eq!(fields, ["hostname", "management.port", "interface[0].mtu"]);
}

#[test]
fn round_trip_through_toml() {
    let mut cfg = base();
    cfg.gateway6 = Some("fd77::1".parse().expect("ip"));
    cfg.routes = vec![route("10.80.0.0/16", "10.77.0.2")];
    cfg.interfaces.push(iface("eth1", &[]));
    let valid = validate(cfg).expect("valid");
    let text = valid.to_toml();
    assert_eq!(parse(&text).expect("re-parse"), valid, "{text}");
    let minimal = parse("version = 1\nhostname = \"n\"\n").expect("minimal");
    assert_eq!(parse(&minimal.to_toml()).expect("re-parse"), minimal);
    assert_eq!(minimal.management.port, DEFAULT_MANAGEMENT_PORT);
}
