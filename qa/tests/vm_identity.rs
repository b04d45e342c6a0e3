//! Every copy of the image makes its own identity on its first boot: two
//! copies booted with the very same kernel parameters (each on its own
//! network, so nothing else tells them apart) get different node ids,
//! machine ids and node keys (README, "identity"; identity.rs).

mod common;
mod vm_support;

use qa::vm::Built;
use qa::vmnet::VmNet;
use vm_support::{boot, disk, ensure, identity, portal_answers, power_off};

#[test]
fn two_copies_of_the_image_get_different_node_ids() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::VM) {
        return Ok(());
    }
    let built = Built::load()?;
    let (net_a, net_b) = (VmNet::new()?, VmNet::new()?);
    let disk_a = disk(&built, "10.79.0.33/24", "vm-copy", &[])?;
    let disk_b = disk(&built, "10.79.0.33/24", "vm-copy", &[])?;

    // Both at once (qa::vm allows two), the same MAC too.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| boot(&net_a, &disk_a, 33, "copy-a"));
        let b = s.spawn(|| boot(&net_b, &disk_b, 33, "copy-b"));
        (a.join(), b.join())
    });
    let (mut a, mut b) = match (a, b) {
        (Ok(a), Ok(b)) => (a?, b?),
        _ => anyhow::bail!("a boot thread panicked"),
    };
    let id_a = identity(&mut a)?;
    let id_b = identity(&mut b)?;
    eprintln!("copy-a: {id_a:?}\ncopy-b: {id_b:?}");
    for (what, x, y) in [
        ("node id", &id_a.node_id, &id_b.node_id),
        ("machine id", &id_a.machine_id, &id_b.machine_id),
        ("node key", &id_a.node_key, &id_b.node_key),
    ] {
        a.checked(ensure(
            x != y,
            format!("two copies of the image share the {what} {x}"),
        ))?;
    }
    a.checked(ensure(
        id_a.hostname == "vm-copy" && id_b.hostname == "vm-copy",
        format!("hostnames {:?} and {:?}", id_a.hostname, id_b.hostname),
    ))?;
    portal_answers(&a, &net_a, "10.79.0.33")?;
    portal_answers(&b, &net_b, "10.79.0.33")?;
    power_off(&mut a)?;
    power_off(&mut b)?;
    Ok(())
}
