//! applianced figures: resident memory of an idle hosted node with the two
//! demo services placed, sampled once a periodic reconcile pass has run.

use std::time::Duration;

use anyhow::Context;
use qa::lan::Lan;
use qa::node::{HostedNode, NodeSpec};

use super::{median, Metric};

/// Idle time after the periodic reconcile pass before sampling, and the
/// samples taken.
const IDLE: Duration = Duration::from_secs(3);
/// Bound of the wait for the first periodic reconcile pass (applianced's
/// default interval is 30 s).
const RECONCILE_LIMIT: Duration = Duration::from_secs(90);
const SAMPLES: usize = 5;
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// Every applianced figure.
pub fn measure() -> Vec<Metric> {
    let name = "applianced_rss_idle";
    eprintln!("bench: {name}");
    vec![match rss_idle() {
        Ok((mib, services, waited)) => Metric::new(
            name,
            "MiB",
            mib,
            None,
            format!(
                "VmRSS of applianced ({} build), hosted node with {services}, default \
                 --reconcile-interval; median of {SAMPLES} samples taken {} s after the first \
                 periodic reconcile pass ran (seen in the API: the network reconciler's \
                 at_unix_ms in Status moved past its value at ready, {waited:.1} s after ready)",
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                },
                IDLE.as_secs()
            ),
        ),
        Err(e) => Metric::failed(name, "MiB", &e),
    }]
}

/// The median RSS (MiB), the services placed, and how long after ready the
/// first periodic reconcile pass was seen (s).
fn rss_idle() -> anyhow::Result<(f64, String, f64)> {
    let tag = format!("b{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    let mut node = HostedNode::start(&lan, &tag, &NodeSpec::new("bench", "10.77.0.11/24"))?;
    let rt = tokio::runtime::Runtime::new().context("building a tokio runtime")?;
    let (services, waited) = rt.block_on(async {
        node.wait_ready(Duration::from_secs(60)).await?;
        let ready_at = std::time::Instant::now();
        let mut client = node.client().await?;
        let list = client
            .list_services(appliance_api::v1::ListServicesRequest {})
            .await?
            .into_inner();
        let services = list
            .services
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
            .join(" + ");
        // The boot's reconcile recorded the network reconciler's first
        // observation; the periodic pass records a later one.
        let first = network_run(&node).await?;
        qa::wait::until_async(
            RECONCILE_LIMIT,
            Duration::from_millis(250),
            "a periodic reconcile pass",
            || async {
                network_run(&node)
                    .await
                    .ok()
                    .filter(|at| *at > first)
                    .map(|_| ())
            },
        )
        .await?;
        anyhow::Ok((services, ready_at.elapsed().as_secs_f64()))
    })?;
    std::thread::sleep(IDLE);
    let pid = node.pid().context("applianced has no pid")?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
    anyhow::ensure!(
        comm.trim() == "applianced",
        "pid {pid} is {comm:?}, not applianced"
    );
    let mut samples = Vec::new();
    for _ in 0..SAMPLES {
        samples.push(vm_rss_kib(pid)? / 1024.0);
        std::thread::sleep(SAMPLE_EVERY);
    }
    node.stop()?;
    let services = if services.is_empty() {
        "no services".to_owned()
    } else {
        services
    };
    Ok((median(&samples).context("no samples")?, services, waited))
}

/// When the network reconciler last ran successfully (Unix ms), as the
/// node's Status reports it.
async fn network_run(node: &HostedNode) -> anyhow::Result<u64> {
    let status = node
        .client()
        .await?
        .status(appliance_api::v1::StatusRequest {})
        .await?
        .into_inner();
    let network = status
        .reconcilers
        .iter()
        .find(|r| r.name == "network")
        .context("Status has no network reconciler")?;
    anyhow::ensure!(
        network.ok,
        "the network reconciler failed: {}",
        network.message
    );
    Ok(network.at_unix_ms)
}

/// VmRSS of `pid` in KiB, from /proc/<pid>/status.
fn vm_rss_kib(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .with_context(|| format!("{path} has no VmRSS line"))?;
    let kib = line
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("odd line in {path}: {line}"))?;
    kib.parse()
        .with_context(|| format!("odd VmRSS in {path}: {line}"))
}
