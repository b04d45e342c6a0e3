//! Management-plane figures, hosted (namespaces on a bridge): the web
//! dashboard's response time under signed-in clients with a large cluster,
//! a remote `status` through managementd against the same call on the local
//! socket, and managementd's resident memory after that load.
//!
//! Setup: [`NODES`] hosted nodes, each seeded with an administrator and
//! running managementd (the repository's `services/management.toml`); the
//! first forms a cluster and adds the others one by one on its socket. If a
//! node cannot be started or added, the figures are taken with the members
//! there are, and the note says how many. A client namespace on the LAN (the
//! administrator's side) measures over TLS on established connections, so
//! the figures are the server's time plus one LAN round trip, without the
//! TLS handshake.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use appliance_api::v1::management_client::ManagementClient;
use appliance_api::v1::node_client::NodeClient;
use appliance_api::v1::{ClusterAddRequest, ClusterFormRequest, LoginRequest, StatusRequest};
use qa::lan::Lan;
use qa::netns::Netns;
use qa::node::{cluster_status, management_channel, wait_converged, HostedNode, NodeSpec};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::{median, ms, Metric};

/// Members wanted in the cluster the dashboard shows.
const NODES: usize = 32;
/// Signed-in web clients loading the dashboard at once.
const CLIENTS: usize = 20;
/// Dashboard loads per client.
const LOADS: usize = 30;
/// Remote and local `status` calls, one after another.
const CALLS: usize = 200;
/// Bound of every wait.
const LIMIT: Duration = Duration::from_secs(120);
const ADMIN: &str = "admin";
const PASSWORD: &str = "bench-admin-password";

/// What one run measured.
struct Figures {
    members: usize,
    wanted_note: String,
    dashboard_ms: Vec<f64>,
    remote_ms: Vec<f64>,
    local_ms: Vec<f64>,
    rss_before_kib: u64,
    rss_signed_in_kib: u64,
    rss_after_kib: u64,
}

/// Every management figure.
pub fn measure() -> Vec<Metric> {
    eprintln!("bench: ui_dashboard_p99, api_remote_status_p50, managementd_rss");
    let result = tokio::runtime::Runtime::new()
        .context("building a tokio runtime")
        .and_then(|rt| rt.block_on(figures()));
    match result {
        Ok(f) => {
            let build = if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            };
            let p99 = percentile(&f.dashboard_ms, 0.99).unwrap_or(f64::NAN);
            let p50 = percentile(&f.dashboard_ms, 0.50).unwrap_or(f64::NAN);
            vec![
                Metric::new(
                    "ui_dashboard_p99",
                    "ms",
                    p99,
                    None,
                    format!(
                        "hosted ({build} build), {} members{}; {CLIENTS} signed-in web clients \
                         at once, each {LOADS} GET / one after another on its own kept-alive \
                         TLS connection from the LAN ({} loads; p50 {p50:.1} ms); request \
                         written to whole response read",
                        f.members,
                        f.wanted_note,
                        f.dashboard_ms.len()
                    ),
                ),
                Metric::new(
                    "api_remote_status_p50",
                    "ms",
                    median(&f.remote_ms).unwrap_or(f64::NAN),
                    median(&f.local_ms),
                    format!(
                        "hosted ({build} build), {} members; median of {CALLS} Node.Status \
                         calls one after another on one established HTTP/2 TLS channel from the \
                         LAN, with a token, through managementd's proxy; baseline: the same \
                         calls on applianced's local socket",
                        f.members
                    ),
                ),
                Metric::new(
                    "managementd_rss",
                    "MiB",
                    f.rss_after_kib as f64 / 1024.0,
                    None,
                    format!(
                        "hosted ({build} build), the founder's managementd (VmRSS) after the \
                         dashboard load and {} sessions; {:.1} MiB before the web sign-ins, \
                         {:.1} MiB after them (before the load)",
                        CLIENTS + 1,
                        f.rss_before_kib as f64 / 1024.0,
                        f.rss_signed_in_kib as f64 / 1024.0
                    ),
                ),
            ]
        }
        Err(e) => vec![
            Metric::failed("ui_dashboard_p99", "ms", &e),
            Metric::failed("api_remote_status_p50", "ms", &e),
            Metric::failed("managementd_rss", "MiB", &e),
        ],
    }
}

/// The `q` quantile of `samples` (nearest rank).
fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return None;
    }
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

/// The join code `node` shows, once it waits to be joined.
async fn code_of(node: &HostedNode) -> anyhow::Result<String> {
    qa::wait::until_async(LIMIT, Duration::from_millis(50), "a join code", || async {
        let s = cluster_status(node).await.ok()?;
        (s.node_state == "unjoined" && !s.join_code.is_empty()).then_some(s.join_code)
    })
    .await
}

/// Adds `node` through `admin`'s socket; fails unless it joined.
async fn add(admin: &HostedNode, node: &HostedNode) -> anyhow::Result<()> {
    let code = code_of(node).await?;
    let mut events = admin
        .client()
        .await?
        .cluster_add(ClusterAddRequest {
            address: node.address()?.to_string(),
            code,
            roles: vec!["frontend".into()],
        })
        .await?
        .into_inner();
    while let Some(e) = tokio::time::timeout(LIMIT, events.message()).await?? {
        if e.r#final {
            anyhow::ensure!(e.ok, "adding {} failed: {}", node.name, e.message);
            return Ok(());
        }
    }
    anyhow::bail!("adding {} ended without a final event", node.name)
}

/// The nodes' address: 10.78.H.L/16, far from the client's.
fn address(i: usize) -> String {
    format!("10.78.{}.{}/16", 1 + i / 200, 10 + i % 200)
}

async fn figures() -> anyhow::Result<Figures> {
    let tag = format!("m{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    let client = Netns::create(&format!("qa-{tag}-h"))?;
    lan.attach(&client, "eth0")?;
    Lan::address(&client, "eth0", "10.78.0.2/16")?;
    let mut nodes = Vec::new();
    let mut trouble = Vec::new();
    for i in 0..NODES {
        let spec = NodeSpec::new(&format!("n{i}"), &address(i)).with_first_admin(ADMIN, PASSWORD);
        match HostedNode::start(&lan, &tag, &spec) {
            Ok(node) => nodes.push(node),
            Err(e) => {
                trouble.push(format!("node {i} did not start: {e:#}"));
                break;
            }
        }
    }
    let mut ready = Vec::new();
    for node in nodes {
        match node.wait_ready(LIMIT).await {
            Ok(_) => ready.push(node),
            Err(e) => trouble.push(format!("{} not ready: {e:#}", node.name)),
        }
    }
    let (founder, others) = ready.split_first().context("no node became ready")?;
    founder
        .client()
        .await?
        .cluster_form(ClusterFormRequest::default())
        .await?;
    let mut members = vec![founder];
    for node in others {
        if let Err(e) = add(founder, node).await {
            trouble.push(format!("{e:#}"));
            break;
        }
        members.push(node);
    }
    wait_converged(&members, members.len(), LIMIT, Duration::from_millis(200)).await?;
    let wanted_note = if members.len() == NODES {
        String::new()
    } else {
        format!(
            " (of {NODES} wanted: {})",
            trouble.first().map_or("", String::as_str)
        )
    };
    eprintln!("bench: {} members{wanted_note}", members.len());
    let addr = founder.management_addr()?;

    // managementd may still be starting (or swapping to the cluster's certificate).
    let channel = qa::wait::until_async(LIMIT, Duration::from_millis(500), "managementd", || {
        let client = &client;
        async move {
            let ch = management_channel(client, addr, false).await.ok()?;
            ManagementClient::new(ch.clone())
                .login(LoginRequest {
                    name: ADMIN.into(),
                    password: PASSWORD.into(),
                })
                .await
                .ok()
                .map(|r| (ch, r.into_inner().token))
        }
    })
    .await?;
    let (channel, token) = channel;
    let remote_ms = remote_status(channel, &token).await?;
    let local_ms = local_status(founder).await?;

    let rss_before_kib = rss_kib(founder)?;
    let sessions = sign_in_all(&client, addr).await?;
    let rss_signed_in_kib = rss_kib(founder)?;
    let dashboard_ms = dashboard(sessions).await?;
    let rss_after_kib = rss_kib(founder)?;
    Ok(Figures {
        members: members.len(),
        wanted_note,
        dashboard_ms,
        remote_ms,
        local_ms,
        rss_before_kib,
        rss_signed_in_kib,
        rss_after_kib,
    })
}

async fn remote_status(
    channel: tonic::transport::Channel,
    token: &str,
) -> anyhow::Result<Vec<f64>> {
    let mut node = NodeClient::new(channel);
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS + 10 {
        let mut req = tonic::Request::new(StatusRequest {});
        req.metadata_mut().insert("authorization", bearer.clone());
        let t = Instant::now();
        node.status(req).await.context("remote status")?;
        samples.push(ms(t.elapsed()));
    }
    // The first calls warm the connection's state up.
    Ok(samples.split_off(10))
}

async fn local_status(node: &HostedNode) -> anyhow::Result<Vec<f64>> {
    let mut client = node.client().await?;
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS + 10 {
        let t = Instant::now();
        client
            .status(StatusRequest {})
            .await
            .context("local status")?;
        samples.push(ms(t.elapsed()));
    }
    Ok(samples.split_off(10))
}

/// The resident memory of `node`'s managementd, in KiB.
fn rss_kib(node: &HostedNode) -> anyhow::Result<u64> {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", node.ns.name()])
        .output()?;
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "managementd" {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            return status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .context("no VmRSS in /proc/PID/status");
        }
    }
    anyhow::bail!("no managementd runs in {}", node.ns.name())
}

/// [`CLIENTS`] browsers signed in one after another, each on its connection.
async fn sign_in_all(client: &Netns, addr: SocketAddr) -> anyhow::Result<Vec<(Https, String)>> {
    let mut sessions = Vec::new();
    for _ in 0..CLIENTS {
        let mut http = Https::connect(client.name(), addr).await?;
        let cookie = http.sign_in().await?;
        sessions.push((http, cookie));
    }
    Ok(sessions)
}

/// The signed-in browsers loading the dashboard [`LOADS`] times each, at once.
async fn dashboard(sessions: Vec<(Https, String)>) -> anyhow::Result<Vec<f64>> {
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|(mut http, cookie)| {
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(LOADS);
                for _ in 0..LOADS {
                    let t = Instant::now();
                    let (status, _, body) = http.get("/", &cookie).await?;
                    anyhow::ensure!(
                        status == 200 && body.len() > 100,
                        "GET / answered {status} with {} bytes",
                        body.len()
                    );
                    samples.push(ms(t.elapsed()));
                }
                anyhow::Ok(samples)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(tokio::time::timeout(LIMIT, task).await???);
    }
    Ok(all)
}

/// A minimal HTTP/1.1 client on one kept-alive TLS connection, as a browser
/// tab would hold one.
struct Https {
    stream: BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    origin: String,
}

/// Status, headers (lower-case names) and body.
type Reply = (u16, Vec<(String, String)>, Vec<u8>);

impl Https {
    async fn connect(ns: &str, addr: SocketAddr) -> anyhow::Result<Self> {
        let connector = qa::node::management_tls(false, b"http/1.1")?;
        let tls = qa::node::tls_in(ns, addr, &connector)
            .await
            .with_context(|| format!("TLS to {addr}"))?;
        Ok(Self {
            stream: BufReader::new(tls),
            origin: format!("https://{addr}"),
        })
    }

    /// Signs in with the form, as a browser does; returns the session cookie.
    async fn sign_in(&mut self) -> anyhow::Result<String> {
        let body = format!("name={ADMIN}&password={PASSWORD}&next=%2F");
        let host = self.origin.trim_start_matches("https://").to_owned();
        let request = format!(
            "POST /signin HTTP/1.1\r\nHost: {host}\r\nOrigin: {}\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            self.origin,
            body.len()
        );
        let (status, headers, _) = self.exchange(&request).await?;
        headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .find_map(|(_, v)| {
                v.split(';')
                    .next()
                    .filter(|c| c.starts_with("appliance_session="))
                    .map(str::to_owned)
            })
            .with_context(|| format!("signing in answered {status} without a session cookie"))
    }

    async fn get(&mut self, path: &str, cookie: &str) -> anyhow::Result<Reply> {
        let host = self.origin.trim_start_matches("https://").to_owned();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n");
        self.exchange(&request).await
    }

    async fn exchange(&mut self, request: &str) -> anyhow::Result<Reply> {
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        self.stream.get_mut().flush().await?;
        tokio::time::timeout(Duration::from_secs(30), self.read_reply())
            .await
            .context("no reply within 30 s")?
    }

    async fn read_reply(&mut self) -> anyhow::Result<Reply> {
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP status line: {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            anyhow::ensure!(
                self.stream.read_line(&mut line).await? > 0,
                "connection closed in the headers"
            );
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(len) = header("content-length") {
            let len: usize = len.parse().context("content-length")?;
            body.resize(len, 0);
            self.stream.read_exact(&mut body).await?;
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .with_context(|| format!("chunk size {line:?}"))?;
                let mut chunk = vec![0; size + 2];
                if size == 0 {
                    // The last chunk: no trailers expected, then the final CRLF.
                    line.clear();
                    self.stream.read_line(&mut line).await?;
                    break;
                }
                self.stream.read_exact(&mut chunk).await?;
                chunk.truncate(size);
                body.extend(chunk);
            }
        }
        Ok((status, headers, body))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_by_nearest_rank() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::percentile(&s, 0.99), Some(99.0));
        assert_eq!(super::percentile(&s, 0.5), Some(50.0));
        assert_eq!(super::percentile(&[3.0], 0.99), Some(3.0));
        assert_eq!(super::percentile(&[], 0.99), None);
    }
}
