//! Kernel parameters configure a node once, on its first boot: a later boot
//! with different ones keeps the stored configuration (address, hostname,
//! generation) and names on the console each parameter it ignores, and only
//! those that would have changed something (README, "first-boot
//! configuration"; boot/firstconfig.rs).

mod common;
mod vm_support;

use std::net::SocketAddr;
use std::time::Duration;

use qa::vm::Built;
use qa::vmnet::{VmNet, GATEWAY_V4};
use vm_support::{boot, disk, ensure, identity, portal_answers, power_off};

/// The start of the console line that names the ignored parameters.
const IGNORED: &str = "applianced: kernel parameters ";

#[test]
fn a_second_boot_with_other_kernel_parameters_keeps_the_stored_configuration() -> anyhow::Result<()>
{
    if test_prereq::opted_out(test_prereq::VM) {
        return Ok(());
    }
    let built = Built::load()?;
    let net = VmNet::new()?;
    let disk = disk(&built, "10.79.0.31/24", "vm-params-1", &[])?;

    let mut vm = boot(&net, &disk, 31, "params-1")?;
    let first = identity(&mut vm)?;
    vm.checked(ensure(
        first.hostname == "vm-params-1",
        format!("the first boot took hostname {:?}", first.hostname),
    ))?;
    let log = vm.serial_log();
    vm.checked(ensure(
        !log.contains(IGNORED),
        "the first boot ignored kernel parameters".to_owned(),
    ))?;
    portal_answers(&vm, &net, "10.79.0.31")?;
    power_off(&mut vm)?;
    drop(vm);

    // Another address and hostname; the gateway given again, unchanged. The
    // later value of a parameter is the one that counts.
    let changed = [
        "appliance.ip=10.79.0.32/24",
        "appliance.hostname=vm-params-2",
    ];
    let same = format!("appliance.gw={GATEWAY_V4}");
    let params = format!("{} {same}", changed.join(" "));
    appliance_image::esp::append_kernel_params(disk.path(), &params)?;

    let mut vm = boot(&net, &disk, 31, "params-2")?;
    let (line, _) = vm.wait_line("the ignored parameters", Duration::from_secs(1), |l| {
        l.contains(IGNORED) && l.contains(" ignored: this node keeps its stored configuration")
    })?;
    eprintln!("params-2: {}", line.trim());
    for p in changed {
        vm.checked(ensure(
            line.split_whitespace().any(|w| w == p),
            format!("{p} is not named as ignored: {line:?}"),
        ))?;
    }
    vm.checked(ensure(
        !line.contains("appliance.gw="),
        format!("the unchanged gateway is named as ignored: {line:?}"),
    ))?;
    vm.checked(ensure(
        line.contains("(generation 1)"),
        format!("the stored configuration is not generation 1: {line:?}"),
    ))?;
    let second = identity(&mut vm)?;
    vm.checked(ensure(
        second == first,
        format!("the node changed with the kernel parameters: {first:?} then {second:?}"),
    ))?;
    // Still at the stored address, not at the new one.
    portal_answers(&vm, &net, "10.79.0.31")?;
    let new: SocketAddr = "10.79.0.32:8080".parse()?;
    let r = net.connect(new, Duration::from_secs(2))?;
    vm.checked(ensure(
        r.is_err(),
        format!("the ignored address {new} answers"),
    ))?;
    power_off(&mut vm)?;
    Ok(())
}
