//! Setting the hostname for real (root): in a private UTS namespace, so the
//! host's own hostname is never touched.

use nix::sched::{unshare, CloneFlags};

#[test]
fn sets_hostname_in_a_private_uts_namespace_only() {
    if test_prereq::opted_out(&[test_prereq::Need::Root]) {
        return;
    }
    let host_before = nix::unistd::gethostname().expect("gethostname");
    // unshare(CLONE_NEWUTS) moves only this thread into a new namespace,
    // so the host's hostname is never touched.
    let inside = std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWUTS).expect("unshare(CLONE_NEWUTS)");
        appliance_netcfg::set_hostname("netcfg-test-node").expect("set_hostname");
        nix::unistd::gethostname().expect("gethostname")
    })
    .join()
    .expect("namespace thread");
    assert_eq!(inside, "netcfg-test-node");
    assert_eq!(
        nix::unistd::gethostname().expect("gethostname"),
        host_before
    );
}
