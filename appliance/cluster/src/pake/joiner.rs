//! The joiner side of the handshake: the appliance being joined, which
//! shows the code and counts every attempt on its [`JoinCodeSlot`].
//! `hello` in, `reply` out, `confirm` in, `confirm` out.

use std::fmt;
use std::time::Instant;

use rand_core::{CryptoRng, RngCore};
use spake2::{Ed25519Group, Password, Spake2};
use uuid::Uuid;

use super::channel::{SecureChannel, Side};
use super::keys::{Binding, Keys};
use super::wire::{check_spake_msg, Message};
use super::{HandshakeRefusal, PakeError, PROTOCOL_VERSION};
use crate::identity::CertFingerprint;
use crate::joincode::{Attempt, JoinCodeSlot, Refusal};

/// A failed joiner step: the error to log and the `refused` message to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinerFailure {
    /// What went wrong.
    pub error: PakeError,
    /// The message telling the admin side why.
    pub reply: Vec<u8>,
}

impl JoinerFailure {
    fn new(error: PakeError, refusal: HandshakeRefusal) -> Self {
        JoinerFailure {
            error,
            reply: Message::Refused(refusal).encode(),
        }
    }

    fn code(refusal: Refusal) -> Self {
        JoinerFailure::new(
            PakeError::Code(refusal.clone()),
            HandshakeRefusal::Code(refusal),
        )
    }
}

impl fmt::Display for JoinerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for JoinerFailure {}

/// Joiner side, step 1: reads the admin's `hello`.
#[derive(Debug)]
pub struct JoinerHandshake;

impl JoinerHandshake {
    /// Reads a `hello` received over the TLS connection whose peer
    /// certificate is `admin_fp`; `joiner_fp` is this appliance's own. If
    /// the slot lets an attempt begin (it then counts as wrong until it
    /// succeeds), returns the `reply` to send.
    pub fn receive_hello<S: RngCore + CryptoRng, R: RngCore + CryptoRng>(
        msg: &[u8],
        slot: &mut JoinCodeSlot<S>,
        joiner_fp: CertFingerprint,
        admin_fp: CertFingerprint,
        now: Instant,
        rng: &mut R,
    ) -> Result<(JoinerConfirming, Vec<u8>), JoinerFailure> {
        let malformed = |e: PakeError| {
            let detail = e.to_string();
            JoinerFailure::new(e, HandshakeRefusal::Malformed { detail })
        };
        let (version, cluster_id, msg_a) = match Message::decode(msg).map_err(malformed)? {
            Message::Hello {
                version,
                cluster_id,
                spake,
            } => (version, cluster_id, spake),
            other => {
                return Err(malformed(PakeError::Unexpected {
                    expected: "hello",
                    got: other.kind(),
                }))
            }
        };
        if version != PROTOCOL_VERSION {
            return Err(JoinerFailure::new(
                PakeError::UnsupportedVersion {
                    offered: version,
                    supported: PROTOCOL_VERSION,
                },
                HandshakeRefusal::UnsupportedVersion {
                    offered: version,
                    supported: PROTOCOL_VERSION,
                },
            ));
        }
        check_spake_msg(&msg_a, b'A', msg.len()).map_err(malformed)?;
        let attempt = slot.begin(now).map_err(JoinerFailure::code)?;
        let binding = Binding {
            cluster_id,
            admin_fp,
            joiner_fp,
        };
        let (id_a, id_b) = binding.identities();
        let password = Password::new(attempt.code().canonical().as_bytes());
        let (spake, msg_b) =
            Spake2::<Ed25519Group>::start_b_with_rng(&password, &id_a, &id_b, &mut *rng);
        let derived = spake
            .finish(&msg_a)
            .map_err(|e| PakeError::Malformed {
                len: msg.len(),
                detail: format!("SPAKE2: {e}"),
            })
            .and_then(|key| Keys::derive(&key, binding.transcript(&msg_a, &msg_b)));
        let keys = match derived {
            Ok(k) => k,
            Err(e) => {
                // The attempt began, so it counts; the admin hears the consequence.
                let refusal = slot.fail(attempt, now);
                return Err(JoinerFailure {
                    error: e,
                    reply: Message::Refused(HandshakeRefusal::Code(refusal)).encode(),
                });
            }
        };
        Ok((
            JoinerConfirming {
                attempt,
                keys,
                binding,
            },
            Message::Reply { spake: msg_b }.encode(),
        ))
    }
}

/// Joiner side, step 2: the `reply` is sent; waiting for the admin's MAC.
pub struct JoinerConfirming {
    attempt: Attempt,
    keys: Keys,
    binding: Binding,
}

impl fmt::Debug for JoinerConfirming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinerConfirming")
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl JoinerConfirming {
    /// The cluster the admin side says it joins this appliance to (bound
    /// into the keys, so confirmed once [`JoinerConfirming::receive_confirm`] succeeds).
    pub fn cluster_id(&self) -> Uuid {
        self.binding.cluster_id
    }

    /// Checks the admin's `confirm`. On success the code is consumed and
    /// the joiner's `confirm` is returned with the channel; on failure the
    /// attempt stays counted as wrong (the fifth replaces the code).
    pub fn receive_confirm<S: RngCore + CryptoRng>(
        self,
        msg: &[u8],
        slot: &mut JoinCodeSlot<S>,
        now: Instant,
    ) -> Result<(SecureChannel, Vec<u8>), JoinerFailure> {
        let ok = match Message::decode(msg) {
            Ok(Message::Confirm { mac }) => self.keys.verify_admin(&mac),
            _ => false,
        };
        if !ok {
            return Err(JoinerFailure::code(slot.fail(self.attempt, now)));
        }
        let mac = match self.keys.joiner_mac() {
            Ok(m) => m,
            Err(e) => {
                let refusal = slot.fail(self.attempt, now);
                return Err(JoinerFailure {
                    error: e,
                    reply: Message::Refused(HandshakeRefusal::Code(refusal)).encode(),
                });
            }
        };
        slot.succeed(self.attempt).map_err(JoinerFailure::code)?;
        let channel = SecureChannel::new(
            &self.keys,
            self.binding,
            Side::Joiner,
            &self.keys.joiner_to_admin,
            &self.keys.admin_to_joiner,
        );
        Ok((channel, Message::Confirm { mac }.encode()))
    }

    /// The connection ended before the admin's `confirm`: reports the
    /// attempt as failed (it already counted) and returns the slot's verdict.
    pub fn abandon<S: RngCore + CryptoRng>(
        self,
        slot: &mut JoinCodeSlot<S>,
        now: Instant,
    ) -> Refusal {
        slot.fail(self.attempt, now)
    }
}
