//! Tests of the module loading: the parsers, fnmatch, matching, the plan
//! and the rounds, against depmod files written here.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::path::Path;

use super::catalog::*;
use super::depmod::*;
use super::devices::*;
use super::error::*;
use super::fnmatch::*;
use super::load::*;
use super::loading::*;
use super::plan::*;

const DEP: &str = "\
kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko
kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/hv/hv-vmbus.ko:
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/virtio_scsi.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/vmw_pvscsi.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/ata/ata_piix.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/net/vmxnet3/vmxnet3.ko:
kernel/drivers/net/ethernet/intel/e1000/e1000.ko:
";

const SOFTDEP: &str = "\
# Soft dependencies extracted from modules themselves.
softdep libcrc32c pre: crc32c_generic
";

/// Lines of the image's modules.alias, as the builder writes them from
/// the kernel's modinfo (6.1.0-56-amd64).
const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias pci:v00008086d00002922sv*sd*bc*sc*i* ahci
alias pci:v00008086d00007010sv*sd*bc*sc*i* ata_piix
alias pci:v00008086d00007111sv*sd*bc*sc*i* ata_piix
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias fs-erofs erofs
alias acpi*:VMBUS:* hv_vmbus
alias acpi*:VMBus:* hv_vmbus
alias scsi:t-0x00* sd_mod
alias scsi:t-0x0e* sd_mod
alias virtio:d00000002v* virtio_blk
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000008v* virtio_scsi
alias pci:v000015ADd000007B0sv*sd*bc*sc*i* vmxnet3
alias pci:v000015ADd000007C0sv*sd*bc*sc*i* vmw_pvscsi
";

/// Modaliases read in QEMU 7.2 (i440fx, -nodefaults, a virtio disk and
/// NIC, a pvscsi controller) before any module was loaded.
const QEMU_PCI: &[(&str, &str)] = &[
    (
        "pci/devices/0000:00:00.0",
        "pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00",
    ),
    (
        "pci/devices/0000:00:01.1",
        "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80",
    ),
    (
        "pci/devices/0000:00:02.0",
        "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
    ),
    (
        "pci/devices/0000:00:04.0",
        "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
    ),
    ("acpi/devices/LNXPWRBN:00", "acpi:LNXPWRBN:"),
    ("acpi/devices/ACPI0010:00", "acpi:ACPI0010:PNP0A05:"),
    ("platform/devices/serial8250", "platform:serial8250"),
    ("serio/devices/serio0", "serio:ty06pr00id00ex00"),
];

fn names(steps: &[Step]) -> Vec<&str> {
    steps.iter().map(|s| s.name.as_str()).collect()
}

fn none() -> BTreeMap<String, Vec<String>> {
    BTreeMap::new()
}

#[test]
fn names_are_normalised() {
    assert_eq!(module_name("kernel/drivers/hv/hv-vmbus.ko"), "hv_vmbus");
    assert_eq!(module_name("kernel/fs/ext4/ext4.ko.xz"), "ext4");
    assert_eq!(module_name("crc32c-generic"), "crc32c_generic");
    assert_eq!(
        parse_list("# stage 1\nvirtio_pci\n\n hv-vmbus # Hyper-V\n"),
        vec!["virtio_pci", "hv_vmbus"]
    );
}

#[test]
fn dependencies_come_first_and_each_module_once() {
    let dep = parse_dep(DEP).unwrap();
    let wanted = parse_list("crc32c_generic\nvirtio_pci\nvirtio_blk\nerofs\nvirtio\n");
    let (steps, errors) = plan(&wanted, &dep, &none(), &BTreeSet::new());
    assert_eq!(errors, vec![]);
    assert_eq!(
        names(&steps),
        [
            "crc32c_generic",
            "virtio_pci_legacy_dev",
            "virtio_pci_modern_dev",
            "virtio_ring",
            "virtio",
            "virtio_pci",
            "virtio_blk",
            "libcrc32c",
            "erofs"
        ]
    );
    assert_eq!(steps[6].path, "kernel/drivers/block/virtio_blk.ko");
    assert_eq!(steps[6].deps, ["virtio", "virtio_ring"]);
}

#[test]
fn softdeps_load_first_and_loaded_modules_are_left_out() {
    let dep = parse_dep(DEP).unwrap();
    let softdep = parse_softdep(SOFTDEP).unwrap();
    let (steps, errors) = plan(&parse_list("erofs\n"), &dep, &softdep, &BTreeSet::new());
    assert_eq!(errors, vec![]);
    assert_eq!(names(&steps), ["crc32c_generic", "libcrc32c", "erofs"]);
    // Softdeps are not hard dependencies: their failure skips nothing.
    assert!(steps[1].deps.is_empty());
    // In stage 2, what stage 1 loaded is in /sys/module.
    let loaded: BTreeSet<String> = ["libcrc32c", "crc32c_generic", "virtio", "virtio_ring"]
        .map(String::from)
        .into();
    let (steps, _) = plan(&parse_list("erofs\nvirtio_blk\n"), &dep, &softdep, &loaded);
    assert_eq!(names(&steps), ["erofs", "virtio_blk"]);
    // A softdep the image lacks is ignored, as modprobe does.
    let softdep = parse_softdep("softdep erofs pre: nothere\n").unwrap();
    let (steps, errors) = plan(&parse_list("erofs\n"), &dep, &softdep, &BTreeSet::new());
    assert_eq!(
        (names(&steps), errors),
        (vec!["libcrc32c", "erofs"], vec![])
    );
}

#[test]
fn dependencies_listed_in_any_order_still_load_first() {
    // b needs c, but depmod (or a hand-made file) lists it before c's own need, d.
    let dep = parse_dep("a.ko: b.ko c.ko d.ko\nb.ko: c.ko d.ko\nc.ko: d.ko\nd.ko:\n").unwrap();
    let (steps, errors) = plan(&["a".to_owned()], &dep, &none(), &BTreeSet::new());
    assert_eq!(errors, vec![]);
    assert_eq!(names(&steps), ["d", "c", "b", "a"]);
}

#[test]
fn missing_modules_are_reported_and_the_rest_planned() {
    let dep = parse_dep("a.ko: gone.ko\nb.ko:\n").unwrap();
    let builtin = parse_builtin("kernel/drivers/tty/serial/8250/8250.ko\n");
    let wanted = parse_list("a\nnothere\nb\n8250\n");
    let (steps, errors) = plan(&wanted, &dep, &none(), &builtin);
    assert_eq!(names(&steps), ["b"]);
    assert_eq!(
        errors,
        vec![
            ModError::Missing {
                name: "gone".into(),
                needed_by: Some("a".into())
            },
            ModError::Missing {
                name: "nothere".into(),
                needed_by: None
            },
        ]
    );
    assert_eq!(
        errors[0].to_string(),
        "module gone is not in modules.dep (needed by a)"
    );
}

#[test]
fn cycles_are_errors() {
    let dep = parse_dep("a.ko: b.ko\nb.ko: c.ko\nc.ko: a.ko\nd.ko:\n").unwrap();
    let (steps, errors) = plan(&parse_list("a\nd\n"), &dep, &none(), &BTreeSet::new());
    assert_eq!(names(&steps), ["d"]);
    assert_eq!(
        errors[0].to_string(),
        "modules.dep has a dependency cycle: a -> b -> c -> a"
    );
}

#[test]
fn bad_lines_are_refused_with_their_file_and_number() {
    let err = parse_dep("a.ko:\nthis is not a dep line\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "modules.dep line 2: \"this is not a dep line\" is not \"module.ko: dependency.ko ...\""
    );
    let err = parse_alias("# x\nalias a b\nalias pci:v* virtio_pci extra\n").unwrap_err();
    assert!(
        matches!(
            &err,
            ModError::Syntax {
                file: "modules.alias",
                line: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = parse_softdep("softdep\n").unwrap_err();
    assert!(
        matches!(
            &err,
            ModError::Syntax {
                file: "modules.softdep",
                line: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn alias_and_softdep_files_parse() {
    let aliases = parse_alias(ALIAS).unwrap();
    assert_eq!(aliases.len(), 15);
    assert_eq!(
        aliases[11],
        Alias {
            pattern: "pci:v00001AF4d*sv*sd*bc*sc*i*".into(),
            module: "virtio_pci".into()
        }
    );
    // Names are normalised as everywhere else.
    assert_eq!(
        parse_alias("alias acpi*:VMBUS:* hv-vmbus").unwrap()[0].module,
        "hv_vmbus"
    );
    let s = parse_softdep(
        "softdep ext4 pre: crc32c_generic\nsoftdep x post: y\nsoftdep z pre: a b post: c\n",
    )
    .unwrap();
    assert_eq!(s["ext4"], ["crc32c_generic"]);
    assert_eq!(s["z"], ["a", "b"]);
    assert!(!s.contains_key("x"));
}

#[test]
fn real_aliases_match_real_modaliases() {
    let m = |p, t| fnmatch(p, t);
    // The brief's example and the kernel's own virtio_pci alias.
    let nic = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
    assert!(m("pci:v00001AF4d00001000sv*sd*bc*sc*i*", nic));
    assert!(m("pci:v00001AF4d*sv*sd*bc*sc*i*", nic));
    assert!(!m("pci:v00001AF4d00001001sv*sd*bc*sc*i*", nic));
    assert!(!m("pci:v000015ADd000007B0sv*sd*bc*sc*i*", nic));
    // AHCI by class: the PIIX IDE controller (class 01 01) is not AHCI (01 06 01).
    let ide = "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80";
    assert!(!m("pci:v*d*sv*sd*bc01sc06i01*", ide));
    assert!(m("pci:v00008086d00007010sv*sd*bc*sc*i*", ide));
    assert!(m(
        "pci:v*d*sv*sd*bc01sc06i01*",
        "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"
    ));
    assert!(m("virtio:d00000002v*", "virtio:d00000002v00001AF4"));
    assert!(!m("virtio:d00000002v*", "virtio:d00000001v00001AF4"));
    assert!(m("scsi:t-0x00*", "scsi:t-0x00"));
    assert!(!m("scsi:t-0x00*", "scsi:t-0x05"));
    assert!(m("acpi*:LNXPWRBN:*", "acpi:LNXPWRBN:"));
    assert!(m("acpi*:VMBUS:*", "acpi:VMBUS:"));
    assert!(!m("acpi*:VMBUS:*", "acpi:VMBus:"));
    assert!(m(
        "input:b*v*p*e*-e*k*r*a*m*l*s*f*w*",
        "input:b0011v0001p0001eAB41-e0,1,4,11,14,k71,72,73,ram4,l0,1,2,sfw"
    ));
    // Brackets, as in the kernel's USB and DMI aliases.
    let usb = "usb:v1554p5010d[0-2]*dc*dsc*dp*ic*isc*ip*in*";
    assert!(m(usb, "usb:v1554p5010d0100dc00dsc00dp00ic00isc00ip00in00"));
    assert!(!m(usb, "usb:v1554p5010d3000dc00dsc00dp00ic00isc00ip00in00"));
    let dmi = "dmi:*:[bs]vnD[Ee][Ll][Ll]*:*";
    assert!(m(dmi, "dmi:bvnDell Inc.:bvr1:svnDELL:pn"));
    assert!(!m(dmi, "dmi:bvnQEMU:bvr1:svnQEMU:pn"));
}

#[test]
fn fnmatch_agrees_with_the_c_library() {
    let patterns = [
        "",
        "*",
        "?",
        "a",
        "a*",
        "*a",
        "*a*",
        "a?c",
        "a*c",
        "**",
        "a**c",
        "*?*",
        "[abc]",
        "[!abc]",
        "[^abc]",
        "[a-c]x",
        "[]]",
        "[]a]*",
        "[!]]",
        "[a-]",
        "[",
        "a[",
        "a[b",
        "\\*",
        "a\\?c",
        "[\\]]",
        "*[0-9A-E]*",
        "x*y*z",
        "*b*b",
        "a*b*c*d",
    ];
    let texts = [
        "", "a", "b", "ab", "abc", "aXc", "a*c", "a?c", "]", "-", "[", "a[", "a[b", "*", "xyz",
        "xaybzc", "bb", "abab", "abcd", "aabbccdd", "x7", "ba", "a/c", "acbacbd",
    ];
    for p in patterns {
        for t in texts {
            let (cp, ct) = (CString::new(p).unwrap(), CString::new(t).unwrap());
            // SAFETY: two NUL-terminated strings that outlive the call.
            let c = unsafe { libc::fnmatch(cp.as_ptr(), ct.as_ptr(), 0) } == 0;
            assert_eq!(fnmatch(p, t), c, "pattern {p:?} text {t:?}");
        }
    }
}

/// A sysfs tree in a temporary directory: `bus/<path>/modalias` files
/// and `module/<name>` directories, as the kernel keeps them.
struct FakeSys(tempfile::TempDir);

impl FakeSys {
    fn new(devices: &[(&str, &str)]) -> FakeSys {
        let s = FakeSys(tempfile::tempdir().unwrap());
        std::fs::create_dir_all(s.0.path().join("module")).unwrap();
        for (path, modalias) in devices {
            s.device(path, modalias);
        }
        s
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn device(&self, path: &str, modalias: &str) {
        let d = self.path().join("bus").join(path);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("modalias"), format!("{modalias}\n")).unwrap();
    }
}

fn catalog(always: &str, hardware: &str, aliases: Option<&str>) -> Catalog {
    Catalog {
        always: parse_list(always),
        hardware: parse_list(hardware),
        dep: parse_dep(DEP).unwrap(),
        softdep: parse_softdep(SOFTDEP).unwrap(),
        aliases: aliases.map(|a| parse_alias(a).unwrap()),
        ..Catalog::default()
    }
}

const STAGE1_HW: &str =
    "virtio_pci\nvirtio_blk\nvirtio_scsi\nvmw_pvscsi\nahci\nata_piix\nsd_mod\nhv_vmbus\n";

/// What the kernel does on loading: the module shows in /sys/module, and
/// a bus driver's devices appear (`appear`: module, device path under
/// bus/, modalias) — virtio_pci's virtio devices, a SCSI controller's disks.
fn kernel<'a>(
    sys: &Path,
    appear: &'a [(&str, &str, &str)],
    log: &'a mut Vec<String>,
) -> impl FnMut(&Step) -> Outcome + 'a {
    let sys = sys.to_owned();
    move |step: &Step| {
        std::fs::create_dir_all(sys.join("module").join(&step.name)).unwrap();
        for (_, path, alias) in appear.iter().filter(|(m, _, _)| *m == step.name) {
            let d = sys.join("bus").join(path);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("modalias"), alias).unwrap();
        }
        log.push(step.name.clone());
        Outcome::Loaded
    }
}

/// The virtio devices of [`QEMU_PCI`] (a NIC and a disk).
const VIRTIO: &[(&str, &str, &str)] = &[
    (
        "virtio_pci",
        "virtio/devices/virtio0",
        "virtio:d00000001v00001AF4",
    ),
    (
        "virtio_pci",
        "virtio/devices/virtio1",
        "virtio:d00000002v00001AF4",
    ),
];

#[test]
fn rounds_follow_buses_as_their_drivers_appear() {
    let sys = FakeSys::new(QEMU_PCI);
    let mut log = Vec::new();
    let mut l = Loading::new(catalog("erofs\n", STAGE1_HW, Some(ALIAS)), sys.path());
    l.start_with(&mut kernel(sys.path(), VIRTIO, &mut log));
    assert_eq!(
        log,
        [
            // Round 1: PCI devices (drivers first), then the always-loaded.
            "virtio_pci_legacy_dev",
            "virtio_pci_modern_dev",
            "virtio_ring",
            "virtio",
            "virtio_pci",
            "scsi_common",
            "scsi_mod",
            "libata",
            "ata_piix",
            "crc32c_generic",
            "libcrc32c",
            "erofs",
            // Round 2: the virtio devices virtio_pci brought.
            "virtio_blk",
        ]
    );
    assert_eq!(l.report.rounds, 2);
    assert_eq!(
        l.without_hardware(),
        ["virtio_scsi", "vmw_pvscsi", "ahci", "sd_mod", "hv_vmbus"]
    );
    let line = l.summary();
    assert!(
        line.starts_with("13 module(s) loaded in ")
            && line.contains(
                " ms matching devices), 2 round(s): virtio_pci ata_piix erofs virtio_blk (+9 dependencies); slowest: "
            )
            && line.ends_with("; no hardware for: virtio_scsi vmw_pvscsi ahci sd_mod hv_vmbus"),
        "{line}"
    );
    assert_eq!(l.report.took.len(), 13);
    // Nothing new: a rescan loads nothing.
    let mut log = Vec::new();
    assert!(l
        .rescan_with(&mut kernel(sys.path(), VIRTIO, &mut log))
        .is_empty());
    assert!(log.is_empty());
}

#[test]
fn a_disk_behind_virtio_scsi_gets_its_driver_in_a_third_round() {
    // PCI → virtio_pci → a virtio SCSI controller → virtio_scsi → a disk → sd_mod.
    let sys = FakeSys::new(QEMU_PCI);
    let appear = [
        (
            "virtio_pci",
            "virtio/devices/virtio2",
            "virtio:d00000008v00001AF4",
        ),
        ("virtio_scsi", "scsi/devices/0:0:0:0", "scsi:t-0x00"),
    ];
    let mut log = Vec::new();
    let mut l = Loading::new(catalog("erofs\n", STAGE1_HW, Some(ALIAS)), sys.path());
    l.start_with(&mut kernel(sys.path(), &appear, &mut log));
    assert_eq!(l.report.rounds, 3);
    assert_eq!(log.last().map(String::as_str), Some("sd_mod"));
    let pos = |n: &str| log.iter().position(|l| l == n).unwrap();
    assert!(pos("erofs") < pos("virtio_scsi") && pos("virtio_scsi") < pos("sd_mod"));
    // Each module once, though virtio and SCSI drivers share dependencies.
    let unique: BTreeSet<&String> = log.iter().collect();
    assert_eq!(unique.len(), log.len());
    assert_eq!(
        l.without_hardware(),
        ["virtio_blk", "vmw_pvscsi", "ahci", "hv_vmbus"]
    );
}

#[test]
fn a_controller_found_with_the_pci_devices_gets_its_disks_driver_next_round() {
    let mut devices = QEMU_PCI.to_vec();
    devices.push((
        "pci/devices/0000:00:03.0",
        "pci:v000015ADd000007C0sv000015ADsd000007C0bc01sc00i00",
    ));
    let sys = FakeSys::new(&devices);
    let mut appear = VIRTIO.to_vec();
    appear.push(("vmw_pvscsi", "scsi/devices/2:0:0:0", "scsi:t-0x00"));
    let mut log = Vec::new();
    let mut l = Loading::new(catalog("erofs\n", STAGE1_HW, Some(ALIAS)), sys.path());
    l.start_with(&mut kernel(sys.path(), &appear, &mut log));
    assert_eq!(l.report.rounds, 2);
    assert_eq!(log[log.len() - 2..], ["virtio_blk", "sd_mod"]);
}

#[test]
fn a_device_found_later_is_picked_up_by_a_rescan() {
    let sys = FakeSys::new(QEMU_PCI);
    let mut log = Vec::new();
    let mut l = Loading::new(catalog("erofs\n", STAGE1_HW, Some(ALIAS)), sys.path());
    l.start_with(&mut kernel(sys.path(), VIRTIO, &mut log));
    // A VMBus or late SCSI disk shows up while stage 1 waits for the root.
    sys.device("scsi/devices/2:0:0:0", "scsi:t-0x00");
    let mut log = Vec::new();
    let done = l.rescan_with(&mut kernel(sys.path(), VIRTIO, &mut log));
    assert_eq!(done, [("sd_mod".to_owned(), Outcome::Loaded)]);
    assert!(!l.without_hardware().contains(&"sd_mod"));
}

#[test]
fn rounds_are_bounded() {
    // Each driver's device appears only when the previous one loads: a
    // chain longer than MAX_ROUNDS stops after MAX_ROUNDS rounds.
    let dep = parse_dep("d0.ko:\nd1.ko:\nd2.ko:\nd3.ko:\nd4.ko:\nd5.ko:\n").unwrap();
    let alias: String = (0..6).map(|i| format!("alias chain:{i} d{i}\n")).collect();
    let cat = Catalog {
        hardware: parse_list("d0\nd1\nd2\nd3\nd4\nd5\n"),
        dep,
        aliases: Some(parse_alias(&alias).unwrap()),
        ..Catalog::default()
    };
    let sys = FakeSys::new(&[("chain/devices/0", "chain:0")]);
    let root = sys.path().to_owned();
    let mut loaded = Vec::new();
    let mut l = Loading::new(cat, sys.path());
    l.start_with(&mut |s: &Step| {
        let next: usize = s.name[1..].parse::<usize>().unwrap() + 1;
        let d = root.join(format!("bus/chain/devices/{next}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("modalias"), format!("chain:{next}")).unwrap();
        loaded.push(s.name.clone());
        Outcome::Loaded
    });
    assert_eq!(loaded, ["d0", "d1", "d2", "d3"]);
    assert_eq!(l.report.rounds, MAX_ROUNDS);
    assert_eq!(l.without_hardware(), ["d4", "d5"]);
}

#[test]
fn without_modules_alias_every_listed_module_is_loaded() {
    let sys = FakeSys::new(QEMU_PCI);
    let mut log = Vec::new();
    let mut l = Loading::new(catalog("erofs\n", STAGE1_HW, None), sys.path());
    l.start_with(&mut kernel(sys.path(), VIRTIO, &mut log));
    for n in parse_list(STAGE1_HW).iter().chain(&["erofs".to_owned()]) {
        assert!(log.contains(n), "{n} not loaded: {log:?}");
    }
    assert_eq!(l.report.rounds, 1);
}

#[test]
fn catalog_reads_the_image_files_and_old_images_lack_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("modules");
    std::fs::write(&list, "erofs\n").unwrap();
    std::fs::write(dir.path().join("modules.dep"), DEP).unwrap();
    // An old image: one list, no modules.alias, no modules.softdep.
    let cat = Catalog::read(&list, dir.path()).unwrap();
    assert_eq!((cat.always.len(), cat.hardware.len()), (1, 0));
    assert!(cat.aliases.is_none() && cat.softdep.is_empty() && cat.notes.is_empty());
    // This image.
    std::fs::write(dir.path().join("modules.hardware"), STAGE1_HW).unwrap();
    std::fs::write(dir.path().join("modules.alias"), ALIAS).unwrap();
    std::fs::write(dir.path().join("modules.softdep"), SOFTDEP).unwrap();
    let cat = Catalog::read(&list, dir.path()).unwrap();
    assert_eq!(cat.hardware.len(), 8);
    assert_eq!(cat.aliases.as_ref().map(Vec::len), Some(15));
    assert_eq!(cat.softdep["libcrc32c"], ["crc32c_generic"]);
    // A damaged modules.alias: every driver is loaded, and the console is told.
    std::fs::write(dir.path().join("modules.alias"), "garbage\n").unwrap();
    let cat = Catalog::read(&list, dir.path()).unwrap();
    assert!(cat.aliases.is_none());
    assert!(cat.notes[0].contains("modules.alias"), "{:?}", cat.notes);
    // No list at all is an error naming it.
    let err = Catalog::read(&dir.path().join("nope"), dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn modaliases_are_read_from_every_bus() {
    let sys = FakeSys::new(QEMU_PCI);
    // A device without a modalias (a SCSI host) is passed over.
    std::fs::create_dir_all(sys.path().join("bus/scsi/devices/host0")).unwrap();
    let found = Devices::default().scan(sys.path());
    assert_eq!(found.len(), QEMU_PCI.len());
    assert!(found.contains("acpi:LNXPWRBN:"));
    assert!(Devices::default()
        .scan(&sys.path().join("nothere"))
        .is_empty());
    // A rescan reads only new devices' files.
    let mut devices = Devices::default();
    assert_eq!(devices.scan(sys.path()), found);
    sys.device("acpi/devices/LNXPWRBN:00", "acpi:CHANGED:");
    sys.device("virtio/devices/virtio0", "virtio:d00000001v00001AF4");
    let again = devices.scan(sys.path());
    assert!(again.contains("acpi:LNXPWRBN:") && !again.contains("acpi:CHANGED:"));
    assert!(again.contains("virtio:d00000001v00001AF4"));
    let hw = parse_list("virtio_pci\nvmxnet3\nata_piix\nahci\n")
        .into_iter()
        .collect();
    let hits = matching(&parse_alias(ALIAS).unwrap(), &found, &hw);
    assert_eq!(
        hits.into_iter().collect::<Vec<_>>(),
        ["ata_piix", "virtio_pci"]
    );
}

#[test]
fn matching_by_literal_head_agrees_with_trying_every_pattern() {
    let mut text = ALIAS.to_owned();
    // Heads that are empty, end at `?`, `[` or `\`, or are a whole modalias.
    for (i, p) in [
        "*:LNXPWRBN:*",
        "?cpi:LNXPWRBN:",
        "[ap]ci:v00008086d00007010*",
        "platform\\:serial8250",
        "serio:ty06pr00id00ex00",
        "acpi:PNP0A0",
    ]
    .iter()
    .enumerate()
    {
        text.push_str(&format!("alias {p} extra{i}\n"));
    }
    let aliases = parse_alias(&text).unwrap();
    let present: BTreeSet<String> = QEMU_PCI.iter().map(|(_, m)| m.to_string()).collect();
    let all: BTreeSet<String> = aliases.iter().map(|a| a.module.clone()).collect();
    let brute: BTreeSet<String> = aliases
        .iter()
        .filter(|a| present.iter().any(|m| fnmatch(&a.pattern, m)))
        .map(|a| a.module.clone())
        .collect();
    assert_eq!(matching(&aliases, &present, &all), brute);
    assert_eq!(
        brute.iter().filter(|m| m.starts_with("extra")).count(),
        5,
        "{brute:?}"
    );
}

#[test]
fn a_failed_dependency_skips_its_dependents() {
    let dir = tempfile::tempdir().unwrap();
    // Not a module: finit_module refuses it (or, unprivileged, is not allowed).
    std::fs::write(dir.path().join("base.ko"), b"not an ELF file").unwrap();
    let dep = parse_dep("base.ko:\ntop.ko: base.ko\n").unwrap();
    let (steps, _) = plan(&["top".to_owned()], &dep, &none(), &BTreeSet::new());
    let mut not_loaded = BTreeMap::new();
    let outcomes = run_steps(&steps, &mut not_loaded, &mut |s: &Step| {
        load_file(&dir.path().join(&s.path))
    });
    assert!(
        matches!(&outcomes[0], (n, Outcome::Failed(_)) if n == "base"),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes[1],
        ("top".to_owned(), Outcome::Skipped("base".into()))
    );
    // A later round does not try them again.
    let again = run_steps(&steps, &mut not_loaded, &mut |_: &Step| Outcome::Loaded);
    assert!(again.is_empty());
    let report = Report {
        outcomes,
        ..Report::default()
    };
    assert!(report.loaded().is_empty());
    assert_eq!(report.problems().len(), 2);
}
