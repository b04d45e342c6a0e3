//! The node configuration as the administrator writes it (TOML, format version 1).
//!
//! These structs are the wire format only: they deserialize with
//! `deny_unknown_fields` and carry no guarantees. [`crate::validate`] turns a
//! [`NodeConfig`] into a [`crate::ValidConfig`], the only form the rest of the
//! system accepts.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The format version this crate reads and writes.
pub const CONFIG_VERSION: u32 = 1;

/// Default TCP port of the management web UI and remote API.
pub const DEFAULT_MANAGEMENT_PORT: u16 = 8443;

/// A node's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Format version; must be [`CONFIG_VERSION`]. Lets later formats coexist.
    pub version: u32,
    /// The node's hostname, an RFC 1123 name of at most 63 characters.
    pub hostname: String,
    /// Which kinds of service this node runs. At least one.
    #[serde(default = "default_roles")]
    pub roles: BTreeSet<Role>,
    /// Where the management UI and remote API listen.
    #[serde(default)]
    pub management: Management,
    /// Statically configured interfaces. Interfaces not listed are left alone.
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<Interface>,
    /// IPv4 default gateway; must lie inside a configured IPv4 subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway4: Option<Ipv4Addr>,
    /// IPv6 default gateway; must lie inside a configured IPv6 subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Extra static routes beyond the default gateways.
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<StaticRoute>,
    /// Resolver settings, written to the node's resolv.conf.
    #[serde(default)]
    pub dns: Dns,
    /// Time servers.
    #[serde(default)]
    pub ntp: Ntp,
}

fn default_roles() -> BTreeSet<Role> {
    BTreeSet::from([Role::Frontend, Role::Backend])
}

/// A role a node can take in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the user-facing services (portals, gateways) on public ports.
    Frontend,
    /// Runs the stateful services, reached by the front-ends on internal ports.
    Backend,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Frontend => "frontend",
            Role::Backend => "backend",
        })
    }
}

/// Management endpoint settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// TCP port opened in the firewall for the management UI and API.
    pub port: u16,
}

impl Default for Management {
    fn default() -> Self {
        Self {
            port: DEFAULT_MANAGEMENT_PORT,
        }
    }
}

/// One network interface with static addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Kernel interface name, for example `eth0`.
    pub name: String,
    /// MTU in bytes; left as the kernel has it when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Host addresses with their prefix length, for example `192.0.2.10/24`.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
}

/// A static route to a network through a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    /// Destination network; its host bits must be zero.
    pub to: IpNet,
    /// Next hop; must lie inside a configured subnet of the same family.
    pub via: IpAddr,
}

/// Resolver settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// Name servers, at most 3 (the resolver ignores more).
    #[serde(default)]
    pub servers: Vec<IpAddr>,
    /// Search domains, at most 6.
    #[serde(default)]
    pub search: Vec<String>,
}

/// Time synchronisation settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ntp {
    /// NTP servers, as host names or IP addresses.
    #[serde(default)]
    pub servers: Vec<String>,
}
