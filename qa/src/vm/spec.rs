//! What a VM is started with: its firmware, NIC and disk models, an optional
//! direct kernel boot, and its memory.

use std::path::PathBuf;

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
    pub(super) fn device(self) -> &'static str {
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
    /// The NIC, on a tap of the [`VmNet`](crate::vmnet::VmNet) given to
    /// [`Vm::start`](super::Vm::start).
    pub nic: Option<Nic>,
    /// The disk image (used in place: give a VM its own
    /// [`Disk`](super::Disk)) and its bus.
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
