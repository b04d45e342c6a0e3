//! applianced figures: resident memory of an idle hosted node with the two
//! demo services placed.

use std::time::Duration;

use anyhow::Context;
use qa::lan::Lan;
use qa::node::{HostedNode, NodeSpec};

use super::{median, Metric};

/// Idle time after ready before sampling, and the samples taken.
const IDLE: Duration = Duration::from_secs(3);
const SAMPLES: usize = 5;
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// Every applianced figure.
pub fn measure() -> Vec<Metric> {
    let name = "applianced_rss_idle";
    eprintln!("bench: {name}");
    vec![match rss_idle() {
        Ok((mib, services)) => {
            Metric::new(
                name,
                "MiB",
                mib,
                None,
                format!(
                "VmRSS of applianced ({} build), hosted node with {services}, median of {SAMPLES} \
                 samples after {}s idle past ready",
                if cfg!(debug_assertions) { "debug" } else { "release" },
                IDLE.as_secs()
            ),
            )
        }
        Err(e) => Metric::failed(name, "MiB", &e),
    }]
}

fn rss_idle() -> anyhow::Result<(f64, String)> {
    let tag = format!("b{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    let mut node = HostedNode::start(&lan, &tag, &NodeSpec::new("bench", "10.77.0.11/24"))?;
    let rt = tokio::runtime::Runtime::new().context("building a tokio runtime")?;
    let services = rt.block_on(async {
        node.wait_ready(Duration::from_secs(60)).await?;
        let mut client = node.client().await?;
        let list = client
            .list_services(appliance_api::v1::ListServicesRequest {})
            .await?
            .into_inner();
        anyhow::Ok(
            list.services
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
                .join(" + "),
        )
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
    Ok((median(&samples).context("no samples")?, services))
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
