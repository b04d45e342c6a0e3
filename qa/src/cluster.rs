//! `qa cluster` (`make cluster`): three hosted nodes, node-a/b/c, on one LAN
//! with a plain client namespace, made into a real cluster the way an
//! administrator does it: node-a forms it (front-end and back-end), then
//! node-b and node-c are added as front-ends with the join codes their
//! status shows, through `appliancectl cluster form|add` as the tests do.
//! Every node is seeded with the administrator [`DEV_ADMIN`] (a fixed dev
//! password, shown on screen: for this local cluster only) and runs
//! managementd; the usage printed says how to sign in on each management port.
//! Names and paths are fixed so the README's commands work; Ctrl-C (or
//! SIGTERM) stops the nodes and removes every namespace.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::Context;
use qa::lan::Lan;
use qa::netns::Netns;
use qa::node::{wait_converged, HostedNode, NodeSpec};
use tokio::signal::unix::{signal, SignalKind};

/// Where each node's directory is linked from: `ROOT/node-a/run/applianced.sock`.
const ROOT: &str = "/tmp/appliance-cluster";
/// LAN tag: namespaces are `qa-cluster-sw` and `qa-cluster-<node>`.
const TAG: &str = "cluster";
/// The plain client namespace, for curl and friends.
const CLIENT_NS: &str = "appliance-client";
const CLIENT_V4: &str = "10.77.0.99/24";
const CLIENT_V6: &str = "fd77::99/64";
/// Nodes: name, IPv4, IPv6 (prefixes /24 and /64), roles in the cluster.
/// The first forms the cluster; the others are added to it.
const NODES: [(&str, &str, &str, &str); 3] = [
    ("node-a", "10.77.0.11", "fd77::11", "frontend,backend"),
    ("node-b", "10.77.0.12", "fd77::12", "frontend"),
    ("node-c", "10.77.0.13", "fd77::13", "frontend"),
];
const READY_LIMIT: Duration = Duration::from_secs(90);
/// One appliancectl call (a join takes about a second hosted).
const CTL_LIMIT: Duration = Duration::from_secs(60);
/// Every member active at the same generation after the last join.
const CONVERGE_LIMIT: Duration = Duration::from_secs(30);
/// The seeded administrator: name and password. A fixed, printed password
/// is fine for a throw-away cluster on this machine's namespaces only.
const DEV_ADMIN: (&str, &str) = ("admin", "appliance-dev-password");

/// What is running; fields drop in order: nodes, then the client, then the LAN.
#[derive(Default)]
struct Cluster {
    nodes: Vec<HostedNode>,
    client: Option<Netns>,
    lan: Option<Lan>,
}

/// Runs the cluster until SIGINT or SIGTERM.
pub fn run() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("building a tokio runtime")?;
    rt.block_on(async {
        let mut sigint = signal(SignalKind::interrupt()).context("catching SIGINT")?;
        let mut sigterm = signal(SignalKind::terminate()).context("catching SIGTERM")?;
        let mut cluster = Cluster::default();
        let started = tokio::select! {
            r = start(&mut cluster) => r,
            _ = sigint.recv() => Err(anyhow::anyhow!("interrupted while starting")),
            _ = sigterm.recv() => Err(anyhow::anyhow!("terminated while starting")),
        };
        let shown = match started {
            Ok(()) => print_usage(&cluster).await,
            Err(e) => Err(e),
        };
        if let Err(e) = shown {
            stop(cluster);
            return Err(e);
        }
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut reported = vec![false; cluster.nodes.len()];
        loop {
            tokio::select! {
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
                _ = tick.tick() => watch(&cluster, &mut reported),
            }
        }
        println!("\nstopping the cluster...");
        stop(cluster);
        println!("stopped; namespaces and {ROOT} removed");
        Ok(())
    })
}

async fn start(c: &mut Cluster) -> anyhow::Result<()> {
    qa::bins::path("applianced")?;
    qa::bins::path("appliancectl")?;
    let mut stale: Vec<String> = vec![format!("qa-{TAG}-sw"), CLIENT_NS.to_owned()];
    stale.extend(NODES.iter().map(|(n, ..)| format!("qa-{TAG}-{n}")));
    for ns in &stale {
        qa::netns::remove_stale(ns);
    }
    let _ = std::fs::remove_dir_all(ROOT);
    std::fs::create_dir_all(ROOT).with_context(|| format!("creating {ROOT}"))?;

    let lan = c.lan.insert(Lan::new(TAG)?);
    let client = Netns::create(CLIENT_NS)?;
    lan.attach(&client, "eth0")?;
    Lan::address(&client, "eth0", CLIENT_V4)?;
    client.ip(&["addr", "add", CLIENT_V6, "dev", "eth0", "nodad"])?;
    c.client = Some(client);

    for (name, v4, v6, _) in NODES {
        let spec = NodeSpec {
            addresses: vec![format!("{v4}/24"), format!("{v6}/64")],
            ..NodeSpec::new(name, "").with_first_admin(DEV_ADMIN.0, DEV_ADMIN.1)
        };
        println!("starting {name} ({v4}, {v6})");
        let node = HostedNode::start(lan, TAG, &spec)?;
        let link = Path::new(ROOT).join(name);
        std::os::unix::fs::symlink(&node.root, &link)
            .with_context(|| format!("linking {} to {}", link.display(), node.root.display()))?;
        c.nodes.push(node);
    }
    for node in &c.nodes {
        node.wait_ready(READY_LIMIT).await?;
        println!("{} ready", node.name);
    }

    let (founder, joiners) = c.nodes.split_first().context("the cluster has no nodes")?;
    let formed = ctl_json(founder, &["cluster", "form"]).await?;
    println!(
        "{} formed cluster {} (front-end and back-end)",
        founder.name,
        formed["cluster_id"].as_str().unwrap_or_default()
    );
    for (node, (name, v4, _, roles)) in joiners.iter().zip(&NODES[1..]) {
        // The code the node shows while it waits to be joined, as an
        // administrator reads it on its console or in its status.
        let status = ctl_json(node, &["status"]).await?;
        let code = status["join_code"].as_str().unwrap_or_default().to_owned();
        anyhow::ensure!(!code.is_empty(), "{name} shows no join code: {status}");
        println!("adding {name} ({v4}) with its join code {code} as {roles}:");
        let out = ctl(founder, &["cluster", "add", v4, &code, "--roles", roles]).await?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("  {line}");
        }
        anyhow::ensure!(
            out.status.success(),
            "adding {name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let nodes: Vec<&HostedNode> = c.nodes.iter().collect();
    let generation = wait_converged(
        &nodes,
        nodes.len(),
        CONVERGE_LIMIT,
        Duration::from_millis(100),
    )
    .await?;
    println!("every node is an active member at generation {generation}");
    Ok(())
}

/// Runs `appliancectl ARGS` against `node`'s socket, bounded by [`CTL_LIMIT`].
async fn ctl(node: &HostedNode, args: &[&str]) -> anyhow::Result<Output> {
    let run = tokio::process::Command::new(qa::bins::path("appliancectl")?)
        .env("APPLIANCE_SOCKET", node.socket())
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(CTL_LIMIT, run)
        .await
        .with_context(|| {
            format!(
                "appliancectl {} on {} took more than {CTL_LIMIT:?}",
                args.join(" "),
                node.name
            )
        })?
        .with_context(|| format!("running appliancectl {}", args.join(" ")))
}

/// `appliancectl ARGS --output json` against `node`; fails with its stderr.
async fn ctl_json(node: &HostedNode, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let out = ctl(node, &all).await?;
    anyhow::ensure!(
        out.status.success(),
        "appliancectl {} failed on {}: {}",
        args.join(" "),
        node.name,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("reading the JSON of appliancectl {}", args.join(" ")))
}

async fn print_usage(c: &Cluster) -> anyhow::Result<()> {
    let ctl_path = qa::bins::path("appliancectl")?;
    let ctl_path = relative(&ctl_path).display().to_string();
    println!("\nThe cluster is up. Client namespace: {CLIENT_NS} ({CLIENT_V4}, {CLIENT_V6}).\n");
    for (node, (name, v4, v6, roles)) in c.nodes.iter().zip(NODES) {
        let dir = Path::new(ROOT).join(name);
        println!("{name}: {v4}/24 {v6}/64");
        println!("  role       {roles}");
        println!("  namespace  {}", node.ns.name());
        println!("  state dir  {}", dir.join("state").display());
        println!("  log        {}", dir.join("applianced.stderr").display());
        println!(
            "  socket     export APPLIANCE_SOCKET={}",
            dir.join("run/applianced.sock").display()
        );
    }
    let founder = c.nodes.first().context("the cluster has no nodes")?;
    println!("\n$ appliancectl cluster status   (on {})", founder.name);
    let out = ctl(founder, &["cluster", "status"]).await?;
    anyhow::ensure!(
        out.status.success(),
        "appliancectl cluster status failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));

    let sock = Path::new(ROOT).join("node-a/run/applianced.sock");
    println!("\nTry, from another terminal:\n");
    println!("  export APPLIANCE_SOCKET={}", sock.display());
    for cmd in [
        "cluster status",
        "status",
        "services list",
        "firewall show",
        "logs -n 20 --service portal",
        "cluster remove node-c   # node-c then shows a new join code in its status",
    ] {
        println!("  {ctl_path} {cmd}");
    }
    println!("  ip netns exec {CLIENT_NS} curl http://10.77.0.12:8080/events   # node-b's portal, node-a's audit");

    let (user, password) = DEV_ADMIN;
    println!("\nThe management ports (web UI and appliancectl --server), from {CLIENT_NS}:");
    for node in &c.nodes {
        let url = node.management_url()?;
        let fingerprint = match node.management_fingerprint().await {
            Ok(fp) if !fp.is_empty() => fp,
            Ok(_) => "(none yet)".to_owned(),
            Err(e) => format!("(not available: {e})"),
        };
        println!(
            "  {:<8} {url}  certificate SHA-256 {fingerprint}",
            node.name
        );
    }
    println!("  administrator: {user}, password: {password}   (dev only)");
    let url = c.nodes[0].management_url()?;
    println!(
        "\n  ip netns exec {CLIENT_NS} {ctl_path} --server {url} login --user {user}   # asks to accept the fingerprint above"
    );
    println!("  ip netns exec {CLIENT_NS} {ctl_path} --server {url} cluster status");
    println!("  ip netns exec {CLIENT_NS} {ctl_path} --server {url} events");
    println!("\nCtrl-C stops the nodes and removes the namespaces.");
    Ok(())
}

/// The path relative to the working directory when it lies below it.
fn relative(p: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| p.to_path_buf())
}

/// Says once when a node's applianced has exited (it stays a zombie until stop).
fn watch(c: &Cluster, reported: &mut [bool]) {
    for (node, done) in c.nodes.iter().zip(reported.iter_mut()) {
        let Some(pid) = node.pid() else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let dead = stat
            .rsplit(')')
            .next()
            .is_none_or(|s| s.trim_start().starts_with('Z'));
        if dead && !*done {
            *done = true;
            eprintln!(
                "warning: applianced of {} exited; its log:\n{}",
                node.name,
                node.stderr()
            );
        }
    }
}

fn stop(mut c: Cluster) {
    for node in &mut c.nodes {
        if let Err(e) = node.stop() {
            eprintln!("{e:#}");
        }
    }
    drop(c);
    let _ = std::fs::remove_dir_all(ROOT);
}
