//! The admin side of the handshake: the cluster node the administrator
//! typed the code on. `hello` out, `reply` in, `confirm` out, `confirm` in.

use std::fmt;

use rand_core::{CryptoRng, RngCore};
use spake2::{Ed25519Group, Password, Spake2};
use uuid::Uuid;

use super::channel::{SecureChannel, Side};
use super::keys::{Binding, Keys};
use super::wire::{check_spake_msg, Message};
use super::{PakeError, PROTOCOL_VERSION};
use crate::identity::CertFingerprint;
use crate::joincode::JoinCode;

/// Admin side, step 1: the `hello` is sent; waiting for the `reply`.
pub struct AdminHandshake {
    spake: Spake2<Ed25519Group>,
    binding: Binding,
    msg_a: Vec<u8>,
}

impl fmt::Debug for AdminHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminHandshake")
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl AdminHandshake {
    /// Starts a join of the appliance whose TLS certificate is `joiner_fp`
    /// (as the connection shows it) into cluster `cluster_id`, with the
    /// `code` the administrator typed; `admin_fp` is this node's own
    /// certificate. Returns the `hello` to send.
    pub fn start<R: RngCore + CryptoRng>(
        code: &JoinCode,
        cluster_id: Uuid,
        admin_fp: CertFingerprint,
        joiner_fp: CertFingerprint,
        rng: &mut R,
    ) -> (AdminHandshake, Vec<u8>) {
        let binding = Binding {
            cluster_id,
            admin_fp,
            joiner_fp,
        };
        let (id_a, id_b) = binding.identities();
        let password = Password::new(code.canonical().as_bytes());
        let (spake, msg_a) =
            Spake2::<Ed25519Group>::start_a_with_rng(&password, &id_a, &id_b, &mut *rng);
        let hello = Message::Hello {
            version: PROTOCOL_VERSION,
            cluster_id,
            spake: msg_a.clone(),
        }
        .encode();
        (
            AdminHandshake {
                spake,
                binding,
                msg_a,
            },
            hello,
        )
    }

    /// Step 2: reads the joiner's `reply` and returns the admin's `confirm` to send.
    pub fn receive_reply(self, msg: &[u8]) -> Result<(AdminConfirming, Vec<u8>), PakeError> {
        let msg_b = match Message::decode(msg)? {
            Message::Reply { spake } => spake,
            Message::Refused(r) => return Err(PakeError::Refused(r)),
            other => {
                return Err(PakeError::Unexpected {
                    expected: "reply",
                    got: other.kind(),
                })
            }
        };
        check_spake_msg(&msg_b, b'B', msg.len())?;
        let key = self
            .spake
            .finish(&msg_b)
            .map_err(|e| PakeError::Malformed {
                len: msg.len(),
                detail: format!("SPAKE2: {e}"),
            })?;
        let keys = Keys::derive(&key, self.binding.transcript(&self.msg_a, &msg_b))?;
        let confirm = Message::Confirm {
            mac: keys.admin_mac()?,
        }
        .encode();
        Ok((
            AdminConfirming {
                keys,
                binding: self.binding,
            },
            confirm,
        ))
    }
}

/// Admin side, step 3: the admin's MAC is sent; waiting for the joiner's.
pub struct AdminConfirming {
    keys: Keys,
    binding: Binding,
}

impl fmt::Debug for AdminConfirming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfirming")
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl AdminConfirming {
    /// Step 4: checks the joiner's `confirm`; on success the channel that
    /// seals the payload for the joiner.
    pub fn receive_confirm(self, msg: &[u8]) -> Result<SecureChannel, PakeError> {
        match Message::decode(msg)? {
            Message::Confirm { mac } => {
                if !self.keys.verify_joiner(&mac) {
                    return Err(PakeError::ConfirmationFailed);
                }
                Ok(SecureChannel::new(
                    &self.keys,
                    self.binding,
                    Side::Admin,
                    &self.keys.admin_to_joiner,
                    &self.keys.joiner_to_admin,
                ))
            }
            Message::Refused(r) => Err(PakeError::Refused(r)),
            other => Err(PakeError::Unexpected {
                expected: "confirm",
                got: other.kind(),
            }),
        }
    }
}
