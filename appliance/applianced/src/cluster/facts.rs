//! What this node tells the cluster about itself (hostname, addresses,
//! version, MTU: the join facts and its member record) and where its
//! discovery beacons go, read from its desired state and, for what the
//! config leaves to the kernel, from sysfs.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use appliance_peering::beacon::subnet_targets;
use appliance_peering::LocalFacts;
use ipnet::IpNet;

use crate::desired::Desired;

/// The MTU assumed when neither the config nor the kernel says.
const DEFAULT_MTU: u32 = 1500;

/// This software's version, as members compare it.
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

fn sys_u32(sys_net: &Path, iface: &str, file: &str) -> Option<u32> {
    std::fs::read_to_string(sys_net.join(iface).join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The facts of a node whose desired state is `desired` (`None` before it
/// has a configuration: the kernel's hostname, no addresses). The MTU is
/// its first interface's: the config's, else the kernel's under `sys_net`
/// (`/sys/class/net`).
pub fn local_facts(desired: Option<&Desired>, sys_net: &Path) -> LocalFacts {
    let Some(d) = desired else {
        return LocalFacts {
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            addresses: Vec::new(),
            version: version(),
            mtu: DEFAULT_MTU,
        };
    };
    let mtu = d
        .config
        .interfaces
        .first()
        .and_then(|i| i.mtu.or_else(|| sys_u32(sys_net, &i.name, "mtu")))
        .unwrap_or(DEFAULT_MTU);
    LocalFacts {
        hostname: d.config.hostname.clone(),
        addresses: d.own_addresses().into_iter().collect(),
        version: version(),
        mtu,
    }
}

/// Where the beacons of a node with `desired` go: each configured IPv4
/// subnet's broadcast address, and `ff02::1` on each interface with IPv6
/// (its index read under `sys_net`), all on `port`.
pub fn beacon_targets(desired: &Desired, sys_net: &Path, port: u16) -> Vec<SocketAddr> {
    let mut out = BTreeSet::new();
    for iface in &desired.config.interfaces {
        let v6_index = iface
            .addresses
            .iter()
            .any(|a| a.addr().is_ipv6())
            .then(|| sys_u32(sys_net, &iface.name, "ifindex"))
            .flatten();
        let subnets: Vec<_> = iface
            .addresses
            .iter()
            .filter_map(|a| match a {
                // /31 and /32 have no broadcast address to speak of.
                IpNet::V4(n) if n.prefix_len() < 31 => Some(*n),
                _ => None,
            })
            .collect();
        for n in &subnets {
            out.extend(subnet_targets(Some(*n), None, port));
        }
        out.extend(subnet_targets(None, v6_index, port));
    }
    out.into_iter().collect()
}

/// True if `ip` is one of this node's configured addresses.
pub fn is_own(desired: Option<&Desired>, ip: &IpAddr) -> bool {
    desired.is_some_and(|d| d.own_addresses().contains(ip))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::desired::cluster::ClusterPart;

    fn desired(toml: &str) -> Desired {
        Desired {
            generation: 1,
            config: appliance_config::parse(toml).unwrap(),
            peers: BTreeSet::new(),
            cluster: ClusterPart::default(),
        }
    }

    const CONFIG: &str = "version = 1\nhostname = \"a\"\n\n[[interface]]\nname = \"eth0\"\n\
        addresses = [\"10.77.0.11/24\", \"fd77::11/64\"]\n";

    #[test]
    fn facts_come_from_the_config_and_sysfs() {
        let sys = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(sys.path().join("eth0")).unwrap();
        std::fs::write(sys.path().join("eth0/mtu"), "9000\n").unwrap();
        std::fs::write(sys.path().join("eth0/ifindex"), "4\n").unwrap();
        let d = desired(CONFIG);
        let f = local_facts(Some(&d), sys.path());
        assert_eq!(f.hostname, "a");
        assert_eq!(f.mtu, 9000);
        let addrs: Vec<String> = f.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(addrs, ["10.77.0.11", "fd77::11"]);
        let targets: Vec<String> = beacon_targets(&d, sys.path(), 7946)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(targets, ["10.77.0.255:7946", "[ff02::1%4]:7946"]);
        // No sysfs: the default MTU, and no IPv6 target without an index.
        let none = tempfile::tempdir().unwrap();
        assert_eq!(local_facts(Some(&d), none.path()).mtu, 1500);
        assert_eq!(beacon_targets(&d, none.path(), 7946).len(), 1);
        assert!(is_own(Some(&d), &"fd77::11".parse().unwrap()));
    }
}
