//! Management TLS on a hosted node, end to end through applianced's `Admin`
//! service and managementd's port: the self-signed certificate for the
//! node's hostname and address (its key 0600 in the state directory) is the
//! one served; uploads that are expired, not covering the node or not
//! matching their key are refused with the reason and change nothing; a
//! good upload is served within seconds; clearing it brings back the same
//! self-signed certificate, which also survives a restart of applianced.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use appliance_api::v1::admin_client::AdminClient;
use appliance_api::v1::{GetManagementTlsRequest, ManagementTls, SetManagementCertificateRequest};
use common::*;
use qa::node::{management_tls, tls_in, HostedNode, NodeSpec};
use tonic::transport::Channel;

async fn admin(node: &HostedNode) -> anyhow::Result<AdminClient<Channel>> {
    Ok(AdminClient::new(
        appliance_api::connect_unix(&node.socket()).await?,
    ))
}

async fn current(node: &HostedNode) -> anyhow::Result<ManagementTls> {
    Ok(admin(node)
        .await?
        .get_management_tls(GetManagementTlsRequest {})
        .await?
        .into_inner())
}

/// The fingerprint of the certificate the management port serves now.
async fn served(node: &HostedNode) -> anyhow::Result<String> {
    let connector = management_tls(false, b"http/1.1")?;
    let tls = tls_in(node.ns.name(), node.management_addr()?, &connector).await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| anyhow::anyhow!("no server certificate"))?;
    Ok(appliance_pki::colon_fingerprint(leaf))
}

/// Waits (bounded) until the port serves `fingerprint`.
async fn wait_served(node: &HostedNode, fingerprint: &str) -> anyhow::Result<()> {
    let mut last = String::new();
    for _ in 0..60 {
        match served(node).await {
            Ok(f) if f == fingerprint => return Ok(()),
            Ok(f) => last = f,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("the port never served {fingerprint} within 30 s (last: {last})")
}

/// A self-signed certificate for `names`, valid from one date to another
/// (year, month, day), and its key (PEM).
fn cert(
    names: &[&str],
    from: (i32, u8, u8),
    to: (i32, u8, u8),
) -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| (*s).to_string()).collect::<Vec<_>>())?;
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_certificates_self_signed_refused_uploaded_and_kept() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let (_lan, mut node) = one_node('t', &NodeSpec::new("tls-a", "10.77.0.21/24")).await?;

    // Self-signed for the node's hostname and address; its key kept 0600.
    let first = current(&node).await?;
    assert_eq!(first.source, "self-signed");
    assert_eq!(first.names, ["tls-a", "10.77.0.21"]);
    assert_eq!(first.port, 8443);
    assert!(first.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(first.fingerprint.len(), 95, "{}", first.fingerprint);
    let key_file = node.root.join("state/management-key.pem");
    let mode = std::fs::metadata(&key_file)?.permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", key_file.display());
    wait_served(&node, &first.fingerprint).await?;

    // Refusals, with the reason, and nothing changes.
    let covering = ["tls-a", "10.77.0.21"];
    let (expired, expired_key) = cert(&covering, (2020, 1, 1), (2020, 2, 1))?;
    let (other, other_key) = cert(&["elsewhere"], (2025, 1, 1), (2035, 1, 1))?;
    let (good, good_key) = cert(&covering, (2025, 1, 1), (2035, 1, 1))?;
    for (cert_pem, key_pem, reason) in [
        (&expired, &expired_key, "expired on"),
        (&other, &other_key, "does not cover tls-a, 10.77.0.21"),
        (
            &good,
            &other_key,
            "does not belong to the management certificate",
        ),
    ] {
        let err = admin(&node)
            .await?
            .set_management_certificate(SetManagementCertificateRequest {
                cert_pem: cert_pem.clone(),
                key_pem: key_pem.clone(),
            })
            .await
            .expect_err(reason);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(reason),
            "{reason}: {}",
            err.message()
        );
        assert_eq!(current(&node).await?.fingerprint, first.fingerprint);
    }

    // A good upload is used, and served.
    let uploaded = admin(&node)
        .await?
        .set_management_certificate(SetManagementCertificateRequest {
            cert_pem: good.clone(),
            key_pem: good_key.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(uploaded.source, "uploaded");
    assert_ne!(uploaded.fingerprint, first.fingerprint);
    assert_eq!(current(&node).await?.fingerprint, uploaded.fingerprint);
    wait_served(&node, &uploaded.fingerprint).await?;

    // Cleared: the same self-signed certificate as before.
    let cleared = admin(&node)
        .await?
        .set_management_certificate(SetManagementCertificateRequest::default())
        .await?
        .into_inner();
    assert_eq!(cleared.source, "self-signed");
    assert_eq!(cleared.fingerprint, first.fingerprint);
    wait_served(&node, &first.fingerprint).await?;

    // And it survives a restart of applianced.
    node.stop()?;
    node.launch()?;
    node.wait_ready(READY_LIMIT).await?;
    assert_eq!(current(&node).await?.fingerprint, first.fingerprint);
    wait_served(&node, &first.fingerprint).await?;
    Ok(())
}

/// Waits (bounded by 60 s) until `node` serves a certificate from `source`.
async fn wait_source(node: &HostedNode, source: &str) -> anyhow::Result<ManagementTls> {
    let mut last = String::new();
    for _ in 0..120 {
        match current(node).await {
            Ok(t) if t.source == source => return Ok(t),
            Ok(t) => last = t.source,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!(
        "{} never had a {source} certificate within 60 s (last: {last})",
        node.name
    )
}

/// The PEM blocks of a chain.
fn blocks(pem: &str) -> Vec<String> {
    pem.split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("-----BEGIN CERTIFICATE-----"))
        .map(|b| b.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_serve_cluster_ca_certificates_and_uploads_cover_every_member() -> anyhow::Result<()>
{
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let tag = format!("m{}", qa::unique_tag());
    let lan = qa::lan::Lan::new(&tag)?;
    let a = HostedNode::start(&lan, &tag, &NodeSpec::new("ma", "10.77.0.31/24"))?;
    let b = HostedNode::start(&lan, &tag, &NodeSpec::new("mb", "10.77.0.32/24"))?;
    for n in [&a, &b] {
        n.wait_ready(READY_LIMIT).await?;
    }
    let alone = current(&b).await?;
    assert_eq!(alone.source, "self-signed");

    // A forms, B joins.
    let out = run_ctl(&a, &["cluster", "form"])?;
    anyhow::ensure!(
        out.status.success(),
        "form: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = qa::node::cluster_status(&b).await?.join_code;
    let mut events = a
        .client()
        .await?
        .cluster_add(appliance_api::v1::ClusterAddRequest {
            address: "10.77.0.32".into(),
            code,
            roles: vec!["frontend".into()],
        })
        .await?
        .into_inner();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(30), events.message()).await?? {
        if e.r#final {
            anyhow::ensure!(e.ok, "adding B failed: {}", e.message);
            break;
        }
    }
    wait_converged(&[&a, &b], 2, Duration::from_secs(30)).await?;

    // Each member: a certificate of the cluster CA for its own names, the
    // same CA on both, served.
    let mut cas = Vec::new();
    for (node, names) in [(&a, ["ma", "10.77.0.31"]), (&b, ["mb", "10.77.0.32"])] {
        let tls = wait_source(node, "cluster-ca").await?;
        assert_eq!(tls.names, names, "{}", node.name);
        let chain = blocks(&tls.cert_pem);
        assert_eq!(chain.len(), 2, "{}: leaf and CA", node.name);
        cas.push(chain[1].clone());
        wait_served(node, &tls.fingerprint).await?;
    }
    assert_eq!(cas[0], cas[1], "one cluster CA");
    assert_ne!(current(&b).await?.fingerprint, alone.fingerprint);

    // An upload must cover every member: one naming A alone is refused,
    // naming B's hostname and address.
    let (only_a, only_a_key) = cert(&["ma", "10.77.0.31"], (2025, 1, 1), (2035, 1, 1))?;
    let err = admin(&a)
        .await?
        .set_management_certificate(SetManagementCertificateRequest {
            cert_pem: only_a,
            key_pem: only_a_key,
        })
        .await
        .expect_err("B not covered");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("does not cover mb, 10.77.0.32"),
        "{}",
        err.message()
    );

    // One covering both, uploaded on A, is served by B too.
    let (both, both_key) = cert(
        &["ma", "mb", "10.77.0.31", "10.77.0.32"],
        (2025, 1, 1),
        (2035, 1, 1),
    )?;
    let set = admin(&a)
        .await?
        .set_management_certificate(SetManagementCertificateRequest {
            cert_pem: both,
            key_pem: both_key,
        })
        .await?
        .into_inner();
    assert_eq!(set.source, "uploaded");
    let on_b = wait_source(&b, "uploaded").await?;
    assert_eq!(on_b.fingerprint, set.fingerprint);
    wait_served(&b, &set.fingerprint).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_port_follows_the_node_configuration() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let spec = NodeSpec::new("tls-p", "10.77.0.22/24");
    let (_lan, node) = one_node('p', &spec).await?;
    let fingerprint = current(&node).await?.fingerprint;
    wait_served(&node, &fingerprint).await?;

    let toml = format!("{}\n[management]\nport = 9443\n", spec.config_toml());
    node.client()
        .await?
        .set_config(appliance_api::v1::ConfigText { toml })
        .await?;
    let addr = std::net::SocketAddr::new(node.address()?, 9443);
    let connector = management_tls(false, b"http/1.1")?;
    let mut served_there = None;
    for _ in 0..60 {
        if let Ok(tls) = tls_in(node.ns.name(), addr, &connector).await {
            served_there = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| appliance_pki::colon_fingerprint(c));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(served_there.as_deref(), Some(fingerprint.as_str()), "9443");
    assert_eq!(current(&node).await?.port, 9443);
    // The old port is closed; the services list shows the configured one.
    assert!(
        tls_in(node.ns.name(), node.management_addr()?, &connector)
            .await
            .is_err(),
        "8443 still served"
    );
    let management = services(&node)
        .await?
        .into_iter()
        .find(|s| s.name == "management")
        .ok_or_else(|| anyhow::anyhow!("no management service"))?;
    assert_eq!(management.ports, ["9443/tcp management"]);
    Ok(())
}
