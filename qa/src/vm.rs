//! QEMU virtual machines under software emulation (TCG; KVM does not work on
//! the test machines), for the image tests and the boot benchmarks: firmware
//! (SeaBIOS or OVMF), NIC and disk models, boot from a disk or directly from a
//! kernel and initrd, the serial console captured to a file and searched with
//! bounded waits, and a small QMP client for the ACPI power button.
//!
//! Everything a VM needs lives in a private directory (`qa-vm-<pid>-*` in
//! the temp dir) removed on drop, and QEMU is killed on drop. When a VM is
//! dropped after a failure (a panic, or an error from one of its methods or
//! passed through [`Vm::checked`]), its serial log is kept in
//! `<tmp>/qa-vm-logs/` and the path printed. Directories of killed runs are
//! removed when the next VM or disk is made.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use crate::vmnet::VmNet;

/// The UEFI firmware (read-only) and the template of its variable store.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// Copied for each VM: the firmware writes its variables into it.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// VMs run at once in this process at most: TCG keeps a core busy per VM.
pub const MAX_RUNNING: usize = 2;
/// How long [`Vm::start`] waits for a free slot.
const SLOT_LIMIT: Duration = Duration::from_secs(30 * 60);
/// How often the serial log and QEMU's state are polled.
const POLL: Duration = Duration::from_millis(20);
/// Lines of the serial log quoted in errors.
const TAIL_LINES: usize = 40;
/// Prefix of the private directories (the process id follows).
const DIR_PREFIX: &str = "qa-vm-";

/// The firmware a VM boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF (UEFI), with a private copy of the variable store.
    Uefi,
}

/// The emulated network card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nic {
    /// virtio-net (KVM, cloud hypervisors).
    Virtio,
    /// VMware's vmxnet3.
    Vmxnet3,
    /// Intel e1000 (VirtualBox's default, older VMware).
    E1000,
}

impl Nic {
    fn device(self) -> &'static str {
        match self {
            Nic::Virtio => "virtio-net-pci",
            Nic::Vmxnet3 => "vmxnet3",
            Nic::E1000 => "e1000",
        }
    }
}

/// The bus of the boot disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    /// virtio-blk.
    Virtio,
    /// VMware's paravirtual SCSI controller with a SCSI disk.
    Pvscsi,
}

/// A kernel, initrd and command line given to QEMU directly (no firmware
/// boot loader).
#[derive(Debug, Clone)]
pub struct KernelBoot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// A short name, for logs and QEMU's `-name`.
    pub name: String,
    pub firmware: Firmware,
    /// The NIC, on a tap of the [`VmNet`] given to [`Vm::start`].
    pub nic: Option<Nic>,
    /// The disk image (used in place: give a VM its own [`Disk`]) and its bus.
    pub disk: Option<(PathBuf, DiskBus)>,
    /// The NIC's MAC address; by default one of the tap's. Boot a disk
    /// again with the same MAC, as a hypervisor keeps a VM's: otherwise the
    /// client's neighbour cache still maps the VM's address to the old MAC
    /// and the first seconds of traffic go nowhere.
    pub mac: Option<String>,
    /// Direct kernel boot instead of the firmware's boot loader.
    pub kernel: Option<KernelBoot>,
    pub memory_mib: u32,
}

impl VmSpec {
    /// SeaBIOS, 1 GiB, no NIC, no disk, no kernel: fill in the rest.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            firmware: Firmware::Bios,
            nic: None,
            mac: None,
            disk: None,
            kernel: None,
            memory_mib: 1024,
        }
    }
}

/// A private, sparse copy of a disk image, deleted on drop; it outlives the
/// VMs that boot it, so one disk can be booted again.
#[derive(Debug)]
pub struct Disk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Disk {
    /// Copies `image` (keeping its holes) into a private directory.
    pub fn copy_of(image: &Path) -> anyhow::Result<Self> {
        remove_stale_dirs();
        let dir = private_dir()?;
        let name = image
            .file_name()
            .with_context(|| format!("{} has no file name", image.display()))?;
        let path = dir.path().join(name);
        crate::netns::run(
            Command::new("cp")
                .arg("--sparse=always")
                .arg(image)
                .arg(&path),
        )?;
        Ok(Self { path, _dir: dir })
    }

    /// The copy's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

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

/// A QMP (QEMU Machine Protocol) connection: JSON objects, one per line.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Asynchronous events received so far (`{"event": ..., "data": ...}`).
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects (retrying for at most `limit` while QEMU creates the
    /// socket), reads the greeting and leaves capability negotiation.
    pub fn connect(path: &Path, limit: Duration) -> anyhow::Result<Self> {
        let stream =
            crate::wait::until(limit, Duration::from_millis(50), "the QMP socket", || {
                UnixStream::connect(path).ok()
            })?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .context("setting the QMP read timeout")?;
        let writer = stream.try_clone().context("cloning the QMP socket")?;
        let mut q = Self {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
        };
        let greeting = q.read()?;
        anyhow::ensure!(
            greeting.get("QMP").is_some(),
            "QMP greeting expected, got {greeting}"
        );
        q.execute("qmp_capabilities")?;
        Ok(q)
    }

    fn read(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .context("reading from QMP")?;
        anyhow::ensure!(n > 0, "QMP connection closed");
        serde_json::from_str(&line).with_context(|| format!("QMP sent {line:?}"))
    }

    /// Runs `command` (no arguments) and returns its `return` value; events
    /// read meanwhile are kept in [`Qmp::events`].
    pub fn execute(&mut self, command: &str) -> anyhow::Result<Value> {
        let msg = json!({ "execute": command }).to_string() + "\n";
        self.writer
            .write_all(msg.as_bytes())
            .with_context(|| format!("sending {command} to QMP"))?;
        // Bounded: each read has a timeout, and QEMU answers within a few
        // events.
        for _ in 0..1000 {
            let v = self
                .read()
                .with_context(|| format!("waiting for the answer to {command}"))?;
            if v.get("event").is_some() {
                self.events.push(v);
            } else if let Some(r) = v.get("return") {
                return Ok(r.clone());
            } else if let Some(e) = v.get("error") {
                anyhow::bail!("QMP {command} failed: {e}");
            }
        }
        anyhow::bail!("QMP sent no answer to {command} among 1000 messages")
    }

    /// Reads the events left until QEMU closes the connection, for at most
    /// `limit`.
    pub fn drain(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let _ = self
            .reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)));
        while Instant::now() < deadline {
            match self.read() {
                Ok(v) if v.get("event").is_some() => self.events.push(v),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}

/// One of the [`MAX_RUNNING`] VM slots of this process.
#[derive(Debug)]
struct Slot;

static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

impl Slot {
    fn acquire(limit: Duration) -> anyhow::Result<Self> {
        let deadline = Instant::now() + limit;
        let mut n = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= MAX_RUNNING {
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "{MAX_RUNNING} VMs still running after {limit:?}: no slot for another"
            );
            n = FREED
                .wait_timeout(n, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *n += 1;
        Ok(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut n = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        FREED.notify_one();
    }
}

/// A new private directory `qa-vm-<pid>-*` in the temp dir.
fn private_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir()
        .context("creating a VM directory")
}

/// True when process `pid` exists.
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the private directories (disk copies included) of processes that
/// no longer run.
pub fn remove_stale_dirs() {
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(pid) = crate::vmnet::owner_pid(name, DIR_PREFIX) {
            if !process_alive(pid) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// The image built by `make image`: `out/` and its `image.json`.
#[derive(Debug, Clone)]
pub struct Built {
    out: PathBuf,
    /// The parsed `out/image.json`.
    pub info: appliance_image::info::ImageInfo,
}

impl Built {
    /// The workspace's `out/` directory.
    pub fn default_out() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../out")
    }

    /// Reads `out/image.json`; fails with what to run when it is missing.
    pub fn load() -> anyhow::Result<Self> {
        Self::load_from(&Self::default_out())
    }

    /// Reads `image.json` in `out`.
    pub fn load_from(out: &Path) -> anyhow::Result<Self> {
        let json = out.join("image.json");
        anyhow::ensure!(
            json.exists(),
            "{} is missing: run `make image` first",
            json.display()
        );
        let info = appliance_image::info::read_image_info(&json)?;
        Ok(Self {
            out: out.to_owned(),
            info,
        })
    }

    /// The output directory.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// The raw disk image.
    pub fn raw(&self) -> PathBuf {
        self.out.join(&self.info.artefacts.raw.file)
    }

    /// The qcow2 image.
    pub fn qcow2(&self) -> PathBuf {
        self.out.join(&self.info.artefacts.qcow2.file)
    }

    /// The VHDX image.
    pub fn vhdx(&self) -> PathBuf {
        self.out.join(&self.info.artefacts.vhdx.file)
    }

    /// The OVA.
    pub fn ova(&self) -> PathBuf {
        self.out.join(&self.info.artefacts.ova.file)
    }

    /// The checksum file.
    pub fn sha256sums(&self) -> PathBuf {
        self.out.join(&self.info.artefacts.sha256sums)
    }

    /// The default kernel command line (syslinux's APPEND).
    pub fn cmdline(&self) -> &str {
        &self.info.cmdline
    }

    /// The partition named `name`, as image.json describes it.
    pub fn partition(&self, name: &str) -> anyhow::Result<Partition> {
        let p = self
            .info
            .disk
            .partition(name)
            .with_context(|| format!("image.json lists no partition {name:?}"))?;
        Ok(Partition {
            offset: p.offset,
            size: p.size,
        })
    }

    /// Size in bytes of the root filesystem (the EROFS image).
    pub fn root_size(&self) -> u64 {
        self.info.sizes.root_erofs
    }

    /// Copies the kernel and initramfs out of the raw image's ESP into `dir`
    /// (for a direct kernel boot of the image's own stages); returns their
    /// paths.
    pub fn extract_boot_files(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        let mut paths = Vec::new();
        for name in ["a/vmlinuz", "a/initrd.img"] {
            let bytes = appliance_image::esp::read_esp_file(&self.raw(), name)?;
            let to = dir.join(name.replace('/', "-"));
            std::fs::write(&to, bytes).with_context(|| format!("writing {}", to.display()))?;
            paths.push(to);
        }
        let initrd = paths.pop().context("no initrd extracted")?;
        let kernel = paths.pop().context("no kernel extracted")?;
        Ok((kernel, initrd))
    }
}

impl Disk {
    /// A private copy of the built raw image with `params` appended to the
    /// kernel command line (`appliance.ip=...` and the like).
    pub fn appliance<S: AsRef<str>>(built: &Built, params: &[S]) -> anyhow::Result<Self> {
        let disk = Self::copy_of(&built.raw())?;
        if !params.is_empty() {
            let params: Vec<&str> = params.iter().map(AsRef::as_ref).collect();
            appliance_image::esp::append_kernel_params(disk.path(), &params.join(" "))?;
        }
        Ok(disk)
    }
}

/// A GPT partition found by its name (PARTLABEL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Byte offset from the start of the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Finds the partition named `label` in the GPT of the disk image `disk`
/// (512-byte sectors), reading the table itself rather than trusting the
/// builder's description of it.
pub fn gpt_partition(disk: &Path, label: &str) -> anyhow::Result<Partition> {
    use std::os::unix::fs::FileExt;
    const SECTOR: u64 = 512;
    let f = std::fs::File::open(disk).with_context(|| format!("opening {}", disk.display()))?;
    let mut header = [0u8; 92];
    f.read_exact_at(&mut header, SECTOR)
        .with_context(|| format!("reading the GPT header of {}", disk.display()))?;
    anyhow::ensure!(
        &header[0..8] == b"EFI PART",
        "{} has no GPT header in sector 1",
        disk.display()
    );
    let le64 = |b: &[u8], at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let le32 = |b: &[u8], at: usize| {
        let mut a = [0u8; 4];
        a.copy_from_slice(&b[at..at + 4]);
        u32::from_le_bytes(a)
    };
    let entries_lba = le64(&header, 0x48);
    let count = le32(&header, 0x50).min(1024);
    let entry_size = le32(&header, 0x54) as usize;
    anyhow::ensure!(
        (128..=4096).contains(&entry_size),
        "{}: GPT entry size {entry_size} is not plausible",
        disk.display()
    );
    let mut table = vec![0u8; entry_size * count as usize];
    f.read_exact_at(&mut table, entries_lba * SECTOR)
        .with_context(|| format!("reading the GPT entries of {}", disk.display()))?;
    for entry in table.chunks_exact(entry_size) {
        if entry[0..16].iter().all(|b| *b == 0) {
            continue;
        }
        let name: Vec<u16> = entry[0x38..0x38 + 72]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|c| *c != 0)
            .collect();
        if String::from_utf16_lossy(&name) == label {
            let first = le64(entry, 0x20);
            let last = le64(entry, 0x28);
            return Ok(Partition {
                offset: first * SECTOR,
                size: (last + 1 - first) * SECTOR,
            });
        }
    }
    anyhow::bail!("{} has no partition named {label:?}", disk.display())
}

/// The fields of an ext4 superblock that tell whether it was unmounted
/// cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Super {
    /// `s_state`: bit 0 (1) cleanly unmounted, bit 1 (2) errors detected.
    pub state: u16,
    /// `s_feature_incompat`; 0x4 (`needs_recovery`) is set while the journal
    /// holds transactions not yet written back (mounted, or not unmounted).
    pub feature_incompat: u32,
    /// `s_volume_name`.
    pub label: String,
}

/// `needs_recovery` in `s_feature_incompat`.
pub const EXT4_INCOMPAT_RECOVER: u32 = 0x4;

impl Ext4Super {
    /// Reads the primary superblock of the ext4 filesystem at byte `offset`
    /// of `image`.
    pub fn read(image: &Path, offset: u64) -> anyhow::Result<Self> {
        use std::os::unix::fs::FileExt;
        let f =
            std::fs::File::open(image).with_context(|| format!("opening {}", image.display()))?;
        let mut sb = [0u8; 1024];
        f.read_exact_at(&mut sb, offset + 1024).with_context(|| {
            format!("reading the superblock at {offset} in {}", image.display())
        })?;
        let magic = u16::from_le_bytes([sb[0x38], sb[0x39]]);
        anyhow::ensure!(
            magic == 0xEF53,
            "no ext4 superblock at byte {offset} of {} (magic {magic:#x})",
            image.display()
        );
        let label: Vec<u8> = sb[0x78..0x88]
            .iter()
            .copied()
            .take_while(|b| *b != 0)
            .collect();
        Ok(Self {
            state: u16::from_le_bytes([sb[0x3A], sb[0x3B]]),
            feature_incompat: u32::from_le_bytes([sb[0x60], sb[0x61], sb[0x62], sb[0x63]]),
            label: String::from_utf8_lossy(&label).into_owned(),
        })
    }

    /// Cleanly unmounted, no errors recorded and nothing left to replay.
    pub fn clean(&self) -> bool {
        self.state & 1 != 0
            && self.state & 2 == 0
            && self.feature_incompat & EXT4_INCOMPAT_RECOVER == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_fresh_ext4_superblock_at_an_offset() {
        if Command::new("mke2fs").arg("-V").output().is_err() {
            eprintln!("skipped: mke2fs is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let fs = dir.path().join("fs.img");
        crate::netns::run(
            Command::new("mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-L", "data"])
                .arg(&fs)
                .arg("8M"),
        )
        .unwrap();
        // Behind 1 MiB of something else, like a partition in a disk.
        let disk = dir.path().join("disk.img");
        let mut bytes = vec![0xAAu8; 1 << 20];
        bytes.extend(std::fs::read(&fs).unwrap());
        std::fs::write(&disk, &bytes).unwrap();
        let sb = Ext4Super::read(&disk, 1 << 20).unwrap();
        assert_eq!(sb.label, "data");
        assert!(sb.clean(), "{sb:?}");
        // A filesystem mounted and not unmounted: journal to replay.
        let at = (1 << 20) + 1024 + 0x60;
        bytes[at] |= EXT4_INCOMPAT_RECOVER as u8;
        std::fs::write(&disk, &bytes).unwrap();
        assert!(!Ext4Super::read(&disk, 1 << 20).unwrap().clean());
        assert!(Ext4Super::read(&disk, 0).is_err());
    }

    #[test]
    fn finds_a_gpt_partition_by_name() {
        if Command::new("sgdisk").arg("--version").output().is_err() {
            eprintln!("skipped: sgdisk is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        crate::netns::run(
            Command::new("sgdisk")
                .args([
                    "-n",
                    "1:2048:+2M",
                    "-c",
                    "1:esp",
                    "-n",
                    "2:0:0",
                    "-c",
                    "2:data",
                ])
                .arg(&disk),
        )
        .unwrap();
        let esp = gpt_partition(&disk, "esp").unwrap();
        assert_eq!(
            esp,
            Partition {
                offset: 1 << 20,
                size: 2 << 20
            }
        );
        let data = gpt_partition(&disk, "data").unwrap();
        assert_eq!(data.offset, 3 << 20);
        assert!(gpt_partition(&disk, "root-a").is_err());
    }
}
