//! Kernel modules: which a stage loads, in what order, and the loading with
//! `finit_module`.
//!
//! A stage lists its modules in `/etc/appliance/modules` (always loaded) and
//! `/etc/appliance/modules.hardware` (drivers, loaded only when the modalias
//! of a present device matches one of their patterns in depmod's
//! `modules.alias`, as udev would). Dependencies come from `modules.dep`,
//! load-first prerequisites from `modules.softdep`. Buses appear as their
//! drivers load (virtio devices behind virtio_pci, SCSI disks behind their
//! controller), so [`loading::Loading`] rescans the devices after each round, for at
//! most [`loading::MAX_ROUNDS`] rounds, and stage 1 rescans while it waits for the
//! root partition. An image without `modules.alias` (older than this) gets
//! every listed module loaded, as before.
//!
//! There is no modprobe in the image: applianced is the only loader. The
//! pure parts ([`plan`], [`fnmatch`], [`devices::matching`], the parsers) are apart
//! from the syscall ([`load::load_file`]); the rounds take the loader as a closure.
//!
//! Layout: [`depmod`] (the parsers), [`fnmatch`], [`devices`] (the sysfs
//! scan and matching), [`plan`] (the load order), [`load`] (the syscall),
//! [`catalog`] (a stage's files, read), [`loading`] (the rounds), and
//! [`error`]. This file only re-exports what the stages use.

pub mod catalog;
pub mod depmod;
pub mod devices;
pub mod error;
pub mod fnmatch;
pub mod load;
pub mod loading;
pub mod plan;
#[cfg(test)]
mod tests;

pub use loading::{module_dir, StageModules};
