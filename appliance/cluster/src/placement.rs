//! The placement rules: which sets of node roles make a valid cluster, and
//! which services run on which node.
//!
//! Rules, each refused with a sentence naming the change, the nodes and the
//! rule, saying what to do instead:
//! - at least one node has the front-end role (so removing or demoting the
//!   last front-end is refused);
//! - the back-end role is on exactly 1 or 3 nodes: 0 leaves the stateful
//!   services nowhere to run, 2 is a quorum that cannot survive the loss of
//!   either node (split brain), more than 3 is not supported;
//! - every node has at least one role.
//!
//! Warnings, reported but accepted: a two-node cluster has no high
//! availability; more than [`TESTED_MAX_NODES`] nodes is beyond the tested size.
//!
//! Placement of services: a front-end service runs on every front-end node,
//! a back-end service on every back-end node ([`place`]).
//!
//! Forming, adding, removing and changing roles all go through [`check`];
//! the [`Action`] only words the message. Nodes leaving the cluster (state
//! `removing`) are not passed in: they no longer count.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use appliance_config::Role;
use serde::{Deserialize, Serialize};

use crate::identity::NodeId;

/// The largest cluster size we test; beyond it [`check`] warns.
pub const TESTED_MAX_NODES: usize = 10;

/// A node as the placement rules see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRoles {
    /// The node.
    pub id: NodeId,
    /// Its hostname, used in messages.
    pub name: String,
    /// Its roles.
    pub roles: BTreeSet<Role>,
}

/// The change being judged; used only to word the messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// A first node forms a new cluster.
    Form {
        /// Hostname of the founding node.
        node: String,
        /// Its roles.
        roles: BTreeSet<Role>,
    },
    /// A node joins.
    Add {
        /// Hostname of the joining node.
        node: String,
        /// The roles it joins with.
        roles: BTreeSet<Role>,
    },
    /// A node leaves (is drained or removed).
    Remove {
        /// Hostname of the leaving node.
        node: String,
    },
    /// One or more nodes get new roles in one step.
    SetRoles {
        /// Hostname and new roles of each node changed.
        nodes: Vec<(String, BTreeSet<Role>)>,
    },
    /// A configuration checked as a whole (after loading it, say).
    Review,
}

/// Words a role set as a noun phrase: "a front-end", "a front-end and back-end".
pub fn describe_roles(roles: &BTreeSet<Role>) -> &'static str {
    match (
        roles.contains(&Role::Frontend),
        roles.contains(&Role::Backend),
    ) {
        (true, true) => "a front-end and back-end",
        (true, false) => "a front-end",
        (false, true) => "a back-end",
        (false, false) => "a node without roles",
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Form { node, roles } => write!(
                f,
                "forming the cluster with {node} as {}",
                describe_roles(roles)
            ),
            Action::Add { node, roles } => {
                write!(f, "adding {node} as {}", describe_roles(roles))
            }
            Action::Remove { node } => write!(f, "removing {node}"),
            Action::SetRoles { nodes } => {
                let parts: Vec<String> = nodes
                    .iter()
                    .map(|(n, r)| format!("{n} {}", describe_roles(r)))
                    .collect();
                write!(f, "making {}", parts.join(" and "))
            }
            Action::Review => f.write_str("this cluster configuration"),
        }
    }
}

/// A rule a proposed set of roles breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Violation {
    /// No node has the front-end role.
    NoFrontend,
    /// No node has the back-end role.
    NoBackend,
    /// Exactly two nodes have the back-end role.
    TwoBackends {
        /// Their hostnames.
        nodes: Vec<String>,
    },
    /// More than three nodes have the back-end role.
    TooManyBackends {
        /// Their hostnames.
        nodes: Vec<String>,
    },
    /// A node has no role at all.
    NodeWithoutRoles {
        /// Its hostname.
        node: String,
    },
}

/// A change refused by the placement rules: every rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementError {
    /// What was attempted.
    pub action: Action,
    /// Every rule it would break (at least one).
    pub violations: Vec<Violation>,
}

impl PlacementError {
    /// One plain-language sentence per broken rule.
    pub fn messages(&self) -> Vec<String> {
        self.violations
            .iter()
            .map(|v| explain(&self.action, v))
            .collect()
    }
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.messages().join("; also, "))
    }
}

impl std::error::Error for PlacementError {}

fn explain(action: &Action, v: &Violation) -> String {
    match v {
        Violation::NoFrontend => match action {
            Action::Remove { node } => format!(
                "removing {node} would remove the last front-end node, leaving the public \
                 services nowhere to run; give another node the front-end role first"
            ),
            _ => format!(
                "{action} would leave no front-end node, so the public services would have \
                 nowhere to run; keep the front-end role on at least one node"
            ),
        },
        Violation::NoBackend => format!(
            "{action} would leave no back-end node, so the back-end services would have \
             nowhere to run; keep the back-end role on 1 or 3 nodes"
        ),
        Violation::TwoBackends { nodes } => {
            let lead = match action {
                Action::Add { node, roles } if roles.contains(&Role::Backend) => {
                    format!("adding {node} as a second back-end")
                }
                _ => action.to_string(),
            };
            format!(
                "{lead} would leave 2 back-end nodes ({}): a 2-node quorum cannot survive \
                 either node's loss; make it 1 or 3 back-ends (to go from 1 to 3, add the \
                 nodes as front-ends, then give two of them the back-end role in one change)",
                nodes.join(", ")
            )
        }
        Violation::TooManyBackends { nodes } => format!(
            "{action} would leave {} back-end nodes ({}): back-end services run on exactly \
             1 or 3 nodes; take the back-end role off {} of them",
            nodes.len(),
            nodes.join(", "),
            nodes.len().saturating_sub(3)
        ),
        Violation::NodeWithoutRoles { node } => format!(
            "{action} would leave {node} with no role, so it would run nothing; give it the \
             front-end role, the back-end role or both, or remove it"
        ),
    }
}

/// Something accepted but worth telling the administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "warning")]
pub enum Warning {
    /// Two nodes: one back-end, so losing it stops the back-end services.
    NoHighAvailability {
        /// The back-end node.
        backend: String,
    },
    /// More nodes than we test.
    BeyondTestedSize {
        /// How many nodes.
        nodes: usize,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::NoHighAvailability { backend } => write!(
                f,
                "a 2-node cluster has no high availability: if {backend} (the only back-end) \
                 stops, the back-end services stop with it; add a third node and run the \
                 back-end on 3 nodes"
            ),
            Warning::BeyondTestedSize { nodes } => write!(
                f,
                "the cluster has {nodes} nodes, beyond the tested size of {TESTED_MAX_NODES}: \
                 it is expected to work but has not been tested at that size"
            ),
        }
    }
}

/// Every rule `nodes` breaks, and the warnings it deserves.
pub fn assess(nodes: &[NodeRoles]) -> (Vec<Violation>, Vec<Warning>) {
    let mut violations = Vec::new();
    let mut warnings = Vec::new();
    for n in nodes.iter().filter(|n| n.roles.is_empty()) {
        violations.push(Violation::NodeWithoutRoles {
            node: n.name.clone(),
        });
    }
    if !nodes.iter().any(|n| n.roles.contains(&Role::Frontend)) {
        violations.push(Violation::NoFrontend);
    }
    let backends: Vec<String> = nodes
        .iter()
        .filter(|n| n.roles.contains(&Role::Backend))
        .map(|n| n.name.clone())
        .collect();
    if nodes.len() == 2 {
        if let [backend] = backends.as_slice() {
            warnings.push(Warning::NoHighAvailability {
                backend: backend.clone(),
            });
        }
    }
    match backends.len() {
        0 => violations.push(Violation::NoBackend),
        1 | 3 => {}
        2 => violations.push(Violation::TwoBackends { nodes: backends }),
        _ => violations.push(Violation::TooManyBackends { nodes: backends }),
    }
    if nodes.len() > TESTED_MAX_NODES {
        warnings.push(Warning::BeyondTestedSize { nodes: nodes.len() });
    }
    (violations, warnings)
}

/// Judges the node set that `action` would produce: its warnings, or every
/// rule it breaks worded for the administrator.
pub fn check(action: &Action, nodes: &[NodeRoles]) -> Result<Vec<Warning>, PlacementError> {
    let (violations, warnings) = assess(nodes);
    if violations.is_empty() {
        Ok(warnings)
    } else {
        Err(PlacementError {
            action: action.clone(),
            violations,
        })
    }
}

/// A service as placement sees it: its name and the tier it belongs to
/// (the `role` of its manifest).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The service name, as in its manifest.
    pub name: String,
    /// Front-end services run on every front-end node, back-end ones on every back-end node.
    pub kind: Role,
}

/// The services each node runs: every node of `nodes` is in the result,
/// with an empty set if none applies.
pub fn place(nodes: &[NodeRoles], services: &[ServiceSpec]) -> BTreeMap<NodeId, BTreeSet<String>> {
    nodes
        .iter()
        .map(|n| {
            let set = services
                .iter()
                .filter(|s| n.roles.contains(&s.kind))
                .map(|s| s.name.clone())
                .collect();
            (n.id, set)
        })
        .collect()
}

#[cfg(test)]
mod tests;
