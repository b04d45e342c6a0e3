//! Image figures: boot to ready and ACPI power off under QEMU (software
//! emulation), against the same kernel booting a busybox initramfs;
//! applianced's memory in the VM; the sizes of the built artefacts. Everything comes from `out/` (`make image`);
//! without it each figure says so.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use qa::vm::shutdown::{self, SHUTDOWN_LINES};
use qa::vm::{Built, Disk, DiskBus, KernelBoot, Nic, Vm, VmSpec};
use qa::vmnet::{VmNet, GATEWAY_V4};

use super::{median, Metric};

/// Boots per figure unless `QA_BOOT_RUNS` says otherwise (not `--runs`): a
/// boot takes 5 to 15 s under TCG, and a run boots 3 times per run plus one.
const DEFAULT_RUNS: usize = 3;
/// Bounds, as in tests/image_boot.rs.
const READY_LIMIT: Duration = Duration::from_secs(240);
const POWEROFF_LIMIT: Duration = Duration::from_secs(90);
/// The ready lines of the appliance and of the baseline initramfs.
const READY: &str = "applianced: ready";
/// applianced's idle memory line, 10 s after ready (ready.rs), and how long
/// after ready it may take under TCG.
const IDLE: &str = "idle memory, 10 s after ready";
const IDLE_LIMIT: Duration = Duration::from_secs(60);
const BASELINE_READY: &str = "baseline: ready";
/// The bench VM's address on the bridge.
const IP: &str = "10.79.0.31/24";
const MIB: f64 = 1024.0 * 1024.0;

/// Every image figure.
pub fn measure(out: &Path) -> Vec<Metric> {
    let runs = std::env::var("QA_BOOT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_RUNS)
        .clamp(1, 25);
    let built = match Built::load_from(out) {
        Ok(b) => b,
        Err(e) => {
            return [
                ("boot_to_ready", "s"),
                ("boot_to_ready_direct_kernel", "s"),
                ("shutdown_acpi", "s"),
                ("applianced_rss_vm", "MiB"),
                ("image_ova_size", "MiB"),
                ("image_qcow2_size", "MiB"),
                ("image_root_size", "MiB"),
                ("image_raw_used", "MiB"),
            ]
            .iter()
            .map(|(name, unit)| Metric::failed(name, unit, &e))
            .collect();
        }
    };
    let mut out = boots(&built, runs);
    out.extend(sizes(&built));
    out
}

/// Sizes of the artefacts, from the files (and image.json for the root).
fn sizes(built: &Built) -> Vec<Metric> {
    let file = |name: &str, path: &Path, what: &str| {
        eprintln!("bench: {name}");
        match std::fs::metadata(path) {
            Ok(m) => Metric::new(
                name,
                "MiB",
                m.len() as f64 / MIB,
                None,
                format!("{what} ({})", file_name(path)),
            ),
            Err(e) => Metric::failed(
                name,
                "MiB",
                &anyhow::anyhow!("reading {}: {e}", path.display()),
            ),
        }
    };
    let mut out = vec![
        file("image_ova_size", &built.ova(), "file size of the OVA"),
        file(
            "image_qcow2_size",
            &built.qcow2(),
            "file size of the compressed qcow2",
        ),
    ];
    out.push(Metric::new(
        "image_root_size",
        "MiB",
        built.root_size() as f64 / MIB,
        None,
        format!(
            "size of the root filesystem (EROFS, lz4hc) per image.json; {:.1} MiB of \
             file contents uncompressed",
            built.info.sizes.root_content as f64 / MIB
        ),
    ));
    let raw = built.raw();
    out.push(match std::fs::metadata(&raw) {
        Ok(m) => Metric::new(
            "image_raw_used",
            "MiB",
            (m.blocks() * 512) as f64 / MIB,
            None,
            format!(
                "allocated blocks of the sparse raw image ({}, {} MiB virtual)",
                file_name(&raw),
                m.len() >> 20
            ),
        ),
        Err(e) => Metric::failed(
            "image_raw_used",
            "MiB",
            &anyhow::anyhow!("reading {}: {e}", raw.display()),
        ),
    });
    out
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The boot figures; each VM shape is SeaBIOS, 1 vCPU, 1 GiB, a virtio NIC
/// on the bridge and the virtio disk, so only what boots differs. A part that
/// fails leaves the others measured.
fn boots(built: &Built, runs: usize) -> Vec<Metric> {
    let setup = (|| -> anyhow::Result<(VmNet, Disk)> {
        let net = VmNet::new()?;
        let disk = Disk::appliance(built, &params())?;
        Ok((net, disk))
    })();
    let (net, disk) = match setup {
        Ok(v) => v,
        Err(e) => {
            return [
                "boot_to_ready",
                "boot_to_ready_direct_kernel",
                "shutdown_acpi",
            ]
            .iter()
            .map(|n| Metric::failed(n, "s", &e))
            .collect()
        }
    };
    let shape = |name: &str| {
        let mut s = VmSpec::new(name);
        s.nic = Some(Nic::Virtio);
        // One machine booted again and again: one MAC (see VmSpec::mac).
        s.mac = Some(qa::vmnet::mac(31));
        s.disk = Some((disk.path().to_owned(), DiskBus::Virtio));
        s
    };
    let med = |v: &[f64]| median(v).context("no samples");
    let desc = "QEMU TCG (no KVM), SeaBIOS, 1 vCPU, 1 GiB, virtio NIC and disk";

    // The first boot formats the data partition and makes the identity:
    // reported in the note; the figure is an ordinary boot.
    eprintln!("bench: boot_to_ready (a first boot, then {runs})");
    let image = (|| -> anyhow::Result<(Boot, Vec<Boot>)> {
        let first = boot_and_power_off(&net, &shape("bench-first"))?;
        let mut boots = Vec::new();
        for i in 0..runs {
            boots.push(boot_and_power_off(&net, &shape(&format!("bench-{i}")))?);
        }
        Ok((first, boots))
    })();

    eprintln!("bench: baseline boots ({runs})");
    let baseline = (|| -> anyhow::Result<f64> {
        let (kernel, initrd) = (
            built.out().join("baseline/vmlinuz"),
            built.out().join("baseline/initrd.img"),
        );
        for f in [&kernel, &initrd] {
            anyhow::ensure!(f.exists(), "{} is missing (mkimage baseline)", f.display());
        }
        let mut spec = shape("baseline");
        spec.kernel = Some(KernelBoot {
            kernel,
            initrd,
            append: console_args(built),
        });
        let mut times = Vec::new();
        for _ in 0..runs {
            let mut vm = Vm::start(Some(&net), &spec)?;
            times.push(vm.wait_for(BASELINE_READY, READY_LIMIT)?.as_secs_f64());
            // It powers itself off; wait so the next run has the core.
            let _ = vm.wait_exit(Duration::from_secs(30));
        }
        med(&times)
    })();
    let (base, base_note) = match &baseline {
        Ok(b) => (
            Some(*b),
            format!(
                "baseline: the same kernel booted directly (-kernel) with out/baseline's \
                 busybox initramfs to \"{BASELINE_READY}\", median of {runs}"
            ),
        ),
        Err(e) => {
            eprintln!("bench: baseline failed: {e:#}");
            (None, format!("baseline not measured: {e:#}"))
        }
    };

    eprintln!("bench: boot_to_ready_direct_kernel ({runs})");
    let direct = (|| -> anyhow::Result<f64> {
        let kdir = tempfile::tempdir().context("creating a directory for the kernel")?;
        let (kernel, initrd) = built.extract_boot_files(kdir.path())?;
        let mut spec = shape("bench-direct");
        spec.kernel = Some(KernelBoot {
            kernel,
            initrd,
            append: format!("{} {}", built.cmdline(), params().join(" ")),
        });
        let mut times = Vec::new();
        for _ in 0..runs {
            times.push(boot_and_power_off(&net, &spec)?.ready);
        }
        med(&times)
    })();

    let mut out = Vec::new();
    match image {
        Ok((first, boots)) => {
            let ready: Vec<f64> = boots.iter().map(|b| b.ready).collect();
            let note = format!(
                "QEMU start to \"{READY}\" on the serial console, {desc}, firmware and \
                 syslinux from the disk; median of {runs} boots after the first (the \
                 first, which formats /data: {:.1} s); {base_note}",
                first.ready
            );
            out.push(match med(&ready) {
                Ok(v) => Metric::new("boot_to_ready", "s", v, base, note),
                Err(e) => Metric::failed("boot_to_ready", "s", &e),
            });
            out.push(shutdown_metric(&first, &boots, desc));
            out.push(rss_metric(&boots));
        }
        Err(e) => {
            out.push(Metric::failed("boot_to_ready", "s", &e));
            out.push(Metric::failed("shutdown_acpi", "s", &e));
            out.push(Metric::failed("applianced_rss_vm", "MiB", &e));
        }
    }
    out.push(match direct {
        Ok(v) => Metric::new(
            "boot_to_ready_direct_kernel",
            "s",
            v,
            base,
            format!(
                "as boot_to_ready, but the image's own kernel and initramfs given to QEMU \
                 directly (-kernel/-initrd: no syslinux, no disk reads by the firmware), \
                 the fair comparison with the baseline; median of {runs}; {base_note}"
            ),
        ),
        Err(e) => Metric::failed("boot_to_ready_direct_kernel", "s", &e),
    });
    out
}

/// `shutdown_acpi`: counted only when every power off of the run, the first
/// boot's included, was orderly ([`shutdown::orderly`]); otherwise failed, with why.
fn shutdown_metric(first: &Boot, boots: &[Boot], desc: &str) -> Metric {
    let name = "shutdown_acpi";
    let disorderly: Vec<String> = std::iter::once(("first boot".to_owned(), first))
        .chain(
            boots
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("boot {}", i + 1), b)),
        )
        .filter_map(|(which, b)| {
            b.orderly
                .as_ref()
                .err()
                .map(|why| format!("{which}: {why}"))
        })
        .collect();
    if !disorderly.is_empty() {
        return Metric::failed(
            name,
            "s",
            &anyhow::anyhow!(
                "{} of {} power offs were not orderly ({})",
                disorderly.len(),
                boots.len() + 1,
                disorderly.join("; ")
            ),
        );
    }
    let down: Vec<f64> = boots.iter().map(|b| b.down).collect();
    match median(&down) {
        Some(v) => Metric::new(
            name,
            "s",
            v,
            None,
            format!(
                "QMP system_powerdown (ACPI power button) to QEMU's exit, 10 s idle after \
                 ready with portal + audit running, {desc}; median of {}; every power off \
                 ({} with the first boot's) orderly: QEMU's guest-shutdown event, the \
                 console's shutdown lines in order (powering off, stopping services, \
                 services stopped, /data: unmounted, reboot: Power down), a supervisor \
                 \"stopped\" line for each service without SIGKILL, nothing forced",
                boots.len(),
                boots.len() + 1
            ),
        ),
        None => Metric::failed(name, "s", &anyhow::anyhow!("no boots")),
    }
}

/// `applianced_rss_vm`: at the idle line, 10 s after ready.
fn rss_metric(boots: &[Boot]) -> Metric {
    let name = "applianced_rss_vm";
    let rss: Vec<f64> = boots.iter().filter_map(|b| b.rss).collect();
    let at_ready: Vec<f64> = boots.iter().filter_map(|b| b.rss_ready).collect();
    if rss.len() < boots.len() {
        return Metric::failed(
            name,
            "MiB",
            &anyhow::anyhow!(
                "{} of {} boots' \"{IDLE}\" console lines have no rss_kib",
                boots.len() - rss.len(),
                boots.len()
            ),
        );
    }
    match median(&rss) {
        Some(v) => Metric::new(
            name,
            "MiB",
            v,
            None,
            format!(
                "VmRSS of applianced (PID 1, release build) in the VM, idle, portal + audit \
                 placed, as its \"{IDLE}\" console line reports (rss_kib); median of {} \
                 boots (at the ready line: {})",
                rss.len(),
                median(&at_ready)
                    .map_or_else(|| "not logged".to_owned(), |v| format!("{v:.1} MiB"))
            ),
        ),
        None => Metric::failed(name, "MiB", &anyhow::anyhow!("no boots")),
    }
}

/// The kernel parameters of the bench VM.
fn params() -> Vec<String> {
    vec![
        format!("appliance.ip={IP}"),
        format!("appliance.gw={GATEWAY_V4}"),
        "appliance.hostname=bench".to_owned(),
    ]
}

/// One boot of the appliance.
struct Boot {
    /// QEMU start to the ready line, s.
    ready: f64,
    /// Power button to QEMU's exit, s.
    down: f64,
    /// Whether the power off was orderly ([`shutdown::orderly`]), and if not why.
    orderly: Result<(), String>,
    /// applianced's resident memory at its idle line, as it logs it, MiB.
    rss: Option<f64>,
    /// The same at its ready line, MiB (the old figure, for comparison).
    rss_ready: Option<f64>,
}

/// Boots `spec`, waits for the ready line and then for applianced's idle
/// memory line ([`IDLE`], 10 s after ready), presses the power button and
/// waits for QEMU's exit.
fn boot_and_power_off(net: &VmNet, spec: &VmSpec) -> anyhow::Result<Boot> {
    let mut vm = Vm::start(Some(net), spec)?;
    let t = vm.wait_for(READY, READY_LIMIT)?;
    let (idle, _) = vm.wait_line(IDLE, IDLE_LIMIT, |l| l.contains(IDLE))?;
    let rss = rss_kib_of(&idle).map(|kib| kib / 1024.0);
    let t0 = Instant::now();
    vm.power_button()?;
    let status = vm.wait_exit(POWEROFF_LIMIT)?;
    let down = t0.elapsed();
    vm.checked(if status.success() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "QEMU exited with {status} after the power button"
        ))
    })?;
    let guest = vm
        .shutdown_event()
        .is_some_and(|e| e["reason"] == "guest-shutdown");
    let log = vm.serial_log();
    let orderly = if guest {
        shutdown::orderly(&log).map_err(|e| e.to_string())
    } else {
        Err("QEMU's SHUTDOWN event is not the guest's own power off".to_owned())
    };
    if let Err(why) = &orderly {
        let from = log.find(SHUTDOWN_LINES[0]).unwrap_or(0);
        eprintln!(
            "bench: {}: the power off was not orderly: {why}; its console:\n{}",
            spec.name,
            &log[from..]
        );
    }
    eprintln!(
        "bench: {}: ready {:.2} s, off {:.2} s ({}), idle rss {rss:?} MiB",
        spec.name,
        t.as_secs_f64(),
        down.as_secs_f64(),
        if orderly.is_ok() {
            "orderly"
        } else {
            "NOT orderly"
        }
    );
    Ok(Boot {
        ready: t.as_secs_f64(),
        down: down.as_secs_f64(),
        orderly,
        rss,
        rss_ready: rss_at_ready(&log),
    })
}

/// The `rss_kib=` field of one of applianced's memory log lines (ready.rs),
/// in KiB.
fn rss_kib_of(line: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("rss_kib="))?
        .parse()
        .ok()
}

/// The `rss_kib=` field of applianced's `node ready` log line, in MiB.
fn rss_at_ready(log: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains("node ready"))?;
    Some(rss_kib_of(line)? / 1024.0)
}

/// The console arguments of the image's command line (for the baseline,
/// which must print where the appliance prints).
fn console_args(built: &Built) -> String {
    built
        .cmdline()
        .split_whitespace()
        .filter(|a| a.starts_with("console=") || a.starts_with("panic="))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_rss_of_the_ready_log_line() {
        let log = "x\n2026-11-23T17:13:38.194316Z  INFO node ready: audit healthy, portal \
                   healthy rss_kib=6604\napplianced: ready\n";
        assert_eq!(super::rss_at_ready(log), Some(6604.0 / 1024.0));
        assert_eq!(super::rss_at_ready("node ready: audit healthy\n"), None);
    }

    /// The idle line as the VM prints it.
    const IDLE_LINE: &str = "2026-12-04T17:02:42.494718Z  INFO idle memory, 10 s after ready \
                             rss_kib=8544 anon_kib=1224 file_kib=7320";

    #[test]
    fn reads_the_rss_of_the_idle_log_line() {
        assert!(IDLE_LINE.contains(super::IDLE));
        assert_eq!(super::rss_kib_of(IDLE_LINE), Some(8544.0));
        assert_eq!(super::rss_kib_of("idle memory, 10 s after ready"), None);
    }
}
