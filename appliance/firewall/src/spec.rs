//! The firewall's desired state ([`FirewallSpec`]) and the named-set view of
//! it: which element goes into which nft set. Pure data, no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A transport port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    /// Protocol.
    pub proto: Proto,
    /// Port number.
    pub port: u16,
}

/// Everything the ruleset is rendered from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallSpec {
    /// Management UI/API port (TCP), open to [`Self::management_sources`].
    pub management_port: u16,
    /// Networks that may reach the management port; empty means anyone.
    /// Loopback is always allowed (the loopback rule comes first).
    pub management_sources: Vec<IpNet>,
    /// Ports of the services placed on this node that everyone may reach.
    pub public: BTreeSet<PortSpec>,
    /// Ports that only cluster peers may reach.
    pub internal: BTreeSet<PortSpec>,
    /// Addresses of the other cluster nodes.
    pub peers: BTreeSet<IpAddr>,
}

impl FirewallSpec {
    /// One-line description for logs and error messages (never the full
    /// peer list, which may hold thousands of addresses).
    pub fn summary(&self) -> String {
        let from = if self.management_sources.is_empty() {
            "anyone".to_string()
        } else {
            format!("{} network(s)", self.management_sources.len())
        };
        format!(
            "management port {} from {from}, {} public port(s), {} internal port(s), {} peer(s)",
            self.management_port,
            self.public.len(),
            self.internal.len(),
            self.peers.len()
        )
    }

    /// The management sources per family, with host bits cleared and
    /// overlapping or adjacent networks merged: what the rules match, and
    /// what two specs compare by (so order and duplicates do not matter, and
    /// nft never sees overlapping intervals in one anonymous set).
    pub fn management_networks(&self) -> ManagementNetworks {
        let v4: Vec<Ipv4Net> = self
            .management_sources
            .iter()
            .filter_map(|n| match n {
                IpNet::V4(n) => Some(n.trunc()),
                IpNet::V6(_) => None,
            })
            .collect();
        let v6: Vec<Ipv6Net> = self
            .management_sources
            .iter()
            .filter_map(|n| match n {
                IpNet::V6(n) => Some(n.trunc()),
                IpNet::V4(_) => None,
            })
            .collect();
        ManagementNetworks {
            v4: Ipv4Net::aggregate(&v4),
            v6: Ipv6Net::aggregate(&v6),
        }
    }

    /// The contents of every named set this spec renders to. Every set is
    /// present (possibly empty), so two of these maps compare set by set.
    pub fn set_contents(&self) -> BTreeMap<SetName, BTreeSet<SetElem>> {
        let mut sets: BTreeMap<SetName, BTreeSet<SetElem>> =
            SetName::ALL.iter().map(|s| (*s, BTreeSet::new())).collect();
        let mut put = |set: SetName, elem: SetElem| {
            sets.entry(set).or_default().insert(elem);
        };
        for peer in &self.peers {
            let set = match peer {
                IpAddr::V4(_) => SetName::Peers4,
                IpAddr::V6(_) => SetName::Peers6,
            };
            put(set, SetElem::Addr(*peer));
        }
        for p in &self.public {
            let set = match p.proto {
                Proto::Tcp => SetName::PublicTcp,
                Proto::Udp => SetName::PublicUdp,
            };
            put(set, SetElem::Port(p.port));
        }
        for p in &self.internal {
            let set = match p.proto {
                Proto::Tcp => SetName::InternalTcp,
                Proto::Udp => SetName::InternalUdp,
            };
            put(set, SetElem::Port(p.port));
        }
        sets
    }
}

/// Who may reach the management port, per address family (see
/// [`FirewallSpec::management_networks`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagementNetworks {
    /// IPv4 networks, merged and sorted.
    pub v4: Vec<Ipv4Net>,
    /// IPv6 networks, merged and sorted.
    pub v6: Vec<Ipv6Net>,
}

impl ManagementNetworks {
    /// True when no source restriction applies (anyone may connect).
    pub fn is_any(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

impl fmt::Display for ManagementNetworks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_any() {
            return f.write_str("anyone");
        }
        let all: Vec<String> = self
            .v4
            .iter()
            .map(ToString::to_string)
            .chain(self.v6.iter().map(ToString::to_string))
            .collect();
        f.write_str(&all.join(", "))
    }
}

/// One of the named sets in our table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetName {
    /// IPv4 peer addresses.
    Peers4,
    /// IPv6 peer addresses.
    Peers6,
    /// TCP ports open to everyone.
    PublicTcp,
    /// UDP ports open to everyone.
    PublicUdp,
    /// TCP ports open to peers.
    InternalTcp,
    /// UDP ports open to peers.
    InternalUdp,
}

impl SetName {
    /// Every set, in rendering order.
    pub const ALL: [SetName; 6] = [
        SetName::Peers4,
        SetName::Peers6,
        SetName::PublicTcp,
        SetName::PublicUdp,
        SetName::InternalTcp,
        SetName::InternalUdp,
    ];

    /// The set's name in nft.
    pub fn as_str(self) -> &'static str {
        match self {
            SetName::Peers4 => "peers4",
            SetName::Peers6 => "peers6",
            SetName::PublicTcp => "public_tcp",
            SetName::PublicUdp => "public_udp",
            SetName::InternalTcp => "internal_tcp",
            SetName::InternalUdp => "internal_udp",
        }
    }

    /// The set's nft element type.
    pub fn nft_type(self) -> &'static str {
        match self {
            SetName::Peers4 => "ipv4_addr",
            SetName::Peers6 => "ipv6_addr",
            _ => "inet_service",
        }
    }

    /// Looks a set up by its nft name.
    pub fn from_nft(name: &str) -> Option<SetName> {
        SetName::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for SetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One element of a named set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetElem {
    /// An address (peer sets).
    Addr(IpAddr),
    /// A port (service sets).
    Port(u16),
}

impl fmt::Display for SetElem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetElem::Addr(a) => a.fmt(f),
            SetElem::Port(p) => p.fmt(f),
        }
    }
}
