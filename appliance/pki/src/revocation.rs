//! Revoked node certificates: a [`RevocationList`] of serials and SHA-256
//! fingerprints, carried in the cluster configuration (serde), and the
//! [`SharedRevocations`] handle the TLS verifiers read it through, so that a
//! removal refuses the removed node's next handshake without a new config.
//!
//! Serials are only meaningful within one CA; a cluster has exactly one.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::cert::parse;
use crate::{fingerprint, NodeCert, PkiError};

/// Certificates no node may accept any more.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RevocationListRepr")]
pub struct RevocationList {
    /// Serials, lower-case hex without leading zero bytes.
    serials: BTreeSet<String>,
    /// SHA-256 fingerprints, 64 lower-case hex digits.
    fingerprints: BTreeSet<String>,
}

/// The serialized form, normalised and checked on the way in.
#[derive(Deserialize)]
struct RevocationListRepr {
    #[serde(default)]
    serials: Vec<String>,
    #[serde(default)]
    fingerprints: Vec<String>,
}

impl TryFrom<RevocationListRepr> for RevocationList {
    type Error = PkiError;
    fn try_from(r: RevocationListRepr) -> Result<Self, PkiError> {
        let mut list = RevocationList::default();
        for s in &r.serials {
            list.revoke_serial(s)?;
        }
        for f in &r.fingerprints {
            list.revoke_fingerprint(f)?;
        }
        Ok(list)
    }
}

/// `text` as lower-case hex digits, colons between bytes dropped, or None.
fn hex_digits(text: &str) -> Option<String> {
    let digits: String = text
        .trim()
        .chars()
        .filter(|&c| c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (!digits.is_empty() && digits.chars().all(|c| c.is_ascii_hexdigit())).then_some(digits)
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Revokes `cert`: its serial and its fingerprint.
    pub fn revoke(&mut self, cert: &NodeCert) {
        self.serials.insert(cert.serial().to_string());
        self.fingerprints.insert(cert.fingerprint());
    }

    /// Revokes the certificate with this SHA-256 fingerprint (64 hex digits,
    /// colons allowed), as the cluster configuration names a removed member.
    pub fn revoke_fingerprint(&mut self, fingerprint: &str) -> Result<(), PkiError> {
        match hex_digits(fingerprint) {
            Some(d) if d.len() == 64 => {
                self.fingerprints.insert(d);
                Ok(())
            }
            _ => Err(PkiError::RevocationEntry {
                entry: fingerprint.chars().take(100).collect(),
                expected: "a SHA-256 fingerprint (64 hex digits)",
            }),
        }
    }

    /// Revokes the certificate with this serial (hex, colons allowed).
    pub fn revoke_serial(&mut self, serial: &str) -> Result<(), PkiError> {
        match hex_digits(serial) {
            // 20 bytes is the most RFC 5280 allows (plus a sign byte).
            Some(d) if d.len() <= 42 => {
                let trimmed = d.trim_start_matches('0');
                let canonical = if trimmed.is_empty() {
                    "00".to_string()
                } else if trimmed.len() % 2 == 1 {
                    format!("0{trimmed}")
                } else {
                    trimmed.to_string()
                };
                self.serials.insert(canonical);
                Ok(())
            }
            _ => Err(PkiError::RevocationEntry {
                entry: serial.chars().take(100).collect(),
                expected: "a certificate serial in hex (at most 21 bytes)",
            }),
        }
    }

    /// Whether `cert` is revoked (by serial or by fingerprint).
    pub fn is_revoked(&self, cert: &NodeCert) -> bool {
        self.serials.contains(cert.serial()) || self.fingerprints.contains(&cert.fingerprint())
    }

    /// Whether the certificate in `der` is revoked. A certificate that does
    /// not parse is only matched by fingerprint.
    pub fn is_revoked_der(&self, der: &[u8]) -> bool {
        if self.fingerprints.contains(&fingerprint(der)) {
            return true;
        }
        match parse(der, "peer certificate") {
            Ok(p) => self.serials.contains(&p.serial),
            Err(_) => false,
        }
    }

    /// The revoked serials (lower-case hex, no leading zero bytes).
    pub fn serials(&self) -> impl Iterator<Item = &str> {
        self.serials.iter().map(String::as_str)
    }

    /// The revoked fingerprints (lower-case hex).
    pub fn fingerprints(&self) -> impl Iterator<Item = &str> {
        self.fingerprints.iter().map(String::as_str)
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.serials.is_empty() && self.fingerprints.is_empty()
    }

    /// Adds every entry of `other` (revocations are never undone).
    pub fn merge(&mut self, other: &RevocationList) {
        self.serials.extend(other.serials.iter().cloned());
        self.fingerprints.extend(other.fingerprints.iter().cloned());
    }
}

/// A revocation list shared between the TLS verifiers and whoever follows
/// the cluster configuration; cloning shares the same list.
#[derive(Debug, Clone, Default)]
pub struct SharedRevocations(Arc<RwLock<RevocationList>>);

impl SharedRevocations {
    /// A handle on `list`.
    pub fn new(list: RevocationList) -> Self {
        SharedRevocations(Arc::new(RwLock::new(list)))
    }

    /// Replaces the list (on a new cluster configuration). Takes effect at
    /// the next handshake; connections already open are the caller's to
    /// close.
    pub fn replace(&self, list: RevocationList) {
        // A writer cannot leave the list half-updated (it is one assignment),
        // so a poisoned lock still holds a whole list.
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = list;
    }

    /// Revokes one more certificate.
    pub fn revoke(&self, cert: &NodeCert) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .revoke(cert);
    }

    /// A copy of the current list.
    pub fn snapshot(&self) -> RevocationList {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the certificate in `der` is revoked now.
    pub fn is_revoked_der(&self, der: &[u8]) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_revoked_der(der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_normalised_and_round_trip_through_json() {
        let mut l = RevocationList::new();
        l.revoke_serial("00:AB:cd").unwrap();
        l.revoke_serial("abc").unwrap();
        l.revoke_fingerprint(&"AB".repeat(32)).unwrap();
        assert_eq!(l.serials().collect::<Vec<_>>(), ["0abc", "abcd"]);
        assert_eq!(l.fingerprints().next().unwrap(), "ab".repeat(32));
        let json = serde_json::to_string(&l).unwrap();
        let back: RevocationList = serde_json::from_str(&json).unwrap();
        assert_eq!(back, l);
        let empty: RevocationList = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn bad_entries_are_refused_naming_them() {
        let e = serde_json::from_str::<RevocationList>(r#"{"fingerprints":["abc"]}"#).unwrap_err();
        assert!(e.to_string().contains("\"abc\""), "{e}");
        let e = serde_json::from_str::<RevocationList>(r#"{"serials":["xyz"]}"#).unwrap_err();
        assert!(e.to_string().contains("\"xyz\""), "{e}");
        let mut l = RevocationList::new();
        assert!(l.revoke_serial(&"1".repeat(43)).is_err());
        assert!(l.revoke_fingerprint("").is_err());
    }
}
