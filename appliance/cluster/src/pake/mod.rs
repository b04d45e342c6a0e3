//! The join handshake: the admin's cluster node and the new appliance prove
//! to each other that they know the same join code, without sending it, and
//! that they see the same two TLS certificates; then they share a key that
//! seals the join payload (the cluster configuration and the signed
//! certificate).
//!
//! Roles: the **admin** side is the cluster node the administrator acts on
//! (the administrator typed the code there); the **joiner** is the new
//! appliance, which shows the code on its console and holds it in a
//! [`JoinCodeSlot`]. Each side passes in its own certificate fingerprint and
//! the one the TLS connection shows for the peer.
//!
//! Messages (JSON, at most [`MAX_MESSAGE_LEN`] bytes, carried as bytes by the
//! transport):
//! 1. admin → joiner: `hello` {version, cluster id, SPAKE2 message A};
//! 2. joiner → admin: `reply` {SPAKE2 message B}, or `refused`;
//! 3. admin → joiner: `confirm` {admin's MAC};
//! 4. joiner → admin: `confirm` {joiner's MAC}, or `refused`.
//!
//! Key schedule: SPAKE2 over Ed25519 with identities `admin:<admin cert
//! fingerprint>` and `joiner:<joiner cert fingerprint>` gives a shared
//! secret; HKDF-SHA256 with the transcript hash (protocol label and version,
//! cluster id, both fingerprints, both SPAKE2 messages) as salt derives two
//! confirmation keys and one sealing key per direction. Each MAC is
//! HMAC-SHA256 over the transcript hash.
//!
//! What this gives:
//! - a wrong code gives different keys, so the joiner refuses the admin's MAC
//!   and counts a wrong attempt on its slot;
//! - a relay that terminates TLS shows each side a different certificate, so
//!   the two transcripts differ and confirmation fails the same way;
//! - fresh SPAKE2 randomness per run makes a recorded transcript useless;
//! - the admin sends its MAC first, so a peer posing as the admin learns
//!   nothing about its guess without spending an attempt; an attempt counts
//!   as wrong from the moment it begins, so hanging up halfway costs one too.
//!
//! After confirmation, [`SecureChannel`] seals payloads with
//! ChaCha20-Poly1305, one key and one message counter per direction, so a
//! payload replayed, reordered or altered does not open.

use std::fmt;
use std::time::Instant;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use uuid::Uuid;

use crate::identity::CertFingerprint;
use crate::joincode::{Attempt, JoinCode, JoinCodeSlot, Refusal};

/// The join protocol version both sides must speak.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest handshake message accepted.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Largest sealed payload accepted (the cluster configuration and a certificate chain).
pub const MAX_SEALED_LEN: usize = 1 << 20;

/// Length of a SPAKE2 Ed25519 message: a side byte and a point.
const SPAKE_MSG_LEN: usize = 33;

/// Domain separation for everything this protocol hashes.
const LABEL: &[u8] = b"appliance-cluster join v1";

type HmacSha256 = Hmac<Sha256>;

/// Why the other side refused, as sent in a `refused` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum HandshakeRefusal {
    /// The join code slot refused (wrong, expired, used, too many attempts, too soon).
    #[error("{0}")]
    Code(Refusal),
    /// The two sides speak different protocol versions.
    #[error(
        "the appliance speaks join protocol version {supported}, not {offered}; \
         update the older of the two so both run the same version"
    )]
    UnsupportedVersion {
        /// The version the admin side offered.
        offered: u32,
        /// The version the appliance speaks.
        supported: u32,
    },
    /// The request could not be read.
    #[error("the appliance could not read the join request: {detail}")]
    Malformed {
        /// What was wrong.
        detail: String,
    },
}

/// Why a handshake step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PakeError {
    /// A message that is not valid JSON of the expected shape.
    #[error("a join handshake message ({len} bytes) could not be read: {detail}")]
    Malformed {
        /// Its length.
        len: usize,
        /// What was wrong.
        detail: String,
    },
    /// A message larger than [`MAX_MESSAGE_LEN`] or [`MAX_SEALED_LEN`].
    #[error("a join handshake message of {len} bytes is larger than the {max} bytes allowed")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A valid message, out of turn.
    #[error("expected a {expected} message in the join handshake, got a {got} message")]
    Unexpected {
        /// The kind expected.
        expected: &'static str,
        /// The kind received.
        got: &'static str,
    },
    /// The admin side offered another protocol version (joiner side).
    #[error(
        "the cluster node speaks join protocol version {offered}, this appliance {supported}; \
         update the older of the two"
    )]
    UnsupportedVersion {
        /// Offered by the admin side.
        offered: u32,
        /// Spoken here.
        supported: u32,
    },
    /// The peer's MAC did not verify (admin side).
    #[error(
        "the appliance did not prove it knows the join code and sees the same certificates: \
         the code is wrong, or a man in the middle relays the connection; nothing was changed"
    )]
    ConfirmationFailed,
    /// The peer refused (admin side).
    #[error("the appliance refused the join: {0}")]
    Refused(HandshakeRefusal),
    /// The local join code slot refused or counted a wrong attempt (joiner side).
    #[error("join attempt refused: {0}")]
    Code(Refusal),
    /// A sealed payload did not open: altered, replayed, reordered or sealed with another key.
    #[error("a sealed join payload did not open: it was altered, replayed, reordered or not sealed for this session")]
    OpenFailed,
    /// A cryptographic primitive failed where it cannot (a bug).
    #[error("internal error in the join handshake: {0}")]
    Internal(String),
}

/// The wire messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Message {
    Hello {
        version: u32,
        cluster_id: Uuid,
        #[serde(with = "hex_bytes")]
        spake: Vec<u8>,
    },
    Reply {
        #[serde(with = "hex_bytes")]
        spake: Vec<u8>,
    },
    Confirm {
        #[serde(with = "hex_bytes")]
        mac: Vec<u8>,
    },
    Refused(HandshakeRefusal),
}

impl Message {
    fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Reply { .. } => "reply",
            Message::Confirm { .. } => "confirm",
            Message::Refused(_) => "refused",
        }
    }

    fn decode(bytes: &[u8]) -> Result<Message, PakeError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(PakeError::TooLarge {
                len: bytes.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| PakeError::Malformed {
            len: bytes.len(),
            detail: e.to_string(),
        })
    }

    /// Serializing these types cannot fail (no maps, no non-string keys);
    /// should it ever, the peer receives an empty message and reports it unreadable.
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

mod hex_bytes {
    use data_encoding::HEXLOWER;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&HEXLOWER.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        HEXLOWER
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// What both sides must agree on: the cluster and both certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Binding {
    cluster_id: Uuid,
    admin_fp: CertFingerprint,
    joiner_fp: CertFingerprint,
}

impl Binding {
    fn identities(&self) -> (Identity, Identity) {
        let a = [b"admin:".as_slice(), self.admin_fp.as_bytes()].concat();
        let b = [b"joiner:".as_slice(), self.joiner_fp.as_bytes()].concat();
        (Identity::new(&a), Identity::new(&b))
    }

    fn transcript(&self, msg_a: &[u8], msg_b: &[u8]) -> [u8; 32] {
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
struct Keys {
    transcript: [u8; 32],
    confirm_admin: [u8; 32],
    confirm_joiner: [u8; 32],
    admin_to_joiner: [u8; 32],
    joiner_to_admin: [u8; 32],
}

impl Keys {
    fn derive(spake_key: &[u8], transcript: [u8; 32]) -> Result<Keys, PakeError> {
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

    fn admin_mac(&self) -> Result<Vec<u8>, PakeError> {
        let m = Self::hmac(&self.confirm_admin, b"admin confirms", &self.transcript)?;
        Ok(m.finalize().into_bytes().to_vec())
    }

    fn joiner_mac(&self) -> Result<Vec<u8>, PakeError> {
        let m = Self::hmac(&self.confirm_joiner, b"joiner confirms", &self.transcript)?;
        Ok(m.finalize().into_bytes().to_vec())
    }

    /// Constant-time check of the admin's MAC.
    fn verify_admin(&self, tag: &[u8]) -> bool {
        Self::hmac(&self.confirm_admin, b"admin confirms", &self.transcript)
            .map(|m| m.verify_slice(tag).is_ok())
            .unwrap_or(false)
    }

    /// Constant-time check of the joiner's MAC.
    fn verify_joiner(&self, tag: &[u8]) -> bool {
        Self::hmac(&self.confirm_joiner, b"joiner confirms", &self.transcript)
            .map(|m| m.verify_slice(tag).is_ok())
            .unwrap_or(false)
    }
}

/// Checks the SPAKE2 message inside a frame of `frame_len` bytes.
fn check_spake_msg(msg: &[u8], side: u8, frame_len: usize) -> Result<(), PakeError> {
    let malformed = |detail: String| PakeError::Malformed {
        len: frame_len,
        detail,
    };
    if msg.len() != SPAKE_MSG_LEN {
        return Err(malformed(format!(
            "the SPAKE2 message has {} bytes, not {SPAKE_MSG_LEN}",
            msg.len()
        )));
    }
    if msg.first() != Some(&side) {
        return Err(malformed(
            "the SPAKE2 message is for the wrong side".to_string(),
        ));
    }
    Ok(())
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
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
    fn new(
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

#[cfg(test)]
mod tests;
