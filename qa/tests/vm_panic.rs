//! A panic of applianced (PID 1) reboots the machine (README; boot/mod.rs's
//! panic hook): the panic goes to the console, then the data partition is
//! made consistent and the machine resets after the fatal delay, and the
//! next boot comes up as the same node.
//!
//! The panic is injected by the `applianced-ready` failpoint, right after the
//! ready line. Failpoints exist only in a test build (feature `failpoints`),
//! so this boots the image of `make image-faults` in `out/faults/`, never the
//! release image. The failpoint is configured by the kernel parameter
//! `FAILPOINTS=...`: the kernel hands parameters it does not know to init as
//! environment variables, and stage 1 keeps its environment across the
//! switch to stage 2.
//!
//! QEMU runs with `-no-reboot`, so the reset the guest asks for ends QEMU
//! with a `guest-reset` SHUTDOWN event; the test then boots the same disk
//! again, as the hypervisor's reset would, with the failpoint turned off (the
//! kernel keeps the last value of a parameter given twice): the panic is
//! one-shot.

mod common;
mod vm_support;

use std::time::Duration;

use qa::vm::Built;
use qa::vmnet::VmNet;
use vm_support::{
    disk, ensure, exited_for, identity, portal_answers, power_off, start, READY, READY_LIMIT,
};

/// The panic hook's line (boot/mod.rs).
const PANIC: &str = "applianced: PANIC: ";
/// The line before the reset.
const REBOOTING: &str = "applianced: rebooting in ";
/// Ready line to QEMU's exit: the fatal delay (10 s), sync, unmount, reset.
const RESET_LIMIT: Duration = Duration::from_secs(40);

#[test]
fn a_panic_of_applianced_reboots_the_machine_once() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::VM) {
        return Ok(());
    }
    let out = Built::default_out().join("faults");
    let built = Built::load_from(&out)
        .map_err(|e| anyhow::anyhow!("{e} (the fault image: run `make image-faults`)"))?;
    let net = VmNet::new()?;
    let disk = disk(
        &built,
        "10.79.0.35/24",
        "vm-panic",
        &["FAILPOINTS=applianced-ready=1*panic"],
    )?;

    let mut vm = start(&net, &disk, 35, "panic-1")?;
    // Connected before the panic, so QMP's SHUTDOWN event is seen.
    vm.qmp()?;
    vm.wait_for(READY, READY_LIMIT)?;
    let first = identity(&mut vm)?;
    let (line, _) = vm.wait_line("the panic", Duration::from_secs(10), |l| l.contains(PANIC))?;
    eprintln!("panic-1: {}", line.trim());
    vm.wait_for(REBOOTING, Duration::from_secs(5))?;
    // The message follows the location, on the next line.
    let log = vm.serial_log();
    let after = log.split_once(PANIC).map(|(_, a)| a).unwrap_or_default();
    vm.checked(ensure(
        after.contains("failpoint applianced-ready panic"),
        format!("the panic is not the failpoint's: {line:?}"),
    ))?;
    let status = vm.wait_exit(RESET_LIMIT)?;
    exited_for(&mut vm, status, "guest-reset")?;
    let log = vm.serial_log();
    vm.checked(ensure(
        !log.contains("Kernel panic"),
        "the kernel panicked: init died instead of rebooting".to_owned(),
    ))?;
    drop(vm);

    // The reset, and the failpoint off from now on.
    appliance_image::esp::append_kernel_params(disk.path(), "FAILPOINTS=applianced-ready=off")?;
    let mut vm = start(&net, &disk, 35, "panic-2")?;
    vm.wait_for(READY, READY_LIMIT)?;
    let second = identity(&mut vm)?;
    vm.checked(ensure(
        second == first,
        format!("a different node after the panic: {first:?} then {second:?}"),
    ))?;
    vm.wait_for("applianced: data filesystem: clean", Duration::from_secs(1))?;
    portal_answers(&vm, &net, "10.79.0.35")?;
    let log = vm.serial_log();
    vm.checked(ensure(
        !log.contains(PANIC),
        "applianced panicked again".to_owned(),
    ))?;
    power_off(&mut vm)?;
    Ok(())
}
