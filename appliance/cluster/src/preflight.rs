//! Preflight: everything checked before a join changes any state, from facts
//! gathered beforehand (the cluster's configuration, what the candidate
//! announced, a clock sample, MTUs and a reachability probe). Every failure
//! is reported, each as a sentence naming the node and saying what to do.
//!
//! Checks: the candidate is reachable on the join port; it runs the
//! cluster's version; its clock is within [`MAX_CLOCK_SKEW`] of the
//! cluster's; its node id, hostname, addresses and certificate are not a
//! member's; the placement with it added is valid; its interface MTU equals
//! the members'. A report without failures guarantees that
//! [`ClusterConfig::apply`] accepts [`CandidateFacts::member`] as a change.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::identity::{CertFingerprint, NodeId};
use crate::membership::{Change, ChangeError, ClusterConfig, Member, MemberState};
use crate::placement::{self, Action, NodeRoles, PlacementError, Role, Warning};

/// The largest clock difference allowed between a candidate and the cluster.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// Result of probing the candidate's join port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Reachability {
    /// A TLS connection to the join port succeeded.
    Reachable,
    /// It did not.
    Unreachable {
        /// The address and port tried.
        address: SocketAddr,
        /// Why (the error of the connection attempt).
        detail: String,
    },
}

/// One clock comparison: the cluster node read its clock, asked the
/// candidate for its time, and read its clock again when the answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSample {
    /// Cluster clock when the request left.
    pub cluster_sent: SystemTime,
    /// The candidate's clock, as it answered.
    pub candidate: SystemTime,
    /// Cluster clock when the answer arrived.
    pub cluster_received: SystemTime,
}

impl ClockSample {
    /// How far the candidate's reading lies outside the interval the
    /// cluster measured: positive ahead, negative behind, zero inside.
    pub fn offset(&self) -> (Duration, ClockDirection) {
        let lo = self.cluster_sent.min(self.cluster_received);
        let hi = self.cluster_sent.max(self.cluster_received);
        if let Ok(behind) = lo.duration_since(self.candidate) {
            (behind, ClockDirection::Behind)
        } else if let Ok(ahead) = self.candidate.duration_since(hi) {
            (ahead, ClockDirection::Ahead)
        } else {
            (Duration::ZERO, ClockDirection::Ahead)
        }
    }
}

/// Which way a clock is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockDirection {
    /// Later than the cluster's.
    Ahead,
    /// Earlier than the cluster's.
    Behind,
}

impl fmt::Display for ClockDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClockDirection::Ahead => "ahead of",
            ClockDirection::Behind => "behind",
        })
    }
}

/// What is known about the appliance to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateFacts {
    /// Its node id.
    pub node_id: NodeId,
    /// Its hostname.
    pub hostname: String,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// The version it runs.
    pub version: String,
    /// Its TLS certificate's fingerprint.
    pub fingerprint: CertFingerprint,
    /// The roles the administrator asks for.
    pub roles: BTreeSet<Role>,
    /// The MTU of its cluster interface.
    pub mtu: u32,
    /// A clock comparison with the cluster.
    pub clock: ClockSample,
    /// Whether its join port answered.
    pub reachability: Reachability,
}

impl CandidateFacts {
    /// The member it becomes once the join succeeds (state `joining`).
    pub fn member(&self) -> Member {
        Member {
            id: self.node_id,
            hostname: self.hostname.clone(),
            addresses: self.addresses.clone(),
            roles: self.roles.clone(),
            version: self.version.clone(),
            fingerprint: self.fingerprint,
            state: MemberState::Joining,
        }
    }
}

/// What is known about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFacts<'a> {
    /// Its current configuration.
    pub config: &'a ClusterConfig,
    /// The version its nodes run.
    pub version: String,
    /// The MTU of each member's cluster interface (members missing are not compared).
    pub mtus: BTreeMap<NodeId, u32>,
}

/// One reason the join cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightFailure {
    /// The join port did not answer.
    #[error(
        "{hostname} cannot be reached on the join port {address} ({detail}); check that it is \
         running and on a network the cluster reaches, and that no firewall between them blocks \
         TCP port {port}",
        port = address.port()
    )]
    Unreachable {
        /// The candidate.
        hostname: String,
        /// The address and port tried.
        address: SocketAddr,
        /// The connection error.
        detail: String,
    },
    /// Different software versions.
    #[error(
        "{hostname} runs version {candidate} but the cluster runs {cluster}; update it (or the \
         cluster) so both run the same version, then add it again"
    )]
    VersionMismatch {
        /// The candidate.
        hostname: String,
        /// Its version.
        candidate: String,
        /// The cluster's.
        cluster: String,
    },
    /// The clocks differ too much.
    #[error(
        "{hostname}'s clock is {:.1} s {direction} the cluster's, more than the {} s allowed; \
         set its NTP servers (or its clock) and add it again",
        skew.as_secs_f64(),
        MAX_CLOCK_SKEW.as_secs()
    )]
    ClockSkew {
        /// The candidate.
        hostname: String,
        /// How far off.
        skew: Duration,
        /// Which way.
        direction: ClockDirection,
    },
    /// The node is already a member.
    #[error("{hostname} (node {node}) is already a member of the cluster")]
    AlreadyMember {
        /// The candidate.
        hostname: String,
        /// Its node id.
        node: NodeId,
    },
    /// The hostname is a member's.
    #[error(
        "the hostname {hostname} is already used by a member of the cluster; give the appliance \
         another hostname before adding it"
    )]
    HostnameInUse {
        /// The hostname.
        hostname: String,
    },
    /// An address is a member's.
    #[error(
        "the address {address} of {hostname} is already used by {member}; give {hostname} an \
         address no node of the cluster has"
    )]
    AddressInUse {
        /// The candidate.
        hostname: String,
        /// The address.
        address: IpAddr,
        /// The member that has it.
        member: String,
    },
    /// The certificate is a member's.
    #[error(
        "{hostname} shows the same certificate as {member}; an appliance cloned from another \
         must regenerate its identity before it joins"
    )]
    CertificateInUse {
        /// The candidate.
        hostname: String,
        /// The member with that certificate.
        member: String,
    },
    /// The placement with the candidate is invalid.
    #[error(transparent)]
    Placement(PlacementError),
    /// MTUs differ.
    #[error(
        "{hostname}'s interface MTU is {mtu} but {} {} {other}; packets between them larger than \
         the smaller MTU would be lost: set the same MTU on every node",
        members.join(", "),
        if members.len() == 1 { "uses" } else { "use" }
    )]
    MtuMismatch {
        /// The candidate.
        hostname: String,
        /// Its MTU.
        mtu: u32,
        /// The members' MTU that differs.
        other: u32,
        /// The members that use it.
        members: Vec<String>,
    },
    /// The change would be refused for another reason (hostname syntax, no address).
    #[error(transparent)]
    Change(ChangeError),
}

/// Every failure and warning of one preflight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightReport {
    /// Reasons the join cannot go ahead; empty if it can.
    pub failures: Vec<PreflightFailure>,
    /// Things to tell the administrator even so (two nodes, beyond the tested size).
    pub warnings: Vec<Warning>,
}

impl PreflightReport {
    /// True if the join may go ahead.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The failures as sentences.
    pub fn messages(&self) -> Vec<String> {
        self.failures.iter().map(ToString::to_string).collect()
    }
}

/// Runs every check of adding `candidate` to `cluster`.
pub fn check(cluster: &ClusterFacts<'_>, candidate: &CandidateFacts) -> PreflightReport {
    let mut failures = Vec::new();
    let name = &candidate.hostname;
    let config = cluster.config;

    if let Reachability::Unreachable { address, detail } = &candidate.reachability {
        failures.push(PreflightFailure::Unreachable {
            hostname: name.clone(),
            address: *address,
            detail: detail.clone(),
        });
    }
    if candidate.version != cluster.version {
        failures.push(PreflightFailure::VersionMismatch {
            hostname: name.clone(),
            candidate: candidate.version.clone(),
            cluster: cluster.version.clone(),
        });
    }
    let (skew, direction) = candidate.clock.offset();
    if skew > MAX_CLOCK_SKEW {
        failures.push(PreflightFailure::ClockSkew {
            hostname: name.clone(),
            skew,
            direction,
        });
    }
    identity_clashes(config, candidate, &mut failures);
    mtu_mismatches(cluster, candidate, &mut failures);

    let mut nodes = config.placement_nodes();
    nodes.push(NodeRoles {
        id: candidate.node_id,
        name: name.clone(),
        roles: candidate.roles.clone(),
    });
    let action = Action::Add {
        node: name.clone(),
        roles: candidate.roles.clone(),
    };
    let warnings = match placement::check(&action, &nodes) {
        Ok(w) => w,
        Err(e) => {
            failures.push(PreflightFailure::Placement(e));
            Vec::new()
        }
    };
    // Whatever else the change itself would refuse (hostname syntax, no
    // address), so that a clean preflight means the change is accepted.
    if failures.is_empty() {
        if let Err(e) = config.apply(&Change::Add(candidate.member())) {
            failures.push(PreflightFailure::Change(e));
        }
    }
    PreflightReport { failures, warnings }
}

fn identity_clashes(
    config: &ClusterConfig,
    candidate: &CandidateFacts,
    failures: &mut Vec<PreflightFailure>,
) {
    let name = &candidate.hostname;
    if config.member(&candidate.node_id).is_some() {
        failures.push(PreflightFailure::AlreadyMember {
            hostname: name.clone(),
            node: candidate.node_id,
        });
        // Every other clash would be with itself.
        return;
    }
    if config.member_by_hostname(name).is_some() {
        failures.push(PreflightFailure::HostnameInUse {
            hostname: name.clone(),
        });
    }
    for address in &candidate.addresses {
        if let Some(m) = config.member_by_address(address) {
            failures.push(PreflightFailure::AddressInUse {
                hostname: name.clone(),
                address: *address,
                member: m.hostname.clone(),
            });
        }
    }
    if let Some(m) = config
        .members()
        .find(|m| m.fingerprint == candidate.fingerprint)
    {
        failures.push(PreflightFailure::CertificateInUse {
            hostname: name.clone(),
            member: m.hostname.clone(),
        });
    }
}

fn mtu_mismatches(
    cluster: &ClusterFacts<'_>,
    candidate: &CandidateFacts,
    failures: &mut Vec<PreflightFailure>,
) {
    let mut by_mtu: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for m in cluster.config.members() {
        if let Some(&mtu) = cluster.mtus.get(&m.id) {
            if mtu != candidate.mtu {
                by_mtu.entry(mtu).or_default().push(m.hostname.clone());
            }
        }
    }
    for (other, members) in by_mtu {
        failures.push(PreflightFailure::MtuMismatch {
            hostname: candidate.hostname.clone(),
            mtu: candidate.mtu,
            other,
            members,
        });
    }
}

#[cfg(test)]
mod tests;
