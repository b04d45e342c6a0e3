//! Helpers shared by the multi-node tests: small clients for the demo
//! services, and a snapshot of everything a refused change must not touch:
//! the live node ([`snapshot`]) and its state database ([`stored`]).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use appliance_api::v1::{GetConfigRequest, ListServicesRequest, ServiceInfo};
use qa::lan::connect_from;
use qa::lan::Lan;
use qa::netns::Netns;
use qa::node::{HostedNode, NodeSpec};

/// How long a connection attempt may take before it counts as dropped.
pub const DROP_LIMIT: Duration = Duration::from_millis(1500);

/// Generous bound for a node to become ready on a loaded CI machine.
pub const READY_LIMIT: Duration = Duration::from_secs(90);

/// A LAN with one ready node on it; `letter` keeps this test's names apart
/// from the other tests running at the same time.
pub async fn one_node(letter: char, spec: &NodeSpec) -> anyhow::Result<(Lan, HostedNode)> {
    let tag = format!("{letter}{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    let node = HostedNode::start(&lan, &tag, spec)?;
    node.wait_ready(READY_LIMIT).await?;
    Ok((lan, node))
}

/// The services placed on `node`, as `services list` shows them.
pub async fn services(node: &HostedNode) -> anyhow::Result<Vec<ServiceInfo>> {
    let mut client = node.client().await?;
    Ok(client
        .list_services(ListServicesRequest {})
        .await?
        .into_inner()
        .services)
}

/// `GET path` from inside `ns`; returns the whole response.
pub fn http_get(ns: &Netns, addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    http(
        ns,
        addr,
        &format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n"),
    )
}

/// Sends a raw HTTP request from inside `ns`; returns the whole response.
pub fn http(ns: &Netns, addr: SocketAddr, request: &str) -> anyhow::Result<String> {
    let mut s = connect_from(ns, addr, Duration::from_secs(3))??;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Sends `PING` on an open audit connection and expects `PONG`.
pub fn ping(conn: &mut TcpStream) -> anyhow::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(3)))?;
    conn.write_all(b"PING\n")?;
    let mut line = String::new();
    BufReader::new(conn.try_clone()?).read_line(&mut line)?;
    anyhow::ensure!(line.trim() == "PONG", "audit answered {line:?} to PING");
    Ok(())
}

/// True when a new TCP connection from `ns` to `addr` is accepted.
pub fn reachable(ns: &Netns, addr: SocketAddr) -> bool {
    matches!(connect_from(ns, addr, DROP_LIMIT), Ok(Ok(_)))
}

/// Everything a refused change must leave as it was.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The applied config and its generation.
    pub config: (String, u64),
    /// Addresses in the node's namespace (`ip -br addr`).
    pub addresses: String,
    /// Routes in its main table.
    pub routes: String,
    /// The firewall by body: the node namespace's whole ruleset as nft
    /// lists it, rules and set elements, without counters (`nft -s`:
    /// traffic moves them) or handles.
    pub firewall: String,
    /// The hostname inside applianced's UTS namespace.
    pub hostname: String,
    /// The resolv.conf applianced writes, byte for byte (`None`: absent;
    /// not UTF-8 is an error).
    pub resolv_conf: Option<String>,
}

/// `ip -br addr` with each interface's addresses sorted: a rollback that
/// re-adds an address changes the kernel's order, not the state.
fn sorted_addresses(brief: &str) -> String {
    brief
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let head: Vec<&str> = words.by_ref().take(2).collect();
            // Link-local addresses are the kernel's, and come and go with IPv6 settings.
            let mut addrs: Vec<&str> = words.filter(|a| !a.starts_with("fe80:")).collect();
            addrs.sort_unstable();
            format!("{} {}", head.join(" "), addrs.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Takes a [`Snapshot`] of `node`.
pub async fn snapshot(node: &HostedNode) -> anyhow::Result<Snapshot> {
    let mut client = node.client().await?;
    let cfg = client.get_config(GetConfigRequest {}).await?.into_inner();
    let pid = node
        .pid()
        .ok_or_else(|| anyhow::anyhow!("node not running"))?;
    let out = std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-u", "hostname"])
        .output()?;
    Ok(Snapshot {
        config: (cfg.toml, cfg.generation),
        addresses: sorted_addresses(&node.ns.ip(&["-br", "addr"])?),
        routes: (node.ns.ip(&["route"])? + &node.ns.ip(&["-6", "route"])?)
            .lines()
            .filter(|r| !r.starts_with("fe80:"))
            .collect::<Vec<_>>()
            .join("\n"),
        firewall: ruleset(node)?,
        hostname: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        resolv_conf: match std::fs::read(node.root.join("run/resolv.conf")) {
            Ok(bytes) => Some(String::from_utf8(bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        },
    })
}

/// `nft -s list ruleset` in `node`'s namespace: every table, chain, rule and
/// set element, without counter values.
fn ruleset(node: &HostedNode) -> anyhow::Result<String> {
    let out = node
        .ns
        .command("nft")
        .args(["-s", "list", "ruleset"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "nft -s list ruleset in {}: {}",
        node.name,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8(out.stdout)?;
    anyhow::ensure!(
        text.contains("table "),
        "node {} has no nft table at all:\n{text}",
        node.name
    );
    Ok(text)
}

/// Keys of the state database that change with no change of configuration:
/// the services' last known states (pids, restart counts), rewritten
/// whenever a service changes state.
pub const VOLATILE_KEYS: &[&str] = &["services/status"];

/// The node's state database, every key but [`VOLATILE_KEYS`], value bytes
/// as stored.
pub type Stored = BTreeMap<String, Vec<u8>>;

/// Reads `node`'s state database as applianced left it: stops applianced
/// (SIGTERM), opens the database itself, then starts the node again and
/// waits until it is ready. The database cannot be opened while applianced
/// holds it.
pub async fn stored(node: &mut HostedNode) -> anyhow::Result<Stored> {
    node.stop()?;
    let dump = read_db(&node.state_dir().join("db"));
    node.launch()?;
    node.wait_ready(READY_LIMIT).await?;
    dump
}

/// Every key and value of the sled database at `dir`, but [`VOLATILE_KEYS`].
pub fn read_db(dir: &std::path::Path) -> anyhow::Result<Stored> {
    anyhow::ensure!(dir.is_dir(), "no state database at {}", dir.display());
    let db = sled::Config::new()
        .path(dir)
        .open()
        .map_err(|e| anyhow::anyhow!("opening the state database {}: {e}", dir.display()))?;
    let mut out = Stored::new();
    for entry in db.iter() {
        let (k, v) = entry?;
        let key = String::from_utf8_lossy(&k).into_owned();
        if !VOLATILE_KEYS.contains(&key.as_str()) {
            out.insert(key, v.to_vec());
        }
    }
    anyhow::ensure!(
        out.contains_key("desired"),
        "the state database at {} has no desired state: {:?}",
        dir.display(),
        out.keys().collect::<Vec<_>>()
    );
    Ok(out)
}

/// The differences between two [`Stored`] dumps, one line per key, values
/// as text (they are JSON); empty when equal.
pub fn stored_diff(before: &Stored, after: &Stored) -> String {
    let text = |v: Option<&Vec<u8>>| {
        v.map_or("<absent>".to_owned(), |b| {
            String::from_utf8_lossy(b).into_owned()
        })
    };
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| format!("{k}: {} -> {}", text(before.get(k)), text(after.get(k))))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `appliancectl ARGS` against `node`'s socket.
pub fn run_ctl(node: &HostedNode, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(std::process::Command::new(qa::bins::path("appliancectl")?)
        .env("APPLIANCE_SOCKET", node.socket())
        .args(args)
        .output()?)
}

/// Runs `appliancectl ARGS --output json` against `node`; fails with its
/// stderr unless it succeeds.
pub fn ctl_json(node: &HostedNode, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--output", "json"]);
    let out = run_ctl(node, &all)?;
    anyhow::ensure!(
        out.status.success(),
        "appliancectl {} failed on {}: {}",
        args.join(" "),
        node.name,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Waits (bounded) until every node in `nodes` is a member at the same
/// generation, with `members` members, all active; returns that generation.
pub async fn wait_converged(
    nodes: &[&HostedNode],
    members: usize,
    limit: Duration,
) -> anyhow::Result<u64> {
    qa::node::wait_converged(nodes, members, limit, Duration::from_millis(50)).await
}
