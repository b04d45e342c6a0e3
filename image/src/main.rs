//! `mkimage`: builds the appliance image into `out/`.

fn main() {}
