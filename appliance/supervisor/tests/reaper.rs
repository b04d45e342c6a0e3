//! The reaper against real processes.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use appliance_supervisor::set_child_subreaper;
use nix::sys::signal::kill;
use nix::unistd::Pid;

#[tokio::test]
async fn exit_status_is_delivered() {
    let reaper = common::reaper();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "exit 3"]).stdin(Stdio::null());
    let spawned = reaper.spawn(cmd).expect("spawn sh");
    let status = tokio::time::timeout(Duration::from_secs(10), spawned.exit)
        .await
        .expect("reaped in time")
        .expect("status delivered");
    assert_eq!(status.code(), Some(3));
}

#[tokio::test]
async fn killed_child_reports_the_signal() {
    let reaper = common::reaper();
    let mut cmd = Command::new("/bin/sleep");
    cmd.arg("30");
    let spawned = reaper.spawn(cmd).expect("spawn sleep");
    kill(spawned.pid, nix::sys::signal::Signal::SIGKILL).expect("kill");
    let status = tokio::time::timeout(Duration::from_secs(10), spawned.exit)
        .await
        .expect("in time");
    assert_eq!(status.expect("status").signal(), Some(9));
}

#[tokio::test]
async fn output_feeds_stdin_and_collects_both_streams() {
    let reaper = common::reaper();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "cat; echo oops >&2; exit 4"]);
    let out = reaper
        .output(cmd, Some(b"hello\n".to_vec()))
        .await
        .expect("output");
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.stderr, b"oops\n");
    assert_eq!(out.status.code(), Some(4));
}

#[tokio::test]
async fn missing_program_is_an_error_not_a_panic() {
    let reaper = common::reaper();
    let err = reaper
        .spawn(Command::new("/nonexistent/program"))
        .expect_err("must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

#[tokio::test]
async fn orphans_are_reaped() {
    let reaper = common::reaper();
    set_child_subreaper().expect("prctl");
    let before = reaper.orphans_reaped();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "sleep 0.2 >/dev/null 2>&1 & echo $!; exit 0"]);
    let out = reaper.output(cmd, None).await.expect("output");
    assert!(out.status.success());
    let pid: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("pid printed");
    let start = Instant::now();
    // Gone entirely (not a zombie) once reaped: kill(pid, 0) then fails with ESRCH.
    while kill(Pid::from_raw(pid), None).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "orphan {pid} never reaped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reaper.orphans_reaped() > before);
}
