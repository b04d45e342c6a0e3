//! The two identifiers every other module names a node by: its [`NodeId`]
//! (a UUID created at first boot) and its [`CertFingerprint`] (the SHA-256 of
//! its TLS certificate, which the join handshake binds to).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A node's identity in the cluster: the UUID created on its first boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub Uuid);

impl NodeId {
    /// The UUID inside.
    pub fn uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Uuid> for NodeId {
    fn from(u: Uuid) -> Self {
        NodeId(u)
    }
}

/// SHA-256 of a node's TLS certificate (DER), written as 64 lowercase hex digits.
///
/// The join handshake binds both sides' fingerprints into its key, so a relay
/// that terminates TLS (and so shows its own certificate) cannot complete it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertFingerprint([u8; 32]);

/// A text that is not a SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a certificate fingerprint: {reason}; \
     write the 64 hex digits of its SHA-256 (colons allowed)"
)]
pub struct FingerprintError {
    /// The text given (cut to 100 characters).
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl CertFingerprint {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// The fingerprint of a certificate given in DER form.
    pub fn of_certificate_der(der: &[u8]) -> Self {
        CertFingerprint(Sha256::digest(der).into())
    }

    /// Wraps a 32-byte digest computed elsewhere.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        CertFingerprint(bytes)
    }

    /// The 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex digits, upper or lower case, with or without colons
    /// between bytes (as `openssl x509 -fingerprint` prints them).
    pub fn parse(text: &str) -> Result<Self, FingerprintError> {
        let err = |reason: String| FingerprintError {
            input: text.chars().take(100).collect(),
            reason,
        };
        let digits: String = text.trim().chars().filter(|&c| c != ':').collect();
        if digits.len() != 64 {
            return Err(err(format!("it has {} hex digits, not 64", digits.len())));
        }
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(digits.as_bytes())
            .map_err(|e| err(format!("{e}")))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| err("it does not decode to 32 bytes".to_string()))?;
        Ok(CertFingerprint(arr))
    }

    /// The first 12 hex digits, for messages where the whole digest is noise.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(12);
        s
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

impl FromStr for CertFingerprint {
    type Err = FingerprintError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CertFingerprint::parse(s)
    }
}

impl Serialize for CertFingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CertFingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        CertFingerprint::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_of_der_is_sha256() {
        // SHA-256 of the empty input, a published test vector.
        let fp = CertFingerprint::of_certificate_der(b"");
        assert_eq!(
            fp.to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(fp.short(), "e3b0c44298fc");
    }

    #[test]
    fn fingerprint_parses_openssl_form_and_round_trips() {
        let fp = CertFingerprint::of_certificate_der(b"cert");
        let colons = fp
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(CertFingerprint::parse(&colons).unwrap(), fp);
        assert_eq!(fp.to_string().parse::<CertFingerprint>().unwrap(), fp);
        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(json, format!("\"{fp}\""));
        assert_eq!(serde_json::from_str::<CertFingerprint>(&json).unwrap(), fp);
    }

    #[test]
    fn fingerprint_refuses_garbage_naming_it() {
        let e = CertFingerprint::parse("abc").unwrap_err();
        assert!(e.to_string().contains("\"abc\""), "{e}");
        assert!(e.to_string().contains("3 hex digits"), "{e}");
        let e = CertFingerprint::parse(&"zz".repeat(32)).unwrap_err();
        assert!(
            e.to_string().contains("not a certificate fingerprint"),
            "{e}"
        );
        assert!(serde_json::from_str::<CertFingerprint>("\"00\"").is_err());
    }

    #[test]
    fn node_id_serializes_as_plain_uuid() {
        let id = NodeId(Uuid::from_u128(0x1234));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"00000000-0000-0000-0000-000000001234\"");
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
        assert_eq!(id.to_string(), "00000000-0000-0000-0000-000000001234");
    }
}
