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
mod tests {
    use super::*;
    use uuid::Uuid;

    const F: Role = Role::Frontend;
    const B: Role = Role::Backend;

    fn node(i: u128, roles: &[Role]) -> NodeRoles {
        NodeRoles {
            id: NodeId(Uuid::from_u128(i)),
            name: format!("node-{i}"),
            roles: roles.iter().copied().collect(),
        }
    }

    fn roles(r: &[Role]) -> BTreeSet<Role> {
        r.iter().copied().collect()
    }

    #[test]
    fn single_node_with_both_roles_is_valid_without_warnings() {
        let nodes = [node(1, &[F, B])];
        let w = check(
            &Action::Form {
                node: "node-1".into(),
                roles: roles(&[F, B]),
            },
            &nodes,
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn at_least_one_frontend_is_required() {
        let nodes = [node(1, &[B])];
        let e = check(
            &Action::Form {
                node: "node-1".into(),
                roles: roles(&[B]),
            },
            &nodes,
        )
        .unwrap_err();
        assert_eq!(e.violations, vec![Violation::NoFrontend]);
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "forming the cluster with node-1 as a back-end would leave no front-end node"
            ),
            "{msg}"
        );
        assert!(msg.contains("keep the front-end role"), "{msg}");
    }

    #[test]
    fn removing_the_last_frontend_is_refused_naming_the_node() {
        // After removing node-1 (the only front-end), node-2 remains as back-end.
        let after = [node(2, &[B])];
        let e = check(
            &Action::Remove {
                node: "node-1".into(),
            },
            &after,
        )
        .unwrap_err();
        assert_eq!(e.violations, vec![Violation::NoFrontend]);
        let msg = e.to_string();
        assert!(
            msg.contains("removing node-1 would remove the last front-end node"),
            "{msg}"
        );
        assert!(
            msg.contains("give another node the front-end role first"),
            "{msg}"
        );
    }

    #[test]
    fn no_backend_is_refused() {
        let e = check(&Action::Review, &[node(1, &[F]), node(2, &[F])]).unwrap_err();
        assert_eq!(e.violations, vec![Violation::NoBackend]);
        assert!(e
            .to_string()
            .contains("keep the back-end role on 1 or 3 nodes"));
    }

    #[test]
    fn two_backends_are_refused_with_the_quorum_reason() {
        let after = [node(1, &[F, B]), node(2, &[B])];
        let e = check(
            &Action::Add {
                node: "node-2".into(),
                roles: roles(&[B]),
            },
            &after,
        )
        .unwrap_err();
        assert_eq!(
            e.violations,
            vec![Violation::TwoBackends {
                nodes: vec!["node-1".into(), "node-2".into()]
            }]
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "adding node-2 as a second back-end would leave 2 back-end nodes (node-1, node-2): \
                 a 2-node quorum cannot survive either node's loss; make it 1 or 3 back-ends"
            ),
            "{msg}"
        );
    }

    #[test]
    fn three_backends_are_valid() {
        let nodes = [node(1, &[F, B]), node(2, &[F, B]), node(3, &[B])];
        assert_eq!(check(&Action::Review, &nodes).unwrap(), vec![]);
    }

    #[test]
    fn more_than_three_backends_are_refused() {
        let nodes: Vec<_> = (1..=5).map(|i| node(i, &[F, B])).collect();
        let e = check(&Action::Review, &nodes).unwrap_err();
        assert!(
            matches!(&e.violations[..], [Violation::TooManyBackends { nodes }] if nodes.len() == 5)
        );
        assert!(
            e.to_string()
                .contains("take the back-end role off 2 of them"),
            "{e}"
        );
    }

    #[test]
    fn two_node_cluster_is_allowed_with_a_no_ha_warning() {
        let nodes = [node(1, &[F, B]), node(2, &[F])];
        let w = check(
            &Action::Add {
                node: "node-2".into(),
                roles: roles(&[F]),
            },
            &nodes,
        )
        .unwrap();
        assert_eq!(
            w,
            vec![Warning::NoHighAvailability {
                backend: "node-1".into()
            }]
        );
        assert!(w[0].to_string().contains("no high availability"));
        assert!(w[0].to_string().contains("node-1 (the only back-end)"));
    }

    #[test]
    fn ten_nodes_is_fine_eleven_is_beyond_the_tested_size() {
        let mut nodes: Vec<_> = (1..=10).map(|i| node(i, &[F])).collect();
        nodes[0].roles.insert(B);
        assert_eq!(check(&Action::Review, &nodes).unwrap(), vec![]);
        nodes.push(node(11, &[F]));
        let w = check(&Action::Review, &nodes).unwrap();
        assert_eq!(w, vec![Warning::BeyondTestedSize { nodes: 11 }]);
        assert!(w[0]
            .to_string()
            .contains("11 nodes, beyond the tested size of 10"));
    }

    #[test]
    fn role_changes_go_through_the_same_rules() {
        // Demoting the only back-end to front-end leaves none.
        let action = Action::SetRoles {
            nodes: vec![("node-1".into(), roles(&[F]))],
        };
        let e = check(&action, &[node(1, &[F]), node(2, &[F])]).unwrap_err();
        assert_eq!(e.violations, vec![Violation::NoBackend]);
        assert!(
            e.to_string()
                .starts_with("making node-1 a front-end would leave no back-end node"),
            "{e}"
        );
        // Going from 1 to 3 back-ends in one step is accepted.
        let action = Action::SetRoles {
            nodes: vec![
                ("node-2".into(), roles(&[F, B])),
                ("node-3".into(), roles(&[F, B])),
            ],
        };
        let after = [node(1, &[F, B]), node(2, &[F, B]), node(3, &[F, B])];
        assert!(check(&action, &after).is_ok());
    }

    #[test]
    fn a_node_without_roles_is_refused_and_every_violation_is_listed() {
        let e = check(&Action::Review, &[node(1, &[]), node(2, &[])]).unwrap_err();
        assert_eq!(
            e.violations,
            vec![
                Violation::NodeWithoutRoles {
                    node: "node-1".into()
                },
                Violation::NodeWithoutRoles {
                    node: "node-2".into()
                },
                Violation::NoFrontend,
                Violation::NoBackend,
            ]
        );
        assert_eq!(e.messages().len(), 4);
        assert!(e.to_string().contains("node-1 with no role"));
    }

    #[test]
    fn services_are_placed_by_kind_on_every_matching_node() {
        let nodes = [node(1, &[F, B]), node(2, &[F]), node(3, &[B])];
        let services = [
            ServiceSpec {
                name: "portal".into(),
                kind: F,
            },
            ServiceSpec {
                name: "audit".into(),
                kind: B,
            },
        ];
        let placed = place(&nodes, &services);
        let names = |i: u128| -> Vec<&str> {
            placed[&NodeId(Uuid::from_u128(i))]
                .iter()
                .map(String::as_str)
                .collect()
        };
        assert_eq!(names(1), vec!["audit", "portal"]);
        assert_eq!(names(2), vec!["portal"]);
        assert_eq!(names(3), vec!["audit"]);
        // A node with no matching service is still listed, with nothing to run.
        let placed = place(&[node(4, &[F])], &services[1..]);
        assert!(placed[&NodeId(Uuid::from_u128(4))].is_empty());
    }

    #[test]
    fn actions_and_violations_serialize_tagged() {
        let v = Violation::TwoBackends {
            nodes: vec!["a".into(), "b".into()],
        };
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"{"rule":"two_backends","nodes":["a","b"]}"#);
        let a: Action = serde_json::from_str(r#"{"action":"remove","node":"x"}"#).unwrap();
        assert_eq!(a, Action::Remove { node: "x".into() });
    }
}
