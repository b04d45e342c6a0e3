//! What the cluster adds to a node's desired state, derived from the
//! membership by pure functions: the services the cluster's placement puts
//! on this node, the other members' addresses (the firewall's peer sets),
//! where the back-end services run, and the ports of the peer side; with
//! them the management plane's settings (the cluster's once a member, the
//! node's own before), which travel with the configuration.
//!
//! The membership itself is stored by the cluster module; this part of the
//! desired state is recomputed from it and never stored with the desired
//! record, so the two cannot disagree after a restart.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use appliance_cluster::{ClusterConfig, MemberState, NodeId, Role, ServiceSpec, Settings};
use appliance_supervisor::manifest::Manifest;

/// The environment variable that tells services where the back-end
/// services run: comma-separated addresses, this node's loopback first
/// when it runs them itself.
pub const BACKENDS_ENV: &str = "APPLIANCE_BACKENDS";

/// The ports of the peer side, when it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPorts {
    /// TCP: the join service before joining, cluster mutual TLS after.
    pub peer: u16,
    /// UDP: discovery beacons.
    pub beacon: u16,
}

/// This node's share of the cluster's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPart {
    /// The roles the cluster gives this node.
    pub roles: BTreeSet<Role>,
    /// The services the cluster's placement puts on this node.
    pub services: BTreeSet<String>,
    /// Every other member's addresses (members being removed included,
    /// so their drain can still reach their peers).
    pub peers: BTreeSet<IpAddr>,
    /// True when this node runs the back-end services.
    pub local_backend: bool,
    /// The addresses of the other members that run the back-end services.
    pub remote_backends: Vec<IpAddr>,
}

/// What the cluster adds to the desired state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterPart {
    /// The peer side's ports; `None` when it is off (`--peer-port 0`).
    pub ports: Option<PeerPorts>,
    /// The membership; `None` while the node is not a member.
    pub member: Option<MemberPart>,
    /// The management plane's settings: the cluster's as a member, else
    /// the node's own (resolvers, who may reach the management port).
    pub settings: Settings,
}

impl ClusterPart {
    /// The value of [`BACKENDS_ENV`]: `127.0.0.1` on a node outside a
    /// cluster; a member's own loopback when it is a back-end, then the
    /// other back-ends' addresses.
    pub fn backends_env(&self) -> String {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let list: Vec<IpAddr> = match &self.member {
            None => vec![loopback],
            Some(m) => m
                .local_backend
                .then_some(loopback)
                .into_iter()
                .chain(m.remote_backends.iter().copied())
                .collect(),
        };
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The tier of a manifest, as placement sees it; `None` for a system
/// service, which runs on every node and is never placed.
pub fn role_of(m: &Manifest) -> Option<Role> {
    match m.role {
        appliance_supervisor::manifest_types::Role::Frontend => Some(Role::Frontend),
        appliance_supervisor::manifest_types::Role::Backend => Some(Role::Backend),
        appliance_supervisor::manifest_types::Role::System => None,
    }
}

/// The manifests as the cluster's placement sees them (system services
/// left out).
pub fn service_specs(manifests: &[Manifest]) -> Vec<ServiceSpec> {
    manifests
        .iter()
        .filter_map(|m| {
            Some(ServiceSpec {
                name: m.name.clone(),
                kind: role_of(m)?,
            })
        })
        .collect()
}

/// This node's share of `config`; `None` when the configuration does not list it.
pub fn member_part(
    config: &ClusterConfig,
    me: NodeId,
    specs: &[ServiceSpec],
) -> Option<MemberPart> {
    let mine = config.member(&me)?;
    let own: BTreeSet<IpAddr> = mine.addresses.iter().copied().collect();
    let runs_backend = |m: &appliance_cluster::Member| {
        m.roles.contains(&Role::Backend) && m.state != MemberState::Removing
    };
    Some(MemberPart {
        roles: mine.roles.clone(),
        services: config.services(specs).remove(&me).unwrap_or_default(),
        peers: config
            .peer_addresses()
            .into_iter()
            .filter(|a| !own.contains(a))
            .collect(),
        local_backend: runs_backend(mine),
        remote_backends: config
            .members()
            .filter(|m| m.id != me && runs_backend(m))
            .flat_map(|m| m.addresses.iter().copied())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use appliance_cluster::{CertFingerprint, Member};
    use uuid::Uuid;

    use super::*;

    fn member(n: u8, roles: &[Role]) -> Member {
        Member {
            id: NodeId(Uuid::from_u128(u128::from(n))),
            hostname: format!("node-{n}"),
            addresses: vec![format!("10.0.0.{n}").parse().unwrap()],
            roles: roles.iter().copied().collect(),
            version: "0.1.0".into(),
            fingerprint: CertFingerprint::of_certificate_der(&[n]),
            state: MemberState::Active,
        }
    }

    fn specs() -> Vec<ServiceSpec> {
        vec![
            ServiceSpec {
                name: "portal".into(),
                kind: Role::Frontend,
            },
            ServiceSpec {
                name: "audit".into(),
                kind: Role::Backend,
            },
        ]
    }

    fn three() -> ClusterConfig {
        let a = member(1, &[Role::Frontend, Role::Backend]);
        let mut c = ClusterConfig::new(Uuid::from_u128(9), a).unwrap();
        for n in [2, 3] {
            c = c
                .apply(&appliance_cluster::Change::Add(member(
                    n,
                    &[Role::Frontend],
                )))
                .unwrap();
        }
        c
    }

    #[test]
    fn a_front_end_runs_its_services_and_reaches_the_back_end_elsewhere() {
        let c = three();
        let b = member_part(&c, NodeId(Uuid::from_u128(2)), &specs()).unwrap();
        assert_eq!(b.services, BTreeSet::from(["portal".to_owned()]));
        let peers: Vec<String> = b.peers.iter().map(ToString::to_string).collect();
        assert_eq!(peers, ["10.0.0.1", "10.0.0.3"]);
        assert!(!b.local_backend);
        let part = ClusterPart {
            ports: None,
            member: Some(b),
            ..ClusterPart::default()
        };
        assert_eq!(part.backends_env(), "10.0.0.1");
    }

    #[test]
    fn the_back_end_reaches_itself_on_loopback() {
        let c = three();
        let a = member_part(&c, NodeId(Uuid::from_u128(1)), &specs()).unwrap();
        assert_eq!(
            a.services,
            BTreeSet::from(["audit".to_owned(), "portal".to_owned()])
        );
        let part = ClusterPart {
            ports: None,
            member: Some(a),
            ..ClusterPart::default()
        };
        assert_eq!(part.backends_env(), "127.0.0.1");
        // Outside a cluster, too.
        assert_eq!(ClusterPart::default().backends_env(), "127.0.0.1");
    }

    #[test]
    fn a_node_being_removed_runs_nothing_but_keeps_its_peers() {
        let c = three()
            .apply(&appliance_cluster::Change::SetState {
                node: NodeId(Uuid::from_u128(3)),
                state: MemberState::Removing,
            })
            .unwrap();
        let me = member_part(&c, NodeId(Uuid::from_u128(3)), &specs()).unwrap();
        assert!(me.services.is_empty());
        assert_eq!(me.peers.len(), 2);
        // The others still let it in while it drains.
        let a = member_part(&c, NodeId(Uuid::from_u128(1)), &specs()).unwrap();
        assert!(a.peers.contains(&"10.0.0.3".parse().unwrap()));
        assert!(member_part(&c, NodeId(Uuid::from_u128(7)), &specs()).is_none());
    }
}
