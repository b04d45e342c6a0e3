//! The handshake's wire messages: JSON, at most [`MAX_MESSAGE_LEN`] bytes,
//! SPAKE2 messages and MACs in hex.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{HandshakeRefusal, PakeError, MAX_MESSAGE_LEN, SPAKE_MSG_LEN};

/// The wire messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Message {
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
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Reply { .. } => "reply",
            Message::Confirm { .. } => "confirm",
            Message::Refused(_) => "refused",
        }
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Message, PakeError> {
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
    pub(super) fn encode(&self) -> Vec<u8> {
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

/// Checks the SPAKE2 message inside a frame of `frame_len` bytes.
pub(super) fn check_spake_msg(msg: &[u8], side: u8, frame_len: usize) -> Result<(), PakeError> {
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
