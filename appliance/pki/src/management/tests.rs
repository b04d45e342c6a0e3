//! Management certificates: the self-signed one, the request, and every
//! refusal of an uploaded chain (certificates made here with rcgen).

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, Issuer, KeyPair, PublicKeyData, PKCS_ECDSA_P384_SHA384,
};

use super::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn hosts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter()
        .map(|s| s.parse().expect("test address"))
        .collect()
}

/// An uploaded-style chain: a CA and a leaf it signs for `names`, valid
/// from `from` for `days` days, with the leaf's key as PKCS#8 PEM.
struct Upload {
    chain_pem: String,
    leaf_pem: String,
    ca_pem: String,
    key_pem: String,
}

fn upload(names: &[&str], from: SystemTime, days: u32) -> Upload {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.not_before = to_offset(from - DAY, "test").expect("time");
    ca.not_after = to_offset(from + DAY * 3650, "test").expect("time");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("leaf key");
    let mut leaf = CertificateParams::new(hosts(names)).expect("leaf params");
    leaf.not_before = to_offset(from, "test").expect("time");
    leaf.not_after = to_offset(from + DAY * days, "test").expect("time");
    let leaf_cert = leaf.signed_by(&key, &issuer).expect("leaf certificate");
    Upload {
        chain_pem: format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        leaf_pem: leaf_cert.pem(),
        ca_pem: ca_cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn members() -> (Vec<String>, Vec<IpAddr>) {
    (hosts(&["node-1", "node-2"]), ips(&["10.0.0.1", "fd00::2"]))
}

const COVERING: &[&str] = &["node-1", "node-2", "10.0.0.1", "fd00::2"];

#[test]
fn self_signed_names_the_node_and_is_a_server_leaf() {
    let key = NodeKey::generate().expect("key");
    let now = SystemTime::now();
    let cert = self_signed_management_cert(&key, "node-1", &ips(&["10.0.0.1", "fd00::1"]), now)
        .expect("self-signed");
    assert_eq!(cert.names(), ["node-1", "10.0.0.1", "fd00::1"]);
    assert!(cert.valid_at(now));
    assert!(!cert.valid_at(now + MANAGEMENT_CERT_VALIDITY + DAY));
    assert_eq!(cert.fingerprint.len(), 32 * 3 - 1);
    assert!(cert
        .fingerprint
        .chars()
        .all(|c| c == ':' || c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    // It passes the upload check with its own key, for its own names.
    let again = validate_uploaded(
        &cert.cert_pem,
        &key.to_pem(),
        &hosts(&["node-1"]),
        &ips(&["fd00::1"]),
        now,
    )
    .expect("own certificate is acceptable");
    assert_eq!(again.fingerprint, cert.fingerprint);
    let der = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("pem");
    let (_, x509) = X509Certificate::from_der(&der).expect("der");
    assert!(!x509.is_ca());
    let eku = x509
        .extended_key_usage()
        .expect("eku")
        .expect("has eku")
        .value;
    assert!(eku.server_auth && !eku.client_auth);
    // Bad hostnames are refused by name.
    let e = self_signed_management_cert(&key, "", &[], now).expect_err("empty");
    assert!(e.to_string().contains("hostname"), "{e}");
}

#[test]
fn the_request_carries_the_names_and_the_key() {
    let key = NodeKey::generate().expect("key");
    let pem = management_csr(&key, "node-1", &ips(&["10.0.0.1"])).expect("csr");
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{pem}"
    );
    let der = crate::cert::pem_decode(&pem, "CERTIFICATE REQUEST", "test").expect("one block");
    let csr = rcgen::CertificateSigningRequestParams::from_der(
        &rustls::pki_types::CertificateSigningRequestDer::from(der.as_slice()),
    )
    .expect("valid request");
    let sans: Vec<String> = csr
        .params
        .subject_alt_names
        .iter()
        .map(|s| match s {
            SanType::DnsName(n) => n.as_str().to_string(),
            SanType::IpAddress(a) => a.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(sans, ["node-1", "10.0.0.1"]);
    assert_eq!(
        csr.public_key.subject_public_key_info(),
        key.public_key_der()
    );
}

#[test]
fn a_covering_valid_chain_with_its_key_is_accepted() {
    let now = SystemTime::now();
    let u = upload(COVERING, now - DAY, 90);
    let (h, a) = members();
    let cert = validate_uploaded(&u.chain_pem, &u.key_pem, &h, &a, now).expect("acceptable");
    assert_eq!(cert.names(), COVERING);
    assert_eq!(cert.cert_pem, u.chain_pem);
    // A leaf alone (no chain) is fine too.
    validate_uploaded(&u.leaf_pem, &u.key_pem, &h, &a, now).expect("leaf alone");
    // Wildcards cover one label.
    let w = upload(&["*.lan", "10.0.0.1", "fd00::2"], now - DAY, 90);
    validate_uploaded(
        &w.chain_pem,
        &w.key_pem,
        &hosts(&["node-1.lan", "NODE-2.LAN"]),
        &a,
        now,
    )
    .expect("wildcard covers");
}

#[test]
fn refuses_an_expired_certificate() {
    let now = SystemTime::now();
    let u = upload(COVERING, now - DAY * 100, 30);
    let (h, a) = members();
    let e = validate_uploaded(&u.chain_pem, &u.key_pem, &h, &a, now).expect_err("expired");
    assert!(matches!(e, PkiError::Expired { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("the management certificate")
            && msg.contains("expired on")
            && msg.contains("UTC"),
        "{msg}"
    );
}

#[test]
fn refuses_a_certificate_not_yet_valid() {
    let now = SystemTime::now();
    let u = upload(COVERING, now + DAY * 2, 30);
    let (h, a) = members();
    let e = validate_uploaded(&u.chain_pem, &u.key_pem, &h, &a, now).expect_err("future");
    assert!(matches!(e, PkiError::NotYetValid { .. }), "{e}");
    assert!(e.to_string().contains("is not valid before"), "{e}");
}

#[test]
fn refuses_a_key_that_is_not_the_leafs() {
    let now = SystemTime::now();
    let u = upload(COVERING, now - DAY, 90);
    let other = upload(COVERING, now - DAY, 90);
    let (h, a) = members();
    let e = validate_uploaded(&u.chain_pem, &other.key_pem, &h, &a, now).expect_err("mismatch");
    assert!(matches!(e, PkiError::KeyMismatch { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("does not belong to the management certificate"),
        "{e}"
    );
}

#[test]
fn refuses_a_certificate_missing_members_and_names_them() {
    let now = SystemTime::now();
    let u = upload(&["node-1", "10.0.0.1"], now - DAY, 90);
    let (h, a) = members();
    let e = validate_uploaded(&u.chain_pem, &u.key_pem, &h, &a, now).expect_err("not covering");
    let PkiError::NotCovered { missing, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(missing, &["node-2", "fd00::2"]);
    let msg = e.to_string();
    assert!(
        msg.contains("does not cover node-2, fd00::2; it names node-1, 10.0.0.1"),
        "{msg}"
    );
    // A wildcard covers one label only.
    let w = upload(&["*.lan"], now - DAY, 90);
    let e = validate_uploaded(
        &w.chain_pem,
        &w.key_pem,
        &hosts(&["a.b.lan", "lan"]),
        &[],
        now,
    )
    .expect_err("too deep and bare");
    assert!(e.to_string().contains("does not cover a.b.lan, lan"), "{e}");
}

#[test]
fn refuses_garbage_a_wrong_order_and_an_expired_issuer() {
    let now = SystemTime::now();
    let u = upload(COVERING, now - DAY, 90);
    let (h, a) = members();
    let e = validate_uploaded("nothing here", &u.key_pem, &h, &a, now).expect_err("no pem");
    assert!(
        e.to_string()
            .contains("the management certificate is not usable PEM"),
        "{e}"
    );
    let e = validate_uploaded(&u.chain_pem, "not a key", &h, &a, now).expect_err("no key");
    assert!(
        e.to_string().contains("the private key is not usable PEM"),
        "{e}"
    );
    // Issuer first: the "leaf" is then the CA, whose key this is not.
    let reversed = format!("{}{}", u.ca_pem, u.leaf_pem);
    let e = validate_uploaded(&reversed, &u.key_pem, &h, &a, now).expect_err("reversed");
    assert!(matches!(e, PkiError::KeyMismatch { .. }), "{e}");
    // A chain whose second certificate did not sign the first.
    let stranger = upload(COVERING, now - DAY, 90);
    let broken = format!("{}{}", u.leaf_pem, stranger.ca_pem);
    let e = validate_uploaded(&broken, &u.key_pem, &h, &a, now).expect_err("broken chain");
    assert!(
        e.to_string().contains("not signed by the next certificate"),
        "{e}"
    );
    // The issuer, too, must be valid now.
    let e = validate_uploaded(&u.chain_pem, &u.key_pem, &h, &a, now + DAY * 3660)
        .expect_err("all expired");
    assert!(e.to_string().contains("expired on"), "{e}");
}

#[test]
fn names_match_case_insensitively_and_wildcards_one_label() {
    assert!(dns_matches("Node-1", "node-1"));
    assert!(dns_matches("*.example.com", "a.example.com"));
    assert!(!dns_matches("*.example.com", "example.com"));
    assert!(!dns_matches("*.example.com", "a.b.example.com"));
    assert!(!dns_matches("*.example.com", ".example.com"));
    assert!(!dns_matches("node-1", "node-2"));
}
