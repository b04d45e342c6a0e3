//! The management web UI in a real browser (Debian's headless chromium
//! driven by playwright-core, `qa/web/cluster.mjs`) against three hosted
//! nodes in namespaces, each running managementd on its management port;
//! the browser runs in a fourth namespace on the same LAN.
//!
//! A has its first administrator seeded (`--first-admin NAME:PHC`) and forms
//! a cluster; B and C have none. The browser, in three runs:
//! 1. `setup`: C (no administrator) shows `/setup` saying where to set one,
//!    and refuses to sign anyone in;
//! 2. `grow`: signs in on A, sees the dashboard, checks the session cookie's
//!    flags and that a cross-site form POST is refused, adds B (found by the
//!    beacons) as a front-end with its join code and watches it turn green;
//!    then C with a wrong code, and C as a second back-end: each refused
//!    with a clear message, and the dashboard still lists two members;
//! 3. `manage`: adds C with its (fresh) code, changes A's roles, removes C,
//!    visits every page, signs out, and is sent to the sign-in page after.
//!
//! Between the runs and at the end the test checks membership through the
//! nodes' own sockets: the browser's view is not taken on trust. Screenshots
//! of every page (1280x800) go to `out/screenshots/web_ui/`, and with
//! `APPLIANCE_UPDATE_SCREENSHOTS=1` to `docs/screenshots/`.

mod common;
mod web_support;

use std::net::SocketAddr;
use std::time::Duration;

use appliance_api::v1::StatusRequest;
use common::*;
use qa::lan::Lan;
use qa::netns::Netns;
use qa::node::{cluster_status, HostedNode, NodeSpec, MANAGEMENT_PORT as PORT};

/// managementd answering after applianced is ready (it starts it).
const MANAGEMENT_LIMIT: Duration = Duration::from_secs(60);
/// One browser run: chromium's start, sign-ins (Argon2id), joins.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);
/// A membership change to settle on every node.
const CHANGE_LIMIT: Duration = Duration::from_secs(60);

const ADMIN: &str = "admin";
/// At least 12 characters (docs/management.md).
const PASSWORD: &str = "correct horse battery";

const A: (&str, &str) = ("web-a", "10.77.0.21");
const B: (&str, &str) = ("web-b", "10.77.0.22");
const C: (&str, &str) = ("web-c", "10.77.0.23");
const CLIENT_IP: &str = "10.77.0.99";

/// The screenshots the README shows, in its order.
const SCREENSHOTS: &[&str] = &[
    "setup",
    "signin",
    "dashboard",
    "add",
    "add-confirm",
    "add-progress",
    "add-failure",
    "add-refused",
    "node",
    "roles-confirm",
    "remove-confirm",
    "events",
    "settings",
    "accounts",
];

fn url(ip: &str) -> String {
    format!("https://{ip}:{PORT}")
}

/// The SHA-256 fingerprint of the certificate `node`'s managementd serves,
/// as applianced holds it.
async fn fingerprint(node: &HostedNode) -> anyhow::Result<String> {
    let fp = node.management_fingerprint().await?;
    anyhow::ensure!(
        !fp.is_empty(),
        "{} has no management certificate",
        node.name
    );
    Ok(fp)
}

/// `node`'s join code as its status shows it (what its console prints).
async fn join_code(node: &HostedNode) -> anyhow::Result<String> {
    let status = node
        .client()
        .await?
        .status(StatusRequest {})
        .await?
        .into_inner();
    anyhow::ensure!(
        !status.join_code.is_empty(),
        "{} shows no join code: {status:?}",
        node.name
    );
    Ok(status.join_code)
}

/// Waits (bounded) until managementd accepts connections on `ip` from `ns`.
fn wait_management(ns: &Netns, node: &HostedNode, ip: &str) -> anyhow::Result<()> {
    let to: SocketAddr = format!("{ip}:{PORT}").parse()?;
    qa::wait::until(
        MANAGEMENT_LIMIT,
        Duration::from_millis(250),
        &format!("managementd of {} on {to}", node.name),
        || reachable(ns, to).then_some(()),
    )
    .map_err(|e| anyhow::anyhow!("{e}; applianced said:\n{}", node.stderr()))
}

/// The hostnames of the members as `node` lists them, sorted, and whether
/// every one is active.
async fn members(node: &HostedNode) -> anyhow::Result<(Vec<String>, bool)> {
    let s = cluster_status(node).await?;
    let mut names: Vec<String> = s.members.iter().map(|m| m.hostname.clone()).collect();
    names.sort_unstable();
    Ok((names, s.members.iter().all(|m| m.state == "active")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_grows_and_shrinks_a_cluster_in_a_browser() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    web_support::prepare()?;
    let shots = web_support::screenshot_dir("web_ui")?;
    let tag = format!("w{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    let spec_a = NodeSpec::new(A.0, &format!("{}/24", A.1)).with_first_admin(ADMIN, PASSWORD);
    let a = HostedNode::start(&lan, &tag, &spec_a)?;
    let mut spec_b = NodeSpec::new(B.0, &format!("{}/24", B.1));
    spec_b.roles = vec!["frontend".into()];
    let b = HostedNode::start(&lan, &tag, &spec_b)?;
    let mut spec_c = NodeSpec::new(C.0, &format!("{}/24", C.1));
    spec_c.roles = vec!["frontend".into()];
    let c = HostedNode::start(&lan, &tag, &spec_c)?;
    let client = Netns::create(&format!("qa-{tag}-client"))?;
    lan.attach(&client, "eth0")?;
    Lan::address(&client, "eth0", &format!("{CLIENT_IP}/24"))?;
    for n in [&a, &b, &c] {
        n.wait_ready(READY_LIMIT).await?;
    }
    for (n, ip) in [(&a, A.1), (&c, C.1)] {
        wait_management(&client, n, ip)?;
    }
    let formed = ctl_json(&a, &["cluster", "form"])?;
    anyhow::ensure!(formed["node_state"] == "member", "forming: {formed}");
    // Forming makes A ask the cluster CA for its management certificate:
    // the fingerprint is read after.
    let creds = |fp_a: String| {
        vec![
            ("WEB_USER", ADMIN.to_string()),
            ("WEB_PASSWORD", PASSWORD.to_string()),
            ("WEB_A_URL", url(A.1)),
            ("WEB_A_FP", fp_a),
            ("WEB_A_HOST", A.0.to_string()),
        ]
    };

    // 1. C has no administrator: /setup, and no sign-in.
    let mut env = vec![
        ("WEB_PHASE", "setup".to_string()),
        ("WEB_FRESH_URL", url(C.1)),
        ("WEB_FRESH_FP", fingerprint(&c).await?),
    ];
    env.extend(creds(fingerprint(&a).await?));
    web_support::run_script(Some(&client), "cluster.mjs", &env, &shots, SCRIPT_LIMIT)?;

    // 2. B added; C refused twice.
    let mut env = vec![
        ("WEB_PHASE", "grow".to_string()),
        ("WEB_B_IP", B.1.to_string()),
        ("WEB_B_HOST", B.0.to_string()),
        ("WEB_B_CODE", join_code(&b).await?),
        ("WEB_C_IP", C.1.to_string()),
        ("WEB_C_HOST", C.0.to_string()),
        ("WEB_C_CODE", join_code(&c).await?),
    ];
    env.extend(creds(fingerprint(&a).await?));
    web_support::run_script(Some(&client), "cluster.mjs", &env, &shots, SCRIPT_LIMIT)?;
    wait_converged(&[&a, &b], 2, CHANGE_LIMIT).await?;
    let (names, active) = members(&a).await?;
    anyhow::ensure!(
        names == [A.0, B.0] && active,
        "after the refusals A lists {names:?} (all active: {active})"
    );
    let c_state = cluster_status(&c).await?.node_state;
    anyhow::ensure!(c_state != "member", "refused C is a {c_state}");

    // 3. C added, A's roles changed, C removed, signed out.
    let mut env = vec![
        ("WEB_PHASE", "manage".to_string()),
        ("WEB_B_HOST", B.0.to_string()),
        ("WEB_C_IP", C.1.to_string()),
        ("WEB_C_HOST", C.0.to_string()),
        ("WEB_C_CODE", join_code(&c).await?),
    ];
    env.extend(creds(fingerprint(&a).await?));
    web_support::run_script(Some(&client), "cluster.mjs", &env, &shots, SCRIPT_LIMIT)?;
    wait_converged(&[&a, &b], 2, CHANGE_LIMIT).await?;
    let (names, active) = members(&a).await?;
    anyhow::ensure!(
        names == [A.0, B.0] && active,
        "after removing C, A lists {names:?} (all active: {active})"
    );
    let s = cluster_status(&a).await?;
    let a_roles = s
        .members
        .iter()
        .find(|m| m.hostname == A.0)
        .map(|m| m.roles.clone())
        .unwrap_or_default();
    anyhow::ensure!(
        a_roles == ["backend"],
        "A's roles after the change: {a_roles:?}"
    );
    qa::wait::until_async(
        CHANGE_LIMIT,
        Duration::from_millis(250),
        "removed C to leave the cluster",
        || async {
            let s = cluster_status(&c).await.ok()?;
            (s.node_state != "member").then_some(())
        },
    )
    .await?;

    web_support::publish(&shots, SCREENSHOTS)?;
    Ok(())
}
