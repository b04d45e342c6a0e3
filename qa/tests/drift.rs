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

/// How many repairs applianced has logged so far.
fn repairs(node: &HostedNode) -> usize {
    std::fs::read_to_string(node.state_dir().join("applianced.log"))
        .map(|log| log.matches("repaired drift").count())
        .unwrap_or(0)
}

/// Runs the drift injection `cmd`, which must succeed, and checks that it took
/// effect (`drifted` holds) before the periodic reconcile can put it back; a
/// repair logged meanwhile also proves the drift happened. Returns the number
/// of repairs logged before the injection.
fn inject(
    node: &HostedNode,
    what: &str,
    cmd: &mut std::process::Command,
    drifted: impl Fn() -> bool,
) -> anyhow::Result<usize> {
    let before = repairs(node);
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "injecting {what}: {cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    anyhow::ensure!(
        drifted() || repairs(node) > before,
        "injecting {what}: {cmd:?} succeeded but changed nothing"
    );
    Ok(before)
}

/// Waits for `repaired` to hold and, when the repair is logged (`before`
/// given; the hostname's is silent), for applianced to have logged a repair
/// since `before`: the reconciler put it back, nothing else did.
fn wait_repaired(
    node: &HostedNode,
    what: &str,
    before: Option<usize>,
    repaired: impl Fn() -> bool,
) -> anyhow::Result<()> {
    wait::until(
        Duration::from_secs(15),
        Duration::from_millis(200),
        what,
        || (repaired() && before.is_none_or(|n| repairs(node) > n)).then_some(()),
    )
}

/// The hostname inside the UTS namespace of process `pid`.
fn hostname(pid: &str) -> String {
    std::process::Command::new("nsenter")
        .args(["-t", pid, "-u", "hostname"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
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
    assert!(
        nft_list(&node).contains("default-drop"),
        "no firewall to drift"
    );

    // The whole table, gone.
    let n = inject(
        &node,
        "a deleted table",
        node.ns
            .command("nft")
            .args(["delete", "table", "inet", "appliance"]),
        || nft_list(&node).is_empty(),
    )?;
    wait_repaired(&node, "the firewall table to come back", Some(n), || {
        nft_list(&node).contains("default-drop")
    })?;

    // One element of a set.
    let full = "elements = { 7443, 8080 }";
    assert!(nft_list(&node).contains(full), "{}", nft_list(&node));
    let n = inject(
        &node,
        "a deleted set element",
        node.ns.command("nft").args([
            "delete",
            "element",
            "inet",
            "appliance",
            "public_tcp",
            "{ 8080 }",
        ]),
        || nft_list(&node).contains("elements = { 7443 }"),
    )?;
    wait_repaired(&node, "port 8080 back in public_tcp", Some(n), || {
        nft_list(&node).contains(full)
    })?;

    // The node's address.
    let has_addr = || {
        node.ns
            .ip(&["-br", "addr"])
            .is_ok_and(|a| a.contains("10.77.0.11/24"))
    };
    let n = inject(
        &node,
        "a deleted address",
        std::process::Command::new("ip").args([
            "-n",
            node.ns.name(),
            "addr",
            "del",
            "10.77.0.11/24",
            "dev",
            "eth0",
        ]),
        || !has_addr(),
    )?;
    wait_repaired(&node, "the address to come back", Some(n), has_addr)?;

    // The hostname, inside applianced's own UTS namespace.
    let pid = node
        .pid()
        .ok_or_else(|| anyhow::anyhow!("applianced not running"))?
        .to_string();
    assert_eq!(hostname(&pid), "a");
    // Set and read back in one go: that repair is not logged, so the check
    // must come before the reconciler can look.
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &pid,
            "-u",
            "sh",
            "-c",
            "hostname intruder && hostname",
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "intruder",
        "injecting a changed hostname: {} {:?} {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_repaired(&node, "the hostname to come back", None, || {
        hostname(&pid) == "a"
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
