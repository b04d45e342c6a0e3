//! Every rollback path of a transition, run with an injected failure: a
//! config change whose hostname step fails, whose resolv.conf step fails, and
//! whose state store commit fails (the `failpoints` of applianced, armed
//! through `FAILPOINTS`). Each is reported to the caller as an error naming
//! the step; afterwards the live node (addresses, routes, the firewall's
//! ruleset by body, hostname, resolv.conf) and the state database are
//! exactly as before, and the next good change still applies.
//!
//! The failing change touches every layer the transition applies before the
//! failing step: the firewall (roles, so placed ports, change), addresses,
//! the default route, the hostname and the resolver.
//!
//! Needs applianced built with `--features applianced/failpoints`, as
//! `make test` builds it; without, the test fails and says so.

mod common;

use appliance_api::v1::{ConfigText, PeerRequest};
use common::*;
use qa::node::{HostedNode, NodeSpec};

/// The state the node starts from.
const BASE: &str = r#"version = 1
hostname = "rb"
roles = ["frontend", "backend"]
gateway4 = "10.77.0.1"

[[interface]]
name = "eth0"
addresses = ["10.77.0.11/24"]

[dns]
servers = ["10.77.0.53"]
search = ["base.example"]
"#;

/// A change of every layer: firewall (only the back-end role, so the
/// portal's public port goes), address, default route, hostname, resolver.
fn change(hostname: &str, search: &str) -> String {
    format!(
        r#"version = 1
hostname = "{hostname}"
roles = ["backend"]
gateway4 = "10.77.0.2"

[[interface]]
name = "eth0"
addresses = ["10.77.0.21/24"]

[dns]
servers = ["10.77.0.54"]
search = ["{search}"]
"#
    )
}

/// One rollback path.
struct Case {
    /// Keeps this test's namespaces apart from the others'.
    letter: char,
    /// The `FAILPOINTS` value applianced runs with.
    failpoints: &'static str,
    /// The failing change's hostname and search domain (what the failpoint matches).
    bad: (&'static str, &'static str),
    /// Phrases the refusal must contain: the step, and that it was injected.
    phrases: &'static [&'static str],
    /// The gRPC code of the refusal.
    code: tonic::Code,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_hostname_step_is_rolled_back() -> anyhow::Result<()> {
    run(Case {
        letter: 'h',
        failpoints: "netcfg-set-hostname=return(rb-host)",
        bad: ("rb-host", "bad-host.example"),
        phrases: &[
            "cannot set the hostname to \"rb-host\"",
            "injected by failpoint netcfg-set-hostname",
            "rolled back",
        ],
        code: tonic::Code::FailedPrecondition,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_resolv_conf_step_is_rolled_back() -> anyhow::Result<()> {
    run(Case {
        letter: 'd',
        failpoints: "netcfg-write-resolv-conf=return(rb-resolv.example)",
        // The hostname was already set when resolv.conf fails: it is put back too.
        bad: ("rb-resolv", "rb-resolv.example"),
        phrases: &[
            "resolv.conf",
            "injected by failpoint netcfg-write-resolv-conf",
            "rolled back",
        ],
        code: tonic::Code::FailedPrecondition,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_commit_is_rolled_back() -> anyhow::Result<()> {
    run(Case {
        letter: 'k',
        failpoints: "applianced-transition-commit=return(rb-commit)",
        // Everything was applied when the commit fails: all of it is put back.
        bad: ("rb-commit", "bad-commit.example"),
        phrases: &[
            "state database write of generation",
            "injected by failpoint applianced-transition-commit",
        ],
        code: tonic::Code::Internal,
    })
    .await
}

async fn run(case: Case) -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let (_lan, mut node) = one_node(case.letter, &NodeSpec::new("rb", "10.77.0.11/24")).await?;
    let mut client = node.client().await?;
    // Something to lose: a gateway, a resolver, a peer, a foreign address.
    client.set_config(ConfigText { toml: BASE.into() }).await?;
    client
        .add_peer(PeerRequest {
            address: "10.77.0.12".into(),
        })
        .await?;
    node.ns
        .ip(&["addr", "add", "10.88.0.5/24", "dev", "eth0"])?;

    // Armed from here on; reading the store restarts the node with it.
    node.env
        .push(("FAILPOINTS".to_owned(), case.failpoints.to_owned()));
    let stored_before = stored(&mut node).await?;
    armed(&node, case.failpoints)?;
    let before = snapshot(&node).await?;
    assert_eq!(before.hostname, "rb");
    assert!(
        text(&before.resolv_conf).contains("search base.example"),
        "{}",
        text(&before.resolv_conf)
    );

    let (host, search) = case.bad;
    let mut client = node.client().await?;
    let err = client
        .set_config(ConfigText {
            toml: change(host, search),
        })
        .await
        .expect_err("the failpoint did not refuse the change");
    for phrase in case.phrases {
        assert!(
            err.message().contains(phrase),
            "{:?} lacks {phrase:?}",
            err.message()
        );
    }
    assert_eq!(err.code(), case.code, "{}", err.message());
    assert_eq!(
        snapshot(&node).await?,
        before,
        "the failed change left traces on the live node"
    );
    let stored_after = stored(&mut node).await?;
    let diff = stored_diff(&stored_before, &stored_after);
    assert!(
        diff.is_empty(),
        "the failed change left traces in the store:\n{diff}"
    );
    assert_eq!(
        snapshot(&node).await?,
        before,
        "a restart from the stored state converged elsewhere"
    );

    // The next good change applies, with the failpoint still armed.
    let mut client = node.client().await?;
    let reply = client
        .set_config(ConfigText {
            toml: change("rb-good", "good.example"),
        })
        .await?
        .into_inner();
    assert_eq!(reply.generation, before.config.1 + 1);
    let after = snapshot(&node).await?;
    assert_eq!(after.hostname, "rb-good");
    assert!(
        text(&after.resolv_conf).contains("nameserver 10.77.0.54\nsearch good.example\n"),
        "{}",
        text(&after.resolv_conf)
    );
    assert!(
        after.addresses.contains("10.77.0.21/24") && !after.addresses.contains("10.77.0.11/24"),
        "{}",
        after.addresses
    );
    assert!(
        after.addresses.contains("10.88.0.5/24"),
        "foreign address removed: {}",
        after.addresses
    );
    assert!(
        after.routes.contains("default via 10.77.0.2"),
        "{}",
        after.routes
    );
    // So the failed change had a firewall to roll back as well.
    assert_ne!(
        after.firewall, before.firewall,
        "the change did not touch the firewall"
    );
    let stored_good = stored(&mut node).await?;
    let desired = String::from_utf8_lossy(stored_good.get("desired").map_or(&[][..], |v| v));
    assert!(desired.contains("rb-good"), "{desired}");
    assert_eq!(
        snapshot(&node).await?,
        after,
        "a restart did not converge on the good change"
    );
    Ok(())
}

/// Fails unless applianced configured `failpoints` (it names each on stderr
/// at start; a build without the feature ignores FAILPOINTS).
fn armed(node: &HostedNode, failpoints: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        node.stderr()
            .contains(&format!("applianced: failpoint {failpoints}")),
        "applianced did not arm {failpoints:?}: build it with \
         `cargo build --workspace --bins --features applianced/failpoints` (make test does); \
         it said:\n{}",
        node.stderr()
    );
    Ok(())
}

fn text(file: &Option<String>) -> &str {
    file.as_deref().unwrap_or_default()
}
