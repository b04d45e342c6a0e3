//! Certificates as the cluster uses them: the CA's ([`CaCert`], all a node
//! needs to verify peers) and a node's ([`NodeCert`], CA-signed or the
//! self-signed one of the join endpoint), each parsed once on the way in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use uuid::Uuid;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::time_conv::from_timestamp;
use crate::{fingerprint, hex, parse_node_uri, PkiError};

const CERT_PEM_TAG: &str = "CERTIFICATE";

/// What the crate reads out of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// Lower-case hex of the serial, without leading zero bytes.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The subject public key bits (for ECDSA, the encoded point).
    pub public_key: Vec<u8>,
    /// Node ids of the `urn:appliance:node:` URI SANs.
    pub node_ids: Vec<Uuid>,
    pub dns_names: Vec<String>,
    pub addresses: Vec<IpAddr>,
    pub is_ca: bool,
}

/// Parses `der`, naming it `what` in errors.
pub(crate) fn parse(der: &[u8], what: &str) -> Result<Parsed, PkiError> {
    let bad = |reason: String| PkiError::Certificate {
        what: what.to_string(),
        reason,
    };
    let (rest, x509) = X509Certificate::from_der(der).map_err(|e| bad(format!("{e}")))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes follow the certificate", rest.len())));
    }
    let validity = x509.validity();
    let not_before = from_timestamp(validity.not_before.timestamp())
        .ok_or_else(|| bad("its start of validity is out of range".into()))?;
    let not_after = from_timestamp(validity.not_after.timestamp())
        .ok_or_else(|| bad("its end of validity is out of range".into()))?;
    let mut node_ids = Vec::new();
    let mut dns_names = Vec::new();
    let mut addresses = Vec::new();
    let san = x509
        .subject_alternative_name()
        .map_err(|e| bad(format!("its subject alternative names: {e}")))?;
    for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
        match name {
            GeneralName::URI(uri) => {
                if let Some(id) = parse_node_uri(uri) {
                    node_ids.push(id);
                }
            }
            GeneralName::DNSName(n) => dns_names.push((*n).to_string()),
            GeneralName::IPAddress(bytes) => addresses.push(
                ip_from_bytes(bytes)
                    .ok_or_else(|| bad(format!("an IP address SAN has {} bytes", bytes.len())))?,
            ),
            _ => {}
        }
    }
    Ok(Parsed {
        serial: serial_hex(x509.raw_serial()),
        not_before,
        not_after,
        public_key: x509.public_key().subject_public_key.data.to_vec(),
        node_ids,
        dns_names,
        addresses,
        is_ca: x509.is_ca(),
    })
}

/// The canonical text of a serial: lower-case hex without leading zero bytes.
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    let s = hex(&raw[start..]);
    if s.is_empty() {
        "00".into()
    } else {
        s
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        _ => None,
    }
}

/// The DER inside exactly one PEM block tagged `tag`.
pub(crate) fn pem_decode(text: &str, tag: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    let bad = |reason: String| PkiError::Pem {
        what: what.to_string(),
        reason,
    };
    let blocks = pem::parse_many(text).map_err(|e| bad(e.to_string()))?;
    match blocks.as_slice() {
        [] => Err(bad("it holds no PEM block".into())),
        [one] if one.tag() == tag => Ok(one.contents().to_vec()),
        [one] => Err(bad(format!("its block is {:?}, not {tag:?}", one.tag()))),
        many => Err(bad(format!("it holds {} PEM blocks, not one", many.len()))),
    }
}

/// `der` as one PEM block tagged `tag`, with `\n` line ends.
pub(crate) fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The cluster CA's certificate: enough to verify node certificates, without
/// the power to issue them (that is [`crate::CaKey`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCert {
    der: CertificateDer<'static>,
    parsed: Parsed,
}

impl CaCert {
    /// Reads a CA certificate in DER form; it must say it is a CA.
    pub fn from_der(der: impl Into<Vec<u8>>) -> Result<Self, PkiError> {
        let der: Vec<u8> = der.into();
        let parsed = parse(&der, "the CA certificate")?;
        if !parsed.is_ca {
            return Err(PkiError::Certificate {
                what: format!("the CA certificate (SHA-256 {})", fingerprint(&der)),
                reason: "it is not a CA certificate (no basic constraints CA:TRUE)".into(),
            });
        }
        Ok(CaCert {
            der: CertificateDer::from(der),
            parsed,
        })
    }

    /// Reads a CA certificate from one PEM `CERTIFICATE` block.
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        Self::from_der(pem_decode(pem, CERT_PEM_TAG, "the CA certificate")?)
    }

    /// The certificate as PEM, for the caller to store or send.
    pub fn to_pem(&self) -> String {
        pem_encode(CERT_PEM_TAG, &self.der)
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The DER in the form rustls takes.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.der.clone()
    }

    /// SHA-256 of the DER, lower-case hex.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.der)
    }

    /// Start of validity.
    pub fn not_before(&self) -> SystemTime {
        self.parsed.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.parsed.not_after
    }

    /// Whether `cert_der` carries a valid signature by this CA's key (the
    /// signature only: no validity, usage or revocation check).
    pub fn signed(&self, cert_der: &[u8]) -> bool {
        let Ok((_, ca)) = X509Certificate::from_der(&self.der) else {
            return false;
        };
        let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
            return false;
        };
        cert.verify_signature(Some(ca.public_key())).is_ok()
    }

    pub(crate) fn parsed(&self) -> &Parsed {
        &self.parsed
    }
}

/// A node's certificate: signed by the cluster CA, or self-signed for the
/// join endpoint. It names the node in a `urn:appliance:node:<uuid>` URI SAN
/// (and as its common name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCert {
    der: CertificateDer<'static>,
    node_id: Uuid,
    parsed: Parsed,
}

impl NodeCert {
    /// Reads a node certificate in DER form: exactly one node URI SAN, not a
    /// CA.
    pub fn from_der(der: impl Into<Vec<u8>>) -> Result<Self, PkiError> {
        let der: Vec<u8> = der.into();
        let what = || format!("node certificate (SHA-256 {})", fingerprint(&der));
        let parsed = parse(&der, &what())?;
        let node_id = match parsed.node_ids.as_slice() {
            [one] => *one,
            ids => {
                return Err(PkiError::Certificate {
                    what: what(),
                    reason: format!(
                        "it has {} `urn:appliance:node:` URI SANs, not one",
                        ids.len()
                    ),
                })
            }
        };
        if parsed.is_ca {
            return Err(PkiError::Certificate {
                what: what(),
                reason: "it is a CA certificate".into(),
            });
        }
        Ok(NodeCert {
            der: CertificateDer::from(der),
            node_id,
            parsed,
        })
    }

    /// Reads a node certificate from one PEM `CERTIFICATE` block.
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        Self::from_der(pem_decode(pem, CERT_PEM_TAG, "the node certificate")?)
    }

    /// The certificate as PEM.
    pub fn to_pem(&self) -> String {
        pem_encode(CERT_PEM_TAG, &self.der)
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The DER in the form rustls takes.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.der.clone()
    }

    /// SHA-256 of the DER, lower-case hex: what the join handshake binds and
    /// what a [`crate::RevocationList`] lists.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.der)
    }

    /// The node the certificate names.
    pub fn node_id(&self) -> Uuid {
        self.node_id
    }

    /// The serial as lower-case hex without leading zero bytes.
    pub fn serial(&self) -> &str {
        &self.parsed.serial
    }

    /// Start of validity.
    pub fn not_before(&self) -> SystemTime {
        self.parsed.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.parsed.not_after
    }

    /// The DNS names among the SANs (the node's hostname).
    pub fn dns_names(&self) -> &[String] {
        &self.parsed.dns_names
    }

    /// The IP addresses among the SANs.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.parsed.addresses
    }

    /// Whether `now` is inside the validity period.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.parsed.not_before <= now && now <= self.parsed.not_after
    }

    /// Whether it is time to renew: less than `threshold` of validity left
    /// at `now` (or already expired).
    pub fn needs_renewal(&self, now: SystemTime, threshold: Duration) -> bool {
        match now.checked_add(threshold) {
            Some(deadline) => deadline >= self.parsed.not_after,
            None => true,
        }
    }

    /// Whether `key` is the certificate's key.
    pub fn matches_key(&self, key: &crate::NodeKey) -> bool {
        use rcgen::PublicKeyData;
        key.pair().der_bytes() == self.parsed.public_key.as_slice()
    }

    pub(crate) fn parsed(&self) -> &Parsed {
        &self.parsed
    }
}
