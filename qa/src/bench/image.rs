//! Image figures: boot to ready and ACPI power off under QEMU (software
//! emulation), against the same kernel booting a busybox initramfs;
//! applianced's memory in the VM; the sizes of the built artefacts. Everything comes from `out/` (`make image`);
//! without it each figure says so.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
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
    let image = (|| -> anyhow::Result<(f64, Vec<Boot>)> {
        let first = boot_and_power_off(&net, &shape("bench-first"))?.ready;
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
            let down: Vec<f64> = boots.iter().map(|b| b.down).collect();
            let rss: Vec<f64> = boots.iter().filter_map(|b| b.rss).collect();
            let note = format!(
                "QEMU start to \"{READY}\" on the serial console, {desc}, firmware and \
                 syslinux from the disk; median of {runs} boots after the first (the \
                 first, which formats /data: {first:.1} s); {base_note}"
            );
            out.push(match med(&ready) {
                Ok(v) => Metric::new("boot_to_ready", "s", v, base, note),
                Err(e) => Metric::failed("boot_to_ready", "s", &e),
            });
            let note = format!(
                "QMP system_powerdown (ACPI power button) to QEMU's exit, services \
                 running, {desc}; median of {runs}"
            );
            out.push(match med(&down) {
                Ok(v) => Metric::new("shutdown_acpi", "s", v, None, note),
                Err(e) => Metric::failed("shutdown_acpi", "s", &e),
            });
            let note = format!(
                "VmRSS of applianced (PID 1, release build) in the VM at its ready line, \
                 portal + audit placed, as its \"node ready\" log line reports \
                 (rss_kib); median of {} boots",
                rss.len()
            );
            out.push(match med(&rss) {
                Ok(v) => Metric::new("applianced_rss_vm", "MiB", v, None, note),
                Err(_) => Metric::failed(
                    "applianced_rss_vm",
                    "MiB",
                    &anyhow::anyhow!("no rss_kib in applianced's \"node ready\" console line"),
                ),
            });
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
    /// applianced's resident memory at ready, as its log line says, MiB.
    rss: Option<f64>,
}

/// Boots `spec`, waits for the ready line, presses the power button and
/// waits for QEMU's exit.
fn boot_and_power_off(net: &VmNet, spec: &VmSpec) -> anyhow::Result<Boot> {
    let mut vm = Vm::start(Some(net), spec)?;
    let t = vm.wait_for(READY, READY_LIMIT)?;
    let rss = rss_at_ready(&vm.serial_log());
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
    eprintln!(
        "bench: {}: ready {:.2} s, off {:.2} s, rss {rss:?} MiB",
        spec.name,
        t.as_secs_f64(),
        down.as_secs_f64()
    );
    Ok(Boot {
        ready: t.as_secs_f64(),
        down: down.as_secs_f64(),
        rss,
    })
}

/// The `rss_kib=` field of applianced's `node ready` log line (ready.rs),
/// in MiB.
fn rss_at_ready(log: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains("node ready"))?;
    let kib: f64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rss_kib="))?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
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
}
