//! A node's certificate signing request: its key, its node id (common name
//! and `urn:appliance:node:<uuid>` URI SAN), its hostname (DNS SAN) and its
//! addresses (IP SANs). The node builds it; the CA verifies it
//! ([`NodeCsr::verify`]) before [`crate::CaKey`] signs.

use std::net::IpAddr;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, DnValue,
    PublicKeyData, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::CertificateSigningRequestDer;
use uuid::Uuid;

use crate::cert::{parse, pem_decode, pem_encode};
use crate::{node_uri, parse_node_uri, NodeKey, PkiError};

const CSR_PEM_TAG: &str = "CERTIFICATE REQUEST";

/// What a node certificate says about its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSubject {
    /// The node id (common name and URI SAN).
    pub node_id: Uuid,
    /// The hostname (DNS SAN).
    pub hostname: String,
    /// The node's addresses (IP SANs).
    pub addresses: Vec<IpAddr>,
}

impl NodeSubject {
    /// The rcgen parameters naming this subject (no validity, usages or
    /// serial: the signer sets those).
    pub(crate) fn params(&self) -> Result<CertificateParams, PkiError> {
        let hostname = rcgen::string::Ia5String::try_from(self.hostname.as_str()).map_err(|e| {
            PkiError::InvalidName {
                what: "hostname",
                value: self.hostname.clone(),
                reason: e.to_string(),
            }
        })?;
        if self.hostname.is_empty() {
            return Err(PkiError::InvalidName {
                what: "hostname",
                value: self.hostname.clone(),
                reason: "it is empty".into(),
            });
        }
        let uri = rcgen::string::Ia5String::try_from(node_uri(self.node_id)).map_err(|e| {
            PkiError::InvalidName {
                what: "node URI",
                value: node_uri(self.node_id),
                reason: e.to_string(),
            }
        })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, self.node_id.hyphenated().to_string());
        params.distinguished_name = dn;
        params.subject_alt_names = std::iter::once(SanType::URI(uri))
            .chain(std::iter::once(SanType::DnsName(hostname)))
            .chain(self.addresses.iter().map(|a| SanType::IpAddress(*a)))
            .collect();
        Ok(params)
    }
}

/// A certificate signing request in DER form, as sent to the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCsr {
    der: Vec<u8>,
}

/// A request whose signature and contents were checked.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    /// The node it names.
    pub subject: NodeSubject,
    /// The requester's public key.
    pub(crate) public_key: rcgen::PublicKey,
}

impl VerifiedCsr {
    /// The requester's public key: the subject public key bits (for
    /// ECDSA P-256, the encoded point), as [`crate::NodeCert`] compares keys.
    pub fn public_key(&self) -> &[u8] {
        self.public_key.der_bytes()
    }

    /// Whether the certificate `cert_der` (any certificate: the self-signed
    /// join certificate the PAKE bound, a CA-signed one) is for the same
    /// key as this request. A certificate that does not parse is refused,
    /// naming what is wrong with it.
    pub fn matches_certificate(&self, cert_der: &[u8]) -> Result<bool, PkiError> {
        let cert = parse(cert_der, "the certificate compared with the request")?;
        Ok(cert.public_key.as_slice() == self.public_key())
    }
}

impl NodeCsr {
    /// The request a node with `key` sends for `subject`.
    pub fn build(key: &NodeKey, subject: &NodeSubject) -> Result<Self, PkiError> {
        let params = subject.params()?;
        let csr = params
            .serialize_request(key.pair())
            .map_err(|source| PkiError::Rcgen {
                action: format!("build the certificate request of node {}", subject.node_id),
                source,
            })?;
        Ok(NodeCsr {
            der: csr.der().to_vec(),
        })
    }

    /// Wraps DER received from a node (checked by [`NodeCsr::verify`]).
    pub fn from_der(der: impl Into<Vec<u8>>) -> Self {
        NodeCsr { der: der.into() }
    }

    /// Reads one PEM `CERTIFICATE REQUEST` block.
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        Ok(NodeCsr {
            der: pem_decode(pem, CSR_PEM_TAG, "the certificate request")?,
        })
    }

    /// The request as PEM.
    pub fn to_pem(&self) -> String {
        pem_encode(CSR_PEM_TAG, &self.der)
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Checks the request's signature (proof the requester holds the key),
    /// that the key is ECDSA P-256, and that it names one node consistently:
    /// common name = the UUID of the only URI SAN, one DNS SAN (the
    /// hostname), IP SANs, nothing else.
    pub fn verify(&self) -> Result<VerifiedCsr, PkiError> {
        let refuse = |reason: String| PkiError::CsrRefused { reason };
        let parsed = CertificateSigningRequestParams::from_der(
            &CertificateSigningRequestDer::from(self.der.as_slice()),
        )
        .map_err(|e| refuse(format!("it does not parse or its signature is wrong: {e}")))?;
        if parsed.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(refuse(format!(
                "its key is {:?}; cluster keys are ECDSA P-256",
                parsed.public_key.algorithm()
            )));
        }
        let params = &parsed.params;
        let cn = match params.distinguished_name.get(&DnType::CommonName) {
            Some(DnValue::Utf8String(s)) => s.clone(),
            Some(DnValue::PrintableString(s)) => s.as_str().to_string(),
            Some(DnValue::Ia5String(s)) => s.as_str().to_string(),
            Some(other) => return Err(refuse(format!("its common name {other:?} is not text"))),
            None => return Err(refuse("it has no common name".into())),
        };
        let mut node_ids = Vec::new();
        let mut hostnames = Vec::new();
        let mut addresses = Vec::new();
        for san in &params.subject_alt_names {
            match san {
                SanType::URI(uri) => match parse_node_uri(uri.as_str()) {
                    Some(id) => node_ids.push(id),
                    None => {
                        return Err(refuse(format!(
                            "its URI SAN {:?} is not urn:appliance:node:<uuid>",
                            uri.as_str()
                        )))
                    }
                },
                SanType::DnsName(name) => hostnames.push(name.as_str().to_string()),
                SanType::IpAddress(ip) => addresses.push(*ip),
                other => return Err(refuse(format!("it asks for the SAN {other:?}"))),
            }
        }
        let node_id = match node_ids.as_slice() {
            [one] => *one,
            ids => {
                return Err(refuse(format!(
                    "it has {} node URI SANs, not one",
                    ids.len()
                )))
            }
        };
        if cn != node_id.hyphenated().to_string() {
            return Err(refuse(format!(
                "its common name {cn:?} is not its node id {node_id}"
            )));
        }
        let hostname = match hostnames.as_slice() {
            [one] => one.clone(),
            names => {
                return Err(refuse(format!(
                    "it has {} DNS SANs {names:?}, not one (the hostname)",
                    names.len()
                )))
            }
        };
        Ok(VerifiedCsr {
            subject: NodeSubject {
                node_id,
                hostname,
                addresses,
            },
            public_key: parsed.public_key.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> NodeSubject {
        NodeSubject {
            node_id: Uuid::from_u128(7),
            hostname: "node-a".into(),
            addresses: vec!["10.77.0.11".parse().unwrap(), "fd77::11".parse().unwrap()],
        }
    }

    #[test]
    fn a_built_request_verifies_with_its_subject() {
        let key = NodeKey::generate().unwrap();
        let csr = NodeCsr::build(&key, &subject()).unwrap();
        let back = NodeCsr::from_pem(&csr.to_pem()).unwrap();
        assert_eq!(back, csr);
        let v = back.verify().unwrap();
        assert_eq!(v.subject, subject());
    }

    #[test]
    fn a_tampered_request_is_refused() {
        let key = NodeKey::generate().unwrap();
        let csr = NodeCsr::build(&key, &subject()).unwrap();
        let mut der = csr.der().to_vec();
        // Change one byte of the hostname inside the signed part.
        let pos = der
            .windows(6)
            .position(|w| w == b"node-a")
            .expect("hostname in the DER");
        der[pos + 5] = b'b';
        let e = NodeCsr::from_der(der).verify().unwrap_err();
        assert!(e.to_string().contains("signature"), "{e}");
    }

    #[test]
    fn a_request_whose_name_disagrees_with_its_uri_is_refused() {
        let key = NodeKey::generate().unwrap();
        let mut params = subject().params().unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, Uuid::from_u128(8).to_string());
        params.distinguished_name = dn;
        let der = params.serialize_request(key.pair()).unwrap().der().to_vec();
        let e = NodeCsr::from_der(der).verify().unwrap_err();
        assert!(e.to_string().contains("is not its node id"), "{e}");
    }

    #[test]
    fn a_request_with_a_foreign_uri_is_refused() {
        let key = NodeKey::generate().unwrap();
        let mut params = subject().params().unwrap();
        params.subject_alt_names.push(SanType::URI(
            rcgen::string::Ia5String::try_from("https://evil.example/").unwrap(),
        ));
        let der = params.serialize_request(key.pair()).unwrap().der().to_vec();
        let e = NodeCsr::from_der(der).verify().unwrap_err();
        assert!(e.to_string().contains("evil.example"), "{e}");
    }

    #[test]
    fn a_request_matches_only_certificates_of_its_own_key() {
        let now = std::time::SystemTime::now();
        let key = NodeKey::generate().unwrap();
        let other = NodeKey::generate().unwrap();
        let v = NodeCsr::build(&key, &subject()).unwrap().verify().unwrap();
        assert_eq!(v.public_key(), key.pair().der_bytes());
        let own = crate::self_signed_join_cert(&key, &subject(), now).unwrap();
        let foreign = crate::self_signed_join_cert(&other, &subject(), now).unwrap();
        assert!(v.matches_certificate(own.der()).unwrap());
        assert!(!v.matches_certificate(foreign.der()).unwrap());
        // A CA-signed certificate for the same key matches too.
        let ca = crate::CaKey::create("test", now).unwrap();
        let csr = NodeCsr::build(&key, &subject()).unwrap();
        let signed = ca.sign_node_csr(&csr, subject().node_id, now).unwrap();
        assert!(v.matches_certificate(signed.der()).unwrap());
        let e = v.matches_certificate(b"not a certificate").unwrap_err();
        assert!(e.to_string().contains("compared with the request"), "{e}");
    }

    #[test]
    fn bad_hostnames_are_refused_naming_them() {
        let key = NodeKey::generate().unwrap();
        let mut s = subject();
        s.hostname = "nœud".into();
        let e = NodeCsr::build(&key, &s).unwrap_err();
        assert!(e.to_string().contains("nœud"), "{e}");
        s.hostname = String::new();
        assert!(NodeCsr::build(&key, &s).is_err());
    }
}
