//! The cluster configuration (who is a member, with which roles and
//! addresses), the changes that move it from one generation to the next, and
//! the incremental [`diff`] a node applies to follow it.
//!
//! A [`ClusterConfig`] is a value: [`ClusterConfig::apply`] checks a
//! [`Change`] (identity clashes first, then the [`placement`] rules on the
//! resulting role set) and returns a new configuration with the generation
//! bumped, or a [`ChangeError`] and leaves the original untouched. The store
//! that holds the current configuration (one back-end authority now,
//! consensus later) lives in applianced; it only ever swaps whole values.
//!
//! Member states: a node is `joining` from the moment it is added until its
//! services are healthy (`active`); `removing` while it is drained. Joining
//! nodes count for placement (they are about to run services); removing
//! nodes do not (their services are being stopped), but their addresses stay
//! in the peer sets until the final [`Change::Remove`], so the drain can
//! still reach its peers.
//!
//! The configuration also carries the management plane's [`AdminData`]
//! (accounts, settings, the uploaded certificate): [`Change::Admin`] moves
//! it like any other change, so it reaches every member with the
//! configuration.
//!
//! Files: this one has the configuration and its changes; `error` why a
//! change is refused; `diff` the incremental update; `admin` the management
//! plane's data and its rules.

mod admin;
mod diff;
mod error;

pub use admin::{
    check_account_name, check_password_hash, parse_first_admin, Account, AdminChange, AdminData,
    AdminError, AdminRole, Settings, UploadedCert, ACCOUNT_NAME_MAX_LEN, MAX_SETTINGS,
};
pub use diff::{diff, ConfigDiff, DiffError, ServiceDelta};
pub use error::ChangeError;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::{CertFingerprint, NodeId};
use crate::placement::{self, Action, NodeRoles, Role, ServiceSpec, Warning};

/// Where a member is in its life in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Added; starting its services.
    Joining,
    /// Running its services.
    Active,
    /// Being drained before it is removed.
    Removing,
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemberState::Joining => "joining",
            MemberState::Active => "active",
            MemberState::Removing => "removing",
        })
    }
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its identity, created on its first boot.
    pub id: NodeId,
    /// Its hostname, unique in the cluster (compared without case).
    pub hostname: String,
    /// The addresses its peers reach it on; they go into every node's firewall peer sets.
    pub addresses: Vec<IpAddr>,
    /// The roles it has; they decide which services it runs.
    pub roles: BTreeSet<Role>,
    /// The appliance version it runs.
    pub version: String,
    /// SHA-256 of its TLS certificate; revoked when it is removed.
    pub fingerprint: CertFingerprint,
    /// Joining, active or removing.
    pub state: MemberState,
}

/// A change to the membership; [`ClusterConfig::apply`] accepts or refuses it whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum Change {
    /// A node joins (state `joining` or, for a node whose services are
    /// already healthy, `active`).
    Add(Member),
    /// A node leaves for good: its addresses leave the peer sets and its
    /// certificate is to be revoked.
    Remove {
        /// The node removed.
        node: NodeId,
    },
    /// New roles for one or more nodes in one step (going from 1 to 3
    /// back-ends needs two nodes changed at once, since 2 is refused).
    SetRoles {
        /// Each node changed and its new roles.
        roles: BTreeMap<NodeId, BTreeSet<Role>>,
    },
    /// A node moves between `joining`, `active` and `removing`.
    SetState {
        /// The node.
        node: NodeId,
        /// Its new state.
        state: MemberState,
    },
    /// A change to the accounts, settings or certificate; the members stay.
    Admin(AdminChange),
}

impl Change {
    /// New roles for one node.
    pub fn set_roles(node: NodeId, roles: impl IntoIterator<Item = Role>) -> Change {
        Change::SetRoles {
            roles: BTreeMap::from([(node, roles.into_iter().collect())]),
        }
    }
}

/// The cluster's membership at one generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ConfigWire", into = "ConfigWire")]
pub struct ClusterConfig {
    cluster_id: Uuid,
    generation: u64,
    members: BTreeMap<NodeId, Member>,
    admin: AdminData,
}

/// The serialized form: members as a list, checked on the way in.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigWire {
    cluster_id: Uuid,
    generation: u64,
    members: Vec<Member>,
    // Absent in configurations stored before the management plane; left
    // out while empty so those still read what this one writes.
    #[serde(default, skip_serializing_if = "AdminData::is_empty")]
    admin: AdminData,
}

impl From<ClusterConfig> for ConfigWire {
    fn from(c: ClusterConfig) -> Self {
        ConfigWire {
            cluster_id: c.cluster_id,
            generation: c.generation,
            members: c.members.into_values().collect(),
            admin: c.admin,
        }
    }
}

impl TryFrom<ConfigWire> for ClusterConfig {
    type Error = ChangeError;
    fn try_from(w: ConfigWire) -> Result<Self, ChangeError> {
        let mut members: BTreeMap<NodeId, Member> = BTreeMap::new();
        for m in w.members {
            check_member_alone(&m)?;
            check_member_against(&m, members.values())?;
            if members.insert(m.id, m.clone()).is_some() {
                return Err(ChangeError::DuplicateNode { node: m.id });
            }
        }
        w.admin.validate()?;
        Ok(ClusterConfig {
            cluster_id: w.cluster_id,
            generation: w.generation,
            members,
            admin: w.admin,
        })
    }
}

/// Checks of a member on its own: hostname, addresses present and distinct.
fn check_member_alone(m: &Member) -> Result<(), ChangeError> {
    appliance_config::hostname::check_hostname(&m.hostname).map_err(|reason| {
        ChangeError::InvalidHostname {
            hostname: m.hostname.clone(),
            reason,
        }
    })?;
    if m.addresses.is_empty() {
        return Err(ChangeError::NoAddresses {
            hostname: m.hostname.clone(),
        });
    }
    let mut seen = BTreeSet::new();
    for a in &m.addresses {
        if !seen.insert(*a) {
            return Err(ChangeError::DuplicateAddress {
                hostname: m.hostname.clone(),
                address: *a,
                existing: m.hostname.clone(),
            });
        }
    }
    Ok(())
}

/// Checks that `m` clashes with none of `others` (hostname, address, certificate).
fn check_member_against<'a>(
    m: &Member,
    others: impl IntoIterator<Item = &'a Member>,
) -> Result<(), ChangeError> {
    for o in others {
        if o.id == m.id {
            continue;
        }
        if o.hostname.eq_ignore_ascii_case(&m.hostname) {
            return Err(ChangeError::DuplicateHostname {
                hostname: m.hostname.clone(),
                existing: o.id,
            });
        }
        if let Some(a) = m.addresses.iter().find(|a| o.addresses.contains(a)) {
            return Err(ChangeError::DuplicateAddress {
                hostname: m.hostname.clone(),
                address: *a,
                existing: o.hostname.clone(),
            });
        }
        if o.fingerprint == m.fingerprint {
            return Err(ChangeError::DuplicateFingerprint {
                hostname: m.hostname.clone(),
                fingerprint: m.fingerprint,
                existing: o.hostname.clone(),
            });
        }
    }
    Ok(())
}

impl ClusterConfig {
    /// Forms a new cluster at generation 1 with `founder` as its only
    /// member, made `active`. The founder must satisfy the placement rules
    /// alone, so it needs both roles.
    pub fn new(cluster_id: Uuid, mut founder: Member) -> Result<ClusterConfig, ChangeError> {
        check_member_alone(&founder)?;
        founder.state = MemberState::Active;
        let config = ClusterConfig {
            cluster_id,
            generation: 1,
            members: BTreeMap::from([(founder.id, founder.clone())]),
            admin: AdminData::default(),
        };
        placement::check(
            &Action::Form {
                node: founder.hostname.clone(),
                roles: founder.roles.clone(),
            },
            &config.placement_nodes(),
        )?;
        Ok(config)
    }

    /// The same configuration carrying `admin` (the founder's own accounts
    /// and settings, when a cluster is formed), checked first.
    pub fn with_admin(mut self, admin: AdminData) -> Result<ClusterConfig, ChangeError> {
        admin.validate()?;
        self.admin = admin;
        Ok(self)
    }

    /// The accounts, settings and certificate of the management plane.
    pub fn admin(&self) -> &AdminData {
        &self.admin
    }

    /// The cluster's identity, fixed when it was formed.
    pub fn cluster_id(&self) -> Uuid {
        self.cluster_id
    }

    /// Bumped by every accepted change; a node with an older generation catches up.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The members, ordered by node id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// One member.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// The member with this hostname (compared without case).
    pub fn member_by_hostname(&self, hostname: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.hostname.eq_ignore_ascii_case(hostname))
    }

    /// The member that has this address.
    pub fn member_by_address(&self, address: &IpAddr) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.addresses.contains(address))
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True if there is no member (never, for a configuration built by [`ClusterConfig::new`]).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The nodes the placement rules count: every member not being removed.
    pub fn placement_nodes(&self) -> Vec<NodeRoles> {
        self.members
            .values()
            .filter(|m| m.state != MemberState::Removing)
            .map(|m| NodeRoles {
                id: m.id,
                name: m.hostname.clone(),
                roles: m.roles.clone(),
            })
            .collect()
    }

    /// The warnings the current membership deserves (two nodes, too many nodes).
    pub fn warnings(&self) -> Vec<Warning> {
        placement::assess(&self.placement_nodes()).1
    }

    /// Every member's addresses: the firewall's peer sets. A member being
    /// removed stays in until it is gone.
    pub fn peer_addresses(&self) -> BTreeSet<IpAddr> {
        self.members
            .values()
            .flat_map(|m| m.addresses.iter().copied())
            .collect()
    }

    /// The services each member runs: every member is listed, a member being
    /// removed with nothing (its services are drained).
    pub fn services(&self, services: &[ServiceSpec]) -> BTreeMap<NodeId, BTreeSet<String>> {
        let mut placed = placement::place(&self.placement_nodes(), services);
        for id in self.members.keys() {
            placed.entry(*id).or_default();
        }
        placed
    }

    /// Checks a configuration received from elsewhere: member identities are
    /// distinct and the placement rules hold. Returns its warnings.
    pub fn validate(&self) -> Result<Vec<Warning>, ChangeError> {
        for m in self.members.values() {
            check_member_alone(m)?;
            check_member_against(m, self.members.values())?;
        }
        self.admin.validate()?;
        Ok(placement::check(&Action::Review, &self.placement_nodes())?)
    }

    fn get(&self, id: &NodeId) -> Result<&Member, ChangeError> {
        self.members
            .get(id)
            .ok_or(ChangeError::UnknownNode { node: *id })
    }

    /// Applies `change`: the next generation, or why it is refused. `self`
    /// is never modified; on refusal nothing changed anywhere.
    pub fn apply(&self, change: &Change) -> Result<ClusterConfig, ChangeError> {
        let mut next = self.clone();
        let action = match change {
            Change::Add(member) => {
                if let Some(existing) = self.members.get(&member.id) {
                    return Err(ChangeError::AlreadyMember {
                        node: member.id,
                        hostname: existing.hostname.clone(),
                    });
                }
                if member.state == MemberState::Removing {
                    return Err(ChangeError::AddedAsRemoving {
                        hostname: member.hostname.clone(),
                    });
                }
                check_member_alone(member)?;
                check_member_against(member, self.members.values())?;
                next.members.insert(member.id, member.clone());
                Action::Add {
                    node: member.hostname.clone(),
                    roles: member.roles.clone(),
                }
            }
            Change::Remove { node } => {
                let m = self.get(node)?;
                next.members.remove(node);
                Action::Remove {
                    node: m.hostname.clone(),
                }
            }
            Change::SetRoles { roles } => {
                if roles.is_empty() {
                    return Err(ChangeError::EmptyChange);
                }
                let mut named = Vec::new();
                let mut unchanged = None;
                for (id, new_roles) in roles {
                    let m = self.get(id)?;
                    if &m.roles == new_roles {
                        unchanged.get_or_insert((m.hostname.clone(), new_roles));
                    }
                    named.push((m.hostname.clone(), new_roles.clone()));
                    if let Some(nm) = next.members.get_mut(id) {
                        nm.roles = new_roles.clone();
                    }
                }
                // A step where no node's roles move would only bump the generation.
                if next.members == self.members {
                    if let Some((hostname, r)) = unchanged {
                        return Err(ChangeError::NoChange {
                            hostname,
                            detail: format!("is already {}", placement::describe_roles(r)),
                        });
                    }
                }
                Action::SetRoles { nodes: named }
            }
            Change::SetState { node, state } => {
                let m = self.get(node)?;
                let action = transition(m, *state)?;
                if let Some(nm) = next.members.get_mut(node) {
                    nm.state = *state;
                }
                action
            }
            // The members do not move, so the placement rules have nothing new to check.
            Change::Admin(change) => {
                next.admin.apply(change)?;
                return next.bumped(self.generation);
            }
        };
        placement::check(&action, &next.placement_nodes())?;
        next.bumped(self.generation)
    }

    /// `self` at the generation after `generation`.
    fn bumped(mut self, generation: u64) -> Result<ClusterConfig, ChangeError> {
        self.generation = generation
            .checked_add(1)
            .ok_or(ChangeError::GenerationExhausted { generation })?;
        Ok(self)
    }
}

/// The placement action a state change amounts to, or why it is not allowed.
fn transition(m: &Member, to: MemberState) -> Result<Action, ChangeError> {
    use MemberState::*;
    let bad = |hint: &str| ChangeError::BadTransition {
        hostname: m.hostname.clone(),
        from: m.state,
        to,
        hint: hint.to_string(),
    };
    match (m.state, to) {
        (a, b) if a == b => Err(ChangeError::NoChange {
            hostname: m.hostname.clone(),
            detail: format!("is already {a}"),
        }),
        (Joining, Active) => Ok(Action::Review),
        (Joining | Active, Removing) => Ok(Action::Remove {
            node: m.hostname.clone(),
        }),
        // Cancelling a drain brings the node's roles back into the count.
        (Removing, Active) => Ok(Action::Add {
            node: m.hostname.clone(),
            roles: m.roles.clone(),
        }),
        (Active, Joining) => Err(bad("; an active node stays active until it is removed")),
        (Removing, Joining) => Err(bad(
            "; to keep the node, make it active again; to re-add it, remove it first",
        )),
        // Every pair is covered above; kept for the compiler.
        _ => Err(bad("")),
    }
}

#[cfg(test)]
mod tests;
