//! Cluster figures, hosted (namespaces on a bridge): how long a join takes
//! from the administrator's request until the new node's services are
//! healthy and every node's firewall follows, and how many requests sent at
//! a fixed rate were lost meanwhile.
//!
//! Setup: A forms a cluster (front-end and back-end), C joins it as a
//! front-end; then B is added and removed again, [`CYCLES`] times. A join is
//! over when all three nodes report the same generation with B active (B
//! reports itself active once its services are healthy, and a node reports a
//! generation only after its firewall and services followed it). Meanwhile
//! an outsider sends, one every [`EVERY`] on their own schedule and each on
//! a fresh connection, `GET /healthz` to A's portal (a public port on the
//! node whose peer sets change) and `POST /events` to C's portal, which
//! appends it to the audit service on A (front-end to back-end across nodes,
//! on an internal port). A request without a whole 2xx reply within
//! [`DEADLINE`] is lost.

use std::time::{Duration, Instant};

use anyhow::Context;
use appliance_api::v1::{ClusterAddRequest, ClusterFormRequest, ClusterRemoveRequest};
use qa::lan::Lan;
use qa::netns::Netns;
use qa::node::{cluster_status, wait_converged, HostedNode, NodeSpec};
use qa::steady::{Paced, PacedReport, PacedRequest};

use super::{median, Metric};

/// Joins measured.
const CYCLES: usize = 10;
/// Requests to each target, one every this long.
const EVERY: Duration = Duration::from_millis(10);
/// A request without its reply this long after it was sent is lost.
const DEADLINE: Duration = Duration::from_secs(1);
/// Time the cluster is left as it is after each join and removal converged,
/// still under traffic: what follows a generation late is counted too.
const SETTLE: Duration = Duration::from_millis(500);
/// Bound of every wait.
const LIMIT: Duration = Duration::from_secs(60);

/// The requests sent during the joins and removals, per target.
struct Lost {
    public: PacedReport,
    internal: PacedReport,
}

/// Every cluster figure.
pub fn measure() -> Vec<Metric> {
    eprintln!("bench: join_latency, join_lost_packets");
    let result = tokio::runtime::Runtime::new()
        .context("building a tokio runtime")
        .and_then(|rt| rt.block_on(joins()));
    match result {
        Ok((latencies, lost)) => {
            let shown: Vec<String> = latencies.iter().map(|s| format!("{s:.2}")).collect();
            let how = format!(
                "one request every {} ms per target on its own schedule, each on a fresh TCP \
                 connection; no whole 2xx reply within {} ms counts as lost; from before the \
                 first of {CYCLES} add/remove cycles to {} ms after the last removal",
                EVERY.as_millis(),
                DEADLINE.as_millis(),
                SETTLE.as_millis()
            );
            let public = describe(
                "GET /healthz to the founder's portal (public port 8080)",
                &lost.public,
            );
            let internal = describe(
                "POST /events to a front-end's portal, which appends it to the back-end \
                 founder's audit (internal port 7100)",
                &lost.internal,
            );
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
                        build(),
                        shown.join(", ")
                    ),
                ),
                Metric::new(
                    "join_lost_packets",
                    "count",
                    (lost.public.lost() + lost.internal.lost()) as f64,
                    None,
                    format!(
                        "hosted, 3 nodes ({} build); requests lost of {} sent during {CYCLES} \
                         joins and removals of a front-end: {public}; {internal}; {how}",
                        build(),
                        lost.public.sent + lost.internal.sent
                    ),
                ),
                Metric::new(
                    "join_lost_packets_public",
                    "count",
                    lost.public.lost() as f64,
                    None,
                    format!("{public}; {how}"),
                ),
                Metric::new(
                    "join_lost_packets_internal",
                    "count",
                    lost.internal.lost() as f64,
                    None,
                    format!("{internal}; {how}"),
                ),
            ]
        }
        Err(e) => vec![
            Metric::failed("join_latency", "s", &e),
            Metric::failed("join_lost_packets", "count", &e),
            Metric::failed("join_lost_packets_public", "count", &e),
            Metric::failed("join_lost_packets_internal", "count", &e),
        ],
    }
}

fn build() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// One target's counts, for a note.
fn describe(target: &str, r: &PacedReport) -> String {
    let mut s = format!(
        "{target}: {} sent in {:.1} s, {} answered, {} late, {} failed, at most {} lost in a row, \
         slowest reply {} ms",
        r.sent,
        r.sending.as_secs_f64(),
        r.answered,
        r.late,
        r.failed,
        r.longest_lost_run,
        r.slowest.as_millis()
    );
    if !r.errors.is_empty() {
        s += &format!(" (first reasons: {})", r.errors.join("; "));
    }
    s
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

/// The join latencies (s) and the requests sent meanwhile.
async fn joins() -> anyhow::Result<(Vec<f64>, Lost)> {
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

    let public = Paced::start(
        &outsider,
        "10.77.0.11:8080".parse()?,
        PacedRequest::get("/healthz"),
        EVERY,
        DEADLINE,
    )?;
    let internal = Paced::start(
        &outsider,
        "10.77.0.13:8080".parse()?,
        PacedRequest::post("/events", MARK),
        EVERY,
        DEADLINE,
    )?;
    let mut latencies = Vec::new();
    let cycles = async {
        for _ in 0..CYCLES {
            // The code is read before the clock starts: the admin has it in hand.
            let code = code_of(&b).await?;
            let started = Instant::now();
            add(&a, "10.77.0.12", code).await?;
            converged(&[&a, &b, &c], 3).await?;
            latencies.push(started.elapsed().as_secs_f64());
            tokio::time::sleep(SETTLE).await;
            let name = b.name.clone();
            a.client()
                .await?
                .cluster_remove(ClusterRemoveRequest { node: name })
                .await?;
            converged(&[&a, &c], 2).await?;
            tokio::time::sleep(SETTLE).await;
        }
        anyhow::Ok(())
    }
    .await;
    // Both senders are finished (each waits out its requests in flight)
    // before a failed cycle is reported.
    let (public, internal) =
        tokio::task::spawn_blocking(move || anyhow::Ok((public.finish()?, internal.finish()?)))
            .await??;
    cycles?;
    // The POSTs through C's portal reached A's audit: C, a front-end only,
    // has none of its own.
    let tail = get(&outsider, "10.77.0.11:8080".parse()?, "/events")?;
    anyhow::ensure!(
        internal.answered == 0 || tail.contains(MARK),
        "the events posted through C's portal are not in A's audit; its tail: {tail:?}"
    );
    Ok((latencies, Lost { public, internal }))
}

/// The text of the bench's audit events.
const MARK: &str = "join-bench";

/// The body of `GET path` at `addr`, from inside `ns`.
fn get(ns: &Netns, addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut conn = qa::lan::connect_from(ns, addr, Duration::from_secs(3))??;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = String::new();
    conn.take(1 << 20).read_to_string(&mut reply)?;
    anyhow::ensure!(
        reply.starts_with("HTTP/1.1 200"),
        "GET {path} at {addr}: {reply:?}"
    );
    Ok(reply)
}
