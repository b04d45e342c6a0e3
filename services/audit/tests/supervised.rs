//! The shipped `audit.toml` run by the real supervisor: becomes Healthy via its tcp check,
//! writes into its data directory, and stops on SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use appliance_supervisor::{
    HealthCheck, Manifest, Reaper, ServiceState, Supervisor, SupervisorOptions,
};

#[tokio::test]
async fn shipped_manifest_runs_under_the_supervisor() {
    let reaper = Reaper::new();
    tokio::spawn(reaper.clone().run());
    let dir = tempfile::tempdir().expect("tempdir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../audit.toml");
    let mut m = Manifest::load(&shipped).expect("audit.toml is valid");
    // An ephemeral port instead of 7100, and the test's own user instead of nobody.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    m.args = vec!["--listen".into(), format!("127.0.0.1:{port}")];
    m.ports[0].port = port;
    let health = m.health.as_mut().expect("audit has a health check");
    health.check = HealthCheck::Tcp { port };
    health.interval_ms = 50;
    m.user = None;

    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_audit"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let data_dir = dir.path().to_path_buf();
    let sup = Supervisor::new(SupervisorOptions::new(bin_dir, data_dir.clone(), reaper));
    sup.set_placed(vec![m]).await.expect("placed");

    let mut rx = sup.subscribe();
    let healthy = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if rx
                .borrow_and_update()
                .iter()
                .any(|s| s.state == ServiceState::Healthy)
            {
                return;
            }
            rx.changed().await.expect("supervisor alive");
        }
    });
    healthy
        .await
        .unwrap_or_else(|_| panic!("audit never became healthy: {:#?}", sup.status()));

    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"APPEND supervised\n").expect("send");
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).expect("answer");
    assert_eq!(line, "OK 1\n");
    let log = std::fs::read_to_string(data_dir.join("audit/audit.log")).expect("log in data dir");
    assert_eq!(log, "supervised\n");

    sup.stop_all().await;
    let status = sup.status();
    assert_eq!(status[0].state, ServiceState::Stopped);
    let exit = status[0].last_exit.expect("exit recorded");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&exit),
        Some(15),
        "{exit}"
    );
}
