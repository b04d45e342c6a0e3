//! Drift: what someone changes by hand in a node's namespace (the firewall
//! table, a set element, an address, the hostname) is put back by the periodic
//! reconcile, without a new generation.

mod common;

use std::time::Duration;

use appliance_api::v1::StatusRequest;
use common::*;
use qa::node::{HostedNode, NodeSpec};
use qa::wait;

fn nft_list(node: &HostedNode) -> String {
    node.ns
        .command("nft")
        .args(["list", "table", "inet", "appliance"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_repaired_by_the_reconcilers() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let mut spec = NodeSpec::new("a", "10.77.0.11/24");
    spec.extra_args = vec!["--reconcile-interval".into(), "1".into()];
    let (_lan, node) = one_node('d', &spec).await?;
    let before = snapshot(&node).await?;
    let limit = Duration::from_secs(15);
    let every = Duration::from_millis(200);

    // The whole table, gone.
    node.ns
        .command("nft")
        .args(["delete", "table", "inet", "appliance"])
        .status()?;
    assert!(nft_list(&node).is_empty());
    wait::until(limit, every, "the firewall table to come back", || {
        nft_list(&node).contains("default-drop").then_some(())
    })?;

    // One element of a set.
    node.ns
        .command("nft")
        .args([
            "delete",
            "element",
            "inet",
            "appliance",
            "public_tcp",
            "{ 8080 }",
        ])
        .status()?;
    wait::until(limit, every, "port 8080 back in public_tcp", || {
        nft_list(&node)
            .contains("elements = { 7443, 8080 }")
            .then_some(())
    })?;

    // The node's address.
    node.ns
        .ip(&["addr", "del", "10.77.0.11/24", "dev", "eth0"])?;
    wait::until(limit, every, "the address to come back", || {
        node.ns
            .ip(&["-br", "addr"])
            .ok()
            .filter(|a| a.contains("10.77.0.11/24"))
    })?;

    // The hostname, inside applianced's own UTS namespace.
    let pid = node.pid().unwrap_or(0).to_string();
    std::process::Command::new("nsenter")
        .args(["-t", &pid, "-u", "hostname", "intruder"])
        .status()?;
    wait::until(limit, every, "the hostname to come back", || {
        let out = std::process::Command::new("nsenter")
            .args(["-t", &pid, "-u", "hostname"])
            .output()
            .ok()?;
        (String::from_utf8_lossy(&out.stdout).trim() == "a").then_some(())
    })?;

    // Same state as before, same generation: repairs are not changes.
    assert_eq!(snapshot(&node).await?, before);
    let status = node
        .client()
        .await?
        .status(StatusRequest {})
        .await?
        .into_inner();
    assert_eq!(status.generation, before.config.1);
    assert!(
        status.reconcilers.iter().all(|r| r.ok),
        "{:?}",
        status.reconcilers
    );
    let log = std::fs::read_to_string(node.state_dir().join("applianced.log"))?;
    assert!(log.contains("repaired drift"), "repairs are not logged");
    Ok(())
}
