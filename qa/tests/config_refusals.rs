//! Every bad input is refused through the real API with a message naming what
//! was wrong, and leaves the node exactly as it was: config and generation,
//! addresses, routes, firewall, hostname, and (checked by restarting the node)
//! the stored state. A change the kernel refuses half-way is rolled back.

mod common;

use std::time::Duration;

use appliance_api::v1::{ConfigText, GetConfigRequest, PeerRequest};
use common::*;
use qa::node::NodeSpec;

const GOOD: &str = r#"version = 1
hostname = "a"
gateway4 = "10.77.0.1"
[[interface]]
name = "eth0"
addresses = ["10.77.0.11/24"]
"#;

/// (what, config, a phrase the refusal must contain)
fn bad_configs() -> Vec<(&'static str, String, &'static str)> {
    let with_addr = |a: &str| GOOD.replace("10.77.0.11/24", a);
    vec![
        (
            "network address",
            with_addr("10.77.0.0/24"),
            "10.77.0.0 is the network address of 10.77.0.0/24",
        ),
        (
            "broadcast address",
            with_addr("10.77.0.255/24"),
            "is the broadcast address",
        ),
        (
            "prefix out of range",
            with_addr("10.77.0.11/33"),
            "not valid TOML",
        ),
        (
            "IPv6 anycast",
            with_addr("fd77::/64"),
            "subnet-router anycast",
        ),
        (
            "gateway outside every subnet",
            GOOD.replace("10.77.0.1\"", "10.99.0.1\""),
            "gateway4 = \"10.99.0.1\": is outside every configured IPv4 subnet",
        ),
        (
            "duplicate address",
            GOOD.replace(
                "[\"10.77.0.11/24\"]",
                "[\"10.77.0.11/24\", \"10.77.0.11/24\"]",
            ),
            "is already configured",
        ),
        (
            "overlapping subnets",
            format!("{GOOD}[[interface]]\nname = \"eth1\"\naddresses = [\"10.77.0.130/25\"]\n"),
            "overlaps 10.77.0.0/24",
        ),
        (
            "invalid hostname",
            GOOD.replace("\"a\"", "\"-a\""),
            "hostname = \"-a\": is not a valid host name",
        ),
        (
            "hostname too long",
            GOOD.replace("\"a\"", &format!("\"{}\"", "a".repeat(64))),
            "hostname",
        ),
        (
            "unknown key",
            GOOD.replace("hostname", "colour = \"blue\"\nhostname"),
            "unknown field `colour`",
        ),
        (
            "misspelt key",
            GOOD.replace("addresses", "adresses"),
            "unknown field `adresses`",
        ),
        (
            "format version",
            GOOD.replace("version = 1", "version = 2"),
            "format version 2 is not supported",
        ),
        ("not TOML", "hostname = ".to_owned(), "not valid TOML"),
        (
            "interface missing",
            GOOD.replace("eth0", "eth9"),
            "interface \"eth9\" is configured but does not exist",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused_and_change_nothing() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let (_lan, mut node) = one_node('r', &NodeSpec::new("a", "10.77.0.11/24")).await?;
    let mut client = node.client().await?;
    // Start from GOOD (adds a gateway) and a peer, so there is something to lose.
    client.set_config(ConfigText { toml: GOOD.into() }).await?;
    client
        .add_peer(PeerRequest {
            address: "10.77.0.12".into(),
        })
        .await?;
    // An address applianced did not add must survive everything below.
    node.ns
        .ip(&["addr", "add", "10.88.0.5/24", "dev", "eth0"])?;
    let before = snapshot(&node).await?;
    assert_eq!(before.hostname, "a");

    for (what, toml, phrase) in bad_configs() {
        let validated = client
            .validate_config(ConfigText { toml: toml.clone() })
            .await?
            .into_inner();
        let err = client
            .set_config(ConfigText { toml })
            .await
            .expect_err(what);
        assert!(
            err.message().contains(phrase),
            "{what}: {:?} lacks {phrase:?}",
            err.message()
        );
        if what != "interface missing" {
            // Caught by validation alone, and validate says the same.
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{what}");
            assert!(
                !validated.valid && validated.problems.iter().any(|p| p.contains(phrase)),
                "{what}: {validated:?}"
            );
        }
        assert_eq!(snapshot(&node).await?, before, "{what} changed the node");
    }

    for (what, address, phrase) in [
        (
            "peer not an address",
            "10.77.0",
            "is not an IPv4 or IPv6 address",
        ),
        (
            "peer is own address",
            "10.77.0.11",
            "this node's own address",
        ),
        ("peer loopback", "127.0.0.1", "loopback"),
        ("peer twice", "10.77.0.12", "already a peer"),
    ] {
        let err = client
            .add_peer(PeerRequest {
                address: address.into(),
            })
            .await
            .expect_err(what);
        assert!(err.message().contains(phrase), "{what}: {}", err.message());
    }
    let err = client
        .remove_peer(PeerRequest {
            address: "10.77.0.13".into(),
        })
        .await
        .expect_err("remove");
    assert!(err.message().contains("not a peer"), "{}", err.message());
    assert_eq!(
        snapshot(&node).await?,
        before,
        "peer refusals changed the node"
    );

    // A change the kernel refuses half-way: IPv6 is off on eth0, so the IPv6
    // address fails after the IPv4 one changed; everything is put back.
    node.ns
        .command("sysctl")
        .args(["-qw", "net.ipv6.conf.eth0.disable_ipv6=1"])
        .status()?;
    let half = GOOD.replace(
        "[\"10.77.0.11/24\"]",
        "[\"10.77.0.21/24\", \"fd77::21/64\"]",
    );
    let err = client
        .set_config(ConfigText { toml: half })
        .await
        .expect_err("kernel refusal");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message()
            .contains("previous configuration was restored"),
        "{}",
        err.message()
    );
    assert_eq!(
        snapshot(&node).await?,
        before,
        "a rolled-back change left traces"
    );
    node.ns
        .command("sysctl")
        .args(["-qw", "net.ipv6.conf.eth0.disable_ipv6=0"])
        .status()?;

    // A good change goes through: new address in, old out, foreign kept.
    let moved = GOOD
        .replace("10.77.0.11/24", "10.77.0.21/24")
        .replace("\"a\"", "\"a2\"");
    let reply = client
        .set_config(ConfigText { toml: moved })
        .await?
        .into_inner();
    assert_eq!(reply.generation, before.config.1 + 1);
    let after = snapshot(&node).await?;
    assert!(
        after.addresses.contains("10.77.0.21/24"),
        "{}",
        after.addresses
    );
    assert!(
        !after.addresses.contains("10.77.0.11/24"),
        "{}",
        after.addresses
    );
    assert!(
        after.addresses.contains("10.88.0.5/24"),
        "foreign address removed: {}",
        after.addresses
    );
    assert!(
        after.routes.contains("default via 10.77.0.1"),
        "{}",
        after.routes
    );
    assert_eq!(after.hostname, "a2");

    // The stored state is the applied one: a restart converges on it unchanged.
    node.stop()?;
    node.launch()?;
    node.wait_ready(READY_LIMIT).await?;
    let restarted = snapshot(&node).await?;
    assert_eq!(restarted.config, after.config);
    assert_eq!(restarted.addresses, after.addresses);
    assert_eq!(restarted.firewall, after.firewall);
    let cfg = node
        .client()
        .await?
        .get_config(GetConfigRequest {})
        .await?
        .into_inner();
    assert!(cfg.toml.contains("10.77.0.21/24"));
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_file_at_boot_keeps_the_stored_state() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let (_lan, mut node) = one_node('f', &NodeSpec::new("a", "10.77.0.11/24")).await?;
    let before = snapshot(&node).await?;
    node.stop()?;
    // The admin breaks the file while the node is down.
    std::fs::write(
        node.state_dir().join("config.toml"),
        "version = 1\nhostname = \"bad host\"\n",
    )?;
    node.launch()?;
    node.wait_ready(READY_LIMIT).await?;
    let after = snapshot(&node).await?;
    assert_eq!(after.config, before.config);
    assert_eq!(after.addresses, before.addresses);
    let status = node
        .client()
        .await?
        .status(appliance_api::v1::StatusRequest {})
        .await?
        .into_inner();
    assert_eq!(status.generation, before.config.1);
    let log = std::fs::read_to_string(node.state_dir().join("applianced.log"))?;
    assert!(
        log.contains("is not a valid host name"),
        "refusal not logged"
    );
    Ok(())
}
