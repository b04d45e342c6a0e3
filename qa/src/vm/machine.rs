//! A running QEMU ([`Vm`]): its command line from a [`VmSpec`], the serial
//! console captured to a file and searched with bounded waits, the power
//! button and shutdown event over QMP, and the serial log kept on failure.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use super::artefacts::{OVMF_CODE, OVMF_VARS};
use super::dirs::{private_dir, remove_stale_dirs};
use super::qmp::Qmp;
use super::slot::{Slot, SLOT_LIMIT};
use super::spec::{DiskBus, Firmware, VmSpec};
use crate::vmnet::VmNet;

/// How often the serial log and QEMU's state are polled.
const POLL: Duration = Duration::from_millis(20);
/// Lines of the serial log quoted in errors.
const TAIL_LINES: usize = 40;

/// A running QEMU; killed on drop.
#[derive(Debug)]
pub struct Vm {
    name: String,
    child: Child,
    started: Instant,
    serial: PathBuf,
    stderr: PathBuf,
    qmp_path: PathBuf,
    qmp: Option<Qmp>,
    exit: Option<ExitStatus>,
    failed: Cell<bool>,
    dir: tempfile::TempDir,
    _slot: Slot,
}

impl Vm {
    /// Starts QEMU for `spec`, inside `net`'s namespace when given (required
    /// with a NIC). The clock of [`Vm::wait_for`] starts here.
    pub fn start(net: Option<&VmNet>, spec: &VmSpec) -> anyhow::Result<Self> {
        remove_stale_dirs();
        let slot = Slot::acquire(SLOT_LIMIT)?;
        let dir = private_dir()?;
        let serial = dir.path().join("serial.log");
        let stderr = dir.path().join("qemu.stderr");
        let qmp_path = dir.path().join("qmp.sock");

        let mut cmd = match net {
            Some(net) => net.ns().command("qemu-system-x86_64"),
            None => Command::new("qemu-system-x86_64"),
        };
        cmd.args(["-name", &spec.name])
            .args(["-accel", "tcg", "-cpu", "max", "-smp", "1"])
            .args(["-m", &spec.memory_mib.to_string()])
            // Only the devices asked for (no default NIC, CD-ROM or floppy),
            // plus a VGA card: the image also prints on tty0.
            .args(["-nodefaults", "-vga", "std", "-display", "none"])
            .args(["-no-reboot", "-monitor", "none"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()));
        if spec.firmware == Firmware::Uefi {
            let vars = dir.path().join("OVMF_VARS.fd");
            std::fs::copy(OVMF_VARS, &vars).with_context(|| format!("copying {OVMF_VARS}"))?;
            cmd.arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
                ))
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    vars.display()
                ));
        }
        if let Some((disk, bus)) = &spec.disk {
            anyhow::ensure!(disk.exists(), "disk {} does not exist", disk.display());
            cmd.arg("-drive")
                .arg(format!("file={},format=raw,if=none,id=d0", disk.display()));
            // The firmware boots the disk, unless QEMU loads the kernel
            // itself (it then takes boot index 0).
            let boot = if spec.kernel.is_none() {
                ",bootindex=0"
            } else {
                ""
            };
            match bus {
                DiskBus::Virtio => cmd
                    .arg("-device")
                    .arg(format!("virtio-blk-pci,drive=d0{boot}")),
                DiskBus::Pvscsi => cmd
                    .args(["-device", "pvscsi,id=scsi0", "-device"])
                    .arg(format!("scsi-hd,drive=d0,bus=scsi0.0{boot}")),
            };
        }
        if let Some(nic) = spec.nic {
            let net = net.context("a VM with a NIC needs a VmNet")?;
            let tap = net.add_tap()?;
            cmd.arg("-netdev")
                .arg(format!(
                    "tap,id=n0,ifname={},script=no,downscript=no",
                    tap.name
                ))
                .arg("-device")
                .arg(format!(
                    "{},netdev=n0,mac={}",
                    nic.device(),
                    spec.mac.as_ref().unwrap_or(&tap.mac)
                ));
        }
        if let Some(k) = &spec.kernel {
            cmd.arg("-kernel")
                .arg(&k.kernel)
                .arg("-initrd")
                .arg(&k.initrd)
                .arg("-append")
                .arg(&k.append);
        }
        let err = std::fs::File::create(&stderr)
            .with_context(|| format!("creating {}", stderr.display()))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
        let started = Instant::now();
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        Ok(Self {
            name: spec.name.clone(),
            child,
            started,
            serial,
            stderr,
            qmp_path,
            qmp: None,
            exit: None,
            failed: Cell::new(false),
            dir,
            _slot: slot,
        })
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When QEMU was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The private directory (serial log, QMP socket, firmware variables).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The whole serial log so far, lines ended by `\n` only.
    pub fn serial_log(&self) -> String {
        std::fs::read(&self.serial)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default()
    }

    /// The last `n` lines of the serial log, and QEMU's stderr if any.
    pub fn tail(&self, n: usize) -> String {
        let log = self.serial_log();
        let lines: Vec<&str> = log.lines().collect();
        let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
        if let Ok(err) = std::fs::read_to_string(&self.stderr) {
            if !err.trim().is_empty() {
                out.push_str("\n--- qemu stderr ---\n");
                out.push_str(err.trim());
            }
        }
        out
    }

    /// Marks the VM failed (its log is kept) and adds the serial tail to the
    /// error of `r`.
    pub fn checked<T>(&self, r: anyhow::Result<T>) -> anyhow::Result<T> {
        r.map_err(|e| self.fail(e))
    }

    fn fail(&self, e: anyhow::Error) -> anyhow::Error {
        if self.failed.replace(true) {
            return e;
        }
        e.context(format!(
            "VM {}: last lines of the serial console:\n{}\n---",
            self.name,
            self.tail(TAIL_LINES)
        ))
    }

    /// Waits (at most `limit` from now) for a serial line containing `needle`
    /// and returns the time from QEMU's start to when it was seen.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> anyhow::Result<Duration> {
        self.wait_line(needle, limit, |l| l.contains(needle))
            .map(|(_, t)| t)
    }

    /// Waits (at most `limit` from now) for a serial line matching `pred`;
    /// returns the line and the time from QEMU's start. `what` names it in
    /// the error. Fails early when QEMU exits.
    pub fn wait_line(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<(String, Duration)> {
        let deadline = Instant::now() + limit;
        loop {
            let exited = self.try_exit()?;
            if let Some(line) = self.serial_log().lines().find(|l| pred(l)) {
                return Ok((line.to_owned(), self.started.elapsed()));
            }
            if let Some(status) = exited {
                return Err(self.fail(anyhow::anyhow!(
                    "QEMU exited ({status}) before the console showed {what:?}"
                )));
            }
            if Instant::now() >= deadline {
                return Err(self.fail(anyhow::anyhow!(
                    "the console did not show {what:?} within {limit:?}"
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// QEMU's exit status, if it has exited.
    pub fn try_exit(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .try_wait()
                .with_context(|| format!("waiting for QEMU of {}", self.name))?;
        }
        Ok(self.exit)
    }

    /// Waits (at most `limit`) for QEMU to exit; returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.fail(anyhow::anyhow!("QEMU did not exit within {limit:?}")));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The QMP connection, opened on first use.
    pub fn qmp(&mut self) -> anyhow::Result<&mut Qmp> {
        if self.qmp.is_none() {
            let q = Qmp::connect(&self.qmp_path, Duration::from_secs(10));
            self.qmp = Some(self.checked(q)?);
        }
        self.qmp
            .as_mut()
            .context("QMP connection missing right after opening it")
    }

    /// Presses the ACPI power button (`system_powerdown`).
    pub fn power_button(&mut self) -> anyhow::Result<()> {
        let r = self.qmp()?.execute("system_powerdown").map(drop);
        self.checked(r)
    }

    /// The `SHUTDOWN` event's data once QEMU has exited (reason
    /// `guest-shutdown` for a guest that powered off, `guest-reset` for a
    /// reboot or a panic under `-no-reboot`); None when no event came.
    pub fn shutdown_event(&mut self) -> Option<Value> {
        let q = self.qmp.as_mut()?;
        q.drain(Duration::from_secs(2));
        q.events
            .iter()
            .find(|e| e["event"] == "SHUTDOWN")
            .map(|e| e["data"].clone())
    }

    /// Stops QEMU at once (`quit`, then SIGKILL if it does not go); not a
    /// failure of the VM.
    pub fn quit(&mut self) {
        if matches!(self.try_exit(), Ok(Some(_))) {
            return;
        }
        if self.qmp.is_none() {
            self.qmp = Qmp::connect(&self.qmp_path, Duration::from_secs(2)).ok();
        }
        if let Some(q) = self.qmp.as_mut() {
            let _ = q.execute("quit");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.try_exit(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.exit = Some(status);
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if self.failed.get() || std::thread::panicking() {
            let keep = std::env::temp_dir().join("qa-vm-logs");
            static KEPT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = KEPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let to = keep.join(format!("{}-{}-{n}.log", self.name, std::process::id()));
            let saved = std::fs::create_dir_all(&keep).and_then(|()| {
                std::fs::copy(&self.serial, &to)?;
                Ok(())
            });
            match saved {
                Ok(()) => eprintln!("VM {}: serial log kept in {}", self.name, to.display()),
                Err(e) => eprintln!("VM {}: could not keep the serial log: {e}", self.name),
            }
        }
    }
}
