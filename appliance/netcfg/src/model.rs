//! The plain data the planner works on: the desired [`NetworkSpec`], the
//! kernel's [`Observed`] state, the [`Owned`] record of what applianced added,
//! and the [`Action`]s that move one towards the other. No I/O here.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use appliance_config::NodeConfig;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// `RTPROT_STATIC`: the protocol every route applianced adds carries, so that
/// routes from other sources are recognisable and never deleted by us.
pub const RTPROT_STATIC: u8 = 4;
/// `RTPROT_KERNEL`: routes the kernel derives from addresses; never restored by hand.
pub const RTPROT_KERNEL: u8 = 2;

/// The network part of a node's configuration, as the planner wants it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Interfaces to configure; every other interface is left alone.
    pub interfaces: Vec<InterfaceSpec>,
    /// IPv4 default gateway.
    pub gateway4: Option<Ipv4Addr>,
    /// IPv6 default gateway.
    pub gateway6: Option<Ipv6Addr>,
    /// Extra static routes `(destination, next hop)`.
    pub routes: Vec<(IpNet, IpAddr)>,
}

/// One interface of a [`NetworkSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// Kernel link name, for example `eth0`.
    pub name: String,
    /// MTU to set; `None` leaves the kernel's value.
    pub mtu: Option<u32>,
    /// Host addresses with prefix length.
    pub addresses: Vec<IpNet>,
}

impl NetworkSpec {
    /// Takes the network settings out of a node configuration (pure copy).
    pub fn from_config(cfg: &NodeConfig) -> Self {
        Self {
            interfaces: cfg
                .interfaces
                .iter()
                .map(|i| InterfaceSpec {
                    name: i.name.clone(),
                    mtu: i.mtu,
                    addresses: i.addresses.clone(),
                })
                .collect(),
            gateway4: cfg.gateway4,
            gateway6: cfg.gateway6,
            routes: cfg.routes.iter().map(|r| (r.to, r.via)).collect(),
        }
    }
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedLink {
    /// Interface name.
    pub name: String,
    /// Interface index; what netlink requests address.
    pub index: u32,
    /// Current MTU.
    pub mtu: u32,
    /// Whether `IFF_UP` is set.
    pub up: bool,
    /// `net.ipv4.conf.<link>.promote_secondaries`; `None` when the kernel
    /// reports no IPv4 settings for the link (IPv4 off on it).
    pub promote_secondaries: Option<bool>,
}

/// An address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObservedAddress {
    /// Index of the link carrying it.
    pub index: u32,
    /// Local address with prefix length.
    pub addr: IpNet,
}

/// A unicast route in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObservedRoute {
    /// Destination network (`0.0.0.0/0` or `::/0` for default routes).
    pub dst: IpNet,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Output interface index, if any.
    pub oif: Option<u32>,
    /// `RTPROT_*` value: who added the route.
    pub protocol: u8,
    /// Metric, if the kernel reported one.
    pub priority: Option<u32>,
}

/// A snapshot of the kernel's network state (one namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// All links.
    pub links: Vec<ObservedLink>,
    /// All addresses.
    pub addresses: Vec<ObservedAddress>,
    /// Unicast routes of the main table.
    pub routes: Vec<ObservedRoute>,
}

/// An address applianced added, by link name (indices change across reboots).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OwnedAddress {
    /// Link name.
    pub link: String,
    /// Address with prefix length.
    pub addr: IpNet,
}

/// Identity of a route: destination, next hop, and output link when known.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RouteKey {
    /// Destination network.
    pub dst: IpNet,
    /// Next hop.
    pub via: Option<IpAddr>,
    /// Output link name; `None` lets the kernel pick it from the next hop.
    pub link: Option<String>,
}

/// What applianced itself added; the caller persists it between runs.
/// Only things in here are ever deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    /// Addresses applianced added.
    pub addresses: BTreeSet<OwnedAddress>,
    /// Routes applianced added (all with protocol [`RTPROT_STATIC`]).
    pub routes: BTreeSet<RouteKey>,
}

impl Owned {
    /// Everything in `self` or `other`: the record to persist before acting.
    pub fn union(&self, other: &Owned) -> Owned {
        Owned {
            addresses: self.addresses.union(&other.addresses).cloned().collect(),
            routes: self.routes.union(&other.routes).cloned().collect(),
        }
    }
}

/// A route as an action needs it: identity plus the attributes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAction {
    /// Destination, next hop and link name.
    pub key: RouteKey,
    /// Output interface index, resolved from `key.link`.
    pub oif: Option<u32>,
    /// `RTPROT_*` to add with, or to match on delete.
    pub protocol: u8,
    /// Metric; `None` takes the kernel default (or matches any on delete).
    pub priority: Option<u32>,
}

/// One change to the kernel's network state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set a link's MTU (`was` is kept so a rollback can restore it).
    SetMtu {
        /// Link name.
        link: String,
        /// Link index.
        index: u32,
        /// New MTU.
        mtu: u32,
        /// MTU before the change.
        was: u32,
    },
    /// Bring a link up.
    SetUp {
        /// Link name.
        link: String,
        /// Link index.
        index: u32,
    },
    /// Set `net.ipv4.conf.<link>.promote_secondaries = 1`. With it off (the
    /// kernel default), deleting a subnet's primary IPv4 address deletes every
    /// secondary address of that subnet too, foreign ones included. Never undone.
    PromoteSecondaries {
        /// Link name.
        link: String,
    },
    /// Add an address to a link.
    AddAddress {
        /// Link name.
        link: String,
        /// Link index.
        index: u32,
        /// Address with prefix length.
        addr: IpNet,
    },
    /// Remove an address from a link.
    DelAddress {
        /// Link name.
        link: String,
        /// Link index.
        index: u32,
        /// Address with prefix length.
        addr: IpNet,
    },
    /// Add a route to the main table.
    AddRoute(RouteAction),
    /// Delete a route from the main table.
    DelRoute(RouteAction),
}

impl fmt::Display for RouteAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key.dst)?;
        if let Some(via) = self.key.via {
            write!(f, " via {via}")?;
        }
        if let Some(link) = &self.key.link {
            write!(f, " dev {link}")?;
        }
        match self.protocol {
            RTPROT_KERNEL => write!(f, " proto kernel")?,
            3 => write!(f, " proto boot")?,
            RTPROT_STATIC => write!(f, " proto static")?,
            p => write!(f, " proto {p}")?,
        }
        if let Some(metric) = self.priority {
            write!(f, " metric {metric}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::SetMtu { link, mtu, was, .. } => {
                write!(f, "set mtu of {link} from {was} to {mtu}")
            }
            Action::SetUp { link, .. } => write!(f, "set {link} up"),
            Action::PromoteSecondaries { link } => {
                write!(f, "set net.ipv4.conf.{link}.promote_secondaries to 1")
            }
            Action::AddAddress { link, addr, .. } => write!(f, "add address {addr} to {link}"),
            Action::DelAddress { link, addr, .. } => {
                write!(f, "delete address {addr} from {link}")
            }
            Action::AddRoute(r) => write!(f, "add route {r}"),
            Action::DelRoute(r) => write!(f, "delete route {r}"),
        }
    }
}

/// The planner's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Actions in the order they must run.
    pub actions: Vec<Action>,
    /// Old owned ∪ everything this plan adds: persist this BEFORE running the
    /// actions, so a crash half-way never leaves an unrecorded address or route.
    pub intent: Owned,
    /// The owned record once every action succeeded: persist this after.
    pub owned: Owned,
}
