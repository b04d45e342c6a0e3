//! Tests of the local authority: storing before a change is visible,
//! revocation on removal, admission rules, the back-end role kept, the
//! audit trail's bound, management certificates for members only.

use std::time::SystemTime;

use appliance_cluster::{CertFingerprint, MemberState, Role};
use appliance_pki::{NodeKey, NodeSubject, RevocationList};
use uuid::Uuid;

use super::*;

struct Refusing;

impl Persist for Refusing {
    fn save(&self, _: &AuthorityRecord) -> Result<(), HookError> {
        Err(HookError("the disk is full".into()))
    }
}

fn member(n: u8, roles: &[Role]) -> Member {
    Member {
        id: NodeId(Uuid::from_u128(u128::from(n))),
        hostname: format!("node-{n}"),
        addresses: vec![format!("10.77.0.{n}").parse().unwrap()],
        roles: roles.iter().copied().collect(),
        version: "0.1.0".into(),
        fingerprint: CertFingerprint::of_certificate_der(&[n]),
        state: MemberState::Active,
    }
}

fn record() -> AuthorityRecord {
    let config = ClusterConfig::new(
        Uuid::from_u128(1),
        member(1, &[Role::Frontend, Role::Backend]),
    )
    .unwrap();
    AuthorityRecord {
        state: ClusterState {
            config,
            revocations: RevocationList::new(),
        },
        issued: BTreeMap::from([(
            NodeId(Uuid::from_u128(2)),
            BTreeSet::from(["ab".repeat(32)]),
        )]),
    }
}

/// Member `n` as a join adds it (joining), and its certificate request.
fn joining(n: u8, roles: &[Role]) -> (Member, NodeCsr) {
    let mut m = member(n, roles);
    m.state = MemberState::Joining;
    (m.clone(), csr_for(&m))
}

fn csr_for(m: &Member) -> NodeCsr {
    let key = NodeKey::generate().unwrap();
    let subject = NodeSubject {
        node_id: m.id.uuid(),
        hostname: m.hostname.clone(),
        addresses: m.addresses.clone(),
    };
    NodeCsr::build(&key, &subject).unwrap()
}

fn authority(persist: Arc<dyn Persist>) -> LocalAuthority {
    let ca = CaKey::create("test", SystemTime::now()).unwrap();
    LocalAuthority::new(ca, record(), persist, crate::system_clock())
}

#[tokio::test]
async fn a_change_that_cannot_be_stored_is_not_made() {
    let a = authority(Arc::new(Refusing));
    let (m, csr) = joining(2, &[Role::Frontend]);
    let e = a.admit(&csr, m).await.unwrap_err();
    assert!(e.to_string().contains("the disk is full"), "{e}");
    assert_eq!(a.record().await, record());
}

#[tokio::test]
async fn removal_revokes_every_certificate_issued_to_the_node() {
    let persist = Arc::new(MemoryPersist::default());
    let a = authority(persist.clone());
    let (m, csr) = joining(2, &[Role::Frontend]);
    let admitted = a.admit(&csr, m).await.unwrap();
    let listed = admitted
        .state
        .config
        .member(&NodeId(Uuid::from_u128(2)))
        .unwrap()
        .clone();
    assert_eq!(listed.state, MemberState::Joining);
    assert_eq!(listed.fingerprint.to_string(), admitted.cert.fingerprint());
    let state = a
        .propose(Change::Remove {
            node: NodeId(Uuid::from_u128(2)),
        })
        .await
        .unwrap();
    let revoked: BTreeSet<&str> = state.revocations.fingerprints().collect();
    assert!(revoked.contains("ab".repeat(32).as_str()));
    assert!(revoked.contains(admitted.cert.fingerprint().as_str()));
    assert_eq!(persist.saves(), 2);
    // What is stored reads back the same.
    let stored = persist.last().unwrap();
    let json = serde_json::to_string(&stored).unwrap();
    assert_eq!(
        serde_json::from_str::<AuthorityRecord>(&json).unwrap(),
        stored
    );
    assert_eq!(stored, a.record().await);
}

#[tokio::test]
async fn refused_changes_are_not_stored() {
    let persist = Arc::new(MemoryPersist::default());
    let a = authority(persist.clone());
    let (m, csr) = joining(2, &[Role::Backend]);
    let e = a.admit(&csr, m).await.unwrap_err();
    assert!(matches!(e, AuthorityError::Refused(_)), "{e}");
    assert_eq!(persist.saves(), 0);
}

#[tokio::test]
async fn no_certificate_without_adding_a_new_joining_node() {
    let persist = Arc::new(MemoryPersist::default());
    let a = authority(persist.clone());
    // An existing member's id: refused before anything is signed.
    let existing = member(1, &[Role::Frontend]);
    let mut as_joining = existing.clone();
    as_joining.state = MemberState::Joining;
    let e = a.admit(&csr_for(&existing), as_joining).await.unwrap_err();
    assert!(e.to_string().contains("already a member"), "{e}");
    // A request for another node than the one added.
    let (m, _) = joining(2, &[Role::Frontend]);
    let (_, other) = joining(3, &[Role::Frontend]);
    let e = a.admit(&other, m.clone()).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("request names node 00000000-0000-0000-0000-000000000003"),
        "{e}"
    );
    // Another hostname, other addresses than the member record's.
    let mut renamed = m.clone();
    renamed.hostname = "node-x".into();
    assert!(a.admit(&csr_for(&renamed), m.clone()).await.is_err());
    let mut moved = m.clone();
    moved.addresses = vec!["10.77.0.99".parse().unwrap()];
    assert!(a.admit(&csr_for(&moved), m.clone()).await.is_err());
    // Not as an active node.
    let mut active = m.clone();
    active.state = MemberState::Active;
    let e = a.admit(&csr_for(&m), active).await.unwrap_err();
    assert!(e.to_string().contains("not active"), "{e}");
    // Nor added by a plain change (it would carry no certificate of ours).
    let e = a.propose(Change::Add(m)).await.unwrap_err();
    assert!(matches!(e, AuthorityError::NotAdmitted { .. }), "{e}");
    assert_eq!(persist.saves(), 0);
    assert_eq!(a.record().await, record());
}

#[tokio::test]
async fn the_authority_keeps_the_back_end_role() {
    let persist = Arc::new(MemoryPersist::default());
    let a = authority(persist.clone());
    let (m, csr) = joining(2, &[Role::Frontend]);
    a.admit(&csr, m).await.unwrap();
    let before = a.record().await;
    let (one, two) = (NodeId(Uuid::from_u128(1)), NodeId(Uuid::from_u128(2)));
    // Moving the back-end role to node 2 (the rules alone allow it).
    let moved = Change::SetRoles {
        roles: BTreeMap::from([
            (one, BTreeSet::from([Role::Frontend])),
            (two, BTreeSet::from([Role::Frontend, Role::Backend])),
        ]),
    };
    assert!(before.state.config.apply(&moved).is_ok());
    let e = a.propose(moved).await.unwrap_err();
    assert!(matches!(e, AuthorityError::AuthorityStays { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("would make node-2 the back-end node"),
        "{e}"
    );
    assert_eq!(a.record().await, before);
    // Changes that keep it are made.
    a.propose(Change::set_roles(one, [Role::Backend]))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_authority_keeps_the_newest_events_and_stores_each_before_answering() {
    let persist = Arc::new(MemoryPersist::default());
    let a = authority(persist.clone());
    let extra = 5;
    for i in 1..=AUTHORITY_EVENTS_KEPT + extra {
        let e = a
            .record_event(Event {
                action: "sign-in".into(),
                ..Event::default()
            })
            .await
            .unwrap();
        assert_eq!(e.seq, i);
        if i == 1 {
            assert_eq!(persist.events(), [e]);
        }
    }
    let stored = persist.events();
    assert_eq!(stored.len() as u64, AUTHORITY_EVENTS_KEPT);
    assert_eq!(stored.first().unwrap().seq, extra + 1);
    assert_eq!(stored.last().unwrap().seq, AUTHORITY_EVENTS_KEPT + extra);
}

#[tokio::test]
async fn a_management_certificate_is_signed_only_for_a_member() {
    let a = authority(Arc::new(MemoryPersist::default()));
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec!["node-1".to_string()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let signed = a
        .sign_management(NodeId(Uuid::from_u128(1)), &csr)
        .await
        .unwrap();
    assert_eq!(signed.ca_pem, a.ca_cert().to_pem());
    let stranger = NodeId(Uuid::from_u128(9));
    let e = a.sign_management(stranger, &csr).await.unwrap_err();
    assert!(
        matches!(e, AuthorityError::Refused(ChangeError::UnknownNode { node }) if node == stranger),
        "{e}"
    );
}
