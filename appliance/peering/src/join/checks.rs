//! What the admin side checks in what the appliance being joined sends: its
//! facts (read into [`CandidateFacts`] for preflight) and its certificate
//! request (which must match those facts and the certificate the PAKE bound).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use appliance_cluster::preflight::{ClockSample, Reachability};
use appliance_cluster::{CandidateFacts, NodeId, Role};
use appliance_pki::NodeCsr;
use uuid::Uuid;

use super::error::{CsrMismatch, DriverError};
use crate::client::JoinConnection;
use crate::pb;

/// The candidate as its facts and its connection show it.
pub(super) fn candidate_facts(
    conn: &JoinConnection,
    facts: &pb::FactsReply,
    roles: BTreeSet<Role>,
    (sent, received): (SystemTime, SystemTime),
) -> Result<CandidateFacts, DriverError> {
    let bad = |what: &'static str, detail: String| DriverError::Unreadable {
        address: conn.address(),
        what,
        detail,
    };
    let node_id = Uuid::parse_str(&facts.node_id)
        .map(NodeId)
        .map_err(|e| bad("node id", format!("{:?}: {e}", facts.node_id)))?;
    let addresses = facts
        .addresses
        .iter()
        .map(|a| {
            a.parse::<IpAddr>()
                .map_err(|e| bad("address", format!("{a:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ms = facts.unix_time_ms.unsigned_abs();
    let candidate = if facts.unix_time_ms >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_millis(ms))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_millis(ms))
    }
    .ok_or_else(|| bad("time", facts.unix_time_ms.to_string()))?;
    let shown = conn.peer_fingerprint();
    if facts.fingerprint != shown.to_string() {
        // Only the PAKE can tell a relay from a mistake; it binds `shown`.
        tracing::warn!(
            address = %conn.address(),
            announced = %facts.fingerprint,
            shown = %shown,
            "the appliance announces another certificate than its connection shows"
        );
    }
    Ok(CandidateFacts {
        node_id,
        hostname: facts.hostname.clone(),
        addresses,
        version: facts.version.clone(),
        fingerprint: shown,
        roles,
        mtu: facts.mtu,
        clock: ClockSample {
            cluster_sent: sent,
            candidate,
            cluster_received: received,
        },
        reachability: Reachability::Reachable,
    })
}

/// The request must name the node preflight checked, with its hostname and
/// addresses, and be for the key of `join_cert` (DER), the certificate the
/// appliance's connection showed and the PAKE bound: the certificate signed
/// is then for the key that was authenticated, not one the appliance (or a
/// relay that knew the code) chose afterwards.
pub(super) fn check_csr(
    csr: &NodeCsr,
    candidate: &CandidateFacts,
    join_cert: &[u8],
) -> Result<(), CsrMismatch> {
    let verified = csr.verify().map_err(CsrMismatch::Unverified)?;
    match verified.matches_certificate(join_cert) {
        Ok(true) => {}
        Ok(false) => {
            return Err(CsrMismatch::OtherKey {
                join_cert: candidate.fingerprint,
            })
        }
        Err(e) => return Err(CsrMismatch::JoinCert(e)),
    }
    let subject = verified.subject;
    if subject.node_id != candidate.node_id.uuid() {
        return Err(CsrMismatch::Node {
            asked: subject.node_id,
            facts: candidate.node_id,
        });
    }
    if !subject.hostname.eq_ignore_ascii_case(&candidate.hostname) {
        return Err(CsrMismatch::Host {
            asked: subject.hostname,
            facts: candidate.hostname.clone(),
        });
    }
    let asked: BTreeSet<IpAddr> = subject.addresses.iter().copied().collect();
    let facts: BTreeSet<IpAddr> = candidate.addresses.iter().copied().collect();
    if asked != facts {
        return Err(CsrMismatch::Addresses { asked, facts });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::IpAddr;
    use std::time::SystemTime;

    use appliance_cluster::preflight::{ClockSample, Reachability};
    use appliance_cluster::{CandidateFacts, CertFingerprint, NodeId};
    use appliance_pki::{self_signed_join_cert, NodeCsr, NodeKey, NodeSubject};
    use uuid::Uuid;

    use super::check_csr;
    use crate::join::error::CsrMismatch;

    fn subject(node: u128, hostname: &str, addresses: &[&str]) -> NodeSubject {
        NodeSubject {
            node_id: Uuid::from_u128(node),
            hostname: hostname.into(),
            addresses: addresses
                .iter()
                .map(|a| a.parse().expect("test address"))
                .collect(),
        }
    }

    /// The candidate as preflight saw it, and its join certificate (DER).
    fn candidate(key: &NodeKey) -> (CandidateFacts, Vec<u8>) {
        let s = subject(7, "node-7", &["10.77.0.7"]);
        let now = SystemTime::now();
        let cert = self_signed_join_cert(key, &s, now).expect("join certificate");
        let der = cert.der().to_vec();
        let facts = CandidateFacts {
            node_id: NodeId(s.node_id),
            hostname: s.hostname.clone(),
            addresses: s.addresses.clone(),
            version: "0.1.0".into(),
            fingerprint: CertFingerprint::of_certificate_der(&der),
            roles: BTreeSet::new(),
            mtu: 1500,
            clock: ClockSample {
                cluster_sent: now,
                candidate: now,
                cluster_received: now,
            },
            reachability: Reachability::Reachable,
        };
        (facts, der)
    }

    fn csr(key: &NodeKey, s: &NodeSubject) -> NodeCsr {
        NodeCsr::build(key, s).expect("certificate request")
    }

    #[test]
    fn a_request_for_the_join_key_naming_the_facts_is_accepted() {
        let key = NodeKey::generate().expect("key");
        let (facts, join_cert) = candidate(&key);
        // Hostnames compare without case.
        let request = csr(&key, &subject(7, "NODE-7", &["10.77.0.7"]));
        check_csr(&request, &facts, &join_cert).expect("accepted");
    }

    #[test]
    fn a_request_for_another_key_is_refused() {
        let key = NodeKey::generate().expect("key");
        let (facts, join_cert) = candidate(&key);
        let other = NodeKey::generate().expect("key");
        let request = csr(&other, &subject(7, "node-7", &["10.77.0.7"]));
        let err = check_csr(&request, &facts, &join_cert).expect_err("other key");
        assert!(matches!(err, CsrMismatch::OtherKey { .. }), "{err}");
        assert!(err.to_string().contains("another key"), "{err}");
    }

    #[test]
    fn a_request_naming_other_facts_is_refused() {
        let key = NodeKey::generate().expect("key");
        let (facts, join_cert) = candidate(&key);
        let node = csr(&key, &subject(8, "node-7", &["10.77.0.7"]));
        assert!(matches!(
            check_csr(&node, &facts, &join_cert),
            Err(CsrMismatch::Node { .. })
        ));
        let host = csr(&key, &subject(7, "node-8", &["10.77.0.7"]));
        assert!(matches!(
            check_csr(&host, &facts, &join_cert),
            Err(CsrMismatch::Host { .. })
        ));
        let addresses = csr(&key, &subject(7, "node-7", &["10.77.0.7", "10.77.0.9"]));
        let err = check_csr(&addresses, &facts, &join_cert).expect_err("addresses");
        let CsrMismatch::Addresses { asked, .. } = &err else {
            panic!("not an address mismatch: {err}");
        };
        assert!(asked.contains(&"10.77.0.9".parse::<IpAddr>().expect("address")));
    }

    #[test]
    fn an_unreadable_request_is_refused() {
        let key = NodeKey::generate().expect("key");
        let (facts, join_cert) = candidate(&key);
        let garbage = NodeCsr::from_der(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(matches!(
            check_csr(&garbage, &facts, &join_cert),
            Err(CsrMismatch::Unverified(_))
        ));
    }
}
