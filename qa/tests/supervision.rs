//! Services under applianced: a killed service comes back after its backoff,
//! one that keeps failing ends `failed` and stays down until restarted by hand.

mod common;

use std::time::{Duration, Instant};

use appliance_api::v1::{RestartServiceRequest, ServiceInfo};
use common::*;
use qa::lan::Lan;
use qa::node::{HostedNode, NodeSpec};
use qa::wait;

const CRASHER: &str = r#"version = 1
name = "crasher"
role = "backend"
command = "/bin/sh"
args = ["-c", "echo crashing; exit 3"]

[restart]
policy = "on-failure"
backoff_initial_ms = 100
backoff_max_ms = 400
max_restarts = 3
"#;

/// Pids still inside the node's namespace.
fn node_pids(node: &HostedNode) -> Vec<String> {
    std::process::Command::new("ip")
        .args(["netns", "pids", node.ns.name()])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

async fn service(node: &HostedNode, name: &str) -> anyhow::Result<ServiceInfo> {
    services(node)
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow::anyhow!("service {name} not listed"))
}

async fn wait_for(
    node: &HostedNode,
    name: &str,
    what: &str,
    ok: impl Fn(&ServiceInfo) -> bool,
) -> anyhow::Result<ServiceInfo> {
    wait::until_async(
        Duration::from_secs(60),
        Duration::from_millis(50),
        what,
        || async { service(node, name).await.ok().filter(|s| ok(s)) },
    )
    .await
}

/// The backoff delays applianced logged for `service` ("restarting after
/// backoff ... delay=500ms"), in order.
fn backoffs(log: &str, service: &str) -> Vec<String> {
    let tag = format!("service={service}");
    log.lines()
        .filter(|l| l.contains("restarting after backoff"))
        .filter(|l| l.split_whitespace().any(|w| w == tag))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("delay="))
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_services_restart_with_backoff_and_crashers_end_failed() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let tag = format!("s{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    let mut spec = NodeSpec::new("a", "10.77.0.11/24");
    spec.extra_manifests
        .push(("crasher.toml".into(), CRASHER.into()));
    let mut node = HostedNode::start(&lan, &tag, &spec)?;

    // The crasher: 1 start + 3 restarts, then failed, and it stays failed.
    let failed = wait_for(&node, "crasher", "crasher to fail", |s| s.state == "failed").await?;
    assert_eq!(failed.restarts, 3, "{failed:?}");
    assert!(
        failed.last_error.contains("exit") || failed.last_exit.contains('3'),
        "{failed:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = service(&node, "crasher").await?;
    assert_eq!(
        (still.state.as_str(), still.restarts),
        ("failed", 3),
        "failed service was restarted: {still:?}"
    );
    let log = node
        .client()
        .await?
        .logs(appliance_api::v1::LogsRequest {
            lines: 200,
            service: "crasher".into(),
        })
        .await?
        .into_inner();
    assert!(
        log.lines.iter().any(|l| l.contains("crashing")),
        "service output not in the log"
    );

    // The portal: SIGKILL, then it is back after the first backoff (500 ms).
    let first = wait_for(&node, "portal", "portal healthy", |s| s.state == "healthy").await?;
    let killed_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(first.pid)?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let second = wait_for(&node, "portal", "portal restarted", |s| {
        s.pid != 0 && s.pid != first.pid
    })
    .await?;
    let delay1 = killed_at.elapsed();
    assert_eq!(second.restarts, first.restarts + 1);
    // From both sides: not before its 500 ms backoff, and before the 1 s a
    // fixed 1 s backoff would take (the rest is polling latency).
    assert!(
        delay1 >= Duration::from_millis(450),
        "restarted after {delay1:?}, before its backoff"
    );
    assert!(
        delay1 < Duration::from_millis(1000),
        "restarted after {delay1:?}: the first backoff is 500 ms"
    );

    // Killed again before its failure count resets: the backoff has doubled.
    let killed_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(second.pid)?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let third = wait_for(&node, "portal", "portal restarted again", |s| {
        s.pid != 0 && s.pid != second.pid
    })
    .await?;
    let delay2 = killed_at.elapsed();
    assert_eq!(third.restarts, first.restarts + 2);
    assert!(
        delay2 >= Duration::from_millis(950),
        "second restart after {delay2:?}: backoff did not grow"
    );
    assert!(
        delay2 < Duration::from_millis(2000),
        "second restart after {delay2:?}: the backoff grew past double"
    );
    // The same seen from applianced: the delays it slept, exactly.
    let log = std::fs::read_to_string(node.state_dir().join("applianced.log"))?;
    let slept = backoffs(&log, "portal");
    assert_eq!(
        slept[slept.len().saturating_sub(2)..],
        ["500ms", "1s"],
        "portal's backoffs (killed after {delay1:?}, then {delay2:?})"
    );
    wait_for(&node, "portal", "portal healthy again", |s| {
        s.state == "healthy"
    })
    .await?;

    // A failed service restarts on request, then fails again by itself.
    let mut client = node.client().await?;
    client
        .restart_service(RestartServiceRequest {
            name: "crasher".into(),
        })
        .await?;
    wait_for(&node, "crasher", "crasher retried", |s| s.restarts > 3).await?;
    let err = client
        .restart_service(RestartServiceRequest {
            name: "nope".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), tonic::Code::NotFound, "{}", err.message());

    // A clean stop: services go in reverse dependency order (portal needs
    // audit), and nothing is left running in the namespace.
    node.stop()?;
    let log = std::fs::read_to_string(node.state_dir().join("applianced.log"))?;
    let stopped = |name: &str| log.rfind(&format!("stopped service={name} "));
    let (portal, audit) = (stopped("portal"), stopped("audit"));
    assert!(
        portal.is_some() && audit.is_some(),
        "stops not logged:\n{log}"
    );
    assert!(
        portal < audit,
        "audit stopped before portal, which depends on it"
    );
    let left = node_pids(&node);
    assert!(left.is_empty(), "processes left in the namespace: {left:?}");
    Ok(())
}
