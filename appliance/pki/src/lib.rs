//! The cluster's certificate authority, node certificates and TLS settings.
//!
//! Who holds what:
//! - every node has a key ([`NodeKey`], ECDSA P-256, created at first boot by
//!   applianced) and, once joined, a certificate signed by the cluster CA
//!   ([`NodeCert`]); before joining it serves the join endpoint with a
//!   self-signed certificate from the same key ([`self_signed_join_cert`]);
//! - every node trusts the cluster CA's certificate ([`CaCert`]); only
//!   back-end nodes hold its private key ([`CaKey`]), which signs node
//!   certificates from their requests ([`NodeCsr`]) and renews them;
//! - the management port (HTTPS) has its own key and certificate
//!   ([`management`]): self-signed before joining, CA-signed as a member, or
//!   one an administrator uploads ([`validate_uploaded`]);
//! - the cluster configuration carries a [`RevocationList`]; the TLS
//!   verifiers read it through a [`SharedRevocations`] handle, so a removal
//!   takes effect on the next handshake without rebuilding any config.
//!
//! Layout: [`key`] (node keys), [`cert`] (parsed certificates and the
//! fingerprint), [`csr`] (requests), [`ca`] (the CA), [`self_signed`],
//! [`revocation`], [`tls`] (the rustls configurations of cluster mutual TLS
//! and of the join channel).
//!
//! Everything here uses the `ring` crypto provider of rustls 0.23 (the one
//! tonic 0.14's `tls-ring` feature builds), passed explicitly to every config
//! ([`crypto_provider`]), never a process-wide default. Clocks come in as
//! arguments (`now: SystemTime`) so tests can make expired certificates.

pub mod ca;
pub mod cert;
pub mod csr;
mod error;
pub mod key;
pub mod management;
pub mod revocation;
pub mod self_signed;
mod time_conv;
pub mod tls;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use ca::{CaKey, CA_VALIDITY, NODE_CERT_VALIDITY};
pub use cert::{CaCert, NodeCert};
pub use csr::{NodeCsr, NodeSubject, VerifiedCsr};
pub use error::PkiError;
pub use key::NodeKey;
pub use management::{
    colon_fingerprint, management_csr, self_signed_management_cert, validate_uploaded,
    ManagementCert,
};
pub use revocation::{RevocationList, SharedRevocations};
pub use self_signed::self_signed_join_cert;

/// The prefix of the URI subject alternative name that names a node.
pub const NODE_URI_PREFIX: &str = "urn:appliance:node:";

/// SHA-256 of a certificate in DER form, as 64 lower-case hex digits.
///
/// The same text as `appliance_cluster::CertFingerprint`'s `Display`, which
/// the join handshake binds; [`fingerprint_bytes`] gives the raw digest for
/// `CertFingerprint::from_bytes`.
pub fn fingerprint(cert_der: &[u8]) -> String {
    hex(&fingerprint_bytes(cert_der))
}

/// SHA-256 of a certificate in DER form.
pub fn fingerprint_bytes(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// The URI subject alternative name of a node: `urn:appliance:node:<uuid>`.
pub fn node_uri(node_id: Uuid) -> String {
    format!("{NODE_URI_PREFIX}{}", node_id.hyphenated())
}

/// The node id in a `urn:appliance:node:<uuid>` URI, if it is one.
pub fn parse_node_uri(uri: &str) -> Option<Uuid> {
    let rest = uri.strip_prefix(NODE_URI_PREFIX)?;
    let id = Uuid::parse_str(rest).ok()?;
    // Only the canonical form, so one node has exactly one URI.
    (node_uri(id) == uri).then_some(id)
}

/// The rustls crypto provider every configuration here is built with: `ring`.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `n` bytes from the provider's secure random generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], PkiError> {
    let mut buf = [0u8; N];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut buf)
        .map_err(|_| PkiError::Random)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_lowercase_sha256_hex() {
        // SHA-256 of the empty input, a published test vector (the same one
        // appliance-cluster's CertFingerprint test uses).
        assert_eq!(
            fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(hex(&fingerprint_bytes(b"abc")), fingerprint(b"abc"));
    }

    #[test]
    fn node_uri_round_trips_and_refuses_other_forms() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let uri = node_uri(id);
        assert_eq!(
            uri,
            "urn:appliance:node:01234567-89ab-cdef-0123-456789abcdef"
        );
        assert_eq!(parse_node_uri(&uri), Some(id));
        assert_eq!(parse_node_uri(&uri.to_uppercase()), None);
        assert_eq!(
            parse_node_uri("urn:appliance:node:0123456789abcdef0123456789abcdef"),
            None
        );
        assert_eq!(
            parse_node_uri("urn:other:01234567-89ab-cdef-0123-456789abcdef"),
            None
        );
        assert_eq!(parse_node_uri("urn:appliance:node:nope"), None);
    }
}
