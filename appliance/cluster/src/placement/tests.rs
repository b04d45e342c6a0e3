//! Pure tests of the placement rules: what is valid, each refusal and
//! warning, where services go, and the serialized forms.

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
