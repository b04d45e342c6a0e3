//! The supervisor against real processes: restarts with backoff, Failed, reconcile,
//! stop order. (Environment and user, which needs root: tests/user_switch.rs.)

mod common;

use std::time::{Duration, Instant};

use appliance_supervisor::ServiceState;
use common::{manifest, running, supervisor, wait_for};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const LONG: Duration = Duration::from_secs(20);

#[tokio::test]
async fn killed_service_restarts_with_growing_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sup = supervisor(dir.path());
    let restart = "[restart]\nbackoff_initial_ms = 200\nbackoff_max_ms = 5000\nmax_restarts = 10\n";
    sup.set_placed(vec![manifest("sleeper", "/bin/sleep", &["60"], restart)])
        .await
        .expect("placed");
    let mut pid = wait_for(&sup, "sleeper", LONG, running)
        .await
        .pid
        .expect("pid");
    let mut delays = Vec::new();
    for round in 1..=3u32 {
        let killed_at = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill");
        let s = wait_for(&sup, "sleeper", LONG, |s| running(s) && s.pid != Some(pid)).await;
        delays.push(killed_at.elapsed());
        assert_eq!(s.restarts, round);
        assert_eq!(
            s.last_exit
                .and_then(|e| std::os::unix::process::ExitStatusExt::signal(&e)),
            Some(9)
        );
        pid = s.pid.expect("pid");
    }
    // 200, 400, 800 ms: each at least its backoff, and growing.
    for (d, min) in delays.iter().zip([200, 400, 800]) {
        assert!(*d >= Duration::from_millis(min), "{delays:?}");
    }
    assert!(delays[2] > delays[1] && delays[1] > delays[0], "{delays:?}");
    sup.stop_all().await;
}

#[tokio::test]
async fn crash_loop_ends_failed_until_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sup = supervisor(dir.path());
    let restart = "[restart]\nbackoff_initial_ms = 10\nbackoff_max_ms = 20\nmax_restarts = 2\n";
    sup.set_placed(vec![manifest(
        "crash",
        "/bin/sh",
        &["-c", "exit 1"],
        restart,
    )])
    .await
    .expect("placed");
    let failed =
        |s: &appliance_supervisor::ServiceStatus| matches!(s.state, ServiceState::Failed { .. });
    let s = wait_for(&sup, "crash", LONG, failed).await;
    assert_eq!(s.restarts, 2, "{s:?}");
    assert_eq!(s.last_exit.and_then(|e| e.code()), Some(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = sup
        .status()
        .into_iter()
        .find(|s| s.name == "crash")
        .expect("row");
    assert_eq!(
        (again.restarts, again.state.clone()),
        (2, s.state.clone()),
        "not restarted"
    );

    sup.restart("crash").await.expect("known service");
    let s = wait_for(&sup, "crash", LONG, |s| failed(s) && s.restarts == 5).await;
    assert!(
        matches!(s.state, ServiceState::Failed { ref reason } if reason.contains("max_restarts = 2"))
    );
    assert!(sup.restart("ghost").await.is_err());
}

#[tokio::test]
async fn health_failures_kill_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sup = supervisor(dir.path());
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let extra = format!(
        "[health]\ninterval_ms = 50\ntimeout_ms = 200\nstart_period_ms = 0\nfailures_before_restart = 2\n\
         [health.tcp]\nport = {}\n[restart]\nbackoff_initial_ms = 10\nbackoff_max_ms = 10\n",
        closed.port()
    );
    sup.set_placed(vec![manifest("sick", "/bin/sleep", &["60"], &extra)])
        .await
        .expect("placed");
    let s = wait_for(&sup, "sick", LONG, |s| s.restarts >= 1).await;
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("health")),
        "{s:?}"
    );
    sup.stop_all().await;
}

#[tokio::test]
async fn stop_all_goes_in_reverse_dependency_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sup = supervisor(dir.path());
    let order = dir.path().join("order");
    let script = "trap 'echo $APPLIANCE_SERVICE >> $ORDER; exit 0' TERM; touch ready; while :; do sleep 0.05; done";
    let env = format!(
        "environment = {{ ORDER = {:?} }}\n",
        order.display().to_string()
    );
    let front = format!("depends_on = [\"back\"]\n{env}");
    sup.set_placed(vec![
        manifest("front", "/bin/sh", &["-c", script], &front),
        manifest("back", "/bin/sh", &["-c", script], &env),
    ])
    .await
    .expect("placed");
    assert_eq!(
        sup.status()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["back", "front"]
    );
    wait_for(&sup, "front", LONG, running).await;
    wait_for(&sup, "back", LONG, running).await;
    // Only stop once both shells have installed their trap.
    let start = Instant::now();
    while !["front", "back"]
        .iter()
        .all(|n| dir.path().join("data").join(n).join("ready").exists())
    {
        assert!(start.elapsed() < LONG, "services never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sup.stop_all().await;
    assert_eq!(
        std::fs::read_to_string(&order).expect("order file"),
        "front\nback\n"
    );
    assert!(sup
        .status()
        .iter()
        .all(|s| s.state == ServiceState::Stopped && s.pid.is_none()));
}

#[tokio::test]
async fn set_placed_reconciles_only_what_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sup = supervisor(dir.path());
    let a = manifest("a", "/bin/sleep", &["60"], "");
    let b = manifest("b", "/bin/sleep", &["60"], "");
    sup.set_placed(vec![a.clone(), b]).await.expect("placed");
    let pid_a = wait_for(&sup, "a", LONG, running).await.pid;
    let pid_b = wait_for(&sup, "b", LONG, running).await.pid;

    sup.set_placed(vec![a.clone(), manifest("b", "/bin/sleep", &["61"], "")])
        .await
        .expect("changed");
    let new_b = wait_for(&sup, "b", LONG, |s| running(s) && s.pid != pid_b).await;
    assert_ne!(new_b.pid, pid_b);
    assert_eq!(
        wait_for(&sup, "a", LONG, running).await.pid,
        pid_a,
        "a untouched"
    );

    sup.set_placed(vec![a]).await.expect("b removed");
    assert_eq!(
        sup.status()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    let old = Pid::from_raw(new_b.pid.expect("pid") as i32);
    assert!(kill(old, None).is_err(), "b's process is gone");
    sup.stop_all().await;
}
