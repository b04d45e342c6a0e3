//! The certificate a node shows on its join endpoint before it is in a
//! cluster: self-signed with its node key, naming its node id, hostname and
//! addresses like a CA-signed one. Nobody verifies it by chain; its
//! fingerprint is what the discovery beacon announces and what the join
//! handshake binds (see [`crate::tls`]).

use std::time::SystemTime;

use crate::ca::{node_profile, BACKDATE, NODE_CERT_VALIDITY};
use crate::time_conv::{add, sub, to_offset};
use crate::{NodeCert, NodeKey, NodeSubject, PkiError};

/// A self-signed certificate for `subject` with `key`, valid
/// [`NODE_CERT_VALIDITY`] from `now`. The caller may keep it (its
/// fingerprint then stays the same across restarts) or make a new one.
pub fn self_signed_join_cert(
    key: &NodeKey,
    subject: &NodeSubject,
    now: SystemTime,
) -> Result<NodeCert, PkiError> {
    let mut params = subject.params()?;
    params.not_before = to_offset(
        sub(now, BACKDATE, "the join certificate's start of validity")?,
        "the join certificate's start of validity",
    )?;
    params.not_after = to_offset(
        add(
            now,
            NODE_CERT_VALIDITY,
            "the join certificate's end of validity",
        )?,
        "the join certificate's end of validity",
    )?;
    node_profile(&mut params)?;
    let cert = params
        .self_signed(key.pair())
        .map_err(|source| PkiError::Rcgen {
            action: format!(
                "make the self-signed join certificate of node {}",
                subject.node_id
            ),
            source,
        })?;
    NodeCert::from_der(cert.der().to_vec())
}
