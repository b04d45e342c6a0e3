//! Pure tests: forming, every accepted and refused change (with the original
//! left as it was), serde, and the incremental diff.

use super::*;
use crate::placement::Violation;

const F: Role = Role::Frontend;
const B: Role = Role::Backend;

fn id(i: u128) -> NodeId {
    NodeId(Uuid::from_u128(i))
}

fn member(i: u8, roles: &[Role]) -> Member {
    Member {
        id: id(u128::from(i)),
        hostname: format!("node-{}", (b'a' + i - 1) as char),
        addresses: vec![
            IpAddr::from([10, 77, 0, 10 + i]),
            format!("fd77::{}", 10 + i).parse().unwrap(),
        ],
        roles: roles.iter().copied().collect(),
        version: "0.1.0".into(),
        fingerprint: CertFingerprint::of_certificate_der(&[i]),
        state: MemberState::Joining,
    }
}

fn cluster_id() -> Uuid {
    Uuid::from_u128(0xc1)
}

/// A (front-end + back-end), B and C (front-ends).
fn three_nodes() -> ClusterConfig {
    ClusterConfig::new(cluster_id(), member(1, &[F, B]))
        .unwrap()
        .apply(&Change::Add(member(2, &[F])))
        .unwrap()
        .apply(&Change::Add(member(3, &[F])))
        .unwrap()
}

fn services() -> Vec<ServiceSpec> {
    vec![
        ServiceSpec {
            name: "portal".into(),
            kind: F,
        },
        ServiceSpec {
            name: "audit".into(),
            kind: B,
        },
    ]
}

/// Asserts `change` is refused and `config` is unchanged; returns the error.
fn refused(config: &ClusterConfig, change: Change) -> ChangeError {
    let before = config.clone();
    let e = config.apply(&change).unwrap_err();
    assert_eq!(config, &before);
    e
}

#[test]
fn forming_makes_generation_1_with_the_founder_active() {
    let c = ClusterConfig::new(cluster_id(), member(1, &[F, B])).unwrap();
    assert_eq!(c.generation(), 1);
    assert_eq!(c.cluster_id(), cluster_id());
    assert_eq!(c.len(), 1);
    assert_eq!(c.member(&id(1)).unwrap().state, MemberState::Active);
    assert!(c.warnings().is_empty());
}

#[test]
fn forming_with_a_single_role_is_refused() {
    let e = ClusterConfig::new(cluster_id(), member(1, &[F])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "forming the cluster with node-a as a front-end would leave no back-end node, so the \
         back-end services would have nowhere to run; keep the back-end role on 1 or 3 nodes"
    );
}

#[test]
fn adding_nodes_bumps_the_generation_and_reports_the_two_node_warning() {
    let one = ClusterConfig::new(cluster_id(), member(1, &[F, B])).unwrap();
    let two = one.apply(&Change::Add(member(2, &[F]))).unwrap();
    assert_eq!(two.generation(), 2);
    assert_eq!(two.member(&id(2)).unwrap().state, MemberState::Joining);
    assert_eq!(
        two.warnings(),
        vec![Warning::NoHighAvailability {
            backend: "node-a".into()
        }]
    );
    let three = two.apply(&Change::Add(member(3, &[F]))).unwrap();
    assert_eq!(three.generation(), 3);
    assert!(three.warnings().is_empty());
    // The earlier values are untouched.
    assert_eq!(one.len(), 1);
    assert_eq!(two.len(), 2);
}

#[test]
fn a_second_backend_is_refused_with_nothing_changed() {
    let c = three_nodes();
    let e = refused(&c, Change::Add(member(4, &[B])));
    assert!(
        e.to_string()
            .starts_with("adding node-d as a second back-end would leave 2 back-end nodes"),
        "{e}"
    );
    let e = refused(&c, Change::set_roles(id(2), [F, B]));
    match e {
        ChangeError::Placement(p) => assert!(matches!(
            &p.violations[..],
            [Violation::TwoBackends { nodes }] if nodes == &["node-a", "node-b"]
        )),
        other => panic!("{other}"),
    }
}

#[test]
fn identity_clashes_are_refused_naming_the_node() {
    let c = three_nodes();

    let e = refused(&c, Change::Add(member(2, &[F])));
    assert_eq!(
        e,
        ChangeError::AlreadyMember {
            node: id(2),
            hostname: "node-b".into()
        }
    );

    let mut dup_name = member(4, &[F]);
    dup_name.hostname = "NODE-B".into();
    let e = refused(&c, Change::Add(dup_name));
    assert!(
        e.to_string()
            .starts_with("the hostname \"NODE-B\" is already used by the member"),
        "{e}"
    );

    let mut dup_ip = member(4, &[F]);
    dup_ip.addresses.push(IpAddr::from([10, 77, 0, 13]));
    let e = refused(&c, Change::Add(dup_ip));
    assert_eq!(
        e.to_string(),
        "the address 10.77.0.13 of node-d is already used by node-c; \
         give node-d an address no other node has"
    );

    let mut dup_cert = member(4, &[F]);
    dup_cert.fingerprint = c.member(&id(1)).unwrap().fingerprint;
    let e = refused(&c, Change::Add(dup_cert));
    assert!(
        matches!(e, ChangeError::DuplicateFingerprint { existing, .. } if existing == "node-a")
    );

    let mut twice = member(4, &[F]);
    twice.addresses.push(twice.addresses[0]);
    assert!(matches!(
        refused(&c, Change::Add(twice)),
        ChangeError::DuplicateAddress { existing, .. } if existing == "node-d"
    ));

    let mut none = member(4, &[F]);
    none.addresses.clear();
    assert_eq!(
        refused(&c, Change::Add(none)).to_string(),
        "node-d has no address; a member needs at least one address its peers can reach"
    );

    let mut bad = member(4, &[F]);
    bad.hostname = "bad_name".into();
    let e = refused(&c, Change::Add(bad));
    assert!(
        e.to_string()
            .starts_with("the hostname \"bad_name\" contains '_'"),
        "{e}"
    );

    let mut removing = member(4, &[F]);
    removing.state = MemberState::Removing;
    assert_eq!(
        refused(&c, Change::Add(removing)).to_string(),
        "node-d cannot join in state removing; add it as joining (or active)"
    );
}

#[test]
fn removing_the_last_frontend_is_refused() {
    // node-a back-end only, node-b the only front-end.
    let c = ClusterConfig::new(cluster_id(), member(1, &[F, B]))
        .unwrap()
        .apply(&Change::Add(member(2, &[F])))
        .unwrap()
        .apply(&Change::set_roles(id(1), [B]))
        .unwrap();
    let e = refused(&c, Change::Remove { node: id(2) });
    assert!(
        e.to_string()
            .starts_with("removing node-b would remove the last front-end node"),
        "{e}"
    );
    // Draining it counts the same as removing it.
    let e = refused(
        &c,
        Change::SetState {
            node: id(2),
            state: MemberState::Removing,
        },
    );
    assert!(e
        .to_string()
        .starts_with("removing node-b would remove the last front-end node"));
    // Demoting it too.
    let e = refused(&c, Change::set_roles(id(2), [B]));
    assert!(
        e.to_string().contains("would leave no front-end node"),
        "{e}"
    );
}

#[test]
fn removing_a_frontend_and_the_only_backend() {
    let c = three_nodes();
    let after = c.apply(&Change::Remove { node: id(3) }).unwrap();
    assert_eq!(after.generation(), c.generation() + 1);
    assert!(after.member(&id(3)).is_none());
    let e = refused(&c, Change::Remove { node: id(1) });
    assert!(
        e.to_string()
            .starts_with("removing node-a would leave no back-end node"),
        "{e}"
    );
    assert_eq!(
        refused(&c, Change::Remove { node: id(9) }),
        ChangeError::UnknownNode { node: id(9) }
    );
}

#[test]
fn going_from_one_to_three_backends_takes_one_change_of_two_nodes() {
    let c = three_nodes();
    let change = Change::SetRoles {
        roles: BTreeMap::from([
            (id(2), [F, B].into_iter().collect()),
            (id(3), [B].into_iter().collect()),
        ]),
    };
    let after = c.apply(&change).unwrap();
    let backends = after.members().filter(|m| m.roles.contains(&B)).count();
    assert_eq!(backends, 3);
    // Moving the back-end from node-a to node-b in one step is accepted too.
    let moved = c
        .apply(&Change::SetRoles {
            roles: BTreeMap::from([
                (id(1), [F].into_iter().collect()),
                (id(2), [F, B].into_iter().collect()),
            ]),
        })
        .unwrap();
    assert_eq!(moved.member(&id(2)).unwrap().roles, [F, B].into());
}

#[test]
fn role_changes_that_change_nothing_or_name_nobody_are_refused() {
    let c = three_nodes();
    assert_eq!(
        refused(&c, Change::set_roles(id(2), [F])).to_string(),
        "node-b is already a front-end; nothing to change"
    );
    assert_eq!(
        refused(
            &c,
            Change::SetRoles {
                roles: BTreeMap::new()
            }
        ),
        ChangeError::EmptyChange
    );
    assert_eq!(
        refused(&c, Change::set_roles(id(7), [F])),
        ChangeError::UnknownNode { node: id(7) }
    );
    assert!(matches!(
        refused(&c, Change::set_roles(id(2), [])),
        ChangeError::Placement(_)
    ));
}

#[test]
fn member_states_follow_the_allowed_transitions() {
    let c = three_nodes();
    let set = |c: &ClusterConfig, i, state| c.apply(&Change::SetState { node: id(i), state });

    let active = set(&c, 2, MemberState::Active).unwrap();
    assert_eq!(active.member(&id(2)).unwrap().state, MemberState::Active);
    let e = refused(
        &active,
        Change::SetState {
            node: id(2),
            state: MemberState::Joining,
        },
    );
    assert_eq!(
        e.to_string(),
        "node-b is active and cannot become joining; an active node stays active until it is removed"
    );
    assert_eq!(
        refused(
            &active,
            Change::SetState {
                node: id(2),
                state: MemberState::Active
            }
        )
        .to_string(),
        "node-b is already active; nothing to change"
    );

    let draining = set(&active, 2, MemberState::Removing).unwrap();
    // A node being drained no longer counts: node-c alone is a front-end
    // besides node-a, and node-b runs nothing.
    assert_eq!(draining.placement_nodes().len(), 2);
    assert!(draining.services(&services())[&id(2)].is_empty());
    // Its addresses stay in the peer sets until it is gone.
    assert!(draining
        .peer_addresses()
        .contains(&IpAddr::from([10, 77, 0, 12])));
    let back = set(&draining, 2, MemberState::Active).unwrap();
    assert_eq!(back.member(&id(2)).unwrap().state, MemberState::Active);
    assert!(matches!(
        refused(
            &draining,
            Change::SetState {
                node: id(2),
                state: MemberState::Joining
            }
        ),
        ChangeError::BadTransition { .. }
    ));
}

#[test]
fn configuration_round_trips_through_json_and_refuses_duplicates() {
    let c = three_nodes();
    let json = serde_json::to_string(&c).unwrap();
    let back: ClusterConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    assert_eq!(back.validate().unwrap(), vec![]);

    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let first = v["members"][0].clone();
    v["members"].as_array_mut().unwrap().push(first);
    let e = serde_json::from_value::<ClusterConfig>(v).unwrap_err();
    assert!(
        e.to_string()
            .contains("lists node 00000000-0000-0000-0000-000000000001 twice"),
        "{e}"
    );

    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["surprise"] = serde_json::json!(1);
    assert!(serde_json::from_value::<ClusterConfig>(v).is_err());
}

#[test]
fn validate_applies_the_placement_rules_to_a_received_configuration() {
    let c = three_nodes();
    let mut v = serde_json::to_value(&c).unwrap();
    // Give node-b the back-end role behind apply's back.
    for m in v["members"].as_array_mut().unwrap() {
        if m["hostname"] == "node-b" {
            m["roles"] = serde_json::json!(["frontend", "backend"]);
        }
    }
    let forged: ClusterConfig = serde_json::from_value(v).unwrap();
    let e = forged.validate().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("this cluster configuration would leave 2 back-end nodes"),
        "{e}"
    );
}

#[test]
fn changes_serialize_tagged() {
    let change = Change::set_roles(id(2), [F]);
    let json = serde_json::to_string(&change).unwrap();
    assert_eq!(
        json,
        r#"{"change":"set_roles","roles":{"00000000-0000-0000-0000-000000000002":["frontend"]}}"#
    );
    assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), change);
    let add = Change::Add(member(4, &[F]));
    let back: Change = serde_json::from_str(&serde_json::to_string(&add).unwrap()).unwrap();
    assert_eq!(back, add);
}

#[test]
fn lookups_by_hostname_and_address() {
    let c = three_nodes();
    assert_eq!(c.member_by_hostname("NODE-C").unwrap().id, id(3));
    assert_eq!(
        c.member_by_address(&"fd77::12".parse().unwrap())
            .unwrap()
            .id,
        id(2)
    );
    assert!(c.member_by_hostname("node-z").is_none());
    assert_eq!(c.peer_addresses().len(), 6);
}

#[test]
fn diff_for_a_join_adds_peers_and_starts_only_the_new_nodes_services() {
    let two = ClusterConfig::new(cluster_id(), member(1, &[F, B]))
        .unwrap()
        .apply(&Change::Add(member(2, &[F])))
        .unwrap();
    let three = two.apply(&Change::Add(member(3, &[F]))).unwrap();
    let d = diff(Some(&two), &three, &services()).unwrap();
    assert_eq!(d.from_generation, Some(2));
    assert_eq!(d.to_generation, 3);
    assert_eq!(
        d.peers_added,
        BTreeSet::from([
            IpAddr::from([10, 77, 0, 13]),
            "fd77::13".parse::<IpAddr>().unwrap()
        ])
    );
    assert!(d.peers_removed.is_empty());
    assert_eq!(d.members_added, BTreeSet::from([id(3)]));
    // node-a and node-b keep their services untouched.
    assert_eq!(d.services.keys().collect::<Vec<_>>(), vec![&id(3)]);
    assert_eq!(
        d.for_node(&id(3)).start,
        BTreeSet::from(["portal".to_string()])
    );
    assert!(d.for_node(&id(1)).is_empty());
}

#[test]
fn diff_for_a_removal_takes_peers_out_stops_services_and_names_the_certificate() {
    let three = three_nodes();
    let draining = three
        .apply(&Change::SetState {
            node: id(3),
            state: MemberState::Removing,
        })
        .unwrap();
    let d = diff(Some(&three), &draining, &services()).unwrap();
    assert!(d.peers_removed.is_empty(), "peers stay while draining");
    assert_eq!(
        d.for_node(&id(3)).stop,
        BTreeSet::from(["portal".to_string()])
    );
    assert_eq!(d.services.len(), 1);

    let gone = draining.apply(&Change::Remove { node: id(3) }).unwrap();
    let d = diff(Some(&draining), &gone, &services()).unwrap();
    assert_eq!(d.peers_removed.len(), 2);
    assert_eq!(
        d.members_removed,
        BTreeMap::from([(id(3), CertFingerprint::of_certificate_der(&[3]))])
    );
    assert!(d.services.is_empty(), "nothing left to stop");
}

#[test]
fn diff_for_a_role_change_starts_and_stops_on_that_node_only() {
    let three = three_nodes();
    let moved = three
        .apply(&Change::SetRoles {
            roles: BTreeMap::from([
                (id(1), [F].into_iter().collect()),
                (id(2), [F, B].into_iter().collect()),
            ]),
        })
        .unwrap();
    let d = diff(Some(&three), &moved, &services()).unwrap();
    assert!(d.peers_added.is_empty() && d.peers_removed.is_empty());
    assert_eq!(
        d.for_node(&id(1)),
        ServiceDelta {
            start: BTreeSet::new(),
            stop: BTreeSet::from(["audit".to_string()])
        }
    );
    assert_eq!(
        d.for_node(&id(2)),
        ServiceDelta {
            start: BTreeSet::from(["audit".to_string()]),
            stop: BTreeSet::new()
        }
    );
    assert!(d.for_node(&id(3)).is_empty());
}

#[test]
fn a_node_that_was_down_catches_up_in_one_diff() {
    let one = ClusterConfig::new(cluster_id(), member(1, &[F, B])).unwrap();
    let latest = one
        .apply(&Change::Add(member(2, &[F])))
        .unwrap()
        .apply(&Change::Add(member(3, &[F])))
        .unwrap()
        .apply(&Change::Remove { node: id(2) })
        .unwrap();
    let d = diff(Some(&one), &latest, &services()).unwrap();
    assert_eq!((d.from_generation, d.to_generation), (Some(1), 4));
    assert_eq!(d.members_added, BTreeSet::from([id(3)]));
    assert!(
        d.members_removed.is_empty(),
        "node-b came and went meanwhile"
    );
    assert_eq!(d.peers_added.len(), 2);

    // A node with no configuration yet gets everything.
    let d = diff(None, &latest, &services()).unwrap();
    assert_eq!(d.from_generation, None);
    assert_eq!(d.peers_added, latest.peer_addresses());
    assert_eq!(
        d.for_node(&id(1)).start,
        BTreeSet::from(["audit".to_string(), "portal".to_string()])
    );
    // And the same configuration again means nothing to do.
    assert!(diff(Some(&latest), &latest, &services())
        .unwrap()
        .is_empty());
}

#[test]
fn diff_refuses_stale_conflicting_and_foreign_configurations() {
    let c = three_nodes();
    let older = ClusterConfig::new(cluster_id(), member(1, &[F, B])).unwrap();
    assert_eq!(
        diff(Some(&c), &older, &services()).unwrap_err(),
        DiffError::Stale {
            have: 3,
            offered: 1
        }
    );
    // Same generation, different members.
    let other_branch = ClusterConfig::new(cluster_id(), member(1, &[F, B]))
        .unwrap()
        .apply(&Change::Add(member(2, &[F])))
        .unwrap()
        .apply(&Change::Add(member(4, &[F])))
        .unwrap();
    let e = diff(Some(&c), &other_branch, &services()).unwrap_err();
    assert_eq!(e, DiffError::Conflict { generation: 3 });
    assert!(e
        .to_string()
        .contains("two nodes changed the cluster at once"));
    let foreign = ClusterConfig::new(Uuid::from_u128(0xfe), member(1, &[F, B])).unwrap();
    assert!(matches!(
        diff(Some(&c), &foreign, &services()).unwrap_err(),
        DiffError::OtherCluster { .. }
    ));
}

#[test]
fn config_diff_serializes() {
    let c = three_nodes();
    let d = diff(None, &c, &services()).unwrap();
    let back: ConfigDiff = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
    assert_eq!(back, d);
}

// ------------------------------------------------ admin data in the config --

fn admin_hash() -> String {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
        .into()
}

fn put_admin(name: &str, role: AdminRole, create: bool) -> Change {
    Change::Admin(AdminChange::PutAccount {
        account: Account {
            name: name.into(),
            role,
            password_hash: admin_hash(),
            changed_unix_ms: 7,
        },
        create,
    })
}

#[test]
fn admin_change_bumps_the_generation_and_keeps_the_members() {
    let c = three_nodes();
    let next = c
        .apply(&put_admin("root", AdminRole::Administrator, true))
        .unwrap();
    assert_eq!(next.generation(), c.generation() + 1);
    assert!(next.admin().has_administrator());
    assert_eq!(
        next.members().collect::<Vec<_>>(),
        c.members().collect::<Vec<_>>()
    );
    // Following it moves no service and no peer.
    assert!(diff(Some(&c), &next, &services()).unwrap().is_empty());
}

#[test]
fn refused_admin_change_leaves_the_config() {
    let c = three_nodes()
        .apply(&put_admin("root", AdminRole::Administrator, true))
        .unwrap();
    let e = refused(&c, put_admin("root", AdminRole::Viewer, false));
    assert!(matches!(
        e,
        ChangeError::Admin(AdminError::LastAdministrator { .. })
    ));
    let e = refused(&c, put_admin("root", AdminRole::Administrator, true));
    assert!(e.to_string().contains("already exists"));
}

#[test]
fn config_carries_admin_data_through_serde() {
    let c = three_nodes()
        .apply(&put_admin("root", AdminRole::Administrator, true))
        .unwrap();
    let json = serde_json::to_string(&c).unwrap();
    let back: ClusterConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    back.validate().unwrap();
}

#[test]
fn config_without_admin_data_still_loads_and_writes_the_old_form() {
    let c = three_nodes();
    let json = serde_json::to_string(&c).unwrap();
    // Nothing to say: the field is left out, as before the management plane.
    assert!(!json.contains("\"admin\""), "{json}");
    let back: ClusterConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    assert!(back.admin().is_empty());
}

#[test]
fn forming_carries_the_founders_admin_data() {
    let mut own = AdminData::default();
    own.apply(&AdminChange::PutAccount {
        account: Account {
            name: "root".into(),
            role: AdminRole::Administrator,
            password_hash: admin_hash(),
            changed_unix_ms: 1,
        },
        create: true,
    })
    .unwrap();
    let c = ClusterConfig::new(cluster_id(), member(1, &[F, B]))
        .unwrap()
        .with_admin(own.clone())
        .unwrap();
    assert_eq!(c.admin(), &own);
    assert_eq!(c.generation(), 1);
}
