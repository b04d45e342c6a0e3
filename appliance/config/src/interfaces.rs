//! Checks of the `[[interface]]` entries: names, MTU, and the static
//! addresses, alone and against each other (duplicates, overlapping subnets).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::address::check_host_address;
use crate::error::Problem;
use crate::schema::Interface;

/// Linux `IFNAMSIZ` is 16 including the terminating NUL.
pub const IFNAME_MAX_LEN: usize = 15;

/// Smallest MTU accepted: the IPv4 minimum datagram every host must accept (RFC 791).
pub const MTU_MIN: u32 = 576;

/// Smallest MTU on a link carrying IPv6 (RFC 8200 section 5).
pub const MTU_MIN_IPV6: u32 = 1280;

/// Largest MTU accepted: the usual jumbo-frame ceiling of switches and NICs.
pub const MTU_MAX: u32 = 9216;

/// A static address that passed [`check_host_address`], with where it was written.
#[derive(Debug, Clone)]
pub(crate) struct ConfiguredAddr {
    /// Field path, for example `interface[0].addresses[1]`.
    pub field: String,
    /// Index of its interface in the config.
    pub iface: usize,
    /// The address with its prefix.
    pub net: IpNet,
}

/// Checks every interface and returns the addresses that are individually
/// valid, for the gateway and route checks.
pub(crate) fn check(ifaces: &[Interface], out: &mut Vec<Problem>) -> Vec<ConfiguredAddr> {
    let mut addrs = Vec::new();
    for (i, iface) in ifaces.iter().enumerate() {
        check_name(i, ifaces, out);
        check_mtu(i, iface, out);
        for (j, net) in iface.addresses.iter().enumerate() {
            let field = format!("interface[{i}].addresses[{j}]");
            if let Err(reason) = check_host_address(net) {
                out.push(Problem::new(field, net, reason.to_string()));
                continue;
            }
            let addr = ConfiguredAddr {
                field,
                iface: i,
                net: *net,
            };
            if let Some(reason) = conflict(&addr, &addrs, ifaces) {
                out.push(Problem::new(&addr.field, net, reason));
            }
            addrs.push(addr);
        }
    }
    addrs
}

fn check_name(i: usize, ifaces: &[Interface], out: &mut Vec<Problem>) {
    let name = ifaces[i].name.as_str();
    let field = format!("interface[{i}].name");
    let bad_char = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    let reason = if name.is_empty() {
        Some("is empty; write the kernel interface name, such as eth0".to_string())
    } else if name.len() > IFNAME_MAX_LEN {
        Some(format!(
            "is {} bytes long; Linux interface names have at most {IFNAME_MAX_LEN} bytes, use a shorter name",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some("is reserved by the kernel; use a real interface name such as eth0".to_string())
    } else if let Some(c) = bad_char {
        Some(format!(
            "contains {c:?}; Linux interface names may not contain '/', ':', whitespace or control characters"
        ))
    } else {
        ifaces[..i].iter().position(|o| o.name == name).map(|k| {
            format!(
                "is already listed as interface[{k}]; list each interface once, with all its addresses"
            )
        })
    };
    if let Some(reason) = reason {
        out.push(Problem::new(field, name, reason));
    }
}

fn check_mtu(i: usize, iface: &Interface, out: &mut Vec<Problem>) {
    let Some(mtu) = iface.mtu else { return };
    let field = format!("interface[{i}].mtu");
    if !(MTU_MIN..=MTU_MAX).contains(&mtu) {
        out.push(Problem::new(
            field,
            mtu,
            format!(
                "is outside {MTU_MIN}..={MTU_MAX}; use 1500 for ordinary Ethernet, \
                 up to {MTU_MAX} for jumbo frames, or leave mtu out to keep the kernel's"
            ),
        ));
    } else if mtu < MTU_MIN_IPV6 && iface.addresses.iter().any(|a| a.addr().is_ipv6()) {
        out.push(Problem::new(
            field,
            mtu,
            format!(
                "is below {MTU_MIN_IPV6}, the IPv6 minimum, and this interface has IPv6 addresses; \
                 raise it to at least {MTU_MIN_IPV6} or remove the IPv6 addresses"
            ),
        ));
    }
}

/// Why `a` conflicts with an earlier address: the same address anywhere,
/// an overlapping subnet on another interface, or an overlapping but
/// different subnet on the same interface. Names the first conflict only.
fn conflict(
    a: &ConfiguredAddr,
    earlier: &[ConfiguredAddr],
    ifaces: &[Interface],
) -> Option<String> {
    if let Some(d) = earlier.iter().find(|e| e.net.addr() == a.net.addr()) {
        return Some(format!(
            "{} is already configured at {}; configure each address once",
            a.net.addr(),
            d.field
        ));
    }
    let subnet = a.net.trunc();
    let e = earlier.iter().find(|e| {
        let other = e.net.trunc();
        let overlap = other.contains(&subnet) || subnet.contains(&other);
        overlap && (e.iface != a.iface || other != subnet)
    })?;
    let other = e.net.trunc();
    Some(if e.iface != a.iface {
        format!(
            "subnet {subnet} overlaps {other} of {} on interface {:?}; the kernel could not tell \
             which interface reaches it, give each interface its own subnet",
            e.field, ifaces[e.iface].name
        )
    } else {
        format!(
            "subnet {subnet} overlaps but differs from {other} of {} on the same interface; \
             give addresses of one subnet the same prefix, such as {}/{}",
            e.field,
            a.net.addr(),
            other.prefix_len()
        )
    })
}

/// The subnets of one family, for messages like "outside every IPv4 subnet (…)".
pub(crate) fn subnets_of(addrs: &[ConfiguredAddr], ipv4: bool) -> Vec<IpNet> {
    let mut nets: Vec<IpNet> = addrs
        .iter()
        .filter(|a| matches!(a.net.addr(), IpAddr::V4(_)) == ipv4)
        .map(|a| a.net.trunc())
        .collect();
    nets.sort();
    nets.dedup();
    nets
}
