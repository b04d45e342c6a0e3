//! The cluster join of issue 5, hosted: three nodes and an outsider on one
//! bridged LAN. A forms a cluster; B and C are added as front-ends with the
//! codes their status shows; the firewalls follow the membership (the
//! outsider is refused on internal ports everywhere, members reach each
//! other), a kept connection to A's portal answers through every change, B's
//! portal records events in A's audit; C is removed and loses its access. A
//! wrong code is refused with the cluster unchanged.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use appliance_api::v1::{ClusterAddRequest, ShowFirewallRequest};
use common::*;
use qa::lan::Lan;
use qa::netns::Netns;
use qa::node::{cluster_status, HostedNode, NodeSpec};
use qa::steady::Steady;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// Every wait of a membership change is bounded by this.
const CHANGE_LIMIT: Duration = Duration::from_secs(30);

/// The join code `node` shows in `appliancectl status --output json`.
fn code_from_status(node: &HostedNode) -> anyhow::Result<String> {
    let s = ctl_json(node, &["status"])?;
    anyhow::ensure!(
        s["cluster_state"] == "unjoined",
        "{} is not waiting to be joined: {s}",
        node.name
    );
    let code = s["join_code"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(code.len() == 11, "{} shows no join code: {s}", node.name);
    Ok(code)
}

/// The peers4 set of `node`'s firewall.
async fn peers4(node: &HostedNode) -> anyhow::Result<Vec<String>> {
    let fw = node
        .client()
        .await?
        .show_firewall(ShowFirewallRequest {})
        .await?
        .into_inner();
    Ok(fw
        .sets
        .iter()
        .find(|s| s.name == "peers4")
        .map(|s| s.elements.clone())
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_with_codes_and_the_firewalls_follow() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let tag = format!("j{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    let a = HostedNode::start(&lan, &tag, &NodeSpec::new("a", "10.77.0.11/24"))?;
    let b = HostedNode::start(&lan, &tag, &NodeSpec::new("b", "10.77.0.12/24"))?;
    let c = HostedNode::start(&lan, &tag, &NodeSpec::new("c", "10.77.0.13/24"))?;
    let outsider = Netns::create(&format!("qa-{tag}-x"))?;
    lan.attach(&outsider, "eth0")?;
    Lan::address(&outsider, "eth0", "10.77.0.99/24")?;
    for n in [&a, &b, &c] {
        n.wait_ready(READY_LIMIT).await?;
    }

    // Alone, each node waits to be joined and shows a code.
    code_from_status(&a)?;
    let out = run_ctl(&a, &["cluster", "form"])?;
    assert!(
        out.status.success(),
        "form failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let formed = cluster_status(&a).await?;
    assert_eq!(formed.node_state, "member");
    assert_eq!(formed.generation, 1);
    assert!(formed.authority);
    assert_eq!(formed.members[0].roles, ["frontend", "backend"]);
    let status = ctl_json(&a, &["status"])?;
    assert_eq!(status["cluster_state"], "member");
    assert_eq!(status["join_code"], "");

    // A hears B and C announce themselves.
    qa::wait::until(
        Duration::from_secs(20),
        Duration::from_millis(250),
        "A to hear the beacons of B and C",
        || {
            let d = ctl_json(&a, &["cluster", "discovered"]).ok()?;
            let names: Vec<&str> = d["appliances"]
                .as_array()?
                .iter()
                .filter_map(|x| x["hostname"].as_str())
                .collect();
            (names.contains(&"b") && names.contains(&"c")).then_some(())
        },
    )?;

    // Services that stay placed are not restarted by membership changes.
    let pids = |list: Vec<appliance_api::v1::ServiceInfo>| -> Vec<(String, u32)> {
        list.into_iter().map(|s| (s.name, s.pid)).collect()
    };
    let a_services = pids(services(&a).await?);
    // audit, portal and the system service management.
    assert_eq!(a_services.len(), 3, "{a_services:?}");

    // A kept connection to A's public port, answering through every change.
    let steady = Steady::start(
        &outsider,
        addr("10.77.0.11:8080"),
        Duration::from_millis(20),
        Duration::from_millis(500),
    )?;

    // A wrong code is refused, and the cluster does not change.
    let out = run_ctl(&a, &["cluster", "add", "10.77.0.13", "00000-00000"])?;
    let wrong_at = Instant::now();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong code was accepted");
    assert!(stderr.contains("did not match"), "{stderr}");
    assert_eq!(cluster_status(&a).await?.generation, formed.generation);
    assert_eq!(cluster_status(&c).await?.node_state, "unjoined");

    // B, with the code from its status, through the CLI.
    let started = Instant::now();
    let code_b = code_from_status(&b)?;
    let out = run_ctl(
        &a,
        &[
            "cluster",
            "add",
            "10.77.0.12",
            &code_b,
            "--roles",
            "frontend",
        ],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "adding B failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("b joined the cluster"), "{stdout}");
    wait_converged(&[&a, &b], 2, CHANGE_LIMIT).await?;
    eprintln!("B joined and is active after {:?}", started.elapsed());

    // C, with the code from the API, through the API (progress events).
    // C spaces attempts after a wrong one (1 s after the first).
    let spacing = Duration::from_millis(1100).saturating_sub(wrong_at.elapsed());
    tokio::time::sleep(spacing).await;
    let started = Instant::now();
    let code_c = cluster_status(&c).await?.join_code;
    let mut events = a
        .client()
        .await?
        .cluster_add(ClusterAddRequest {
            address: "10.77.0.13".into(),
            code: code_c,
            roles: vec!["frontend".into()],
        })
        .await?
        .into_inner();
    let mut kinds = Vec::new();
    let mut last = None;
    while let Some(e) = tokio::time::timeout(CHANGE_LIMIT, events.message()).await?? {
        kinds.push(e.kind.clone());
        if e.r#final {
            last = Some(e);
            break;
        }
    }
    let last = last.ok_or_else(|| anyhow::anyhow!("no final event: {kinds:?}"))?;
    assert!(last.ok, "adding C failed: {} ({kinds:?})", last.message);
    for k in [
        "connecting",
        "facts",
        "preflight_passed",
        "handshake",
        "added",
        "done",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} event in {kinds:?}");
    }
    let generation = wait_converged(&[&a, &b, &c], 3, CHANGE_LIMIT).await?;
    eprintln!("C joined and is active after {:?}", started.elapsed());
    let s = cluster_status(&b).await?;
    let c_member = s
        .members
        .iter()
        .find(|m| m.hostname == "c")
        .ok_or_else(|| anyhow::anyhow!("B does not list C"))?;
    assert_eq!(c_member.roles, ["frontend"]);

    // Every firewall lets the other members in, and no one else.
    for (n, others) in [
        (&a, ["10.77.0.12", "10.77.0.13"]),
        (&b, ["10.77.0.11", "10.77.0.13"]),
        (&c, ["10.77.0.11", "10.77.0.12"]),
    ] {
        assert_eq!(peers4(n).await?, others, "peer set of {}", n.name);
    }
    for ip in ["10.77.0.11", "10.77.0.12", "10.77.0.13"] {
        for port in [7100, 7443] {
            let to = addr(&format!("{ip}:{port}"));
            assert!(!reachable(&outsider, to), "the outsider reached {to}");
        }
    }
    for (from, to) in [
        (&b, "10.77.0.11:7100"),
        (&c, "10.77.0.11:7100"),
        (&a, "10.77.0.12:7443"),
        (&a, "10.77.0.13:7443"),
        (&b, "10.77.0.13:7443"),
        (&c, "10.77.0.12:7443"),
        (&c, "10.77.0.11:7443"),
    ] {
        assert!(
            reachable(&from.ns, addr(to)),
            "{} cannot reach {to}",
            from.name
        );
    }

    // B runs only the front-end (and management, on every node); its portal
    // records in A's audit.
    let on_b: Vec<String> = services(&b).await?.into_iter().map(|s| s.name).collect();
    assert_eq!(on_b, ["management", "portal"]);
    let posted = http(
        &outsider,
        addr("10.77.0.12:8080"),
        "POST /events HTTP/1.0\r\nContent-Length: 13\r\n\r\nvia portal b\n",
    )?;
    assert!(posted.starts_with("HTTP/1.1 200"), "{posted}");
    let events = http_get(&outsider, addr("10.77.0.11:8080"), "/events")?;
    assert!(events.contains("via portal b"), "{events}");

    // C is removed: the others close their doors to it; C waits to be joined again.
    let out = run_ctl(&a, &["cluster", "remove", "c"])?;
    assert!(
        out.status.success(),
        "removing C failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = wait_converged(&[&a, &b], 2, CHANGE_LIMIT).await?;
    assert!(after > generation);
    qa::wait::until_async(
        CHANGE_LIMIT,
        Duration::from_millis(100),
        "C to wait to be joined again",
        || async {
            let s = cluster_status(&c).await.ok()?;
            (s.node_state == "unjoined" && !s.join_code.is_empty()).then_some(())
        },
    )
    .await?;
    for n in [&a, &b] {
        assert!(
            !peers4(n).await?.contains(&"10.77.0.13".to_owned()),
            "{} still lets C in",
            n.name
        );
    }
    for to in ["10.77.0.11:7100", "10.77.0.11:7443", "10.77.0.12:7443"] {
        assert!(!reachable(&c.ns, addr(to)), "removed C still reaches {to}");
    }
    assert!(reachable(&b.ns, addr("10.77.0.11:7100")));

    assert_eq!(
        pids(services(&a).await?),
        a_services,
        "A's services restarted"
    );
    let report = steady.finish();
    eprintln!("kept connection: {report:?}");
    assert!(
        report.error.is_none(),
        "the kept connection broke: {report:?}"
    );
    assert!(report.answered > 50, "too few exchanges: {report:?}");
    assert_eq!(report.answered, report.sent, "{report:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_restart_as_members_and_catch_up() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let tag = format!("r{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    let mut a = HostedNode::start(&lan, &tag, &NodeSpec::new("a", "10.77.0.21/24"))?;
    let mut b = HostedNode::start(&lan, &tag, &NodeSpec::new("b", "10.77.0.22/24"))?;
    a.wait_ready(READY_LIMIT).await?;
    b.wait_ready(READY_LIMIT).await?;
    ctl_json(&a, &["cluster", "form"])?;
    let code = code_from_status(&b)?;
    let added = ctl_json(&a, &["cluster", "add", "10.77.0.22", &code])?;
    assert_eq!(added["ok"], true, "{added}");
    wait_converged(&[&a, &b], 2, CHANGE_LIMIT).await?;
    // Two nodes: accepted, with a warning.
    let s = cluster_status(&a).await?;
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("no high availability")),
        "{:?}",
        s.warnings
    );

    // B is down while A changes the cluster: the push to B fails, A goes on.
    b.stop()?;
    let changed = ctl_json(&a, &["cluster", "roles", "a", "backend"])?;
    let pushes = changed["pushes"].as_array().cloned().unwrap_or_default();
    assert!(
        pushes
            .iter()
            .any(|p| p["hostname"] == "b" && p["ok"] == false),
        "{changed}"
    );
    let generation = changed["generation"].as_u64().unwrap_or_default();
    let on_a: Vec<String> = services(&a).await?.into_iter().map(|s| s.name).collect();
    assert_eq!(
        on_a,
        ["audit", "management"],
        "A, back-end only, still runs the front-end"
    );

    // B comes back a member, and catches up.
    b.launch()?;
    qa::wait::until_async(
        CHANGE_LIMIT,
        Duration::from_millis(100),
        "B to catch up",
        || async {
            let s = cluster_status(&b).await.ok()?;
            (s.node_state == "member" && s.generation == generation).then_some(())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; B said:\n{}", b.stderr()))?;

    // A, the authority, comes back with its CA and record: it can still make changes.
    a.stop()?;
    a.launch()?;
    a.wait_ready(READY_LIMIT).await?;
    let s = cluster_status(&a).await?;
    assert!(s.authority && s.generation == generation, "{s:?}");
    let changed = ctl_json(&a, &["cluster", "roles", "a", "frontend,backend"])?;
    assert!(
        changed["pushes"]
            .as_array()
            .is_some_and(|p| p.iter().all(|p| p["ok"] == true)),
        "{changed}"
    );
    wait_converged(&[&a, &b], 2, CHANGE_LIMIT).await?;

    // Refusals keep the cluster as it was: a second back-end, the last
    // front-end, a node removing itself.
    let before = cluster_status(&a).await?.generation;
    for (args, says) in [
        (vec!["cluster", "roles", "b", "backend"], "2 back-end nodes"),
        (vec!["cluster", "remove", "a"], "cannot remove itself"),
        (vec!["cluster", "form"], "already a member"),
    ] {
        let out = run_ctl(&a, &args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // Preflight failures, one per line: a member cannot be joined again.
    let out = run_ctl(&a, &["cluster", "add", "10.77.0.22", "00000-00000"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("preflight failed, nothing was changed:\n  - ")
            && stderr.contains("it cannot be joined"),
        "{stderr}"
    );
    assert_eq!(cluster_status(&a).await?.generation, before);
    assert_eq!(cluster_status(&b).await?.generation, before);
    Ok(())
}
