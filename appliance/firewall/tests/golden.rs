//! Golden-file tests of the pure renderings (no root). Regenerate the files
//! with `UPDATE_GOLDEN=1 cargo test -p appliance-firewall --test golden`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use appliance_firewall::{
    diff, render_add_peer_json, render_delta_json, render_nftables, render_text, Diff,
    FirewallSpec, PortSpec, Proto,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn port(proto: Proto, port: u16) -> PortSpec {
    PortSpec { proto, port }
}

fn empty() -> FirewallSpec {
    FirewallSpec {
        management_port: 443,
        ..FirewallSpec::default()
    }
}

fn peers() -> FirewallSpec {
    FirewallSpec {
        peers: ["10.77.0.2", "10.77.0.3", "fd77::3"]
            .iter()
            .map(|s| ip(s))
            .collect(),
        internal: BTreeSet::from([port(Proto::Tcp, 7000)]),
        ..empty()
    }
}

fn ports() -> FirewallSpec {
    FirewallSpec {
        management_port: 8443,
        public: BTreeSet::from([
            port(Proto::Tcp, 80),
            port(Proto::Tcp, 443),
            port(Proto::Udp, 53),
        ]),
        internal: BTreeSet::from([port(Proto::Tcp, 7000), port(Proto::Udp, 7001)]),
        peers: BTreeSet::from([ip("10.77.0.2"), ip("fd77::2")]),
        ..FirewallSpec::default()
    }
}

/// `ports` with the management port limited to two IPv4 networks and one
/// IPv6 network.
fn restricted() -> FirewallSpec {
    FirewallSpec {
        management_sources: ["192.168.10.0/24", "10.20.0.0/16", "fd00:10::/64"]
            .iter()
            .map(|s| s.parse().expect("test network"))
            .collect(),
        ..ports()
    }
}

/// Compares `actual` with `tests/data/<name>`, or rewrites the file.
fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        expected, actual,
        "{name} differs; rerun with UPDATE_GOLDEN=1 if intended"
    );
}

fn pretty_json(spec: &FirewallSpec) -> String {
    let mut s = serde_json::to_string_pretty(&render_nftables(spec)).expect("serialize");
    s.push('\n');
    s
}

#[test]
fn text_renderings() {
    golden("empty.nft", &render_text(&empty()));
    golden("peers.nft", &render_text(&peers()));
    golden("ports.nft", &render_text(&ports()));
    golden("restricted.nft", &render_text(&restricted()));
}

#[test]
fn json_renderings() {
    golden("empty.json", &pretty_json(&empty()));
    golden("peers.json", &pretty_json(&peers()));
    golden("ports.json", &pretty_json(&ports()));
    golden("restricted.json", &pretty_json(&restricted()));
}

#[test]
fn compact_json_is_the_pretty_json() {
    let compact: serde_json::Value =
        serde_json::from_str(&appliance_firewall::render_json(&ports())).expect("valid JSON");
    let pretty: serde_json::Value =
        serde_json::from_str(&pretty_json(&ports())).expect("valid JSON");
    assert_eq!(compact, pretty);
}

#[test]
fn incremental_batches() {
    let mut s = render_add_peer_json(ip("10.77.0.9"));
    s.push('\n');
    golden("add-peer.json", &s);
    assert!(matches!(diff(&peers(), &ports()), Diff::NeedsFull { .. }));
    let mut new = ports();
    new.management_port = 443;
    let Diff::Sets(deltas) = diff(&peers(), &new) else {
        panic!("same management port: set-only change")
    };
    let mut s = render_delta_json(&deltas);
    s.push('\n');
    golden("peers-to-ports.json", &s);
}
