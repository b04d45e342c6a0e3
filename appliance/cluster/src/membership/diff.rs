//! The incremental [`diff`] a node applies to follow a newer configuration:
//! peers to add and remove, members joined and left, services to start and stop.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ClusterConfig;
use crate::identity::{CertFingerprint, NodeId};
use crate::placement::ServiceSpec;

/// What one node starts and stops to follow a new configuration. Services
/// that stay placed are in neither set and are not touched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDelta {
    /// Services to start.
    pub start: BTreeSet<String>,
    /// Services to stop.
    pub stop: BTreeSet<String>,
}

impl ServiceDelta {
    /// True if there is nothing to start or stop.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty() && self.stop.is_empty()
    }
}

/// The incremental update from one configuration to a newer one. It is
/// computed from the two states, not a log, so a node that was down applies
/// a single diff from what it last had to the current configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDiff {
    /// The cluster.
    pub cluster_id: Uuid,
    /// The generation the node had (`None` for a node that just joined).
    pub from_generation: Option<u64>,
    /// The generation it moves to.
    pub to_generation: u64,
    /// Addresses to add to the firewall's peer sets (the node's own included).
    pub peers_added: BTreeSet<IpAddr>,
    /// Addresses to take out of the peer sets.
    pub peers_removed: BTreeSet<IpAddr>,
    /// Members that joined.
    pub members_added: BTreeSet<NodeId>,
    /// Members that left, with the certificate to revoke for each.
    pub members_removed: BTreeMap<NodeId, CertFingerprint>,
    /// Per node, the services to start and stop; nodes with nothing to do are absent.
    pub services: BTreeMap<NodeId, ServiceDelta>,
}

impl ConfigDiff {
    /// What `node` starts and stops (empty if nothing).
    pub fn for_node(&self, node: &NodeId) -> ServiceDelta {
        self.services.get(node).cloned().unwrap_or_default()
    }

    /// True if nothing changes at all.
    pub fn is_empty(&self) -> bool {
        self.peers_added.is_empty()
            && self.peers_removed.is_empty()
            && self.members_added.is_empty()
            && self.members_removed.is_empty()
            && self.services.is_empty()
    }
}

/// Why a configuration cannot be followed from the one a node has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    /// The new configuration belongs to another cluster.
    #[error(
        "the configuration offered is for cluster {offered}, but this node belongs to cluster {have}; \
         remove the node from its cluster before adding it to another"
    )]
    OtherCluster {
        /// The node's cluster.
        have: Uuid,
        /// The offered configuration's cluster.
        offered: Uuid,
    },
    /// The new configuration is older than the one the node has.
    #[error(
        "the configuration offered is generation {offered}, older than generation {have} which this node has; \
         it is ignored"
    )]
    Stale {
        /// The node's generation.
        have: u64,
        /// The offered generation.
        offered: u64,
    },
    /// Same generation, different content: two authorities disagree.
    #[error(
        "the configuration offered is generation {generation} like this node's, but differs from it; \
         two nodes changed the cluster at once: check which node is the authority for changes"
    )]
    Conflict {
        /// The generation.
        generation: u64,
    },
}

/// What a node does to go from `old` (`None` for a node that has no
/// configuration yet) to `new`: peer addresses to add and remove, members
/// joined and left, and per node the services to start and stop, with
/// `services` the manifests known to the cluster.
pub fn diff(
    old: Option<&ClusterConfig>,
    new: &ClusterConfig,
    services: &[ServiceSpec],
) -> Result<ConfigDiff, DiffError> {
    if let Some(old) = old {
        if old.cluster_id != new.cluster_id {
            return Err(DiffError::OtherCluster {
                have: old.cluster_id,
                offered: new.cluster_id,
            });
        }
        if new.generation < old.generation {
            return Err(DiffError::Stale {
                have: old.generation,
                offered: new.generation,
            });
        }
        if new.generation == old.generation && new != old {
            return Err(DiffError::Conflict {
                generation: new.generation,
            });
        }
    }
    let old_peers = old.map(ClusterConfig::peer_addresses).unwrap_or_default();
    let new_peers = new.peer_addresses();
    let old_ids: BTreeSet<NodeId> = old
        .map(|c| c.members.keys().copied().collect())
        .unwrap_or_default();
    let new_ids: BTreeSet<NodeId> = new.members.keys().copied().collect();
    let old_placed = old.map(|c| c.services(services)).unwrap_or_default();
    let new_placed = new.services(services);
    let empty = BTreeSet::new();
    let mut per_node = BTreeMap::new();
    for id in old_placed.keys().chain(new_placed.keys()) {
        let before = old_placed.get(id).unwrap_or(&empty);
        let after = new_placed.get(id).unwrap_or(&empty);
        let delta = ServiceDelta {
            start: after.difference(before).cloned().collect(),
            stop: before.difference(after).cloned().collect(),
        };
        if !delta.is_empty() {
            per_node.insert(*id, delta);
        }
    }
    Ok(ConfigDiff {
        cluster_id: new.cluster_id,
        from_generation: old.map(|c| c.generation),
        to_generation: new.generation,
        peers_added: new_peers.difference(&old_peers).copied().collect(),
        peers_removed: old_peers.difference(&new_peers).copied().collect(),
        members_added: new_ids.difference(&old_ids).copied().collect(),
        members_removed: old
            .map(|c| {
                c.members
                    .values()
                    .filter(|m| !new_ids.contains(&m.id))
                    .map(|m| (m.id, m.fingerprint))
                    .collect()
            })
            .unwrap_or_default(),
        services: per_node,
    })
}
