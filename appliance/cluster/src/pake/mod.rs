//! The join handshake: the admin's cluster node and the new appliance prove
//! to each other that they know the same join code, without sending it, and
//! that they see the same two TLS certificates; then they share a key that
//! seals the join payload (the cluster configuration and the signed
//! certificate).
//!
//! Roles: the **admin** side is the cluster node the administrator acts on
//! (the administrator typed the code there); the **joiner** is the new
//! appliance, which shows the code on its console and holds it in a
//! [`JoinCodeSlot`](crate::JoinCodeSlot). Each side passes in its own certificate fingerprint and
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
//!
//! Files: `wire` (the messages), `keys` (what the two sides bind and the
//! keys they derive), `admin` and `joiner` (each side's steps), `channel`
//! (the [`SecureChannel`] after confirmation).

mod admin;
mod channel;
mod joiner;
mod keys;
mod wire;

use serde::{Deserialize, Serialize};

use crate::joincode::Refusal;

pub use admin::{AdminConfirming, AdminHandshake};
pub use channel::SecureChannel;
pub use joiner::{JoinerConfirming, JoinerFailure, JoinerHandshake};

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

#[cfg(test)]
use wire::Message;

#[cfg(test)]
mod tests;
