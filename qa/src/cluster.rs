//! `qa cluster` (`make cluster`): three hosted nodes, node-a/b/c, on one LAN
//! with a plain client namespace, each made a peer of the two others through
//! the API. Names and paths are fixed so the README's commands work; Ctrl-C
//! (or SIGTERM) stops the nodes and removes every namespace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use appliance_api::v1::PeerRequest;
use qa::lan::Lan;
use qa::netns::Netns;
use qa::node::{HostedNode, NodeSpec};
use tokio::signal::unix::{signal, SignalKind};

/// Where each node's directory is linked from: `ROOT/node-a/run/applianced.sock`.
const ROOT: &str = "/tmp/appliance-cluster";
/// LAN tag: namespaces are `qa-cluster-sw` and `qa-cluster-<node>`.
const TAG: &str = "cluster";
/// The plain client namespace, for curl and friends.
const CLIENT_NS: &str = "appliance-client";
const CLIENT_V4: &str = "10.77.0.99/24";
const CLIENT_V6: &str = "fd77::99/64";
/// Nodes: name, IPv4, IPv6 (prefixes /24 and /64).
const NODES: [(&str, &str, &str); 3] = [
    ("node-a", "10.77.0.11", "fd77::11"),
    ("node-b", "10.77.0.12", "fd77::12"),
    ("node-c", "10.77.0.13", "fd77::13"),
];
const READY_LIMIT: Duration = Duration::from_secs(90);

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
        if let Err(e) = started {
            stop(cluster);
            return Err(e);
        }
        print_usage(&cluster)?;
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
    let mut stale: Vec<String> = vec![format!("qa-{TAG}-sw"), CLIENT_NS.to_owned()];
    stale.extend(NODES.iter().map(|(n, _, _)| format!("qa-{TAG}-{n}")));
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

    for (name, v4, v6) in NODES {
        let spec = NodeSpec {
            addresses: vec![format!("{v4}/24"), format!("{v6}/64")],
            ..NodeSpec::new(name, "")
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
    for (node, (name, _, _)) in c.nodes.iter().zip(NODES) {
        let mut client = node.client().await?;
        for (other, v4, v6) in NODES {
            if other == name {
                continue;
            }
            for address in [v4, v6] {
                client
                    .add_peer(PeerRequest {
                        address: address.to_owned(),
                    })
                    .await
                    .with_context(|| format!("adding peer {address} to {name}"))?;
            }
        }
    }
    for node in &c.nodes {
        let status = node.wait_ready(READY_LIMIT).await?;
        println!(
            "{} has its peers (generation {})",
            node.name, status.generation
        );
    }
    Ok(())
}

fn print_usage(c: &Cluster) -> anyhow::Result<()> {
    let ctl = qa::bins::path("appliancectl")?;
    let ctl = relative(&ctl).display().to_string();
    println!("\nThe cluster is up. Client namespace: {CLIENT_NS} ({CLIENT_V4}, {CLIENT_V6}).\n");
    for (node, (name, v4, v6)) in c.nodes.iter().zip(NODES) {
        let dir = Path::new(ROOT).join(name);
        println!("{name}: {v4}/24 {v6}/64");
        println!("  namespace  {}", node.ns.name());
        println!("  state dir  {}", dir.join("state").display());
        println!("  log        {}", dir.join("applianced.stderr").display());
        println!(
            "  export APPLIANCE_SOCKET={}",
            dir.join("run/applianced.sock").display()
        );
    }
    let sock = Path::new(ROOT).join("node-a/run/applianced.sock");
    println!("\nTry, from another terminal:\n");
    println!("  export APPLIANCE_SOCKET={}", sock.display());
    for cmd in [
        "status",
        "services list",
        "firewall show",
        "peers list",
        "logs -n 20 --service portal",
    ] {
        println!("  {ctl} {cmd}");
    }
    println!("  ip netns exec {CLIENT_NS} curl http://10.77.0.11:8080/");
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
