//! The appliance image builder: from the declaration in `image/image.toml`
//! to a GPT disk and its hypervisor formats.
