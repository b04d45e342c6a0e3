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
    pub(crate) fn to_pb(&self) -> Result<pb::ClusterState, String> {
        Ok(pb::ClusterState {
            config_json: serde_json::to_string(&self.config)
                .map_err(|e| format!("cannot encode the cluster configuration: {e}"))?,
            revocations_json: serde_json::to_string(&self.revocations)
                .map_err(|e| format!("cannot encode the revocation list: {e}"))?,
        })
    }

    /// Reads the wire form; the decoders check every member and entry.
    pub(crate) fn from_pb(p: &pb::ClusterState) -> Result<ClusterState, String> {
        let config: ClusterConfig = serde_json::from_str(&p.config_json)
            .map_err(|e| format!("the cluster configuration is not valid: {e}"))?;
        let revocations: RevocationList = if p.revocations_json.is_empty() {
            RevocationList::new()
        } else {
            serde_json::from_str(&p.revocations_json)
                .map_err(|e| format!("the revocation list is not valid: {e}"))?
        };
        Ok(ClusterState {
            config,
            revocations,
        })
    }
}
