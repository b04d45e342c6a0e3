//! Helpers shared by the tests that boot the image under QEMU (image_boot
//! and the vm_* tests): booting a disk to the ready line, the identity the
//! console shows, the portal's answer, and an orderly power off checked on
//! the console.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use qa::vm::{Built, Disk, DiskBus, Firmware, Nic, Vm, VmSpec};
use qa::vmnet::{VmNet, GATEWAY_V4};

/// QEMU start to the ready line. Measured under TCG on a 2-core machine:
/// 8-14 s idle, 20-44 s beside a release build; two VMs at once beside two
/// builds took over 60 s. This is 3-4 times a loaded boot, and still fails
/// a boot that hangs for a minute.
pub const READY_LIMIT: Duration = Duration::from_secs(90);
/// Power button to QEMU's exit: services stop on SIGTERM, sync, unmount,
/// power off. Measured: under 1 s. A service that had to wait out its 5 s
/// stop timeout is caught by `qa::vm::shutdown`'s check, not by this bound.
pub const POWEROFF_LIMIT: Duration = Duration::from_secs(20);
/// The ready line (appliance/applianced/src/ready.rs).
pub const READY: &str = "applianced: ready";
/// `Ok` when `cond` holds, else the error `msg`.
pub fn ensure(cond: bool, msg: String) -> anyhow::Result<()> {
    if cond {
        Ok(())
    } else {
        Err(anyhow::anyhow!(msg))
    }
}

/// A fresh copy of the raw image `built` configured by kernel parameters
/// for `ip`, with `extra` parameters after those.
pub fn disk(built: &Built, ip: &str, hostname: &str, extra: &[&str]) -> anyhow::Result<Disk> {
    let mut params = vec![
        format!("appliance.ip={ip}"),
        format!("appliance.gw={GATEWAY_V4}"),
        format!("appliance.hostname={hostname}"),
    ];
    params.extend(extra.iter().map(|p| (*p).to_owned()));
    Disk::appliance(built, &params)
}

/// Starts a SeaBIOS VM with a virtio NIC and disk booting `disk`. `n`
/// numbers the machine: its MAC, the same on every boot of the disk.
pub fn start(net: &VmNet, disk: &Disk, n: u8, name: &str) -> anyhow::Result<Vm> {
    let mut spec = VmSpec::new(name);
    spec.firmware = Firmware::Bios;
    spec.nic = Some(Nic::Virtio);
    spec.mac = Some(qa::vmnet::mac(n));
    spec.disk = Some((disk.path().to_owned(), DiskBus::Virtio));
    Vm::start(Some(net), &spec)
}

/// [`start`], then waits for the ready line.
pub fn boot(net: &VmNet, disk: &Disk, n: u8, name: &str) -> anyhow::Result<Vm> {
    let mut vm = start(net, disk, n, name)?;
    let t = vm.wait_for(READY, READY_LIMIT)?;
    eprintln!("{name}: ready {:.1} s after QEMU started", t.as_secs_f64());
    Ok(vm)
}

/// What the console shows of a machine's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// From the banner `applianced <version>: <hostname>, machine id <hex>`.
    pub hostname: String,
    /// 32 hex digits, from the same line.
    pub machine_id: String,
    /// From `applianced: node key SHA256:<hex>`.
    pub node_key: String,
    /// From the log line `node identity node_id=<uuid> ...`.
    pub node_id: String,
}

/// The identity on `vm`'s console (daemon.rs prints the banner before the
/// ready line, so a short wait suffices).
pub fn identity(vm: &mut Vm) -> anyhow::Result<Identity> {
    let limit = Duration::from_secs(5);
    let (line, _) = vm.wait_line("the machine id", limit, |l| l.contains(", machine id "))?;
    let (head, id) = line.rsplit_once(", machine id ").unwrap_or_default();
    let machine_id = id.trim().to_owned();
    let hostname = head.rsplit(": ").next().unwrap_or_default().to_owned();
    vm.checked(ensure(
        machine_id.len() == 32 && machine_id.chars().all(|c| c.is_ascii_hexdigit()),
        format!("no machine id in {line:?}"),
    ))?;
    let (line, _) = vm.wait_line("the node key", limit, |l| {
        l.contains("applianced: node key SHA256:")
    })?;
    let node_key = line
        .rsplit("node key ")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let (line, _) = vm.wait_line("the node id", limit, |l| {
        l.contains("node identity node_id=")
    })?;
    let node_id = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("node_id="))
        .unwrap_or_default()
        .to_owned();
    vm.checked(ensure(
        node_id.len() == 36 && node_id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
        format!("no node id in {line:?}"),
    ))?;
    Ok(Identity {
        hostname,
        machine_id,
        node_key,
        node_id,
    })
}

/// The portal answers `GET /healthz` at `ip` (IPv4), with bounded retries:
/// the first packets wait for neighbour discovery.
pub fn portal_answers(vm: &Vm, net: &VmNet, ip: &str) -> anyhow::Result<()> {
    let portal: SocketAddr = format!("{ip}:8080").parse()?;
    let page = vm.checked(qa::wait::until(
        Duration::from_secs(30),
        Duration::from_millis(250),
        &format!("the portal at {portal}"),
        || crate::common::http_get(net.ns(), portal, "/healthz").ok(),
    ))?;
    vm.checked(ensure(
        page.starts_with("HTTP/1.1 200"),
        format!("GET /healthz at {portal}: {page}"),
    ))
}

/// Checks that QEMU exited cleanly (`status`) and that its SHUTDOWN event
/// gives `reason` (`guest-shutdown`, `guest-reset`): the guest's own doing.
pub fn exited_for(
    vm: &mut Vm,
    status: std::process::ExitStatus,
    reason: &str,
) -> anyhow::Result<()> {
    vm.checked(ensure(
        status.success(),
        format!("QEMU exited with {status}"),
    ))?;
    let event = vm.shutdown_event();
    vm.checked(ensure(
        event.as_ref().is_some_and(|e| e["reason"] == reason),
        format!("QEMU's SHUTDOWN event is {event:?}, not {reason}"),
    ))
}

/// Presses the power button and checks QEMU exits on the guest's own power
/// off within the bound, in order and with no service killed; returns the
/// time it took.
pub fn power_off(vm: &mut Vm) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    vm.power_button()?;
    let status = vm.wait_exit(POWEROFF_LIMIT)?;
    let took = t0.elapsed();
    exited_for(vm, status, "guest-shutdown")?;
    let log = vm.serial_log();
    vm.checked(qa::vm::shutdown::orderly(&log))?;
    eprintln!("{}: powered off in {:.1} s", vm.name(), took.as_secs_f64());
    Ok(took)
}
