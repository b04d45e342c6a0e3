//! The node's desired state: the validated config and the cluster peers, with a
//! generation that grows by one on every accepted change. Everything the
//! reconcilers do is derived from it here, by pure functions.

use std::collections::BTreeSet;
use std::net::IpAddr;

use appliance_config::{Role, ValidConfig};
use appliance_firewall::{FirewallSpec, PortSpec, Proto};
use appliance_supervisor::manifest::Manifest;
use appliance_supervisor::manifest_types::{Exposure, Protocol};
use serde::{Deserialize, Serialize};

/// State database key of the [`DesiredRecord`].
pub const DESIRED_KEY: &str = "desired";

/// The desired state in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Grows by one on every accepted change.
    pub generation: u64,
    /// Node configuration.
    pub config: ValidConfig,
    /// Addresses of the other cluster nodes.
    pub peers: BTreeSet<IpAddr>,
}

/// The desired state as stored: the config as its TOML text, so a stored
/// state is re-validated by the same code as any other input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DesiredRecord {
    /// See [`Desired::generation`].
    pub generation: u64,
    /// The config, as TOML.
    pub config_toml: String,
    /// See [`Desired::peers`].
    pub peers: BTreeSet<IpAddr>,
}

impl Desired {
    /// The stored form.
    pub fn record(&self) -> DesiredRecord {
        DesiredRecord {
            generation: self.generation,
            config_toml: self.config.to_toml(),
            peers: self.peers.clone(),
        }
    }

    /// The services this node runs: those whose role is one of the node's.
    /// Dependencies on services placed elsewhere are dropped here: they are
    /// reached over the network, not started in order on this node.
    pub fn placement(&self, manifests: &[Manifest]) -> Vec<Manifest> {
        let roles = &self.config.roles;
        let placed: Vec<Manifest> = manifests
            .iter()
            .filter(|m| roles.contains(&role_of(m)))
            .cloned()
            .collect();
        let names: BTreeSet<String> = placed.iter().map(|m| m.name.clone()).collect();
        placed
            .into_iter()
            .map(|mut m| {
                m.depends_on.retain(|d| names.contains(d));
                m
            })
            .collect()
    }

    /// The firewall this node needs with `placed` services.
    pub fn firewall_spec(&self, placed: &[Manifest]) -> FirewallSpec {
        let mut spec = FirewallSpec {
            management_port: self.config.management.port,
            peers: self.peers.clone(),
            ..FirewallSpec::default()
        };
        for m in placed {
            for p in &m.ports {
                let port = PortSpec {
                    proto: match p.protocol {
                        Protocol::Tcp => Proto::Tcp,
                        Protocol::Udp => Proto::Udp,
                    },
                    port: p.port,
                };
                match p.exposure {
                    Exposure::Public => spec.public.insert(port),
                    Exposure::Internal => spec.internal.insert(port),
                };
            }
        }
        spec
    }

    /// The node's own addresses, without prefix.
    pub fn own_addresses(&self) -> BTreeSet<IpAddr> {
        self.config
            .interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(|a| a.addr()))
            .collect()
    }
}

fn role_of(m: &Manifest) -> Role {
    match m.role {
        appliance_supervisor::manifest_types::Role::Frontend => Role::Frontend,
        appliance_supervisor::manifest_types::Role::Backend => Role::Backend,
    }
}

/// Why a peer address was refused.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Not an IP address.
    #[error(
        "peer address {0:?} is not an IPv4 or IPv6 address; give one such as 10.0.0.2 or fd00::2"
    )]
    Syntax(String),
    /// An address that cannot be a node.
    #[error("peer address {addr} is {what} and cannot be a cluster node; give the node's unicast address")]
    NotUnicast {
        /// The address.
        addr: IpAddr,
        /// What kind of address it is.
        what: &'static str,
    },
    /// One of this node's own addresses.
    #[error("peer address {0} is this node's own address; give another node's address")]
    Own(IpAddr),
    /// Already a peer (on add) or not one (on remove).
    #[error("{0}")]
    Membership(String),
}

/// Parses and checks a peer address against this node's own addresses.
pub fn parse_peer(text: &str, own: &BTreeSet<IpAddr>) -> Result<IpAddr, PeerError> {
    let addr: IpAddr = text
        .trim()
        .parse()
        .map_err(|_| PeerError::Syntax(text.to_owned()))?;
    let what = if addr.is_unspecified() {
        Some("the unspecified address")
    } else if addr.is_loopback() {
        Some("a loopback address")
    } else if addr.is_multicast() {
        Some("a multicast address")
    } else if matches!(addr, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("the broadcast address")
    } else {
        None
    };
    if let Some(what) = what {
        return Err(PeerError::NotUnicast { addr, what });
    }
    if own.contains(&addr) {
        return Err(PeerError::Own(addr));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_must_be_other_unicast_nodes() {
        let own = BTreeSet::from(["10.0.0.1".parse().unwrap()]);
        assert_eq!(
            parse_peer(" 10.0.0.2 ", &own).unwrap().to_string(),
            "10.0.0.2"
        );
        assert!(parse_peer("fd00::2", &own).is_ok());
        for (bad, phrase) in [
            ("10.0.0.300", "not an IPv4 or IPv6"),
            ("0.0.0.0", "unspecified"),
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("10.0.0.1", "own address"),
        ] {
            let err = parse_peer(bad, &own).unwrap_err().to_string();
            assert!(err.contains(phrase), "{bad}: {err}");
        }
    }
}
