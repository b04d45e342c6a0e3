//! The QA harness: network namespaces ([`netns`]), a bridged LAN between them
//! ([`lan`]), hosted applianced nodes ([`node`]), the workspace's binaries
//! ([`bins`]), and QEMU VMs ([`vm`]) on a bridged namespace ([`vmnet`]).
//! Used by the multi-node and image tests in `tests/`, the bench and
//! `make cluster`. Everything it creates is removed when dropped, and every
//! wait is bounded.

pub mod bins;
pub mod lan;
pub mod netns;
pub mod node;
pub mod steady;
pub mod vm;
pub mod vmnet;
pub mod wait;

/// True when running as root; the kernel tests need it.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A short tag unique to this process, for namespace and link names.
pub fn unique_tag() -> String {
    format!("{:x}", std::process::id() % 0xfffff)
}
