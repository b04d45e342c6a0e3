//! Cluster figures, hosted (namespaces on a bridge): how long a join takes
//! from the administrator's request until the new node's services are
//! healthy and every node's firewall follows, and how many exchanges of an
//! established connection to a public port were lost or stalled meanwhile.
//!
//! Setup: A forms a cluster, C joins it as a front-end; then B is added
//! and removed again, [`CYCLES`] times. A join is over when all three nodes
//! report the same generation with B active (B reports itself active once
//! its services are healthy, and a node reports a generation only after
//! its firewall and services followed it). Meanwhile an outsider keeps one
//! HTTP keep-alive connection to A's portal with a request every
//! [`EVERY`]; a reply later than [`STALL`] (a lost segment waits for a TCP
//! retransmission, at least 200 ms) or none at all counts as lost.

use std::time::{Duration, Instant};

use anyhow::Context;
use appliance_api::v1::{ClusterAddRequest, ClusterFormRequest, ClusterRemoveRequest};
use qa::lan::Lan;
use qa::netns::Netns;
use qa::node::{cluster_status, wait_converged, HostedNode, NodeSpec};
use qa::steady::Steady;

use super::{median, Metric};

/// Joins measured.
const CYCLES: usize = 5;
/// Requests on the kept connection, one every this long.
const EVERY: Duration = Duration::from_millis(10);
/// A reply slower than this counts as lost.
const STALL: Duration = Duration::from_millis(200);
/// Bound of every wait.
const LIMIT: Duration = Duration::from_secs(60);

/// Both cluster figures.
pub fn measure() -> Vec<Metric> {
    eprintln!("bench: join_latency, join_lost_packets");
    let result = tokio::runtime::Runtime::new()
        .context("building a tokio runtime")
        .and_then(|rt| rt.block_on(joins()));
    match result {
        Ok((latencies, lost, exchanges)) => {
            let shown: Vec<String> = latencies.iter().map(|s| format!("{s:.2}")).collect();
            vec![
                Metric::new(
                    "join_latency",
                    "s",
                    median(&latencies).unwrap_or(f64::NAN),
                    None,
                    format!(
                        "hosted, 3 nodes ({} build), median of {CYCLES} add/remove cycles of one \
                         node into a 2-node cluster (runs: {} s); until all nodes have the \
                         generation with it active",
                        if cfg!(debug_assertions) {
                            "debug"
                        } else {
                            "release"
                        },
                        shown.join(", ")
                    ),
                ),
                Metric::new(
                    "join_lost_packets",
                    "count",
                    lost as f64,
                    None,
                    format!(
                        "HTTP keep-alive request/replies on one TCP connection to the portal of \
                         the founding node, one per {} ms during all {CYCLES} joins and removals \
                         ({exchanges} exchanges); a reply later than {} ms or none counts as lost",
                        EVERY.as_millis(),
                        STALL.as_millis()
                    ),
                ),
            ]
        }
        Err(e) => vec![
            Metric::failed("join_latency", "s", &e),
            Metric::failed("join_lost_packets", "count", &e),
        ],
    }
}

/// Until the nodes agree on `members` active members, polled often enough
/// for the latency figure.
async fn converged(nodes: &[&HostedNode], members: usize) -> anyhow::Result<()> {
    wait_converged(nodes, members, LIMIT, Duration::from_millis(10)).await?;
    Ok(())
}

/// The join code `node` shows, once it waits to be joined.
async fn code_of(node: &HostedNode) -> anyhow::Result<String> {
    qa::wait::until_async(LIMIT, Duration::from_millis(20), "a join code", || async {
        let s = cluster_status(node).await.ok()?;
        (s.node_state == "unjoined" && !s.join_code.is_empty()).then_some(s.join_code)
    })
    .await
}

/// Adds the appliance at `address` with `code` through `admin`; fails unless it joined.
async fn add(admin: &HostedNode, address: &str, code: String) -> anyhow::Result<()> {
    let mut events = admin
        .client()
        .await?
        .cluster_add(ClusterAddRequest {
            address: address.into(),
            code,
            roles: vec!["frontend".into()],
        })
        .await?
        .into_inner();
    while let Some(e) = tokio::time::timeout(LIMIT, events.message()).await?? {
        if e.r#final {
            anyhow::ensure!(e.ok, "the join failed: {}", e.message);
            return Ok(());
        }
    }
    anyhow::bail!("the join ended without a final event")
}

/// Latencies (s), replies lost, exchanges made.
async fn joins() -> anyhow::Result<(Vec<f64>, u64, u64)> {
    let tag = format!("n{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    let a = HostedNode::start(&lan, &tag, &NodeSpec::new("a", "10.77.0.11/24"))?;
    let b = HostedNode::start(&lan, &tag, &NodeSpec::new("b", "10.77.0.12/24"))?;
    let c = HostedNode::start(&lan, &tag, &NodeSpec::new("c", "10.77.0.13/24"))?;
    let outsider = Netns::create(&format!("qa-{tag}-x"))?;
    lan.attach(&outsider, "eth0")?;
    Lan::address(&outsider, "eth0", "10.77.0.99/24")?;
    for n in [&a, &b, &c] {
        n.wait_ready(Duration::from_secs(90)).await?;
    }
    a.client()
        .await?
        .cluster_form(ClusterFormRequest::default())
        .await?;
    add(&a, "10.77.0.13", code_of(&c).await?).await?;
    converged(&[&a, &c], 2).await?;

    let kept = Steady::start(&outsider, "10.77.0.11:8080".parse()?, EVERY, STALL)?;
    let mut latencies = Vec::new();
    for _ in 0..CYCLES {
        // The code is read before the clock starts: the admin has it in hand.
        let code = code_of(&b).await?;
        let started = Instant::now();
        add(&a, "10.77.0.12", code).await?;
        converged(&[&a, &b, &c], 3).await?;
        latencies.push(started.elapsed().as_secs_f64());
        let name = b.name.clone();
        a.client()
            .await?
            .cluster_remove(ClusterRemoveRequest { node: name })
            .await?;
        converged(&[&a, &c], 2).await?;
    }
    let report = kept.finish();
    if let Some(e) = report.error {
        anyhow::bail!("the kept connection broke: {e}");
    }
    // Unanswered or slower than STALL: lost.
    let lost = report.stalled + (report.sent - report.answered);
    Ok((latencies, lost, report.sent))
}
