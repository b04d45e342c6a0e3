//! Certificates of the management port (HTTPS for the web UI and the remote
//! API): the self-signed one a node serves before it joins, the request it
//! sends the cluster CA once a member (signed by
//! [`crate::CaKey::sign_server_csr`]), and the check of a certificate an
//! administrator uploads ([`validate_uploaded`]).
//!
//! Unlike node certificates these name no node id: browsers and
//! `appliancectl --server` check them by DNS name or address. The
//! management key is a [`NodeKey`] of its own (never the node key, so
//! handing a management certificate to a web server never exposes the
//! cluster identity).

use std::net::IpAddr;
use std::time::SystemTime;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::ca::{BACKDATE, NODE_CERT_VALIDITY};
use crate::cert::{parse, pem_encode};
use crate::time_conv::{add, sub, to_offset};
use crate::{crypto_provider, fingerprint_bytes, random_bytes, NodeKey, PkiError};

/// How long a self-signed management certificate is valid (re-issued when
/// the node's names change, and well before it ends).
pub const MANAGEMENT_CERT_VALIDITY: std::time::Duration = NODE_CERT_VALIDITY;

/// A management certificate (chain) as read back: what the API shows and
/// what decides whether it still fits the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementCert {
    /// The chain as PEM, leaf first.
    pub cert_pem: String,
    /// SHA-256 of the leaf (DER), upper-case hex pairs joined by colons.
    pub fingerprint: String,
    /// Start of the leaf's validity.
    pub not_before: SystemTime,
    /// End of the leaf's validity.
    pub not_after: SystemTime,
    /// The leaf's DNS names (possibly wildcards such as `*.example.com`).
    pub dns_names: Vec<String>,
    /// The leaf's IP addresses.
    pub addresses: Vec<IpAddr>,
}

impl ManagementCert {
    /// Reads a chain of PEM `CERTIFICATE` blocks, leaf first.
    pub fn from_pem(cert_pem: &str) -> Result<Self, PkiError> {
        let chain = read_chain(cert_pem)?;
        Self::from_chain(cert_pem, &chain)
    }

    fn from_chain(cert_pem: &str, chain: &[CertificateDer<'static>]) -> Result<Self, PkiError> {
        let leaf = chain.first().ok_or_else(|| PkiError::Pem {
            what: "the management certificate".into(),
            reason: "it holds no CERTIFICATE block".into(),
        })?;
        let parsed = parse(leaf, "the management certificate")?;
        Ok(ManagementCert {
            cert_pem: cert_pem.to_string(),
            fingerprint: colon_fingerprint(leaf),
            not_before: parsed.not_before,
            not_after: parsed.not_after,
            dns_names: parsed.dns_names,
            addresses: parsed.addresses,
        })
    }

    /// Every name it covers, DNS names first, as text.
    pub fn names(&self) -> Vec<String> {
        self.dns_names
            .iter()
            .cloned()
            .chain(self.addresses.iter().map(ToString::to_string))
            .collect()
    }

    /// The names among `hostnames` and `addresses` it does not cover, in
    /// the order given (empty when it covers them all). A DNS name is
    /// covered by an equal name (case-insensitive) or by a wildcard
    /// `*.rest` when it is one label followed by `rest`.
    pub fn missing(&self, hostnames: &[String], addresses: &[IpAddr]) -> Vec<String> {
        let dns_covered = |host: &str| self.dns_names.iter().any(|n| dns_matches(n, host));
        hostnames
            .iter()
            .filter(|h| !dns_covered(h))
            .cloned()
            .chain(
                addresses
                    .iter()
                    .filter(|a| !self.addresses.contains(a))
                    .map(ToString::to_string),
            )
            .collect()
    }

    /// Whether it is valid at `now`.
    pub fn valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// SHA-256 of `cert_der` as upper-case hex pairs joined by colons
/// (`AB:CD:...`), the form browsers show and the console prints.
pub fn colon_fingerprint(cert_der: &[u8]) -> String {
    fingerprint_bytes(cert_der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn dns_matches(pattern: &str, host: &str) -> bool {
    if pattern.eq_ignore_ascii_case(host) {
        return true;
    }
    match (pattern.strip_prefix("*."), host.split_once('.')) {
        (Some(rest), Some((label, tail))) => !label.is_empty() && rest.eq_ignore_ascii_case(tail),
        _ => false,
    }
}

/// The subject of a management certificate or request for `hostname` and
/// `addresses`: common name the hostname, DNS SAN the hostname, IP SANs.
fn server_params(hostname: &str, addresses: &[IpAddr]) -> Result<CertificateParams, PkiError> {
    let invalid = |reason: String| PkiError::InvalidName {
        what: "hostname",
        value: hostname.to_string(),
        reason,
    };
    if hostname.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    let dns = rcgen::string::Ia5String::try_from(hostname).map_err(|e| invalid(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname);
    params.distinguished_name = dn;
    params.subject_alt_names = std::iter::once(SanType::DnsName(dns))
        .chain(addresses.iter().map(|a| SanType::IpAddress(*a)))
        .collect();
    Ok(params)
}

/// A self-signed management certificate for `hostname` and `addresses`
/// with `key`, valid [`MANAGEMENT_CERT_VALIDITY`] from `now` (backdated a
/// few minutes, as node certificates are): a TLS server leaf, serverAuth.
pub fn self_signed_management_cert(
    key: &NodeKey,
    hostname: &str,
    addresses: &[IpAddr],
    now: SystemTime,
) -> Result<ManagementCert, PkiError> {
    let what = "the self-signed management certificate's validity";
    let mut params = server_params(hostname, addresses)?;
    params.not_before = to_offset(sub(now, BACKDATE, what)?, what)?;
    params.not_after = to_offset(add(now, MANAGEMENT_CERT_VALIDITY, what)?, what)?;
    params.serial_number = Some(SerialNumber::from_slice(&random_bytes::<16>()?));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(key.pair())
        .map_err(|source| PkiError::Rcgen {
            action: format!("make the self-signed management certificate of {hostname}"),
            source,
        })?;
    let pem = pem_encode("CERTIFICATE", cert.der());
    ManagementCert::from_chain(&pem, &[cert.der().clone()])
}

/// The PEM certificate request a member sends the cluster CA for its
/// management certificate: `hostname` and `addresses`, signed with `key`.
pub fn management_csr(
    key: &NodeKey,
    hostname: &str,
    addresses: &[IpAddr],
) -> Result<String, PkiError> {
    let csr = server_params(hostname, addresses)?
        .serialize_request(key.pair())
        .map_err(|source| PkiError::Rcgen {
            action: format!("build the management certificate request of {hostname}"),
            source,
        })?;
    Ok(pem_encode("CERTIFICATE REQUEST", csr.der()))
}

/// The certificates of a PEM chain, leaf first; anything but CERTIFICATE
/// blocks is refused.
fn read_chain(cert_pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let bad = |reason: String| PkiError::Pem {
        what: "the management certificate".into(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if chain.is_empty() {
        return Err(bad("it holds no CERTIFICATE block".into()));
    }
    Ok(chain)
}

/// `t` as `YYYY-MM-DD HH:MM:SS UTC`, for messages.
fn utc(t: SystemTime) -> String {
    match to_offset(t, "a certificate time") {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => format!("{t:?}"),
    }
}

/// Checks a certificate chain and key an administrator uploads for the
/// management port of every node, refusing with the reason:
/// - the chain must be PEM `CERTIFICATE` blocks, leaf first, each signed by
///   the next;
/// - the key (PKCS#8, PKCS#1 or SEC1 PEM; any kind rustls serves) must be
///   the leaf's;
/// - every certificate of the chain must be valid at `now` (the error says
///   which one and when it ended or starts);
/// - the leaf must cover every name in `hostnames` and `addresses` (the
///   members'); the error names each one missing.
pub fn validate_uploaded(
    cert_pem: &str,
    key_pem: &str,
    hostnames: &[String],
    addresses: &[IpAddr],
    now: SystemTime,
) -> Result<ManagementCert, PkiError> {
    let chain = read_chain(cert_pem)?;
    let cert = ManagementCert::from_chain(cert_pem, &chain)?;
    let what = |i: usize| {
        if i == 0 {
            format!("the management certificate (SHA-256 {})", cert.fingerprint)
        } else {
            format!(
                "certificate {} of the chain (SHA-256 {})",
                i + 1,
                colon_fingerprint(&chain[i])
            )
        }
    };

    // The key, then whether it is the leaf's.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| PkiError::Pem {
        what: "the private key".into(),
        reason: e.to_string(),
    })?;
    let signing = crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| PkiError::Pem {
            what: "the private key".into(),
            reason: format!("it is not a key the TLS server can use: {e}"),
        })?;
    let (_, leaf) = X509Certificate::from_der(&chain[0]).map_err(|e| PkiError::Certificate {
        what: what(0),
        reason: e.to_string(),
    })?;
    let matches = signing
        .public_key()
        .is_some_and(|spki| spki.as_ref() == leaf.public_key().raw);
    if !matches {
        return Err(PkiError::KeyMismatch {
            what: "the management certificate".into(),
            fingerprint: cert.fingerprint.clone(),
        });
    }

    // Validity and signatures along the chain.
    for (i, der) in chain.iter().enumerate() {
        let parsed = parse(der, &what(i))?;
        if now >= parsed.not_after {
            return Err(PkiError::Expired {
                what: what(i),
                when: utc(parsed.not_after),
            });
        }
        if now < parsed.not_before {
            return Err(PkiError::NotYetValid {
                what: what(i),
                when: utc(parsed.not_before),
            });
        }
        if let Some(issuer) = chain.get(i + 1) {
            let signed = match (
                X509Certificate::from_der(der),
                X509Certificate::from_der(issuer),
            ) {
                (Ok((_, c)), Ok((_, p))) => c.verify_signature(Some(p.public_key())).is_ok(),
                _ => false,
            };
            if !signed {
                return Err(PkiError::Certificate {
                    what: what(i),
                    reason: "it is not signed by the next certificate of the chain; give the \
                             chain leaf first, each certificate followed by its issuer"
                        .to_string(),
                });
            }
        }
    }

    let missing = cert.missing(hostnames, addresses);
    if !missing.is_empty() {
        return Err(PkiError::NotCovered {
            what: what(0),
            missing,
            names: cert.names(),
        });
    }
    Ok(cert)
}

#[cfg(test)]
mod tests;
