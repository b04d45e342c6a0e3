//! The cluster CA: created when the first node forms a cluster, its key kept
//! only on back-end nodes. It signs node certificates from verified requests
//! and renews them. [`CaKey`] is the CA with its key; [`CaCert`] (in
//! [`crate::cert`]) is what every other node holds.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use uuid::Uuid;

use crate::csr::{NodeCsr, NodeSubject};
use crate::time_conv::{add, sub, to_offset};
use crate::{random_bytes, CaCert, NodeCert, NodeKey, PkiError, RevocationList};

/// How long the CA certificate is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 3600);

/// How long a node certificate is valid (renewed well before).
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// How far before `now` certificates start, so that a node whose clock is a
/// little behind the signer's accepts a certificate issued this instant.
/// (The join preflight refuses clocks further apart than a few seconds.)
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The cluster CA with its private key.
pub struct CaKey {
    cert: CaCert,
    issuer: Issuer<'static, KeyPair>,
}

impl CaKey {
    /// Creates a new CA (ECDSA P-256, self-signed, valid [`CA_VALIDITY`] from
    /// `now`, may sign end-entity certificates only) for the cluster named
    /// `cluster_name` (used in its common name).
    pub fn create(cluster_name: &str, now: SystemTime) -> Result<Self, PkiError> {
        let key = NodeKey::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Appliance OS");
        dn.push(
            DnType::CommonName,
            format!("appliance cluster CA {cluster_name}"),
        );
        params.distinguished_name = dn;
        // Path length 0: the CA signs node certificates, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(SerialNumber::from_slice(&random_bytes::<16>()?));
        params.not_before = to_offset(
            sub(now, BACKDATE, "the CA's start of validity")?,
            "the CA's start of validity",
        )?;
        params.not_after = to_offset(
            add(now, CA_VALIDITY, "the CA's end of validity")?,
            "the CA's end of validity",
        )?;
        let cert = params
            .self_signed(key.pair())
            .map_err(|source| PkiError::Rcgen {
                action: format!("create the CA of cluster {cluster_name:?}"),
                source,
            })?;
        Self::from_parts(CaCert::from_der(cert.der().to_vec())?, key)
    }

    /// Loads a CA from its certificate and key (both PEM), checking that the
    /// key is the certificate's.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        Self::from_parts(CaCert::from_pem(cert_pem)?, NodeKey::from_pem(key_pem)?)
    }

    fn from_parts(cert: CaCert, key: NodeKey) -> Result<Self, PkiError> {
        let key = key.into_pair();
        if key.der_bytes() != cert.parsed().public_key.as_slice() {
            return Err(PkiError::KeyMismatch {
                what: "the CA certificate".into(),
                fingerprint: cert.fingerprint(),
            });
        }
        // The issuer is always read back from the certificate, so a created
        // CA and a loaded one sign identically (same subject and AKI).
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(cert.der()), key).map_err(|source| {
                PkiError::Rcgen {
                    action: format!("use CA certificate {} as issuer", cert.fingerprint()),
                    source,
                }
            })?;
        Ok(CaKey { cert, issuer })
    }

    /// The CA's certificate, for every node.
    pub fn cert(&self) -> &CaCert {
        &self.cert
    }

    /// The CA's private key as PKCS#8 PEM, for the caller to store (mode
    /// 0600, back-end nodes only).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Signs the certificate of node `expected_node_id` from its request:
    /// the request's signature and contents are checked ([`NodeCsr::verify`])
    /// and it must name `expected_node_id` (the node the join handshake
    /// authenticated). The certificate is valid [`NODE_CERT_VALIDITY`] from
    /// `now` (never beyond the CA), has a random 128-bit serial, key usage
    /// digitalSignature and extended key usages serverAuth and clientAuth.
    pub fn sign_node_csr(
        &self,
        csr: &NodeCsr,
        expected_node_id: Uuid,
        now: SystemTime,
    ) -> Result<NodeCert, PkiError> {
        let verified = csr.verify()?;
        if verified.subject.node_id != expected_node_id {
            return Err(PkiError::CsrRefused {
                reason: format!(
                    "it names node {}, but node {expected_node_id} is the one being joined",
                    verified.subject.node_id
                ),
            });
        }
        self.issue(&verified.subject, &verified.public_key, now)
    }

    /// A new certificate for the same node and key as `current`, which must
    /// be this CA's, valid at `now` (renewal happens before expiry; an
    /// expired node joins again) and not revoked. The request must name the
    /// same node and carry the same key; its hostname and addresses are
    /// taken as they are now (the caller checks their uniqueness, as for a
    /// join).
    pub fn renew(
        &self,
        current: &NodeCert,
        csr: &NodeCsr,
        revocations: &RevocationList,
        now: SystemTime,
    ) -> Result<NodeCert, PkiError> {
        let refuse = |reason: String| PkiError::RenewalRefused {
            fingerprint: current.fingerprint(),
            reason,
        };
        if !self.cert.signed(current.der()) {
            return Err(refuse(format!(
                "it was not issued by this cluster's CA ({})",
                self.cert.fingerprint()
            )));
        }
        if !current.is_valid_at(now) {
            return Err(refuse(
                "it is not valid now (expired or not yet valid); the node must join again".into(),
            ));
        }
        if revocations.is_revoked(current) {
            return Err(refuse("it is revoked".into()));
        }
        let verified = csr.verify()?;
        if verified.subject.node_id != current.node_id() {
            return Err(refuse(format!(
                "the request names node {}, the certificate node {}",
                verified.subject.node_id,
                current.node_id()
            )));
        }
        if verified.public_key.der_bytes() != current.parsed().public_key.as_slice() {
            return Err(refuse(
                "the request's key is not the certificate's key (renewal keeps the key)".into(),
            ));
        }
        self.issue(&verified.subject, &verified.public_key, now)
    }

    fn issue(
        &self,
        subject: &NodeSubject,
        public_key: &rcgen::PublicKey,
        now: SystemTime,
    ) -> Result<NodeCert, PkiError> {
        if now >= self.cert.not_after() {
            return Err(PkiError::CsrRefused {
                reason: format!(
                    "the cluster CA {} has expired; no certificate can be signed",
                    self.cert.fingerprint()
                ),
            });
        }
        let mut params = subject.params()?;
        let start = sub(now, BACKDATE, "the node certificate's start of validity")?;
        let end = add(
            now,
            NODE_CERT_VALIDITY,
            "the node certificate's end of validity",
        )?
        .min(self.cert.not_after());
        params.not_before = to_offset(start, "the node certificate's start of validity")?;
        params.not_after = to_offset(end, "the node certificate's end of validity")?;
        node_profile(&mut params)?;
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(public_key, &self.issuer)
            .map_err(|source| PkiError::Rcgen {
                action: format!("sign the certificate of node {}", subject.node_id),
                source,
            })?;
        let cert = NodeCert::from_der(cert.der().to_vec())?;
        tracing::info!(
            node = %subject.node_id,
            serial = cert.serial(),
            fingerprint = %cert.fingerprint(),
            "signed node certificate"
        );
        Ok(cert)
    }

    /// Signs a TLS server certificate (a node's management port) from the
    /// PEM certificate request `csr_pem`, whose signature is checked. Every
    /// name it asks for must be one of `dns_names` (compared without case)
    /// or `addresses`; it must ask for at least one, and for no other kind
    /// of name; a request asking for any other is refused, naming it. The
    /// certificate has those names (the first as common name), a random
    /// 128-bit serial, key usage digitalSignature, extended key usage
    /// serverAuth only, and is valid [`NODE_CERT_VALIDITY`] from `now`
    /// (never beyond the CA). Returns it as PEM.
    pub fn sign_server_csr(
        &self,
        csr_pem: &str,
        dns_names: &[String],
        addresses: &[std::net::IpAddr],
        now: SystemTime,
    ) -> Result<String, PkiError> {
        use rcgen::{CertificateSigningRequestParams, SanType};
        let refuse = |reason: String| PkiError::CsrRefused { reason };
        let der = crate::cert::pem_decode(
            csr_pem,
            "CERTIFICATE REQUEST",
            "the server certificate request",
        )?;
        let parsed = CertificateSigningRequestParams::from_der(
            &rustls::pki_types::CertificateSigningRequestDer::from(der.as_slice()),
        )
        .map_err(|e| refuse(format!("it does not parse or its signature is wrong: {e}")))?;
        let mut sans = Vec::new();
        for san in &parsed.params.subject_alt_names {
            match san {
                SanType::DnsName(name)
                    if dns_names
                        .iter()
                        .any(|n| n.eq_ignore_ascii_case(name.as_str())) =>
                {
                    sans.push(san.clone())
                }
                SanType::DnsName(name) => {
                    return Err(refuse(format!(
                        "it asks for the name {:?}, which is not among {dns_names:?}",
                        name.as_str()
                    )))
                }
                SanType::IpAddress(ip) if addresses.contains(ip) => sans.push(san.clone()),
                SanType::IpAddress(ip) => {
                    return Err(refuse(format!(
                        "it asks for the address {ip}, which is not among {addresses:?}"
                    )))
                }
                other => return Err(refuse(format!("it asks for the name {other:?}"))),
            }
        }
        let common_name = match sans.first() {
            Some(SanType::DnsName(n)) => n.as_str().to_string(),
            Some(SanType::IpAddress(ip)) => ip.to_string(),
            _ => return Err(refuse("it asks for no DNS name or IP address".into())),
        };
        if now >= self.cert.not_after() {
            return Err(refuse(format!(
                "the cluster CA {} has expired; no certificate can be signed",
                self.cert.fingerprint()
            )));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name.clone());
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        let start = sub(now, BACKDATE, "the server certificate's start of validity")?;
        let end = add(
            now,
            NODE_CERT_VALIDITY,
            "the server certificate's end of validity",
        )?
        .min(self.cert.not_after());
        params.not_before = to_offset(start, "the server certificate's start of validity")?;
        params.not_after = to_offset(end, "the server certificate's end of validity")?;
        params.serial_number = Some(SerialNumber::from_slice(&random_bytes::<16>()?));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&parsed.public_key, &self.issuer)
            .map_err(|source| PkiError::Rcgen {
                action: format!("sign the server certificate for {common_name}"),
                source,
            })?;
        tracing::info!(
            name = %common_name,
            fingerprint = %crate::fingerprint(cert.der()),
            "signed a server certificate"
        );
        Ok(crate::cert::pem_encode("CERTIFICATE", cert.der()))
    }
}

impl fmt::Debug for CaKey {
    // The certificate only, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaKey(certificate SHA-256 {})", self.cert.fingerprint())
    }
}

/// What every node certificate is, CA-signed or the self-signed join one: a
/// leaf with a random 128-bit serial, for signatures, usable as TLS server
/// and client alike. One place, so the two kinds cannot drift apart.
pub(crate) fn node_profile(params: &mut CertificateParams) -> Result<(), PkiError> {
    params.serial_number = Some(SerialNumber::from_slice(&random_bytes::<16>()?));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;
    use crate::{self_signed_join_cert, NodeSubject};

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn subject(n: u128) -> NodeSubject {
        NodeSubject {
            node_id: Uuid::from_u128(n),
            hostname: format!("node-{n}"),
            addresses: vec![format!("10.77.0.{n}").parse().unwrap()],
        }
    }

    fn node(ca: &CaKey, n: u128, now: SystemTime) -> (NodeKey, NodeCert) {
        let key = NodeKey::generate().unwrap();
        let csr = NodeCsr::build(&key, &subject(n)).unwrap();
        let cert = ca.sign_node_csr(&csr, Uuid::from_u128(n), now).unwrap();
        (key, cert)
    }

    #[test]
    fn a_new_ca_is_a_ten_year_ca_and_round_trips_through_pem() {
        let now = SystemTime::now();
        let ca = CaKey::create("test", now).unwrap();
        let cert = ca.cert();
        let (_, x509) = X509Certificate::from_der(cert.der()).unwrap();
        assert!(x509.is_ca());
        let bc = x509.basic_constraints().unwrap().unwrap().value;
        assert_eq!(bc.path_len_constraint, Some(0));
        let ku = x509.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        // Whole seconds in X.509: within a second of ten years from now.
        let short = (now + CA_VALIDITY)
            .duration_since(cert.not_after())
            .unwrap();
        assert!(short < Duration::from_secs(1), "{short:?}");
        assert!(x509
            .subject()
            .to_string()
            .contains("appliance cluster CA test"));

        let loaded = CaKey::from_pem(&cert.to_pem(), &ca.key_pem()).unwrap();
        assert_eq!(loaded.cert(), cert);
        // A certificate signed by the loaded CA verifies with the original.
        let (_, signed) = node(&loaded, 1, now);
        assert!(cert.signed(signed.der()));
        assert!(format!("{loaded:?}").contains(&cert.fingerprint()));
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_ca_with_another_key_is_refused() {
        let now = SystemTime::now();
        let a = CaKey::create("a", now).unwrap();
        let b = CaKey::create("b", now).unwrap();
        let e = CaKey::from_pem(&a.cert().to_pem(), &b.key_pem()).unwrap_err();
        assert!(matches!(e, PkiError::KeyMismatch { .. }), "{e}");
        assert!(e.to_string().contains(&a.cert().fingerprint()), "{e}");
        // A node certificate is not a CA certificate.
        let (_, leaf) = node(&a, 1, now);
        let e = CaCert::from_pem(&leaf.to_pem()).unwrap_err();
        assert!(e.to_string().contains("not a CA"), "{e}");
    }

    #[test]
    fn node_certificates_carry_what_the_cluster_relies_on() {
        let now = SystemTime::now();
        let ca = CaKey::create("test", now).unwrap();
        let (key, cert) = node(&ca, 11, now);
        assert_eq!(cert.node_id(), Uuid::from_u128(11));
        assert_eq!(cert.dns_names(), ["node-11"]);
        assert_eq!(cert.addresses(), ["10.77.0.11".parse::<IpAddr>().unwrap()]);
        assert!(cert.matches_key(&key));
        assert!(ca.cert().signed(cert.der()));
        let short = (now + NODE_CERT_VALIDITY)
            .duration_since(cert.not_after())
            .unwrap();
        assert!(short < Duration::from_secs(1), "{short:?}");
        assert!(cert.not_before() < now);

        let (_, x509) = X509Certificate::from_der(cert.der()).unwrap();
        assert!(!x509.is_ca());
        let ku = x509.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature());
        assert!(!ku.key_cert_sign() && !ku.key_encipherment());
        let eku = x509.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth && !eku.any);
        assert_eq!(
            x509.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            Uuid::from_u128(11).to_string()
        );
        // Random 128-bit serials (leading zero bytes dropped in the text).
        assert!(cert.serial().len() <= 32 && cert.serial().len() >= 24);
        let (_, again) = node(&ca, 11, now);
        assert_ne!(again.serial(), cert.serial());
        assert_eq!(NodeCert::from_pem(&cert.to_pem()).unwrap(), cert);
    }

    #[test]
    fn a_request_for_another_node_than_the_joined_one_is_refused() {
        let now = SystemTime::now();
        let ca = CaKey::create("test", now).unwrap();
        let key = NodeKey::generate().unwrap();
        let csr = NodeCsr::build(&key, &subject(2)).unwrap();
        let e = ca.sign_node_csr(&csr, Uuid::from_u128(3), now).unwrap_err();
        assert!(
            e.to_string().contains(&Uuid::from_u128(3).to_string()),
            "{e}"
        );
    }

    #[test]
    fn node_certificates_never_outlive_the_ca() {
        let now = SystemTime::now();
        let ca = CaKey::create("test", now).unwrap();
        let late = now + CA_VALIDITY - 10 * DAY;
        let (_, cert) = node(&ca, 1, late);
        assert_eq!(cert.not_after(), ca.cert().not_after());
        let key = NodeKey::generate().unwrap();
        let csr = NodeCsr::build(&key, &subject(1)).unwrap();
        let e = ca
            .sign_node_csr(&csr, Uuid::from_u128(1), now + CA_VALIDITY + DAY)
            .unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[test]
    fn renewal_keeps_the_key_and_refuses_what_it_must() {
        let now = SystemTime::now();
        let ca = CaKey::create("test", now).unwrap();
        let (key, cert) = node(&ca, 5, now);
        assert!(!cert.needs_renewal(now, 30 * DAY));
        let later = now + 340 * DAY;
        assert!(cert.needs_renewal(later, 30 * DAY));
        let csr = NodeCsr::build(&key, &subject(5)).unwrap();
        let renewed = ca
            .renew(&cert, &csr, &RevocationList::new(), later)
            .unwrap();
        assert!(renewed.matches_key(&key));
        assert_eq!(renewed.node_id(), cert.node_id());
        assert_ne!(renewed.serial(), cert.serial());
        assert!(renewed.not_after() > cert.not_after());
        assert!(!renewed.needs_renewal(later, 30 * DAY));

        // Another key.
        let other_key = NodeKey::generate().unwrap();
        let other_csr = NodeCsr::build(&other_key, &subject(5)).unwrap();
        let e = ca
            .renew(&cert, &other_csr, &RevocationList::new(), later)
            .unwrap_err();
        assert!(e.to_string().contains("keeps the key"), "{e}");
        // Another node's request.
        let csr6 = NodeCsr::build(&key, &subject(6)).unwrap();
        let e = ca
            .renew(&cert, &csr6, &RevocationList::new(), later)
            .unwrap_err();
        assert!(e.to_string().contains("names node"), "{e}");
        // Revoked.
        let mut revoked = RevocationList::new();
        revoked.revoke(&cert);
        let e = ca.renew(&cert, &csr, &revoked, later).unwrap_err();
        assert!(e.to_string().contains("revoked"), "{e}");
        // Expired.
        let e = ca
            .renew(&cert, &csr, &RevocationList::new(), now + 400 * DAY)
            .unwrap_err();
        assert!(e.to_string().contains("not valid now"), "{e}");
        // Another CA's certificate.
        let other_ca = CaKey::create("other", now).unwrap();
        let (_, foreign) = node(&other_ca, 5, now);
        let e = ca
            .renew(&foreign, &csr, &RevocationList::new(), later)
            .unwrap_err();
        assert!(
            e.to_string().contains("not issued by this cluster's CA"),
            "{e}"
        );
        // A self-signed one (the join certificate) is not renewable either.
        let own = self_signed_join_cert(&key, &subject(5), now).unwrap();
        assert!(ca.renew(&own, &csr, &RevocationList::new(), later).is_err());
    }

    #[test]
    fn revocation_matches_by_serial_or_fingerprint() {
        let now = SystemTime::now();
        let ca = CaKey::create("test", now).unwrap();
        let (_, a) = node(&ca, 1, now);
        let (_, b) = node(&ca, 2, now);
        let mut by_serial = RevocationList::new();
        by_serial.revoke_serial(a.serial()).unwrap();
        assert!(by_serial.is_revoked(&a) && by_serial.is_revoked_der(a.der()));
        assert!(!by_serial.is_revoked(&b) && !by_serial.is_revoked_der(b.der()));
        let mut by_fp = RevocationList::new();
        by_fp
            .revoke_fingerprint(&b.fingerprint().to_uppercase())
            .unwrap();
        assert!(by_fp.is_revoked(&b) && by_fp.is_revoked_der(b.der()));
        assert!(!by_fp.is_revoked(&a));
        by_fp.merge(&by_serial);
        assert!(by_fp.is_revoked(&a));
    }

    #[test]
    fn the_self_signed_join_certificate_names_the_node() {
        let now = SystemTime::now();
        let key = NodeKey::generate().unwrap();
        let cert = self_signed_join_cert(&key, &subject(9), now).unwrap();
        assert_eq!(cert.node_id(), Uuid::from_u128(9));
        assert!(cert.matches_key(&key));
        assert_eq!(cert.fingerprint(), crate::fingerprint(cert.der()));
        assert!(cert.is_valid_at(now));
    }
}
