//! Two hosted nodes and an outsider on one LAN, with real TCP: the demo
//! front-end's public port is open to everyone, internal ports only to peers,
//! and peer changes take effect at once while established connections survive.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use appliance_api::v1::{PeerRequest, ShowFirewallRequest};
use common::*;
use qa::lan::{connect_from, Lan};
use qa::netns::Netns;
use qa::node::{HostedNode, NodeSpec};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_and_internal_ports_follow_the_peer_set() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let tag = format!("c{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    let mut spec_a = NodeSpec::new("a", "10.77.0.11/24");
    spec_a.addresses.push("fd77::11/64".into());
    let a = HostedNode::start(&lan, &tag, &spec_a)?;
    let b = HostedNode::start(&lan, &tag, &NodeSpec::new("b", "10.77.0.12/24"))?;
    let outsider = Netns::create(&format!("qa-{tag}-x"))?;
    lan.attach(&outsider, "eth0")?;
    Lan::address(&outsider, "eth0", "10.77.0.99/24")?;
    Lan::address(&outsider, "eth0", "fd77::99/64")?;
    a.wait_ready(READY_LIMIT).await?;
    b.wait_ready(READY_LIMIT).await?;

    let (mut ca, mut cb) = (a.client().await?, b.client().await?);
    ca.add_peer(PeerRequest {
        address: "10.77.0.12".into(),
    })
    .await?;
    cb.add_peer(PeerRequest {
        address: "10.77.0.11".into(),
    })
    .await?;

    // The public port answers everyone, over IPv4 and IPv6.
    let page = http_get(&outsider, addr("10.77.0.11:8080"), "/")?;
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("Appliance portal"),
        "{page}"
    );
    let page6 = qa::wait::until(
        Duration::from_secs(10),
        Duration::from_millis(200),
        "IPv6 DAD",
        || http_get(&outsider, addr("[fd77::11]:8080"), "/healthz").ok(),
    )?;
    assert!(page6.starts_with("HTTP/1.1 200"), "{page6}");
    // The front-end reaches its back-end, through the node's loopback.
    let posted = http(
        &outsider,
        addr("10.77.0.11:8080"),
        "POST /events HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
    )?;
    assert!(posted.starts_with("HTTP/1.1 200"), "{posted}");

    // Internal ports: peers yes, outsider no, on both nodes.
    assert!(
        !reachable(&outsider, addr("10.77.0.11:7100")),
        "outsider reached A's internal port"
    );
    assert!(
        !reachable(&outsider, addr("10.77.0.12:7100")),
        "outsider reached B's internal port"
    );
    assert!(
        reachable(&a.ns, addr("10.77.0.12:7100")),
        "A cannot reach B's internal port"
    );
    let mut established = connect_from(&b.ns, addr("10.77.0.11:7100"), Duration::from_secs(3))??;
    ping(&mut established)?;

    // Removing B from A's peers closes the door to new connections only.
    ca.remove_peer(PeerRequest {
        address: "10.77.0.12".into(),
    })
    .await?;
    assert!(
        !reachable(&b.ns, addr("10.77.0.11:7100")),
        "removed peer still reaches A"
    );
    ping(&mut established)?;
    // Adding it back opens it again; the old connection never noticed.
    ca.add_peer(PeerRequest {
        address: "10.77.0.12".into(),
    })
    .await?;
    assert!(
        reachable(&b.ns, addr("10.77.0.11:7100")),
        "re-added peer cannot reach A"
    );
    ping(&mut established)?;

    // Peers are by address: the outsider in, then out.
    ca.add_peer(PeerRequest {
        address: "10.77.0.99".into(),
    })
    .await?;
    assert!(reachable(&outsider, addr("10.77.0.11:7100")));
    ca.remove_peer(PeerRequest {
        address: "10.77.0.99".into(),
    })
    .await?;
    assert!(!reachable(&outsider, addr("10.77.0.11:7100")));
    ping(&mut established)?;

    // The counters saw it all.
    let fw = ca.show_firewall(ShowFirewallRequest {}).await?.into_inner();
    let count = |id: &str| {
        fw.rules
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.packets)
            .unwrap_or(0)
    };
    assert!(count("public-tcp") > 0, "public-tcp counter did not move");
    assert!(
        count("internal-tcp-v4") > 0,
        "internal-tcp-v4 counter did not move"
    );
    assert!(
        count("default-drop") > 0,
        "default-drop counter did not move"
    );
    let peers4 = fw
        .sets
        .iter()
        .find(|s| s.name == "peers4")
        .map(|s| s.elements.clone());
    assert_eq!(peers4, Some(vec!["10.77.0.12".to_owned()]));
    Ok(())
}
