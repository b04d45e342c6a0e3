//! Root tests: apply, incremental changes, no-op, repair and scale against
//! a real nft inside a network namespace this test creates.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use appliance_firewall::{
    render_text, ApplyKind, CommandNft, Firewall, FirewallError, FirewallSpec, FullReason,
    NftRunner, PortSpec, Proto, SetElem,
};
use common::{Netns, SERIAL};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn spec() -> FirewallSpec {
    FirewallSpec {
        management_port: 443,
        public: BTreeSet::from([PortSpec {
            proto: Proto::Tcp,
            port: 80,
        }]),
        internal: BTreeSet::from([
            PortSpec {
                proto: Proto::Tcp,
                port: 7000,
            },
            PortSpec {
                proto: Proto::Udp,
                port: 7001,
            },
        ]),
        peers: ["10.77.0.2", "10.77.0.3", "fd77::3"]
            .iter()
            .map(|s| ip(s))
            .collect(),
        ..FirewallSpec::default()
    }
}

async fn nft(fw: &Firewall<CommandNft>, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let out = fw.runner().run(&args, None).await.expect("run nft");
    assert!(
        out.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rule id -> kernel handle.
async fn handles(fw: &Firewall<CommandNft>) -> BTreeMap<String, u64> {
    let status = fw.show().await.expect("show");
    status
        .rules
        .iter()
        .filter_map(|r| Some((r.id.clone()?, r.handle)))
        .collect()
}

async fn peers4(fw: &Firewall<CommandNft>) -> BTreeSet<SetElem> {
    let json = nft(fw, &["-j", "list", "set", "inet", "appliance", "peers4"]).await;
    let status = appliance_firewall::status::parse_listing(json.as_bytes()).expect("parse set");
    status.sets.get("peers4").cloned().unwrap_or_default()
}

#[test]
fn apply_incremental_noop_repair_and_scale() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return;
    }
    common::runtime().block_on(scenario());
}

async fn scenario() {
    let ns = Netns::new("apply");
    let mut fw = Firewall::new(CommandNft::in_netns(&ns.name));

    // First apply is full; show lists every rule id with its counter.
    let mut s = spec();
    let r = fw.apply(&s).await.expect("first apply");
    assert_eq!(r.kind, ApplyKind::Full(FullReason::FirstApply));
    let status = fw.show().await.expect("show");
    let ids: Vec<&str> = status
        .rules
        .iter()
        .filter_map(|r| r.id.as_deref())
        .collect();
    for id in [
        "established",
        "invalid",
        "loopback",
        "icmp",
        "icmp-echo",
        "icmpv6",
        "icmpv6-echo",
    ]
    .into_iter()
    .chain([
        "mgmt",
        "public-tcp",
        "public-udp",
        "internal-tcp-v4",
        "internal-tcp-v6",
    ])
    .chain([
        "internal-udp-v4",
        "internal-udp-v6",
        "default-drop",
        "forward-drop",
    ]) {
        assert!(ids.contains(&id), "rule {id} missing from {ids:?}");
    }
    for rule in &status.rules {
        assert!(rule.text.contains("counter packets"), "{rule:?}");
    }
    assert_eq!(status.sets.get("peers6").map(BTreeSet::len), Some(1));

    // Same spec again: nothing to do.
    let r = fw.apply(&s).await.expect("same spec");
    assert_eq!(r.kind, ApplyKind::NoOp);

    // Add and remove a peer: only the set changes, rule handles stay.
    let before = handles(&fw).await;
    s.peers.insert(ip("10.77.0.9"));
    let r = fw.apply(&s).await.expect("add peer");
    assert_eq!(
        r.kind,
        ApplyKind::Incremental {
            added: 1,
            removed: 0
        }
    );
    assert!(peers4(&fw).await.contains(&SetElem::Addr(ip("10.77.0.9"))));
    s.peers.remove(&ip("10.77.0.2"));
    let r = fw.apply(&s).await.expect("remove peer");
    assert_eq!(
        r.kind,
        ApplyKind::Incremental {
            added: 0,
            removed: 1
        }
    );
    let want: BTreeSet<SetElem> = ["10.77.0.3", "10.77.0.9"]
        .iter()
        .map(|a| SetElem::Addr(ip(a)))
        .collect();
    assert_eq!(peers4(&fw).await, want);
    s.peers.insert(ip("fd77::9"));
    let r = fw.apply(&s).await.expect("add v6 peer");
    assert_eq!(
        r.kind,
        ApplyKind::Incremental {
            added: 1,
            removed: 0
        }
    );
    assert_eq!(
        handles(&fw).await,
        before,
        "incremental apply must not recreate rules"
    );

    // An element deleted behind our back is put back incrementally.
    nft(
        &fw,
        &[
            "delete",
            "element",
            "inet",
            "appliance",
            "peers4",
            "{ 10.77.0.3 }",
        ],
    )
    .await;
    let r = fw.apply(&s).await.expect("repair element");
    assert_eq!(
        r.kind,
        ApplyKind::Incremental {
            added: 1,
            removed: 0
        }
    );

    // A deleted rule or table is repaired by a full apply.
    let handle = before["mgmt"].to_string();
    nft(
        &fw,
        &[
            "delete",
            "rule",
            "inet",
            "appliance",
            "input",
            "handle",
            &handle,
        ],
    )
    .await;
    let r = fw.apply(&s).await.expect("repair rule");
    assert!(
        matches!(r.kind, ApplyKind::Full(FullReason::Drift(_))),
        "{r:?}"
    );
    nft(&fw, &["delete", "table", "inet", "appliance"]).await;
    let r = fw.apply(&s).await.expect("repair table");
    assert!(
        matches!(r.kind, ApplyKind::Full(FullReason::Drift(_))),
        "{r:?}"
    );
    assert_eq!(fw.apply(&s).await.expect("settled").kind, ApplyKind::NoOp);

    // Management port is structural.
    s.management_port = 8443;
    let r = fw.apply(&s).await.expect("mgmt port");
    assert!(
        matches!(r.kind, ApplyKind::Full(FullReason::Structural(_))),
        "{r:?}"
    );
    assert!(fw
        .show()
        .await
        .expect("show")
        .rules
        .iter()
        .any(|r| r.text.contains("tcp dport 8443")));

    // The text rendering loads too (the bench's `nft -f` baseline).
    let out = fw
        .runner()
        .run(
            &["-f".into(), "-".into()],
            Some(render_text(&s).into_bytes()),
        )
        .await
        .expect("nft -f");
    assert!(out.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // 1000 peers: full apply, then adding one is incremental.
    s.peers = (0..1000u32)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 78, (i / 250) as u8, (i % 250 + 1) as u8)))
        .collect();
    let full = fw.apply(&s).await.expect("1000 peers");
    s.peers.insert(ip("10.79.0.1"));
    let inc = fw.apply(&s).await.expect("1001st peer");
    assert_eq!(
        inc.kind,
        ApplyKind::Incremental {
            added: 1,
            removed: 0
        }
    );
    assert_eq!(peers4(&fw).await.len(), 1001);
    println!(
        "1000 peers: full {:?}; add one: {:?} (check {:?})",
        full.elapsed, inc.elapsed, inc.check
    );

    // Removal deletes only our table, and is idempotent.
    fw.remove().await.expect("remove");
    fw.remove().await.expect("remove again");
    assert!(matches!(fw.show().await, Err(FirewallError::TableMissing)));
    assert!(fw.applied().is_none());
}
