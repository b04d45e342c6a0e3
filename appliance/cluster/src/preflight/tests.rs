//! Pure tests: a clean preflight, each failure alone with its message, and
//! all of them reported together.

use super::*;
use uuid::Uuid;

const F: Role = Role::Frontend;
const B: Role = Role::Backend;

fn t(secs: u64, millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(1_800_000_000 + secs)
        + Duration::from_millis(millis)
}

fn member(i: u8, roles: &[Role]) -> Member {
    Member {
        id: NodeId(Uuid::from_u128(u128::from(i))),
        hostname: format!("node-{}", (b'a' + i - 1) as char),
        addresses: vec![IpAddr::from([10, 77, 0, 10 + i])],
        roles: roles.iter().copied().collect(),
        version: "0.1.0".into(),
        fingerprint: CertFingerprint::of_certificate_der(&[i]),
        state: MemberState::Active,
    }
}

/// node-a (front-end + back-end) and node-b (front-end), both MTU 1500.
fn config() -> ClusterConfig {
    ClusterConfig::new(Uuid::from_u128(0xc1), member(1, &[F, B]))
        .unwrap()
        .apply(&Change::Add(member(2, &[F])))
        .unwrap()
}

fn facts(config: &ClusterConfig) -> ClusterFacts<'_> {
    ClusterFacts {
        config,
        version: "0.1.0".into(),
        mtus: config.members().map(|m| (m.id, 1500)).collect(),
    }
}

/// node-c, a good front-end candidate.
fn candidate() -> CandidateFacts {
    let m = member(3, &[F]);
    CandidateFacts {
        node_id: m.id,
        hostname: m.hostname,
        addresses: m.addresses,
        version: m.version,
        fingerprint: m.fingerprint,
        roles: m.roles,
        mtu: 1500,
        clock: ClockSample {
            cluster_sent: t(0, 0),
            candidate: t(0, 10),
            cluster_received: t(0, 20),
        },
        reachability: Reachability::Reachable,
    }
}

fn only_failure(c: &CandidateFacts) -> PreflightFailure {
    let cfg = config();
    let report = check(&facts(&cfg), c);
    assert_eq!(report.failures.len(), 1, "{:?}", report.messages());
    report.failures[0].clone()
}

#[test]
fn a_good_candidate_passes_and_the_change_is_then_accepted() {
    let cfg = config();
    let c = candidate();
    let report = check(&facts(&cfg), &c);
    assert!(report.is_ok(), "{:?}", report.messages());
    assert!(report.warnings.is_empty());
    let after = cfg.apply(&Change::Add(c.member())).unwrap();
    assert_eq!(
        after.member(&c.node_id).unwrap().state,
        MemberState::Joining
    );
}

#[test]
fn a_second_node_passes_with_the_no_ha_warning() {
    let cfg = ClusterConfig::new(Uuid::from_u128(0xc1), member(1, &[F, B])).unwrap();
    let report = check(&facts(&cfg), &candidate());
    assert!(report.is_ok());
    assert_eq!(
        report.warnings,
        vec![Warning::NoHighAvailability {
            backend: "node-a".into()
        }]
    );
}

#[test]
fn an_unreachable_join_port_is_named() {
    let mut c = candidate();
    c.reachability = Reachability::Unreachable {
        address: "10.77.0.13:7443".parse().unwrap(),
        detail: "connection refused".into(),
    };
    assert_eq!(
        only_failure(&c).to_string(),
        "node-c cannot be reached on the join port 10.77.0.13:7443 (connection refused); check \
         that it is running and on a network the cluster reaches, and that no firewall between \
         them blocks TCP port 7443"
    );
}

#[test]
fn a_different_version_is_refused() {
    let mut c = candidate();
    c.version = "0.2.0".into();
    assert_eq!(
        only_failure(&c).to_string(),
        "node-c runs version 0.2.0 but the cluster runs 0.1.0; update it (or the cluster) so \
         both run the same version, then add it again"
    );
}

#[test]
fn clock_skew_beyond_5_seconds_is_refused_either_way() {
    let mut c = candidate();
    // 5 s past the moment the answer arrived: still allowed.
    c.clock.candidate = t(5, 20);
    assert!(check(&facts(&config()), &c).is_ok());
    c.clock.candidate = t(5, 21);
    let f = only_failure(&c);
    assert_eq!(
        f,
        PreflightFailure::ClockSkew {
            hostname: "node-c".into(),
            skew: Duration::from_millis(5001),
            direction: ClockDirection::Ahead
        }
    );
    c.clock.candidate = t(0, 0) - Duration::from_millis(12_300);
    assert_eq!(
        only_failure(&c).to_string(),
        "node-c's clock is 12.3 s behind the cluster's, more than the 5 s allowed; set its NTP \
         servers (or its clock) and add it again"
    );
}

#[test]
fn a_reading_taken_during_a_slow_round_trip_is_not_skew() {
    let sample = ClockSample {
        cluster_sent: t(0, 0),
        candidate: t(7, 0),
        cluster_received: t(9, 0),
    };
    assert_eq!(sample.offset().0, Duration::ZERO);
    // A cluster clock stepping back during the sample does not confuse it.
    let sample = ClockSample {
        cluster_sent: t(9, 0),
        candidate: t(7, 0),
        cluster_received: t(0, 0),
    };
    assert_eq!(sample.offset().0, Duration::ZERO);
}

#[test]
fn duplicate_hostname_address_certificate_and_member_are_refused() {
    let mut c = candidate();
    c.hostname = "Node-B".into();
    assert_eq!(
        only_failure(&c).to_string(),
        "the hostname Node-B is already used by a member of the cluster; give the appliance \
         another hostname before adding it"
    );

    let mut c = candidate();
    c.addresses.push(IpAddr::from([10, 77, 0, 11]));
    assert_eq!(
        only_failure(&c).to_string(),
        "the address 10.77.0.11 of node-c is already used by node-a; give node-c an address no \
         node of the cluster has"
    );

    let mut c = candidate();
    c.fingerprint = CertFingerprint::of_certificate_der(&[2]);
    assert!(matches!(
        only_failure(&c),
        PreflightFailure::CertificateInUse { member, .. } if member == "node-b"
    ));

    let mut c = candidate();
    c.node_id = NodeId(Uuid::from_u128(2));
    c.hostname = "node-b".into();
    c.addresses = vec![IpAddr::from([10, 77, 0, 12])];
    assert!(matches!(
        only_failure(&c),
        PreflightFailure::AlreadyMember { .. }
    ));
}

#[test]
fn an_invalid_resulting_placement_is_refused() {
    let mut c = candidate();
    c.roles = [B].into();
    let f = only_failure(&c);
    assert!(
        f.to_string().starts_with(
            "adding node-c as a second back-end would leave 2 back-end nodes (node-a, node-c)"
        ),
        "{f}"
    );
}

#[test]
fn an_mtu_different_from_the_members_is_refused_naming_them() {
    let cfg = config();
    let mut fx = facts(&cfg);
    let mut c = candidate();
    c.mtu = 1400;
    let report = check(&fx, &c);
    assert_eq!(
        report.messages(),
        vec![
            "node-c's interface MTU is 1400 but node-a, node-b use 1500; packets between them \
             larger than the smaller MTU would be lost: set the same MTU on every node"
        ]
    );
    // Members with different MTUs are each named with theirs.
    fx.mtus.insert(NodeId(Uuid::from_u128(2)), 9000);
    let report = check(&fx, &c);
    assert_eq!(report.failures.len(), 2);
    assert!(report.messages()[1].contains("but node-b uses 9000"));
    // A member whose MTU is unknown is not compared.
    fx.mtus.clear();
    assert!(check(&fx, &c).is_ok());
}

#[test]
fn what_the_change_itself_refuses_is_reported_too() {
    let mut c = candidate();
    c.hostname = "node_c".into();
    assert!(matches!(
        only_failure(&c),
        PreflightFailure::Change(ChangeError::InvalidHostname { .. })
    ));
    let mut c = candidate();
    c.addresses.clear();
    assert!(matches!(
        only_failure(&c),
        PreflightFailure::Change(ChangeError::NoAddresses { .. })
    ));
}

#[test]
fn every_failure_is_reported_at_once() {
    let mut c = candidate();
    c.reachability = Reachability::Unreachable {
        address: "10.77.0.13:7443".parse().unwrap(),
        detail: "timed out".into(),
    };
    c.version = "9".into();
    c.clock.candidate = t(60, 0);
    c.hostname = "node-a".into();
    c.addresses = vec![IpAddr::from([10, 77, 0, 12])];
    c.roles = [B].into();
    c.mtu = 1280;
    let cfg = config();
    let report = check(&facts(&cfg), &c);
    let kinds: Vec<&str> = report
        .failures
        .iter()
        .map(|f| match f {
            PreflightFailure::Unreachable { .. } => "unreachable",
            PreflightFailure::VersionMismatch { .. } => "version",
            PreflightFailure::ClockSkew { .. } => "clock",
            PreflightFailure::HostnameInUse { .. } => "hostname",
            PreflightFailure::AddressInUse { .. } => "address",
            PreflightFailure::MtuMismatch { .. } => "mtu",
            PreflightFailure::Placement(_) => "placement",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "unreachable",
            "version",
            "clock",
            "hostname",
            "address",
            "mtu",
            "placement"
        ]
    );
}

#[test]
fn candidate_facts_serialize() {
    let c = candidate();
    let back: CandidateFacts = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}
