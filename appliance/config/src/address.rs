//! Which addresses may be statically configured on an interface.
//!
//! A static address must name one host inside its subnet: not the subnet
//! itself, not its broadcast, and not an address the kernel or the network
//! reserves (unspecified, loopback, multicast, link-local). A prefix longer
//! than the family allows never gets here: `ipnet` refuses it while parsing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why an address cannot be a static host address. The messages continue
/// a sentence about the address as written (the caller shows it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Prefix length 0.
    #[error(
        "has prefix length 0, which would make every address on-link; \
         write the subnet's real prefix, such as {addr}/{example}"
    )]
    PrefixZero {
        /// The address.
        addr: IpAddr,
        /// A typical prefix length for its family.
        example: u8,
    },
    /// An address the kernel or the network reserves.
    #[error(
        "{addr} is {why}, which cannot be configured statically; use a host address of the node's subnet"
    )]
    Reserved {
        /// The address.
        addr: IpAddr,
        /// What kind of reserved address, from [`reserved_reason`].
        why: &'static str,
    },
    /// The network address of an IPv4 subnet.
    #[error(
        "{addr} is the network address of {network}/{prefix}; use a host address such as {host}/{prefix}"
    )]
    V4Network {
        /// The address.
        addr: Ipv4Addr,
        /// The subnet.
        network: Ipv4Addr,
        /// Its prefix length.
        prefix: u8,
        /// The first host address.
        host: Ipv4Addr,
    },
    /// The broadcast address of an IPv4 subnet.
    #[error(
        "{addr} is the broadcast address of {network}/{prefix}; use a host address such as {host}/{prefix}"
    )]
    V4Broadcast {
        /// The address.
        addr: Ipv4Addr,
        /// The subnet.
        network: Ipv4Addr,
        /// Its prefix length.
        prefix: u8,
        /// The last host address.
        host: Ipv4Addr,
    },
    /// The subnet-router anycast address of an IPv6 subnet.
    #[error(
        "{addr} is the subnet-router anycast address of {network}/{prefix} (host part all zero); \
         use a host address such as {host}/{prefix}"
    )]
    V6Anycast {
        /// The address.
        addr: Ipv6Addr,
        /// The subnet.
        network: Ipv6Addr,
        /// Its prefix length.
        prefix: u8,
        /// The first host address.
        host: Ipv6Addr,
    },
}

/// Why `net` cannot be a static host address, or `Ok` when it can.
pub fn check_host_address(net: &IpNet) -> Result<(), AddressError> {
    if net.prefix_len() == 0 {
        let example = if net.addr().is_ipv4() { 24 } else { 64 };
        return Err(AddressError::PrefixZero {
            addr: net.addr(),
            example,
        });
    }
    if let Some(why) = reserved_reason(net.addr()) {
        return Err(AddressError::Reserved {
            addr: net.addr(),
            why,
        });
    }
    match net {
        IpNet::V4(v4) => check_v4(v4),
        IpNet::V6(v6) => check_v6(v6),
    }
}

/// What kind of reserved address `ip` is, if it is one that must never be
/// configured or used as a next hop.
pub fn reserved_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) if a.is_unspecified() => Some("the unspecified address"),
        IpAddr::V4(a) if a.is_loopback() => Some("a loopback address (127.0.0.0/8)"),
        IpAddr::V4(a) if a.is_multicast() => Some("a multicast address (224.0.0.0/4)"),
        IpAddr::V4(a) if a.is_link_local() => Some("a link-local address (169.254.0.0/16)"),
        IpAddr::V4(a) if a == Ipv4Addr::BROADCAST => Some("the limited broadcast address"),
        IpAddr::V6(a) if a.is_unspecified() => Some("the unspecified address"),
        IpAddr::V6(a) if a.is_loopback() => Some("the loopback address"),
        IpAddr::V6(a) if a.is_multicast() => Some("a multicast address (ff00::/8)"),
        IpAddr::V6(a) if is_v6_link_local(a) => Some("a link-local address (fe80::/10)"),
        _ => None,
    }
}

fn is_v6_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

fn check_v4(net: &Ipv4Net) -> Result<(), AddressError> {
    // /31 (RFC 3021 point-to-point) and /32 have no network or broadcast address.
    if net.prefix_len() >= 31 {
        return Ok(());
    }
    let (addr, network, broadcast) = (net.addr(), net.network(), net.broadcast());
    let prefix = net.prefix_len();
    if addr == network {
        let host = Ipv4Addr::from(u32::from(network) + 1);
        return Err(AddressError::V4Network {
            addr,
            network,
            prefix,
            host,
        });
    }
    if addr == broadcast {
        let host = Ipv4Addr::from(u32::from(broadcast) - 1);
        return Err(AddressError::V4Broadcast {
            addr,
            network,
            prefix,
            host,
        });
    }
    Ok(())
}

fn check_v6(net: &Ipv6Net) -> Result<(), AddressError> {
    // /127 (RFC 6164 point-to-point) and /128 have no subnet-router anycast.
    if net.prefix_len() >= 127 {
        return Ok(());
    }
    let (addr, network, prefix) = (net.addr(), net.network(), net.prefix_len());
    if addr == network {
        let host = Ipv6Addr::from(u128::from(network) + 1);
        return Err(AddressError::V6Anycast {
            addr,
            network,
            prefix,
            host,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test address")
    }

    fn refused(s: &str) -> String {
        check_host_address(&net(s)).expect_err(s).to_string()
    }

    #[test]
    fn accepts_host_addresses() {
        for ok in [
            "10.77.0.10/24",
            "192.0.2.1/30",
            "10.0.0.0/31",
            "10.0.0.1/31",
            "10.0.0.0/32",
            "10.0.0.255/32",
            "fd77::10/64",
            "fd77::/127",
            "fd77::/128",
            "2001:db8::1/48",
        ] {
            assert_eq!(check_host_address(&net(ok)), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_v4_network_and_broadcast() {
        assert!(refused("10.0.0.0/24").contains("network address of 10.0.0.0/24"));
        assert!(refused("10.0.0.0/24").contains("such as 10.0.0.1/24"));
        assert!(refused("10.0.0.255/24").contains("broadcast address of 10.0.0.0/24"));
        assert!(refused("10.0.0.255/24").contains("such as 10.0.0.254/24"));
        assert!(refused("10.0.0.3/30").contains("broadcast"));
    }

    #[test]
    fn refuses_v6_subnet_router_anycast() {
        let why = refused("fd77::/64");
        assert!(why.contains("subnet-router anycast"), "{why}");
        assert!(why.contains("such as fd77::1/64"), "{why}");
        assert!(refused("fd77::/126").contains("anycast"));
    }

    #[test]
    fn refuses_prefix_zero() {
        assert!(refused("10.0.0.1/0").contains("prefix length 0"));
        assert!(refused("fd77::1/0").contains("prefix length 0"));
    }

    #[test]
    fn refuses_reserved_addresses() {
        assert!(refused("0.0.0.0/8").contains("unspecified"));
        assert!(refused("::/64").contains("unspecified"));
        assert!(refused("127.0.0.1/8").contains("loopback"));
        assert!(refused("::1/128").contains("loopback"));
        assert!(refused("224.0.0.5/24").contains("multicast"));
        assert!(refused("ff02::1/64").contains("multicast"));
        assert!(refused("169.254.1.1/16").contains("link-local"));
        assert!(refused("fe80::1/64").contains("link-local"));
        assert!(refused("febf::1/64").contains("link-local"));
        assert!(refused("255.255.255.255/32").contains("limited broadcast"));
    }

    #[test]
    fn prefix_out_of_range_cannot_be_built() {
        assert!("10.0.0.1/33".parse::<IpNet>().is_err());
        assert!("fd77::1/129".parse::<IpNet>().is_err());
    }
}
