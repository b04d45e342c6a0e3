//! Health probing after a start, against real processes and a local listener: a service that is
//! up at once is healthy within milliseconds (and its dependent right after), while one that never
//! passes is still declared unhealthy and failed on the manifest's regular schedule.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance_supervisor::{ServiceState, ServiceStatus, Supervisor};
use common::{manifest, supervisor, wait_for};

const LONG: Duration = Duration::from_secs(20);

/// A loopback listener that accepts and drops connections, counting them.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    // Ends with the test's runtime.
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, accepted)
}

/// Records every state `name` passes through (with its time since `t0`) until `done` holds.
async fn timeline(
    sup: &Supervisor,
    name: &str,
    t0: Instant,
    done: impl Fn(&ServiceStatus) -> bool,
) -> Vec<(Duration, ServiceState)> {
    let mut rx = sup.subscribe();
    let deadline = tokio::time::Instant::now() + LONG;
    let mut seen: Vec<(Duration, ServiceState)> = Vec::new();
    loop {
        let row = rx
            .borrow_and_update()
            .iter()
            .find(|s| s.name == name)
            .cloned();
        if let Some(row) = row {
            if seen.last().is_none_or(|(_, s)| *s != row.state) {
                seen.push((t0.elapsed(), row.state.clone()));
            }
            if done(&row) {
                return seen;
            }
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            panic!("timed out following {name}: {seen:?}");
        }
    }
}

#[tokio::test]
async fn a_service_up_at_once_is_healthy_long_before_its_interval_and_so_is_its_dependent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sup = supervisor(dir.path());
    let (port, accepted) = counting_listener().await;
    // The same pacing as services/*.toml, with a longer interval to make the point: a first
    // probe on the interval (the behaviour early probes replaced) shows as 10 s.
    let interval = Duration::from_secs(10);
    let health = format!(
        "[health]\ninterval_ms = {}\ntimeout_ms = 1000\nstart_period_ms = {}\n\
         failures_before_restart = 3\n[health.tcp]\nport = {port}\n",
        interval.as_millis(),
        interval.as_millis()
    );
    let t0 = Instant::now();
    sup.set_placed(vec![
        manifest("back", "/bin/sleep", &["60"], &health),
        manifest(
            "front",
            "/bin/sleep",
            &["60"],
            &format!("depends_on = [\"back\"]\n{health}"),
        ),
    ])
    .await
    .expect("placed");
    let healthy = |s: &ServiceStatus| s.state == ServiceState::Healthy;
    let back = wait_for(&sup, "back", LONG, healthy).await;
    let back_at = t0.elapsed();
    let front = wait_for(&sup, "front", LONG, healthy).await;
    let front_at = t0.elapsed();
    eprintln!("placement to healthy: back {back_at:?}, front {front_at:?}");
    // The first probe is 20 ms after the spawn. Compared with the interval, not with a raw
    // wall time: half of it leaves seconds for a loaded machine, and a first probe on the
    // interval (or any later) cannot pass.
    assert!(back_at < interval / 2, "back took {back_at:?}");
    assert!(front_at < interval / 2, "front took {front_at:?}");
    assert!(back.pid.is_some() && front.pid.is_some());
    assert_eq!(back.last_error, None);

    // Early probing ended with the first success: one probe each, nothing more for a while.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    sup.stop_all().await;
}

#[tokio::test]
async fn a_service_that_never_passes_fails_on_the_regular_schedule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sup = supervisor(dir.path());
    let probes = dir.path().join("probes");
    let check = format!("echo probe >> {}; exit 1", probes.display());
    // No start period, so any failure that counted would show at once. Early probes at about
    // 20, 60, 140, 300, 620 and 1260 ms fail without counting; the regular ones at 2 and 4 s
    // are the two misses: killed at 4 s, and with max_restarts = 0 that is Failed. The interval
    // is long so that the slack for a loaded machine below stays under one interval: a
    // schedule one interval late fails.
    let interval = Duration::from_millis(2000);
    let extra = format!(
        "[health]\ninterval_ms = {}\ntimeout_ms = 1000\nstart_period_ms = 0\n\
         failures_before_restart = 2\n[health.exec]\ncommand = \"/bin/sh\"\nargs = [\"-c\", {check:?}]\n\
         [restart]\nmax_restarts = 0\n",
        interval.as_millis()
    );
    let t0 = Instant::now();
    sup.set_placed(vec![manifest("sick", "/bin/sleep", &["60"], &extra)])
        .await
        .expect("placed");
    let failed = |s: &ServiceStatus| matches!(s.state, ServiceState::Failed { .. });
    let seen = timeline(&sup, "sick", t0, failed).await;
    eprintln!("timeline: {seen:?}");

    let first = |want: fn(&ServiceState) -> bool| {
        seen.iter()
            .find(|(_, s)| want(s))
            .map(|(t, _)| *t)
            .expect("state seen")
    };
    let unhealthy_at = first(|s| *s == ServiceState::Unhealthy);
    let failed_at = first(|s| matches!(s, ServiceState::Failed { .. }));
    // Not one moment earlier than without early probes...
    assert!(unhealthy_at >= interval, "{seen:?}");
    assert!(failed_at >= interval * 2, "{seen:?}");
    // ...and not an interval later either (the slack is for a loaded machine).
    assert!(unhealthy_at < interval + interval * 3 / 4, "{seen:?}");
    assert!(failed_at < interval * 2 + interval * 3 / 4, "{seen:?}");
    // Before the first counted miss it was only ever Starting.
    assert!(
        seen.iter()
            .take_while(|(_, s)| *s != ServiceState::Unhealthy)
            .all(|(_, s)| *s == ServiceState::Starting),
        "{seen:?}"
    );
    let s = sup
        .status()
        .into_iter()
        .find(|s| s.name == "sick")
        .expect("row");
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("killed after 2 failed health checks")),
        "{s:?}"
    );
    // Both regular probes and at least the early ones before 300 ms ran, and all failed.
    let ran = std::fs::read_to_string(&probes)
        .expect("probe log")
        .lines()
        .count();
    assert!(ran >= 5, "only {ran} probes ran");
    sup.stop_all().await;
}
