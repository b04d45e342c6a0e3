//! The remote API on the management port (managementd), hosted: a cluster of
//! three nodes formed only through `appliancectl --server` from a client
//! namespace on the LAN, then what the port must refuse — calls without a
//! token, a viewer's changes, repeated wrong passwords (slowed down and
//! audited), a management network that excludes the client asking — and what
//! it must hold to: accounts replicated to every member, TLS 1.2 and 1.3 only,
//! a network restriction that drops outsiders but keeps the host, and a
//! connection flood that does not stop the host from being served.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::Context;
use appliance_api::v1::management_client::ManagementClient;
use appliance_api::v1::node_client::NodeClient;
use appliance_api::v1::*;
use common::*;
use qa::lan::Lan;
use qa::netns::Netns;
use qa::node::{management_channel, tcp_in, wait_converged, HostedNode, NodeSpec, RemoteCtl};
use tonic::transport::Channel;
use tonic::Code;

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "correct horse battery";
const VIEWER: &str = "viewer1";
const VIEWER_PASSWORD: &str = "viewer staple paper";
/// managementd starting, reaching applianced and serving after readiness.
const SERVE_LIMIT: Duration = Duration::from_secs(60);
/// A change reaching every member, or the firewall.
const APPLY_LIMIT: Duration = Duration::from_secs(30);

fn spec(name: &str, addr: &str) -> NodeSpec {
    NodeSpec::new(name, addr).with_first_admin(ADMIN, ADMIN_PASSWORD)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A plain host on the LAN at `cidr`.
fn host(lan: &Lan, tag: &str, name: &str, cidr: &str) -> anyhow::Result<Netns> {
    let ns = Netns::create(&format!("qa-{tag}-{name}"))?;
    lan.attach(&ns, "eth0")?;
    Lan::address(&ns, "eth0", cidr)?;
    Ok(ns)
}

/// `appliancectl --server` that follows a node's certificate change on
/// purpose (self-signed until it joins, then the cluster CA's): on the
/// refusal of a changed certificate it forgets the pins, as the message
/// says, and tries again once accepting the new one.
async fn ctl(c: &RemoteCtl, url: &str, args: &[&str], stdin: &str) -> anyhow::Result<Output> {
    let out = c.run(url, args, stdin).await?;
    if !out.status.success() && stderr(&out).contains("changed!") {
        c.forget_pin(url)?;
        let mut again = args.to_vec();
        if !again.contains(&"--yes") {
            again.insert(0, "--yes");
        }
        return c.run(url, &again, stdin).await;
    }
    Ok(out)
}

async fn ctl_ok(c: &RemoteCtl, url: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = ctl(c, url, args, "").await?;
    anyhow::ensure!(
        out.status.success(),
        "appliancectl --server {url} {} failed: {}",
        args.join(" "),
        stderr(&out)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn ctl_json(c: &RemoteCtl, url: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let text = ctl_ok(c, url, &all).await?;
    serde_json::from_str(&text).with_context(|| format!("JSON of {}: {text}", args.join(" ")))
}

/// Signs in (accepting the certificate), retrying while managementd starts.
async fn login(c: &RemoteCtl, url: &str, name: &str, password: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + SERVE_LIMIT;
    loop {
        let out = ctl(
            c,
            url,
            &["--yes", "login", "--user", name, "--password-stdin"],
            &format!("{password}\n"),
        )
        .await?;
        if out.status.success() {
            return Ok(());
        }
        let err = stderr(&out);
        // Only "not up yet" is retried; a refusal is the answer.
        let starting = err.contains("cannot reach") || err.contains("unavailable");
        anyhow::ensure!(
            starting && Instant::now() < deadline,
            "login as {name} at {url}: {err}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The stored token of `url` in `c`'s configuration directory.
fn token(c: &RemoteCtl, node: &HostedNode) -> anyhow::Result<String> {
    let addr = node.management_addr()?;
    let path = c
        .config
        .join(format!("appliancectl/token-{}_{}", addr.ip(), addr.port()));
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_owned())
}

/// A request with `authorization: Bearer token` when given.
fn req<T>(message: T, token: Option<&str>) -> anyhow::Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(message);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse()?);
    }
    Ok(r)
}

/// The code of every Node and Management call (Login excepted) made with
/// `token` (none, or one that is not valid).
async fn every_call(
    ch: &Channel,
    token: Option<&str>,
) -> anyhow::Result<Vec<(&'static str, Code)>> {
    let mut n = NodeClient::new(ch.clone());
    let mut m = ManagementClient::new(ch.clone());
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    macro_rules! call {
        ($client:ident . $method:ident ($msg:expr)) => {
            (
                stringify!($method),
                code($client.$method(req($msg, token)?).await.map(drop)),
            )
        };
    }
    Ok(vec![
        call!(n.status(StatusRequest::default())),
        call!(n.get_config(GetConfigRequest::default())),
        call!(n.validate_config(ConfigText::default())),
        call!(n.set_config(ConfigText::default())),
        call!(n.list_services(ListServicesRequest::default())),
        call!(n.restart_service(RestartServiceRequest::default())),
        call!(n.show_firewall(ShowFirewallRequest::default())),
        call!(n.logs(LogsRequest::default())),
        call!(n.list_peers(ListPeersRequest::default())),
        call!(n.add_peer(PeerRequest::default())),
        call!(n.remove_peer(PeerRequest::default())),
        call!(n.cluster_status(ClusterStatusRequest::default())),
        call!(n.cluster_form(ClusterFormRequest::default())),
        call!(n.cluster_add(ClusterAddRequest::default())),
        call!(n.cluster_remove(ClusterRemoveRequest::default())),
        call!(n.cluster_set_roles(ClusterSetRolesRequest::default())),
        call!(n.cluster_discovered(ClusterDiscoveredRequest::default())),
        call!(m.logout(LogoutRequest::default())),
        call!(m.who_am_i(WhoAmIRequest::default())),
        call!(m.list_sessions(ListSessionsRequest::default())),
        call!(m.list_accounts(ListAccountsRequest::default())),
        call!(m.add_account(AddAccountRequest::default())),
        call!(m.remove_account(RemoveAccountRequest::default())),
        call!(m.change_password(ChangePasswordRequest::default())),
        call!(m.list_events(ListEventsRequest::default())),
        call!(m.get_settings(GetSettingsRequest::default())),
        call!(m.set_settings(SetSettingsRequest::default())),
        call!(m.get_management_tls(GetManagementTlsRequest::default())),
        call!(m.set_management_certificate(SetManagementCertificateRequest::default())),
    ])
}

/// What a refused change must leave as it was, seen on the socket.
#[derive(Debug, PartialEq)]
struct Unchanged {
    generation: u64,
    members: Vec<(String, Vec<String>)>,
    config: String,
    accounts: Vec<(String, String)>,
    settings: Vec<Vec<String>>,
}

async fn unchanged(node: &HostedNode) -> anyhow::Result<Unchanged> {
    let cluster = qa::node::cluster_status(node).await?;
    let config = node
        .client()
        .await?
        .get_config(GetConfigRequest {})
        .await?
        .into_inner();
    let channel = appliance_api::connect_unix(&node.socket()).await?;
    let mut admin = appliance_api::v1::admin_client::AdminClient::new(channel);
    let accounts = admin
        .list_accounts(ListAccountsRequest {})
        .await?
        .into_inner();
    let settings = admin
        .get_settings(GetSettingsRequest {})
        .await?
        .into_inner();
    Ok(Unchanged {
        generation: cluster.generation,
        members: cluster
            .members
            .iter()
            .map(|m| (m.hostname.clone(), m.roles.clone()))
            .collect(),
        config: format!("generation {}\n{}", config.generation, config.toml),
        accounts: accounts
            .accounts
            .iter()
            .map(|a| (a.name.clone(), a.role.clone()))
            .collect(),
        settings: vec![
            settings.dns_servers,
            settings.ntp_servers,
            settings.management_networks,
        ],
    })
}

/// The resident memory of the node's managementd, in KiB.
fn managementd_rss_kib(node: &HostedNode) -> anyhow::Result<u64> {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", node.ns.name()])
        .output()?;
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "managementd" {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .context("no VmRSS")?;
            return Ok(kib);
        }
    }
    anyhow::bail!("no managementd runs in {}", node.ns.name())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_formed_remotely_with_viewers_refused_and_sign_in_slowed() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let tag = format!("r{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    let a = HostedNode::start(&lan, &tag, &spec("a", "10.77.0.11/24"))?;
    let b = HostedNode::start(&lan, &tag, &spec("b", "10.77.0.12/24"))?;
    let c = HostedNode::start(&lan, &tag, &spec("c", "10.77.0.13/24"))?;
    let host_ns = host(&lan, &tag, "h", "10.77.0.50/24")?;
    let attacker_ns = host(&lan, &tag, "x", "10.77.0.66/24")?;
    for n in [&a, &b, &c] {
        n.wait_ready(READY_LIMIT).await?;
    }
    let (url_a, url_b, url_c) = (
        a.management_url()?,
        b.management_url()?,
        c.management_url()?,
    );
    let admin = RemoteCtl::new(&host_ns)?;

    // Formed and joined only through the management ports.
    login(&admin, &url_a, ADMIN, ADMIN_PASSWORD).await?;
    ctl_ok(&admin, &url_a, &["cluster", "form"]).await?;
    for (node, url) in [(&b, &url_b), (&c, &url_c)] {
        login(&admin, url, ADMIN, ADMIN_PASSWORD).await?;
        let status = ctl_json(&admin, url, &["status"]).await?;
        let code = status["join_code"].as_str().unwrap_or_default().to_owned();
        anyhow::ensure!(
            !code.is_empty(),
            "{} shows no join code: {status}",
            node.name
        );
        let ip = node.address()?.to_string();
        ctl_ok(
            &admin,
            &url_a,
            &["cluster", "add", &ip, &code, "--roles", "frontend"],
        )
        .await?;
    }
    wait_converged(&[&a, &b, &c], 3, APPLY_LIMIT, Duration::from_millis(200)).await?;
    let members = ctl_json(&admin, &url_a, &["cluster", "status"]).await?;
    assert_eq!(
        members["members"].as_array().map(Vec::len),
        Some(3),
        "{members}"
    );

    // A viewer, added on A, is the cluster's: C lists it.
    let out = ctl(
        &admin,
        &url_a,
        &[
            "accounts",
            "add",
            VIEWER,
            "--role",
            "viewer",
            "--password-stdin",
        ],
        &format!("{VIEWER_PASSWORD}\n"),
    )
    .await?;
    assert!(out.status.success(), "accounts add: {}", stderr(&out));
    login(&admin, &url_c, ADMIN, ADMIN_PASSWORD).await?;
    let deadline = Instant::now() + APPLY_LIMIT;
    loop {
        let list = ctl_json(&admin, &url_c, &["accounts", "list"]).await?;
        let on_c = list["accounts"].as_array().is_some_and(|l| {
            l.iter()
                .any(|x| x["name"] == VIEWER && x["role"] == "viewer")
        });
        if on_c {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{VIEWER} not on C: {list}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The viewer reads, and every change it asks for is refused, nothing changed.
    let viewer = RemoteCtl::new(&host_ns)?;
    login(&viewer, &url_a, VIEWER, VIEWER_PASSWORD).await?;
    let status = ctl_json(&viewer, &url_a, &["status"]).await?;
    assert_eq!(status["hostname"], "a");
    let before = unchanged(&a).await?;
    let out = ctl(
        &viewer,
        &url_a,
        &["cluster", "roles", "b", "frontend,backend"],
        "",
    )
    .await?;
    assert!(!out.status.success(), "a viewer changed roles");
    let toml = a
        .client()
        .await?
        .get_config(GetConfigRequest {})
        .await?
        .into_inner()
        .toml;
    let out = ctl(&viewer, &url_a, &["config", "set", "-"], &toml).await?;
    assert!(!out.status.success(), "a viewer set the configuration");
    let out = ctl(
        &viewer,
        &url_a,
        &[
            "accounts",
            "add",
            "intruder",
            "--role",
            "administrator",
            "--password-stdin",
        ],
        "intruder password 1\n",
    )
    .await?;
    assert!(!out.status.success(), "a viewer added an account");
    let ch = management_channel(&host_ns, a.management_addr()?, false).await?;
    let vt = token(&viewer, &a)?;
    let mut n = NodeClient::new(ch.clone());
    let mut m = ManagementClient::new(ch.clone());
    let roles = ClusterSetRolesRequest {
        node: "b".into(),
        roles: vec!["frontend".into(), "backend".into()],
    };
    let code = n
        .cluster_set_roles(req(roles, Some(&vt))?)
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(
        code,
        Some(Code::PermissionDenied),
        "cluster roles as viewer"
    );
    let config = ConfigText { toml };
    let code = n
        .set_config(req(config, Some(&vt))?)
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(code, Some(Code::PermissionDenied), "config set as viewer");
    let add = AddAccountRequest {
        name: "intruder".into(),
        role: "administrator".into(),
        password: "intruder password 1".into(),
    };
    let code = m
        .add_account(req(add, Some(&vt))?)
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(code, Some(Code::PermissionDenied), "accounts add as viewer");
    assert_eq!(
        unchanged(&a).await?,
        before,
        "a viewer's refused changes changed something"
    );

    // Wrong passwords from one address: the sixth waits, and each is audited.
    let attacker = RemoteCtl::new(&attacker_ns)?;
    let mut last = String::new();
    for i in 1..=6 {
        let out = attacker
            .run(
                &url_a,
                &["--yes", "login", "--user", VIEWER, "--password-stdin"],
                &format!("wrong password {i}\n"),
            )
            .await?;
        assert!(!out.status.success(), "wrong password {i} accepted");
        last = stderr(&out);
        if i < 6 {
            assert!(
                !last.contains("try again in"),
                "attempt {i} already slowed: {last}"
            );
        }
    }
    assert!(
        last.contains("try again in"),
        "the sixth attempt was not slowed: {last}"
    );
    let events = ctl_json(&admin, &url_a, &["events"]).await?;
    let failed = events["events"].as_array().map_or(0, |l| {
        l.iter()
            .filter(|e| {
                e["action"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("sign-in") || a == "login")
                    && e["result"] != "ok"
                    && e["source"]
                        .as_str()
                        .is_some_and(|s| s.contains("10.77.0.66"))
            })
            .count()
    });
    assert!(
        failed >= 5,
        "{failed} failed sign-ins in the trail: {events}"
    );
    // The audit trail is the cluster's: C shows the same failures.
    let events_c = ctl_json(&admin, &url_c, &["events"]).await?;
    assert!(
        events_c["events"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["source"]
                .as_str()
                .is_some_and(|s| s.contains("10.77.0.66")))),
        "C's trail lacks A's failed sign-ins: {events_c}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_tls_networks_and_a_flood_on_the_management_port() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    anyhow::ensure!(
        std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_ok(),
        "openssl is missing: run make deps (qa/scripts/deps.sh installs it)"
    );
    let tag = format!("t{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    let a = HostedNode::start(&lan, &tag, &spec("a", "10.77.0.11/24"))?;
    // The host side is in 10.77.0.0/25; the outsider on the same LAN is not.
    let host_ns = host(&lan, &tag, "h", "10.77.0.50/24")?;
    let outsider = host(&lan, &tag, "x", "10.77.0.200/24")?;
    a.wait_ready(READY_LIMIT).await?;
    let url = a.management_url()?;
    let addr = a.management_addr()?;
    let admin = RemoteCtl::new(&host_ns)?;
    login(&admin, &url, ADMIN, ADMIN_PASSWORD).await?;
    let token_a = token(&admin, &a)?;

    // No token, or one that is not valid: every call is UNAUTHENTICATED.
    let ch = management_channel(&host_ns, addr, false).await?;
    for t in [None, Some("not-a-valid-token")] {
        for (method, code) in every_call(&ch, t).await? {
            assert_eq!(code, Code::Unauthenticated, "{method} with token {t:?}");
        }
    }
    // TLS 1.2 alone is served, and the token works over it.
    let ch12 = management_channel(&host_ns, addr, true).await?;
    let me = ManagementClient::new(ch12)
        .who_am_i(req(WhoAmIRequest {}, Some(&token_a))?)
        .await?
        .into_inner();
    assert_eq!(
        (me.name.as_str(), me.role.as_str()),
        (ADMIN, "administrator")
    );
    // TLS 1.1 is not (the client's security level lowered so it can offer it).
    let s_client = |version: &'static str| {
        let ns = host_ns.name().to_owned();
        let target = addr.to_string();
        async move {
            let mut cmd = tokio::process::Command::new("ip");
            cmd.args([
                "netns", "exec", &ns, "openssl", "s_client", "-connect", &target,
            ])
            .args([version, "-cipher", "DEFAULT:@SECLEVEL=0", "-brief"])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
            tokio::time::timeout(Duration::from_secs(20), cmd.output()).await
        }
    };
    let ok12 = s_client("-tls1_2").await??;
    assert!(ok12.status.success(), "openssl -tls1_2: {}", stderr(&ok12));
    let no11 = s_client("-tls1_1").await??;
    assert!(
        !no11.status.success(),
        "TLS 1.1 accepted: {}",
        stderr(&no11)
    );

    // A flood of connections from the outsider: the host is still served.
    let rss_before = managementd_rss_kib(&a)?;
    let flood_ns = outsider.name().to_owned();
    let flood = tokio::task::spawn_blocking(move || {
        let (start, mut opened) = (Instant::now(), 0u32);
        // 20 waves of 100 held open at once, each wave bounded.
        for _ in 0..20 {
            if start.elapsed() > Duration::from_secs(60) {
                break;
            }
            let wave: Vec<std::net::TcpStream> = (0..100)
                .filter_map(|_| tcp_in(&flood_ns, addr, Duration::from_millis(500)).ok())
                .collect();
            opened += u32::try_from(wave.len()).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(100));
            drop(wave);
        }
        (opened, start.elapsed())
    });
    let mut slowest = Duration::ZERO;
    let mut n = NodeClient::new(ch.clone());
    while !flood.is_finished() {
        let t = Instant::now();
        let status = n.status(req(StatusRequest {}, Some(&token_a))?).await;
        assert!(
            status.is_ok(),
            "the host was not served during the flood: {status:?}"
        );
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (opened, took) = flood.await?;
    // A new connection from the host is served too.
    let fresh = management_channel(&host_ns, addr, false).await?;
    NodeClient::new(fresh)
        .status(req(StatusRequest {}, Some(&token_a))?)
        .await?;
    let rss_after = managementd_rss_kib(&a)?;
    println!(
        "flood: {opened} connections from the outsider in {took:.1?}; the host's slowest status {slowest:.1?}; managementd RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(
        slowest < Duration::from_secs(10),
        "status took {slowest:?} during the flood"
    );

    // A management network that leaves out the client asking: refused, unchanged.
    let before = unchanged(&a).await?;
    let out = ctl(
        &admin,
        &url,
        &["settings", "set", "--management-network", "10.99.0.0/24"],
        "",
    )
    .await?;
    assert!(
        !out.status.success(),
        "a setting excluding the client was applied"
    );
    assert_eq!(unchanged(&a).await?, before);

    // Only the host side's network: the outsider is dropped, the host served.
    ctl_ok(
        &admin,
        &url,
        &["settings", "set", "--management-network", "10.77.0.0/25"],
    )
    .await?;
    qa::wait::until(
        APPLY_LIMIT,
        Duration::from_millis(250),
        "the outsider to be dropped",
        || (!reachable(&outsider, addr)).then_some(()),
    )?;
    assert!(
        reachable(&host_ns, addr),
        "the host lost the management port"
    );
    let status = ctl_json(&admin, &url, &["status"]).await?;
    assert_eq!(status["hostname"], "a");
    let settings = ctl_json(&admin, &url, &["settings", "show"]).await?;
    assert_eq!(
        settings["management_networks"][0], "10.77.0.0/25",
        "{settings}"
    );
    Ok(())
}
