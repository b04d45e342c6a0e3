//! The state every member holds and the authority changes: the cluster
//! configuration with its revocation list, and its wire form.

use appliance_cluster::ClusterConfig;
use appliance_pki::RevocationList;
use serde::{Deserialize, Serialize};

use crate::pb;

/// One generation of the cluster: who is a member, and which certificates
/// no node may accept any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterState {
    /// The membership.
    pub config: ClusterConfig,
    /// Revoked certificates (only ever grows).
    pub revocations: RevocationList,
}

impl ClusterState {
    /// The configuration's generation.
    pub fn generation(&self) -> u64 {
        self.config.generation()
    }

    /// The wire form (JSON inside protobuf).
    pub(crate) fn to_pb(&self) -> Result<pb::ClusterState, WireError> {
        let encode = |part: StatePart| move |source| WireError::Encode { part, source };
        Ok(pb::ClusterState {
            config_json: serde_json::to_string(&self.config).map_err(encode(StatePart::Config))?,
            revocations_json: serde_json::to_string(&self.revocations)
                .map_err(encode(StatePart::Revocations))?,
        })
    }

    /// Reads the wire form; the decoders check every member and entry.
    pub(crate) fn from_pb(p: &pb::ClusterState) -> Result<ClusterState, WireError> {
        let decode = |part: StatePart| move |source| WireError::Decode { part, source };
        let config: ClusterConfig =
            serde_json::from_str(&p.config_json).map_err(decode(StatePart::Config))?;
        let revocations: RevocationList = if p.revocations_json.is_empty() {
            RevocationList::new()
        } else {
            serde_json::from_str(&p.revocations_json).map_err(decode(StatePart::Revocations))?
        };
        Ok(ClusterState {
            config,
            revocations,
        })
    }
}

/// The part of a [`ClusterState`] that did not encode or decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatePart {
    /// The membership.
    Config,
    /// The revocation list.
    Revocations,
}

impl std::fmt::Display for StatePart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StatePart::Config => "cluster configuration",
            StatePart::Revocations => "revocation list",
        })
    }
}

/// A [`ClusterState`] that cannot be put on or read from the wire.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Encoding failed (this node's own state).
    #[error("cannot encode the {part}: {source}")]
    Encode {
        /// Which part.
        part: StatePart,
        /// The JSON encoder's error.
        source: serde_json::Error,
    },
    /// A peer sent a state that does not decode or does not pass the decoders' checks.
    #[error("the {part} is not valid: {source}")]
    Decode {
        /// Which part.
        part: StatePart,
        /// The JSON decoder's error, naming what is wrong.
        source: serde_json::Error,
    },
}
