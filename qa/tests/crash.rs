//! A crash of applianced (SIGKILL, nothing cleaned up): the restarted daemon
//! converges on the same stored state, and the services the dead one left
//! running are replaced, not duplicated.

mod common;

use std::time::Duration;

use common::*;
use qa::node::{HostedNode, NodeSpec};

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

async fn pids(node: &HostedNode) -> anyhow::Result<Vec<(String, u32)>> {
    Ok(services(node)
        .await?
        .into_iter()
        .map(|s| (s.name, s.pid))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_daemon_restarts_into_the_same_state() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return Ok(());
    }
    let (_lan, mut node) = one_node('x', &NodeSpec::new("a", "10.77.0.11/24")).await?;
    node.client()
        .await?
        .add_peer(appliance_api::v1::PeerRequest {
            address: "10.77.0.12".into(),
        })
        .await?;
    let before = snapshot(&node).await?;
    let old = pids(&node).await?;
    assert!(
        !old.is_empty() && old.iter().all(|(_, p)| *p != 0),
        "{old:?}"
    );

    node.crash()?;
    // The dead daemon's services are still there, holding their ports.
    assert!(
        old.iter().all(|(_, p)| alive(*p)),
        "services died with applianced: nothing to test"
    );

    node.launch()?;
    node.wait_ready(READY_LIMIT).await?;
    assert_eq!(snapshot(&node).await?, before);
    let new = pids(&node).await?;
    // Matched by name: every service that ran before runs again, no more.
    let names = |l: &[(String, u32)]| {
        let mut n: Vec<String> = l.iter().map(|(name, _)| name.clone()).collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&new),
        names(&old),
        "the services after the crash are not those before"
    );
    for (name, old_pid) in &old {
        let new_pid = new
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .ok_or_else(|| anyhow::anyhow!("{name} is missing after the crash: {new:?}"))?;
        assert_ne!(new_pid, 0, "{name} is not running after the crash");
        assert_ne!(*old_pid, new_pid, "{name} was not restarted");
        let gone = qa::wait::until(
            Duration::from_secs(5),
            Duration::from_millis(50),
            "the old copy to go",
            || (!alive(*old_pid)).then_some(()),
        );
        assert!(
            gone.is_ok(),
            "the old {name} (pid {old_pid}) still runs beside the new one"
        );
    }
    let log = std::fs::read_to_string(node.state_dir().join("applianced.log"))?;
    assert!(log.contains("killed a copy left running by a previous applianced"));
    Ok(())
}
