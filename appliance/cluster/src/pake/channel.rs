//! [`SecureChannel`]: after confirmation, payloads sealed with
//! ChaCha20-Poly1305, one key and one message counter per direction.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use uuid::Uuid;

use super::keys::{Binding, Keys};
use super::{PakeError, MAX_SEALED_LEN};
use crate::identity::CertFingerprint;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Admin,
    Joiner,
}

/// The confirmed session: seals payloads for the peer and opens the peer's,
/// in order, each exactly once.
pub struct SecureChannel {
    binding: Binding,
    side: Side,
    transcript: [u8; 32],
    sealer: ChaCha20Poly1305,
    opener: ChaCha20Poly1305,
    sealed: u64,
    opened: u64,
}

impl fmt::Debug for SecureChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureChannel")
            .field("session", &self.session_id())
            .field("side", &self.side)
            .field("sealed", &self.sealed)
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

impl SecureChannel {
    pub(super) fn new(
        keys: &Keys,
        binding: Binding,
        side: Side,
        seal_key: &[u8; 32],
        open_key: &[u8; 32],
    ) -> SecureChannel {
        SecureChannel {
            binding,
            side,
            transcript: keys.transcript,
            sealer: ChaCha20Poly1305::new(Key::from_slice(seal_key)),
            opener: ChaCha20Poly1305::new(Key::from_slice(open_key)),
            sealed: 0,
            opened: 0,
        }
    }

    /// The cluster both sides agreed on.
    pub fn cluster_id(&self) -> Uuid {
        self.binding.cluster_id
    }

    /// The peer's certificate fingerprint, as this side's TLS connection showed it.
    pub fn peer_fingerprint(&self) -> CertFingerprint {
        match self.side {
            Side::Admin => self.binding.joiner_fp,
            Side::Joiner => self.binding.admin_fp,
        }
    }

    /// A short id of this run, the same on both sides, for logs.
    pub fn session_id(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.transcript[..8])
    }

    fn nonce(counter: u64) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&counter.to_be_bytes());
        n
    }

    /// Seals `plaintext` for the peer; the n-th sealed payload must be the
    /// n-th the peer opens.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, PakeError> {
        if plaintext.len() > MAX_SEALED_LEN - 16 {
            return Err(PakeError::TooLarge {
                len: plaintext.len(),
                max: MAX_SEALED_LEN - 16,
            });
        }
        let nonce = Self::nonce(self.sealed);
        let sealed = self
            .sealer
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &self.transcript,
                },
            )
            .map_err(|e| PakeError::Internal(format!("sealing: {e}")))?;
        self.sealed = self
            .sealed
            .checked_add(1)
            .ok_or_else(|| PakeError::Internal("message counter exhausted".into()))?;
        Ok(sealed)
    }

    /// Opens the peer's next payload.
    pub fn open(&mut self, sealed: &[u8]) -> Result<Vec<u8>, PakeError> {
        if sealed.len() > MAX_SEALED_LEN {
            return Err(PakeError::TooLarge {
                len: sealed.len(),
                max: MAX_SEALED_LEN,
            });
        }
        let nonce = Self::nonce(self.opened);
        let plain = self
            .opener
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: sealed,
                    aad: &self.transcript,
                },
            )
            .map_err(|_| PakeError::OpenFailed)?;
        self.opened = self
            .opened
            .checked_add(1)
            .ok_or_else(|| PakeError::Internal("message counter exhausted".into()))?;
        Ok(plain)
    }
}
