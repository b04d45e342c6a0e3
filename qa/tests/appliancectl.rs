//! `appliancectl` as an administrator uses it, against a running hosted node:
//! readable output, `--output json`, and a failing exit status with a message
//! that says what was wrong whenever something is refused.

mod common;

use std::process::{Command, Output};

use common::*;
use qa::node::{HostedNode, NodeSpec};

fn ctl(node: &HostedNode, args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(qa::bins::path("appliancectl")?)
        .env("APPLIANCE_SOCKET", node.socket())
        .args(args)
        .output()?)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliancectl_speaks_plainly_and_in_json() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let (_lan, node) = one_node('k', &NodeSpec::new("ctl-a", "10.77.0.11/24")).await?;

    let out = ctl(&node, &["status"])?;
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains("node:       ctl-a") && stdout.contains("ready:      yes"),
        "{stdout}"
    );
    for r in ["network", "firewall", "services"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(r) && l.contains(" ok ")),
            "{r} not ok:\n{stdout}"
        );
    }

    let out = ctl(&node, &["status", "--output", "json"])?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["ready"], true);
    assert_eq!(json["hostname"], "ctl-a");
    assert_eq!(json["reconcilers"].as_array().map(Vec::len), Some(3));

    let (stdout, _) = text(&ctl(&node, &["services", "list"])?);
    for name in ["audit", "portal"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(name) && l.contains("healthy")),
            "{stdout}"
        );
    }
    let (stdout, _) = text(&ctl(&node, &["firewall", "show"])?);
    assert!(
        stdout.contains("default-drop") && stdout.contains("set public_tcp: 7443, 8080"),
        "{stdout}"
    );

    // A bad file: validate lists every problem, and both commands fail.
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "version = 1\nhostname = \"x_y\"\n[[interface]]\nname = \"eth0\"\naddresses = [\"10.77.0.0/24\"]\n")?;
    let bad_path = bad.to_str().unwrap_or_default();
    let out = ctl(&node, &["config", "validate", bad_path])?;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stdout.contains("hostname = \"x_y\"") && stdout.contains("interface[0].addresses[0]"),
        "{stdout}"
    );
    assert!(
        stderr.contains("is not valid: nothing was changed"),
        "{stderr}"
    );
    let out = ctl(&node, &["config", "set", bad_path])?;
    let (_, stderr) = text(&out);
    assert!(
        !out.status.success() && stderr.contains("network address"),
        "{stderr}"
    );

    // The round trip an admin does: get, edit, set.
    let (current, _) = text(&ctl(&node, &["config", "get"])?);
    let good = dir.path().join("good.toml");
    std::fs::write(&good, current.replace("ctl-a", "ctl-b"))?;
    let out = ctl(&node, &["config", "set", good.to_str().unwrap_or_default()])?;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("applied generation 2"), "{stdout}");

    let out = ctl(&node, &["peers", "add", "10.77.0.12"])?;
    assert!(out.status.success() && text(&out).0.contains("10.77.0.12"));
    let out = ctl(&node, &["peers", "add", "10.77.0.12"])?;
    assert!(!out.status.success() && text(&out).1.contains("already a peer"));
    let out = ctl(
        &node,
        &["--output", "json", "peers", "remove", "10.77.0.12"],
    )?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["peers"], serde_json::json!([]));

    let out = ctl(&node, &["logs", "-n", "5"])?;
    assert_eq!(text(&out).0.lines().count(), 5);
    let out = ctl(&node, &["services", "restart", "nope"])?;
    assert!(
        !out.status.success() && text(&out).1.contains("nope"),
        "{:?}",
        text(&out)
    );

    // No daemon behind the socket: say so, and how to point at one.
    let out = Command::new(qa::bins::path("appliancectl")?)
        .args(["--socket", "/nonexistent/applianced.sock", "status"])
        .output()?;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach applianced") && stderr.contains("--socket"),
        "{stderr}"
    );
    Ok(())
}
