//! The built image (`make image`, in `out/`) boots under QEMU (software
//! emulation) on the hypervisor devices it is meant for: SeaBIOS and UEFI,
//! virtio, VMware (vmxnet3, pvscsi) and e1000 NICs. On each it reaches
//! applianced's ready line, serves the demo portal on its public port with
//! the other ports closed, and (where checked) powers off cleanly on the ACPI
//! power button, leaving its data filesystem clean for the next boot. The
//! hypervisor formats are checked with qemu-img, and the OVA's descriptor and
//! manifest against its files. Each power off is checked orderly on the
//! console: every service stopped by its stop signal, none killed.
//!
//! At most two VMs run at once (qa::vm caps it); each test runs one at a time.

mod common;
mod vm_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::http_get;
use qa::vm::{Built, Disk, DiskBus, Ext4Super, Firmware, Nic, Vm, VmSpec};
use qa::vmnet::{VmNet, GATEWAY_V4};
use vm_support::{ensure, identity, power_off, READY, READY_LIMIT};

/// A connection to a closed port must not succeed within this.
const CLOSED_LIMIT: Duration = Duration::from_secs(2);
/// Printed by the second and later boots when the data filesystem's
/// superblock says it was cleanly unmounted (boot/datapart.rs).
const DATA_CLEAN: &str = "applianced: data filesystem: clean";
/// Printed instead when it was not (the journal is replayed by the check).
const DATA_UNCLEAN: &str = "applianced: data filesystem: not cleanly unmounted";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// A fresh copy of the raw image configured by kernel parameters for `ip`.
fn disk(built: &Built, ip: &str, hostname: &str) -> anyhow::Result<Disk> {
    Disk::appliance(
        built,
        &[
            &format!("appliance.ip={ip}"),
            &format!("appliance.gw={GATEWAY_V4}"),
            &format!("appliance.hostname={hostname}"),
        ],
    )
}

/// Boots `disk` and waits for the ready line. `n` numbers the machine (the
/// last octet of its address): its MAC, the same on every boot of the disk.
fn boot(
    net: &VmNet,
    disk: &Disk,
    n: u8,
    name: &str,
    firmware: Firmware,
    nic: Nic,
    bus: DiskBus,
) -> anyhow::Result<Vm> {
    let mut spec = VmSpec::new(name);
    spec.firmware = firmware;
    spec.nic = Some(nic);
    spec.mac = Some(qa::vmnet::mac(n));
    spec.disk = Some((disk.path().to_owned(), bus));
    let mut vm = Vm::start(Some(net), &spec)?;
    let t = vm.wait_for(READY, READY_LIMIT)?;
    eprintln!("{name}: ready {:.1} s after QEMU started", t.as_secs_f64());
    Ok(vm)
}

/// The portal answers `GET /healthz` at `ip` (bounded retries: the first
/// packets wait for neighbour discovery), and ports that are not public
/// refuse or drop connections.
fn check_ports(vm: &Vm, net: &VmNet, ip: &str) -> anyhow::Result<()> {
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    let portal = addr(&format!("{host}:8080"));
    let page = vm.checked(qa::wait::until(
        Duration::from_secs(30),
        Duration::from_millis(250),
        &format!("the portal at {portal}"),
        || http_get(net.ns(), portal, "/healthz").ok(),
    ))?;
    vm.checked(ensure(
        page.starts_with("HTTP/1.1 200"),
        format!("GET /healthz at {portal}: {page}"),
    ))?;
    // 7100: the audit service's internal port (the namespace is no peer);
    // 22: nothing listens, and the firewall must drop it anyway.
    for port in [7100, 22] {
        let to = addr(&format!("{host}:{port}"));
        let r = net.connect(to, CLOSED_LIMIT)?;
        vm.checked(ensure(
            r.is_err(),
            format!("a connection to {to} succeeded: the port should be closed"),
        ))?;
    }
    Ok(())
}

/// The data partition (found in the GPT, cross-checked against image.json)
/// holds an ext4 filesystem labelled `data`, cleanly unmounted.
fn check_data_clean(built: &Built, disk: &Disk) -> anyhow::Result<()> {
    let part = qa::vm::gpt_partition(disk.path(), "data")?;
    anyhow::ensure!(
        part == built.partition("data")?,
        "the GPT's data partition {part:?} is not where image.json says"
    );
    let sb = Ext4Super::read(disk.path(), part.offset)?;
    anyhow::ensure!(
        sb.label == "data",
        "data filesystem labelled {:?}",
        sb.label
    );
    anyhow::ensure!(
        sb.clean(),
        "data filesystem not clean after power off: {sb:?}"
    );
    Ok(())
}

#[test]
fn bios_virtio_serves_powers_off_cleanly_and_boots_again() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::VM) {
        return Ok(());
    }
    let built = Built::load()?;
    let net = VmNet::new()?;
    let disk = disk(&built, "10.79.0.21/24,fd79::21/64", "vm-bios")?;

    let mut vm = boot(
        &net,
        &disk,
        21,
        "bios-1",
        Firmware::Bios,
        Nic::Virtio,
        DiskBus::Virtio,
    )?;
    let id = identity(&mut vm)?;
    check_ports(&vm, &net, "10.79.0.21")?;
    check_ports(&vm, &net, "fd79::21")?;
    power_off(&mut vm)?;
    drop(vm);
    check_data_clean(&built, &disk)?;

    let mut vm = boot(
        &net,
        &disk,
        21,
        "bios-2",
        Firmware::Bios,
        Nic::Virtio,
        DiskBus::Virtio,
    )?;
    vm.wait_for(DATA_CLEAN, Duration::from_secs(1))?;
    let id2 = identity(&mut vm)?;
    vm.checked(ensure(
        id == id2,
        format!("the identity changed across a reboot: {id:?} then {id2:?}"),
    ))?;
    check_ports(&vm, &net, "10.79.0.21")?;
    power_off(&mut vm)?;
    drop(vm);
    check_data_clean(&built, &disk)
}

#[test]
fn uefi_virtio_serves_and_powers_off_cleanly() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::VM) {
        return Ok(());
    }
    let built = Built::load()?;
    let net = VmNet::new()?;
    let disk = disk(&built, "10.79.0.22/24", "vm-uefi")?;
    let mut vm = boot(
        &net,
        &disk,
        22,
        "uefi",
        Firmware::Uefi,
        Nic::Virtio,
        DiskBus::Virtio,
    )?;
    check_ports(&vm, &net, "10.79.0.22")?;
    power_off(&mut vm)?;
    drop(vm);
    check_data_clean(&built, &disk)
}

/// VMware's devices, then VirtualBox's default NIC, each on its own copy of
/// the image: each copy makes its own identity on first boot. The second VM
/// is then stopped hard and must recover its data filesystem.
#[test]
fn vmware_and_e1000_devices_serve_with_distinct_identities_and_recover() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::VM) {
        return Ok(());
    }
    let built = Built::load()?;
    let net = VmNet::new()?;

    let disk_a = disk(&built, "10.79.0.23/24", "vm-vmware")?;
    let mut vm = boot(
        &net,
        &disk_a,
        23,
        "vmware",
        Firmware::Bios,
        Nic::Vmxnet3,
        DiskBus::Pvscsi,
    )?;
    let id_a = identity(&mut vm)?;
    check_ports(&vm, &net, "10.79.0.23")?;
    power_off(&mut vm)?;
    drop(vm);

    let disk_b = disk(&built, "10.79.0.24/24", "vm-e1000")?;
    let mut vm = boot(
        &net,
        &disk_b,
        24,
        "e1000",
        Firmware::Bios,
        Nic::E1000,
        DiskBus::Virtio,
    )?;
    let id_b = identity(&mut vm)?;
    check_ports(&vm, &net, "10.79.0.24")?;
    vm.checked(ensure(
        id_a.machine_id != id_b.machine_id
            && id_a.node_key != id_b.node_key
            && id_a.node_id != id_b.node_id,
        format!("two copies of the image share an identity: {id_a:?} and {id_b:?}"),
    ))?;

    // Pulling the plug leaves the journal to replay: the superblock check
    // above can tell, and the next boot recovers and keeps the identity.
    vm.quit();
    drop(vm);
    let part = built.partition("data")?;
    let sb = Ext4Super::read(disk_b.path(), part.offset)?;
    assert!(
        !sb.clean(),
        "data filesystem clean after a hard stop: {sb:?}"
    );
    let mut vm = boot(
        &net,
        &disk_b,
        24,
        "e1000-2",
        Firmware::Bios,
        Nic::E1000,
        DiskBus::Virtio,
    )?;
    vm.wait_for(DATA_UNCLEAN, Duration::from_secs(1))?;
    let id_b2 = identity(&mut vm)?;
    vm.checked(ensure(
        id_b == id_b2,
        format!("the identity changed across a hard stop: {id_b:?} then {id_b2:?}"),
    ))?;
    check_ports(&vm, &net, "10.79.0.24")?;
    power_off(&mut vm)?;
    drop(vm);
    check_data_clean(&built, &disk_b)
}

fn qemu_img_info(path: &Path) -> anyhow::Result<serde_json::Value> {
    let out = qa::netns::run(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(path),
    )?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// SHA-256 by coreutils: hashing the 2 GiB raw image with an unoptimised
/// (test profile) Rust hasher takes a minute.
fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let out = qa::netns::run(Command::new("sha256sum").arg(path))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

#[test]
fn hypervisor_formats_are_valid() -> anyhow::Result<()> {
    let built = Built::load()?;
    let raw_size = std::fs::metadata(built.raw())?.len();

    // qcow2: consistent (qemu-img check fails on leaks and corruption), and
    // the same virtual disk.
    qa::netns::run(Command::new("qemu-img").arg("check").arg(built.qcow2()))?;
    let info = qemu_img_info(&built.qcow2())?;
    assert_eq!(info["format"], "qcow2", "{info}");
    assert_eq!(info["virtual-size"], raw_size, "{info}");

    let info = qemu_img_info(&built.vhdx())?;
    assert_eq!(info["format"], "vhdx", "{info}");
    assert_eq!(info["virtual-size"], raw_size, "{info}");

    // SHA256SUMS: `<hex>  <name>` for each artefact.
    let sums = std::fs::read_to_string(built.sha256sums())?;
    let mut listed = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (hex, name) = line
            .split_once("  ")
            .ok_or_else(|| anyhow::anyhow!("SHA256SUMS line {line:?}"))?;
        let name = name.trim_start_matches('*');
        assert_eq!(
            sha256_file(&built.out().join(name))?,
            hex,
            "SHA256SUMS is wrong for {name}"
        );
        listed += 1;
    }
    // Every artefact is listed, with the checksum image.json gives.
    for a in built.info.artefacts.all() {
        let line = format!("{}  {}", a.sha256, a.file);
        assert!(
            sums.lines().any(|l| l == line),
            "SHA256SUMS lacks {line:?} (from image.json)"
        );
    }
    assert_eq!(listed, 4, "{sums}");

    // The OVA: a tar with the descriptor first, a manifest, and the disk.
    let dir = tempfile::tempdir()?;
    let mut names = Vec::new();
    let mut ova = tar::Archive::new(std::fs::File::open(built.ova())?);
    for entry in ova.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        assert!(
            !name.contains('/'),
            "OVA member {name:?} is not a plain name"
        );
        entry.unpack(dir.path().join(&name))?;
        names.push(name);
    }
    assert!(
        names.first().is_some_and(|n| n.ends_with(".ovf")),
        "the OVF descriptor must come first: {names:?}"
    );
    let ovf_name = &names[0];
    let ovf = std::fs::read_to_string(dir.path().join(ovf_name))?;
    let doc = roxmltree::Document::parse(&ovf)?;
    assert_eq!(doc.root_element().tag_name().name(), "Envelope");
    let hrefs: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("File"))
        .filter_map(|n| {
            n.attributes()
                .find(|a| a.name() == "href")
                .map(|a| a.value())
        })
        .collect();
    assert!(!hrefs.is_empty(), "the OVF references no file");
    for href in &hrefs {
        assert!(names.iter().any(|n| n == href), "{href} is not in the OVA");
        let info = qemu_img_info(&dir.path().join(href))?;
        assert_eq!(info["format"], "vmdk", "{info}");
        assert_eq!(
            info["format-specific"]["data"]["create-type"], "streamOptimized",
            "{info}"
        );
        assert_eq!(info["virtual-size"], raw_size, "{info}");
    }

    // The manifest: `SHA256(<name>)= <hex>` for every other member.
    let mf_name = names
        .iter()
        .find(|n| n.ends_with(".mf"))
        .ok_or_else(|| anyhow::anyhow!("no manifest in the OVA: {names:?}"))?;
    let mf = std::fs::read_to_string(dir.path().join(mf_name))?;
    let mut checked = Vec::new();
    for line in mf.lines().filter(|l| !l.trim().is_empty()) {
        let rest = line
            .strip_prefix("SHA256(")
            .ok_or_else(|| anyhow::anyhow!("manifest line {line:?}"))?;
        let (name, hex) = rest
            .split_once(")= ")
            .ok_or_else(|| anyhow::anyhow!("manifest line {line:?}"))?;
        assert_eq!(
            sha256_file(&dir.path().join(name))?,
            hex.trim(),
            "the manifest is wrong for {name}"
        );
        checked.push(name.to_owned());
    }
    for n in names.iter().filter(|n| *n != mf_name) {
        assert!(checked.contains(n), "the manifest does not cover {n}");
    }
    Ok(())
}

/// Sets the size of the disk image file, as a hypervisor's "enlarge disk"
/// does (the new space reads as zeros; the file stays sparse).
fn enlarge(disk: &Disk, bytes: u64) -> anyhow::Result<()> {
    std::fs::File::options()
        .write(true)
        .open(disk.path())?
        .set_len(bytes)?;
    Ok(())
}

/// The sizes a console line of the form `<prefix><a> to <b> MiB` or
/// `<prefix><a> MiB` gives, seen within a second (the line comes before
/// ready).
fn console_mib(vm: &mut Vm, prefix: &str) -> anyhow::Result<Vec<u64>> {
    let (line, _) = vm.wait_line(prefix, Duration::from_secs(1), |l| {
        l.contains(prefix) && l.trim_end().ends_with(" MiB")
    })?;
    let rest = line.split(prefix).nth(1).unwrap_or_default();
    let numbers = rest
        .trim_end_matches("MiB")
        .split(" to ")
        .map(|n| n.trim().parse::<u64>())
        .collect::<Result<Vec<_>, _>>();
    eprintln!("{}: {}", vm.name(), line.trim());
    vm.checked(numbers.map_err(|e| anyhow::anyhow!("{line:?}: {e}")))
}

/// After a power off: `sgdisk -v` finds no problem in the GPT of `disk`
/// (the backup table at the end of the enlarged disk), the data partition
/// ends at the disk's last usable sector (the disk less its backup header
/// and 128 entries), and the ext4 filesystem in it, copied out, passes
/// `e2fsck -fn` and has the size the console showed. Returns the partition.
fn check_grown_disk(
    disk: &Disk,
    disk_bytes: u64,
    fs_mib: u64,
) -> anyhow::Result<qa::vm::Partition> {
    let out = qa::netns::run(Command::new("sgdisk").arg("-v").arg(disk.path()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        text.contains("No problems found"),
        "sgdisk -v on the grown disk:\n{text}"
    );
    let part = qa::vm::gpt_partition(disk.path(), "data")?;
    anyhow::ensure!(
        part.offset + part.size == disk_bytes - 33 * 512,
        "the data partition {part:?} does not end at the last usable sector of a \
         {disk_bytes}-byte disk"
    );

    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("data.img");
    qa::netns::run(
        Command::new("dd")
            .arg(format!("if={}", disk.path().display()))
            .arg(format!("of={}", copy.display()))
            .args(["bs=4M", "iflag=skip_bytes,count_bytes", "conv=sparse"])
            .arg(format!("skip={}", part.offset))
            .arg(format!("count={}", part.size))
            .arg("status=none"),
    )?;
    anyhow::ensure!(
        std::fs::metadata(&copy)?.len() == part.size,
        "the copy of the data partition is not {} bytes",
        part.size
    );
    qa::netns::run(Command::new("e2fsck").arg("-fn").arg(&copy))?;
    let out = qa::netns::run(Command::new("dumpe2fs").arg("-h").arg(&copy))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("dumpe2fs -h shows no {name:?}:\n{text}"))
    };
    let fs_bytes = field("Block count:")? * field("Block size:")?;
    anyhow::ensure!(
        fs_bytes / (1 << 20) == fs_mib,
        "the filesystem is {fs_bytes} bytes, the console said {fs_mib} MiB"
    );
    // mke2fs and resize2fs may leave out a last block group too small for
    // its metadata (a few MiB); nothing more.
    anyhow::ensure!(
        fs_bytes <= part.size && part.size - fs_bytes < 16 << 20,
        "a {fs_bytes}-byte filesystem on a {}-byte partition",
        part.size
    );
    Ok(part)
}

/// A disk enlarged before the first boot: the data partition fills it and
/// the new filesystem is made at that size. Enlarged again later: the
/// partition and the existing filesystem grow, and keep their data (the
/// machine's identity lives on /data). Booted once more at the same size:
/// nothing grows and the tables are not written.
#[test]
fn an_enlarged_disk_grows_the_data_partition_and_its_filesystem() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::VM) {
        return Ok(());
    }
    const MIB: u64 = 1 << 20;
    let built = Built::load()?;
    let net = VmNet::new()?;
    let disk = disk(&built, "10.79.0.25/24", "vm-grow")?;
    let original = built.partition("data")?;
    // What the partition becomes on a disk of `bytes`: it keeps its start
    // and ends before the backup table (header and 32 sectors of entries).
    let grown_size = |bytes: u64| bytes - 33 * 512 - original.offset;

    let size = 3 << 30;
    enlarge(&disk, size)?;
    let mut vm = boot(
        &net,
        &disk,
        25,
        "grow-1",
        Firmware::Bios,
        Nic::Virtio,
        DiskBus::Virtio,
    )?;
    let grown = console_mib(&mut vm, "applianced: data partition: grown from ")?;
    vm.checked(ensure(
        grown == [original.size / MIB, grown_size(size) / MIB],
        format!(
            "grown {grown:?} MiB, expected from {} to {} MiB",
            original.size / MIB,
            grown_size(size) / MIB
        ),
    ))?;
    let fs_mib = console_mib(&mut vm, "applianced: data filesystem: ")?;
    let id = identity(&mut vm)?;
    power_off(&mut vm)?;
    drop(vm);
    let part = check_grown_disk(&disk, size, fs_mib[0])?;
    anyhow::ensure!(
        part.offset == original.offset && part.size == grown_size(size),
        "after the first boot the data partition is {part:?}"
    );

    let size = 4 << 30;
    enlarge(&disk, size)?;
    let mut vm = boot(
        &net,
        &disk,
        25,
        "grow-2",
        Firmware::Bios,
        Nic::Virtio,
        DiskBus::Virtio,
    )?;
    vm.wait_for(DATA_CLEAN, Duration::from_secs(1))?;
    let grown = console_mib(&mut vm, "applianced: data partition: grown from ")?;
    vm.checked(ensure(
        grown == [part.size / MIB, grown_size(size) / MIB],
        format!(
            "grown {grown:?} MiB, expected from {} to {} MiB",
            part.size / MIB,
            grown_size(size) / MIB
        ),
    ))?;
    let fs_mib2 = console_mib(&mut vm, "applianced: data filesystem: ")?;
    vm.checked(ensure(
        fs_mib2[0] > fs_mib[0] + 1000,
        format!(
            "the existing filesystem did not grow: {} MiB, then {} MiB",
            fs_mib[0], fs_mib2[0]
        ),
    ))?;
    let id2 = identity(&mut vm)?;
    vm.checked(ensure(
        id == id2,
        format!("the identity changed as the disk grew: {id:?} then {id2:?}"),
    ))?;
    power_off(&mut vm)?;
    drop(vm);
    let part = check_grown_disk(&disk, size, fs_mib2[0])?;
    anyhow::ensure!(
        part.size == grown_size(size),
        "after the second boot the data partition is {part:?}"
    );

    // Not enlarged again: the tables (primary with the MBR, and backup) are
    // not written, and the filesystem keeps its size.
    let tables = || -> anyhow::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(disk.path())?;
        let mut bytes = vec![0u8; 2 * 34 * 512];
        f.read_exact_at(&mut bytes[..34 * 512], 0)?;
        f.read_exact_at(&mut bytes[34 * 512..], size - 34 * 512)?;
        Ok(bytes)
    };
    let before = tables()?;
    let mut vm = boot(
        &net,
        &disk,
        25,
        "grow-3",
        Firmware::Bios,
        Nic::Virtio,
        DiskBus::Virtio,
    )?;
    let fs_mib3 = console_mib(&mut vm, "applianced: data filesystem: ")?;
    let log = vm.serial_log();
    vm.checked(ensure(
        fs_mib3 == fs_mib2 && !log.contains("data partition: grown"),
        format!("a disk that is not larger changed: filesystem {fs_mib3:?} MiB"),
    ))?;
    power_off(&mut vm)?;
    drop(vm);
    anyhow::ensure!(
        tables()? == before,
        "the partition tables were written on a boot of a disk that is not larger"
    );
    Ok(())
}

/// The console of an orderly power off, as the image prints it (trimmed).
const ORDERLY: &str = "\
2026-12-04T17:01:12.364342Z  INFO started service=audit pid=105
2026-12-04T17:01:12.630070Z  INFO started service=portal pid=107
applianced: ready
applianced: powering off
applianced: stopping services
2026-12-04T17:01:16.891539Z  INFO stopped service=portal status=Some(ExitStatus(unix_wait_status(15)))
2026-12-04T17:01:16.906180Z  INFO stopped service=audit status=Some(ExitStatus(unix_wait_status(15)))
applianced: services stopped; stopping the API
";

#[test]
fn an_orderly_power_off_passes_the_check() {
    qa::vm::shutdown::services_stopped_cleanly(ORDERLY).expect("orderly");
}

#[test]
fn a_power_off_that_kills_or_skips_a_service_fails_the_check() {
    // Killed after its stop timeout.
    let killed = ORDERLY
        .replace(
            "2026-12-04T17:01:16.891539Z  INFO stopped service=portal status=Some(ExitStatus(unix_wait_status(15)))",
            "2026-12-04T17:01:16.89Z  WARN did not stop in time; SIGKILL service=portal grace=0ns\n\
             2026-12-04T17:01:16.89Z  INFO stopped service=portal status=Some(ExitStatus(unix_wait_status(9)))",
        );
    let err = qa::vm::shutdown::services_stopped_cleanly(&killed).expect_err("killed");
    assert!(err.to_string().contains("portal"), "{err}");
    // Killed, without the warning.
    let killed = ORDERLY.replace(
        "unix_wait_status(15)))\n2026-12-04T17:01:16.906180Z",
        "unix_wait_status(9)))\n2026-12-04T17:01:16.906180Z",
    );
    assert!(qa::vm::shutdown::services_stopped_cleanly(&killed).is_err());
    // Not stopped at all (left for PID 1 to kill).
    let skipped: String = ORDERLY
        .lines()
        .filter(|l| !l.contains("stopped service=audit"))
        .map(|l| format!("{l}\n"))
        .collect();
    let err = qa::vm::shutdown::services_stopped_cleanly(&skipped).expect_err("not stopped");
    assert!(err.to_string().contains("audit"), "{err}");
    let left = format!("{ORDERLY}applianced: 1 process(es) left after SIGTERM; sending SIGKILL\n");
    assert!(qa::vm::shutdown::services_stopped_cleanly(&left).is_err());
}
