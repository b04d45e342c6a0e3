//! The network of the VM tests: a namespace holding a bridge with the
//! client's addresses (10.79.0.1/24, fd79::1/64) and one tap per VM, so the
//! namespace itself is the client of the VMs and QEMU, started inside it,
//! opens its tap there. Namespaces a killed run left behind are removed when
//! the next one starts.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::netns::{self, Netns};

/// The bridge's (the client's) IPv4 address and prefix.
pub const CLIENT_V4: &str = "10.79.0.1/24";
/// The bridge's (the client's) IPv6 address and prefix.
pub const CLIENT_V6: &str = "fd79::1/64";
/// The gateway the VMs are given: the client itself.
pub const GATEWAY_V4: &str = "10.79.0.1";

/// A tap on the bridge and the MAC address for the NIC behind it.
#[derive(Debug, Clone)]
pub struct Tap {
    pub name: String,
    pub mac: String,
}

/// A MAC address for the VM numbered `n`, apart from the taps' defaults.
pub fn mac(n: u8) -> String {
    format!("52:54:00:79:01:{n:02x}")
}

/// Prefix of the namespaces made here; the creating process's id follows.
const PREFIX: &str = "qavm-";

/// A namespace with a bridge and the VMs' taps; dropping it kills what runs
/// inside (QEMU) and deletes it with every tap.
#[derive(Debug)]
pub struct VmNet {
    ns: Netns,
    taps: AtomicU32,
}

impl VmNet {
    /// A new namespace named after this process and a sequence number.
    pub fn new() -> anyhow::Result<Self> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Netns::create(&name)?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["addr", "add", CLIENT_V4, "dev", "br0"])?;
        // nodad: the address is usable at once, not after duplicate detection.
        ns.ip(&["-6", "addr", "add", CLIENT_V6, "dev", "br0", "nodad"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        Ok(Self {
            ns,
            taps: AtomicU32::new(0),
        })
    }

    /// The namespace (QEMU runs in it; connections from it reach the VMs).
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// A new tap device on the bridge, for one VM's NIC.
    pub fn add_tap(&self) -> anyhow::Result<Tap> {
        let n = self.taps.fetch_add(1, Ordering::Relaxed);
        let name = format!("tap{n}");
        netns::run(
            self.ns
                .command("ip")
                .args(["tuntap", "add", &name, "mode", "tap"]),
        )?;
        self.ns.ip(&["link", "set", &name, "master", "br0"])?;
        self.ns.ip(&["link", "set", &name, "up"])?;
        // QEMU gives every NIC the same default MAC: VMs sharing the bridge
        // need their own.
        let mac = format!("52:54:00:79:{:02x}:{:02x}", (n >> 8) & 0xff, n & 0xff);
        Ok(Tap { name, mac })
    }

    /// Links the bridge of the [`crate::lan::Lan`] made with `lan_tag` to
    /// this one with a veth pair, so hosted nodes on that LAN share the VMs'
    /// subnet (give them addresses in 10.79.0.0/24). The LAN names its switch
    /// namespace `qa-<tag>-sw`; the pair goes when either namespace does.
    pub fn link_lan(&self, lan_tag: &str) -> anyhow::Result<()> {
        let switch = format!("qa-{lan_tag}-sw");
        anyhow::ensure!(
            std::path::Path::new("/var/run/netns")
                .join(&switch)
                .exists(),
            "no LAN switch namespace {switch} to link to the VM bridge"
        );
        self.ns.ip(&[
            "link", "add", "lan0", "type", "veth", "peer", "name", "vmnet0", "netns", &switch,
        ])?;
        self.ns.ip(&["link", "set", "lan0", "master", "br0"])?;
        self.ns.ip(&["link", "set", "lan0", "up"])?;
        let in_switch =
            |args: &[&str]| netns::run(Command::new("ip").arg("-n").arg(&switch).args(args));
        in_switch(&["link", "set", "vmnet0", "master", "br0"])?;
        in_switch(&["link", "set", "vmnet0", "up"])?;
        Ok(())
    }

    /// Opens a TCP connection from the namespace, bounded by `limit`.
    pub fn connect(
        &self,
        addr: SocketAddr,
        limit: Duration,
    ) -> anyhow::Result<std::io::Result<TcpStream>> {
        crate::lan::connect_from(&self.ns, addr, limit)
    }
}

/// Removes the namespaces of processes that no longer run (a killed test or
/// bench), with the QEMUs still inside them.
pub fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if let Some(pid) = owner_pid(name, PREFIX) {
            if !crate::vm::process_alive(pid) {
                netns::remove_stale(name);
            }
        }
    }
}

/// The process id in `<prefix><pid>-<rest>`, if `name` has that shape.
pub(crate) fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn owner_pid_reads_only_the_expected_shape() {
        assert_eq!(owner_pid("qavm-1234-0", "qavm-"), Some(1234));
        assert_eq!(owner_pid("qavm-1234-abc-x", "qavm-"), Some(1234));
        assert_eq!(owner_pid("qavm-x-0", "qavm-"), None);
        assert_eq!(owner_pid("qavm-1234", "qavm-"), None);
        assert_eq!(owner_pid("qa-b12-sw", "qavm-"), None);
    }
}
