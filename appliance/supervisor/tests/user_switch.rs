//! A service's environment, data directory and user: run as `nobody`, which
//! needs root (setuid); and an unknown user refused by name.

mod common;

use std::time::{Duration, Instant};

use common::{manifest, running, supervisor, wait_for};

const LONG: Duration = Duration::from_secs(20);

#[tokio::test]
async fn environment_data_dir_and_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Let an unprivileged service user traverse into its data dir.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let sup = supervisor(dir.path());
    // Running a service as another user (setuid) needs root. Opted out
    // (APPLIANCE_TEST_SKIP=root), the rest is checked as the caller's own user.
    let root = !test_prereq::opted_out(&[test_prereq::Need::Root]);
    let user = if root {
        "nobody".to_string()
    } else {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .expect("lookup")
            .expect("me")
            .name
    };
    let script =
        "echo \"$APPLIANCE_DATA_DIR|$FOO|${HOME:-none}|$(id -u)|$(pwd)\" > out; exec sleep 60";
    let extra = format!("user = {user:?}\nenvironment = {{ FOO = \"bar\" }}\n");
    sup.set_placed(vec![manifest("envy", "/bin/sh", &["-c", script], &extra)])
        .await
        .expect("placed");
    wait_for(&sup, "envy", LONG, running).await;
    let data = dir.path().join("data/envy");
    let out = data.join("out");
    let start = Instant::now();
    while !std::fs::read_to_string(&out).is_ok_and(|s| s.ends_with('\n')) {
        assert!(
            start.elapsed() < LONG,
            "service never wrote {}",
            out.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let uid = nix::unistd::User::from_name(&user)
        .expect("lookup")
        .expect("user")
        .uid;
    let want = format!("{d}|bar|none|{uid}|{d}\n", d = data.display());
    assert_eq!(std::fs::read_to_string(&out).expect("out"), want);
    sup.stop_all().await;

    let bad = manifest("ghosty", "/bin/true", &[], "user = \"no-such-user-here\"\n");
    sup.set_placed(vec![bad]).await.expect("placed");
    let s = wait_for(&sup, "ghosty", LONG, |s| s.last_error.is_some()).await;
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("no-such-user-here")),
        "{s:?}"
    );
    sup.stop_all().await;
}
