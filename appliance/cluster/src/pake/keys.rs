//! What both sides bind into the handshake ([`Binding`]: the cluster and
//! both certificates) and the keys derived from one run ([`Keys`]).

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use spake2::Identity;
use uuid::Uuid;

use super::{PakeError, LABEL, PROTOCOL_VERSION};
use crate::identity::CertFingerprint;

type HmacSha256 = Hmac<Sha256>;

/// What both sides must agree on: the cluster and both certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Binding {
    pub(super) cluster_id: Uuid,
    pub(super) admin_fp: CertFingerprint,
    pub(super) joiner_fp: CertFingerprint,
}

impl Binding {
    pub(super) fn identities(&self) -> (Identity, Identity) {
        let a = [b"admin:".as_slice(), self.admin_fp.as_bytes()].concat();
        let b = [b"joiner:".as_slice(), self.joiner_fp.as_bytes()].concat();
        (Identity::new(&a), Identity::new(&b))
    }

    pub(super) fn transcript(&self, msg_a: &[u8], msg_b: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(LABEL);
        h.update(PROTOCOL_VERSION.to_be_bytes());
        h.update(self.cluster_id.as_bytes());
        h.update(self.admin_fp.as_bytes());
        h.update(self.joiner_fp.as_bytes());
        for m in [msg_a, msg_b] {
            h.update((m.len() as u64).to_be_bytes());
            h.update(m);
        }
        h.finalize().into()
    }
}

/// The keys derived from one run.
pub(super) struct Keys {
    pub(super) transcript: [u8; 32],
    confirm_admin: [u8; 32],
    confirm_joiner: [u8; 32],
    pub(super) admin_to_joiner: [u8; 32],
    pub(super) joiner_to_admin: [u8; 32],
}

impl Keys {
    pub(super) fn derive(spake_key: &[u8], transcript: [u8; 32]) -> Result<Keys, PakeError> {
        let hk = Hkdf::<Sha256>::new(Some(&transcript), spake_key);
        let expand = |info: &[u8]| -> Result<[u8; 32], PakeError> {
            let mut k = [0u8; 32];
            hk.expand(&[LABEL, b" ", info].concat(), &mut k)
                .map_err(|e| PakeError::Internal(format!("HKDF: {e}")))?;
            Ok(k)
        };
        Ok(Keys {
            transcript,
            confirm_admin: expand(b"confirm admin")?,
            confirm_joiner: expand(b"confirm joiner")?,
            admin_to_joiner: expand(b"seal admin to joiner")?,
            joiner_to_admin: expand(b"seal joiner to admin")?,
        })
    }

    fn hmac(key: &[u8; 32], who: &[u8], transcript: &[u8; 32]) -> Result<HmacSha256, PakeError> {
        let mut m = <HmacSha256 as Mac>::new_from_slice(key)
            .map_err(|e| PakeError::Internal(format!("HMAC: {e}")))?;
        m.update(who);
        m.update(transcript);
        Ok(m)
    }

    pub(super) fn admin_mac(&self) -> Result<Vec<u8>, PakeError> {
        let m = Self::hmac(&self.confirm_admin, b"admin confirms", &self.transcript)?;
        Ok(m.finalize().into_bytes().to_vec())
    }

    pub(super) fn joiner_mac(&self) -> Result<Vec<u8>, PakeError> {
        let m = Self::hmac(&self.confirm_joiner, b"joiner confirms", &self.transcript)?;
        Ok(m.finalize().into_bytes().to_vec())
    }

    /// Constant-time check of the admin's MAC.
    pub(super) fn verify_admin(&self, tag: &[u8]) -> bool {
        Self::hmac(&self.confirm_admin, b"admin confirms", &self.transcript)
            .map(|m| m.verify_slice(tag).is_ok())
            .unwrap_or(false)
    }

    /// Constant-time check of the joiner's MAC.
    pub(super) fn verify_joiner(&self, tag: &[u8]) -> bool {
        Self::hmac(&self.confirm_joiner, b"joiner confirms", &self.transcript)
            .map(|m| m.verify_slice(tag).is_ok())
            .unwrap_or(false)
    }
}
