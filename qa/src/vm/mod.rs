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
//!
//! By concern:
//! - [`spec`]: what to start ([`VmSpec`], firmware, NIC, disk bus);
//! - [`machine`]: the running QEMU ([`Vm`]): spawn, serial log waits, power;
//! - [`qmp`]: the QMP client;
//! - `slot`: the cap of [`MAX_RUNNING`] VMs per process;
//! - [`dirs`]: private directories, and those of killed runs;
//! - [`artefacts`]: the built image in `out/` ([`Built`]), private disk
//!   copies ([`Disk`]) and the firmware files;
//! - [`gpt`] and [`ext4`]: qa's own readers of what is on a disk after a run;
//! - [`shutdown`]: what an orderly power off looks like on the console.

pub mod artefacts;
pub mod dirs;
pub mod ext4;
pub mod gpt;
pub mod machine;
pub mod qmp;
pub mod shutdown;
mod slot;
pub mod spec;

pub use artefacts::{Built, Disk, OVMF_CODE, OVMF_VARS};
pub use dirs::{process_alive, remove_stale_dirs};
pub use ext4::{Ext4Super, EXT4_INCOMPAT_RECOVER};
pub use gpt::{gpt_partition, Partition};
pub use machine::Vm;
pub use qmp::Qmp;
pub use slot::MAX_RUNNING;
pub use spec::{DiskBus, Firmware, KernelBoot, Nic, VmSpec};
