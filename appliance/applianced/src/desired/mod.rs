//! The node's desired state: the validated config, the peers added by hand
//! and the cluster's part (membership-derived placement and peer sets), with
//! a generation that grows by one on every accepted change. Everything the
//! reconcilers do is derived from it here, by pure functions. The cluster's
//! part, derived from the membership, is in [`cluster`]; the management
//! plane's settings come with it and override the config where they say so
//! ([`Desired::dns`], [`Desired::firewall_spec`]'s management sources).

pub mod cluster;

use std::collections::BTreeSet;
use std::net::IpAddr;

use appliance_config::ValidConfig;
use appliance_firewall::{FirewallSpec, PortSpec, Proto};
use appliance_supervisor::manifest::Manifest;
use appliance_supervisor::manifest_types::{Exposure, HealthCheck, Protocol};
use serde::{Deserialize, Serialize};

use cluster::{role_of, ClusterPart, BACKENDS_ENV};

/// State database key of the [`DesiredRecord`].
pub const DESIRED_KEY: &str = "desired";

/// The desired state in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Grows by one on every accepted change.
    pub generation: u64,
    /// Node configuration.
    pub config: ValidConfig,
    /// Peer addresses added by hand (`appliancectl peers add`), besides the
    /// cluster's members.
    pub peers: BTreeSet<IpAddr>,
    /// What the cluster membership adds; not stored in the record (the
    /// membership is stored by the cluster module and this is derived from it).
    pub cluster: ClusterPart,
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

    /// The services this node runs: the system services (on every node),
    /// then as a cluster member those the cluster's placement puts here,
    /// otherwise those whose role is one of the node's.
    /// Dependencies on services placed elsewhere are dropped here: the
    /// cluster satisfies them over the network (services find the back-end
    /// in `APPLIANCE_BACKENDS`), they are not started in order on this node.
    /// A management port takes the node's configured number
    /// ([`management_port_here`]).
    pub fn placement(&self, manifests: &[Manifest]) -> Vec<Manifest> {
        let roles = &self.config.roles;
        let placed: Vec<Manifest> = manifests
            .iter()
            .filter(|m| match (role_of(m), &self.cluster.member) {
                (None, _) => true,
                (Some(_), Some(member)) => member.services.contains(&m.name),
                (Some(role), None) => roles.contains(&role),
            })
            .cloned()
            .map(|m| management_port_here(m, self.config.management.port))
            .collect();
        let names: BTreeSet<String> = placed.iter().map(|m| m.name.clone()).collect();
        let backends = self.cluster.backends_env();
        placed
            .into_iter()
            .map(|mut m| {
                m.depends_on.retain(|d| names.contains(d));
                m.environment
                    .insert(BACKENDS_ENV.to_owned(), backends.clone());
                m
            })
            .collect()
    }

    /// The roles the node runs with: the cluster's once a member, else its config's.
    pub fn roles(&self) -> BTreeSet<appliance_config::Role> {
        match &self.cluster.member {
            Some(m) => m.roles.clone(),
            None => self.config.roles.clone(),
        }
    }

    /// The firewall this node needs with `placed` services.
    pub fn firewall_spec(&self, placed: &[Manifest]) -> FirewallSpec {
        let mut spec = FirewallSpec {
            management_port: self.config.management.port,
            management_sources: self.cluster.settings.management_networks.clone(),
            peers: self.peers.clone(),
            ..FirewallSpec::default()
        };
        if let Some(m) = &self.cluster.member {
            spec.peers.extend(m.peers.iter().copied());
        }
        if let Some(ports) = self.cluster.ports {
            // Beacons come from appliances that are not members yet.
            spec.public.insert(PortSpec {
                proto: Proto::Udp,
                port: ports.beacon,
            });
            // The join service is for anyone on the LAN; once a member the
            // same port serves cluster mutual TLS, to members only.
            let peer = PortSpec {
                proto: Proto::Tcp,
                port: ports.peer,
            };
            if self.cluster.member.is_some() {
                spec.internal.insert(peer);
            } else {
                spec.public.insert(peer);
            }
        }
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
                    // The management rule (with its sources) covers it.
                    Exposure::Management => false,
                };
            }
        }
        spec
    }

    /// The resolvers the node uses: its config's, with the servers replaced
    /// by the management settings' DNS servers when those are set.
    pub fn dns(&self) -> appliance_config::Dns {
        let mut dns = self.config.dns.clone();
        if !self.cluster.settings.dns_servers.is_empty() {
            dns.servers = self.cluster.settings.dns_servers.clone();
        }
        dns
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

/// The environment variable that tells a service with a management port
/// (`exposure = "management"`) the node's management port to listen on.
pub const MANAGEMENT_PORT_ENV: &str = "APPLIANCE_MANAGEMENT_PORT";

/// `m` with its management port (if any) set to the node's `port`: the
/// port entry, a health check on the declared port, and
/// [`MANAGEMENT_PORT_ENV`]. The manifest declares a default (8443); the
/// node configuration's `[management] port` decides.
pub fn management_port_here(mut m: Manifest, port: u16) -> Manifest {
    let Some(p) = m
        .ports
        .iter_mut()
        .find(|p| p.exposure == Exposure::Management)
    else {
        return m;
    };
    let declared = std::mem::replace(&mut p.port, port);
    if let Some(h) = &mut m.health {
        match &mut h.check {
            HealthCheck::Tcp { port: checked } | HealthCheck::Http { port: checked, .. }
                if *checked == declared =>
            {
                *checked = port;
            }
            _ => {}
        }
    }
    m.environment
        .insert(MANAGEMENT_PORT_ENV.to_owned(), port.to_string());
    m
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
    use std::path::Path;

    use super::cluster::{MemberPart, PeerPorts};
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

    fn manifests() -> Vec<Manifest> {
        ["portal", "audit"]
            .iter()
            .map(|n| {
                let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../services")
                    .join(format!("{n}.toml"));
                Manifest::load(&path).unwrap()
            })
            .collect()
    }

    fn desired(cluster: ClusterPart) -> Desired {
        Desired {
            generation: 1,
            config: appliance_config::parse(
                "version = 1\nhostname = \"b\"\n\n[[interface]]\nname = \"eth0\"\n\
                 addresses = [\"10.0.0.2/24\"]\n",
            )
            .unwrap(),
            peers: BTreeSet::from(["10.0.0.99".parse().unwrap()]),
            cluster,
        }
    }

    const PORTS: PeerPorts = PeerPorts {
        peer: 7443,
        beacon: 7946,
    };

    fn tcp(port: u16) -> PortSpec {
        PortSpec {
            proto: Proto::Tcp,
            port,
        }
    }

    #[test]
    fn unjoined_the_peer_port_is_public_and_the_node_runs_its_own_roles() {
        let d = desired(ClusterPart {
            ports: Some(PORTS),
            member: None,
            ..ClusterPart::default()
        });
        let placed = d.placement(&manifests());
        let names: Vec<&str> = placed.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["portal", "audit"]);
        assert!(placed
            .iter()
            .all(|m| m.environment.get(BACKENDS_ENV).map(String::as_str) == Some("127.0.0.1")));
        let fw = d.firewall_spec(&placed);
        assert!(fw.public.contains(&tcp(7443)));
        assert!(fw.public.contains(&PortSpec {
            proto: Proto::Udp,
            port: 7946
        }));
        assert!(!fw.internal.contains(&tcp(7443)));
        assert_eq!(fw.peers.len(), 1);
    }

    #[test]
    fn a_front_end_member_follows_the_cluster() {
        let d = desired(ClusterPart {
            ports: Some(PORTS),
            member: Some(MemberPart {
                roles: BTreeSet::from([appliance_config::Role::Frontend]),
                services: BTreeSet::from(["portal".to_owned()]),
                peers: BTreeSet::from(["10.0.0.1".parse().unwrap()]),
                local_backend: false,
                remote_backends: vec!["10.0.0.1".parse().unwrap()],
            }),
            ..ClusterPart::default()
        });
        let placed = d.placement(&manifests());
        assert_eq!(placed.len(), 1);
        // The audit dependency is the cluster's to satisfy, on another node.
        assert!(placed[0].depends_on.is_empty());
        assert_eq!(placed[0].environment[BACKENDS_ENV], "10.0.0.1");
        let fw = d.firewall_spec(&placed);
        assert!(fw.internal.contains(&tcp(7443)));
        assert!(!fw.public.contains(&tcp(7443)));
        assert!(!fw.internal.contains(&tcp(7100)));
        // Members and the peer added by hand.
        let peers: Vec<String> = fw.peers.iter().map(ToString::to_string).collect();
        assert_eq!(peers, ["10.0.0.1", "10.0.0.99"]);
        assert_eq!(
            d.roles(),
            BTreeSet::from([appliance_config::Role::Frontend])
        );
    }

    /// A system service with a management port, as `services/management.toml` declares it.
    fn system_service() -> Manifest {
        Manifest::parse(
            "version = 1\nname = \"mgmt\"\nrole = \"system\"\ncommand = \"mgmt\"\n\
             [[port]]\nname = \"https\"\nport = 8443\nprotocol = \"tcp\"\n\
             exposure = \"management\"\n[health.tcp]\nport = 8443\n",
            Path::new("mgmt.toml"),
        )
        .unwrap()
    }

    #[test]
    fn system_services_run_everywhere_on_the_configured_management_port() {
        let mut all = manifests();
        all.push(system_service());
        let member = |services: &[&str]| {
            Some(MemberPart {
                roles: BTreeSet::from([appliance_config::Role::Backend]),
                services: services.iter().map(|s| (*s).to_owned()).collect(),
                peers: BTreeSet::new(),
                local_backend: true,
                remote_backends: vec![],
            })
        };
        let unjoined = Desired {
            config: appliance_config::parse(
                "version = 1\nhostname = \"b\"\nroles = [\"backend\"]\n\n\
                 [management]\nport = 9443\n\n[[interface]]\nname = \"eth0\"\n\
                 addresses = [\"10.0.0.2/24\"]\n",
            )
            .unwrap(),
            ..desired(ClusterPart::default())
        };
        for d in [
            unjoined.clone(),
            Desired {
                cluster: ClusterPart {
                    ports: Some(PORTS),
                    member: member(&["audit"]),
                    ..ClusterPart::default()
                },
                ..unjoined.clone()
            },
            // Even a member the placement gives nothing.
            Desired {
                cluster: ClusterPart {
                    ports: Some(PORTS),
                    member: member(&[]),
                    ..ClusterPart::default()
                },
                ..unjoined.clone()
            },
        ] {
            let placed = d.placement(&all);
            let m = placed
                .iter()
                .find(|m| m.name == "mgmt")
                .expect("system service placed");
            assert_eq!(m.ports[0].port, 9443);
            assert_eq!(
                m.health.as_ref().map(|h| h.check.clone()),
                Some(HealthCheck::Tcp { port: 9443 })
            );
            assert_eq!(m.environment[MANAGEMENT_PORT_ENV], "9443");
            assert!(!placed.iter().any(|m| m.name == "portal"));
            // Its port is the management rule's, never a public one.
            let fw = d.firewall_spec(&placed);
            assert_eq!(fw.management_port, 9443);
            assert!(!fw.public.contains(&tcp(9443)) && !fw.internal.contains(&tcp(9443)));
        }
        // The cluster's placement never sees it.
        let specs = cluster::service_specs(&all);
        assert!(!specs.iter().any(|s| s.name == "mgmt"), "{specs:?}");
        assert_eq!(specs.len(), 2);
    }

    #[test]
    fn without_the_cluster_nothing_changes() {
        let d = desired(ClusterPart::default());
        let fw = d.firewall_spec(&d.placement(&manifests()));
        assert!(!fw.public.contains(&tcp(7443)));
        assert!(!fw.internal.contains(&tcp(7443)));
    }

    #[test]
    fn settings_override_the_resolvers_and_limit_the_management_port() {
        let plain = desired(ClusterPart::default());
        assert_eq!(plain.dns(), plain.config.dns);
        let fw = plain.firewall_spec(&plain.placement(&manifests()));
        assert!(fw.management_sources.is_empty());

        let settings =
            appliance_cluster::Settings::parse(&["192.0.2.53".into()], &[], &["10.0.0.0/8".into()])
                .unwrap();
        let d = desired(ClusterPart {
            settings,
            ..ClusterPart::default()
        });
        let dns = d.dns();
        assert_eq!(dns.servers, vec!["192.0.2.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(dns.search, d.config.dns.search);
        let fw = d.firewall_spec(&d.placement(&manifests()));
        assert_eq!(
            fw.management_sources,
            vec!["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]
        );
    }
}
