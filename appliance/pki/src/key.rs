//! A node's private key: ECDSA P-256, kept by applianced as PKCS#8 PEM in
//! `<state-dir>/node-key.pem`. The CA's key is the same kind.

use std::fmt;

use rcgen::{KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::PkiError;

/// An ECDSA P-256 private key.
pub struct NodeKey {
    pair: KeyPair,
}

impl NodeKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, PkiError> {
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map(|pair| NodeKey { pair })
            .map_err(|source| PkiError::Rcgen {
                action: "generate an ECDSA P-256 key".into(),
                source,
            })
    }

    /// Reads a PKCS#8 PEM key (`-----BEGIN PRIVATE KEY-----`), which must be
    /// ECDSA P-256.
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        let pair = KeyPair::from_pem(pem).map_err(|e| PkiError::Pem {
            what: "the private key".into(),
            reason: e.to_string(),
        })?;
        Self::from_pair(pair)
    }

    pub(crate) fn from_pair(pair: KeyPair) -> Result<Self, PkiError> {
        if pair.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(PkiError::Pem {
                what: "the private key".into(),
                reason: format!(
                    "it is a {:?} key; cluster keys are ECDSA P-256",
                    pair.algorithm()
                ),
            });
        }
        Ok(NodeKey { pair })
    }

    /// The key as PKCS#8 PEM, for the caller to write (mode 0600).
    pub fn to_pem(&self) -> String {
        self.pair.serialize_pem()
    }

    /// The DER SubjectPublicKeyInfo of the public half.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.pair.subject_public_key_info()
    }

    /// The key in the form rustls takes.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pair.serialize_der()))
    }

    pub(crate) fn pair(&self) -> &KeyPair {
        &self.pair
    }

    pub(crate) fn into_pair(self) -> KeyPair {
        self.pair
    }
}

impl fmt::Debug for NodeKey {
    // Never the private half, in logs or panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NodeKey(ECDSA P-256, public key SHA-256 {})",
            crate::fingerprint(&self.public_key_der())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_debug_hides_the_secret() {
        let key = NodeKey::generate().unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let back = NodeKey::from_pem(&pem).unwrap();
        assert_eq!(back.public_key_der(), key.public_key_der());
        let dbg = format!("{key:?}");
        assert!(dbg.contains("public key SHA-256"), "{dbg}");
        assert!(!dbg.contains(&pem), "{dbg}");
    }

    #[test]
    fn refuses_garbage_and_other_key_kinds() {
        let e = NodeKey::from_pem("not a key").unwrap_err();
        assert!(e.to_string().contains("private key"), "{e}");
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let e = NodeKey::from_pem(&p384.serialize_pem()).unwrap_err();
        assert!(e.to_string().contains("ECDSA P-256"), "{e}");
    }
}
