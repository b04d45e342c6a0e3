//! The appliance image builder: from the declaration in `image/image.toml`
//! to a GPT disk (raw, qcow2, VHDX, OVA), `out/image.json` and
//! `out/SHA256SUMS`, reproducibly; and the baseline kernel + busybox
//! initramfs. Tests use [`append_kernel_params`] and [`read_image_info`].

pub mod build;
pub mod cpio;
pub mod debs;
pub mod disk;
pub mod elf;
pub mod error;
pub mod esp;
pub mod formats;
pub mod info;
pub mod manifest;
pub mod modules;
pub mod ovf;
pub mod tools;
pub mod tree;

pub use build::{baseline, build, BuildOptions};
pub use error::{Error, Result};
pub use esp::{append_kernel_params, read_esp_file};
pub use info::{read_image_info, ImageInfo};
pub use manifest::Manifest;
