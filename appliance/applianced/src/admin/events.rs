//! The audit trail as the `Admin` service sees it ([`Trail`]): on a
//! cluster member, the cluster's trail at the authority (this node's own
//! authority, or forwarded to it over the peer port); on a node that is not
//! a member, the node's own trail in its state database, the newest
//! [`LOCAL_EVENTS_KEPT`] events. Both are appliance-peering's
//! [`EventTrail`]: numbered without gaps, fields cut to
//! [`appliance_peering::trail::MAX_FIELD_BYTES`] with a marker.
//!
//! The node's own trail and the authority's use the same keys in the state
//! database (`cluster::store::SledEventLog`), so the trail of the node that
//! forms a cluster becomes the cluster's; a node that joins a cluster reads
//! the cluster's, and its own is left as it was.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use appliance_api::v1::AuditEvent;
use appliance_peering::trail::LOCAL_EVENTS_KEPT;
use appliance_peering::{AuthorityError, Event, EventTrail, HookError, PeerError};
use tonic::Status;

use crate::cluster::store::SledEventLog;
use crate::cluster::Cluster;

/// The audit trail: the cluster's while a member, else the node's own.
pub struct Trail {
    local: EventTrail,
    cluster: Option<Cluster>,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail")
            .field("cluster", &self.cluster.is_some())
            .finish_non_exhaustive()
    }
}

impl Trail {
    /// The trail of this node: its own kept in `store` (the node's state
    /// database, the one the cluster side uses), and, through `cluster`
    /// (`None` when the cluster side is off), the cluster's whenever the
    /// node is a member.
    pub fn new(store: appliance_state::Store, cluster: Option<Cluster>) -> Trail {
        Trail {
            local: EventTrail::new(Arc::new(SledEventLog::new(store)), LOCAL_EVENTS_KEPT),
            cluster,
        }
    }

    /// Records `ev` (its `seq` is assigned, its time set when 0) and
    /// returns it as stored.
    pub async fn record(&self, ev: AuditEvent) -> Result<AuditEvent, tonic::Status> {
        let event = from_api(ev);
        let stored = match self.cluster.as_ref().and_then(Cluster::member_peer) {
            Some(peer) => peer.record_event(event).await.map_err(peer_status)?,
            None => self
                .local
                .record(event, now_unix_ms())
                .await
                .map_err(hook_status)?,
        };
        Ok(to_api(stored))
    }

    /// The newest `limit` events after `after_seq` (0: 200), oldest first.
    pub async fn list(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditEvent>, tonic::Status> {
        let events = match self.cluster.as_ref().and_then(Cluster::member_peer) {
            Some(peer) => peer.events(after_seq, limit).await.map_err(peer_status)?,
            None => self
                .local
                .list(after_seq, limit)
                .await
                .map_err(hook_status)?,
        };
        Ok(events.into_iter().map(to_api).collect())
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn hook_status(e: HookError) -> Status {
    Status::unavailable(format!("the audit trail could not be stored or read: {e}"))
}

fn peer_status(e: PeerError) -> Status {
    let msg = format!("the cluster's audit trail: {e}");
    match e {
        PeerError::Authority(AuthorityError::Remote { .. } | AuthorityError::Persist(_))
        | PeerError::Unreachable { .. }
        | PeerError::MemberUnreachable { .. } => Status::unavailable(msg),
        _ => Status::failed_precondition(msg),
    }
}

fn from_api(e: AuditEvent) -> Event {
    Event {
        seq: e.seq,
        at_unix_ms: e.at_unix_ms,
        actor: e.actor,
        source: e.source,
        node: e.node,
        action: e.action,
        detail: e.detail,
        result: e.result,
        reason: e.reason,
    }
}

fn to_api(e: Event) -> AuditEvent {
    AuditEvent {
        seq: e.seq,
        at_unix_ms: e.at_unix_ms,
        actor: e.actor,
        source: e.source,
        node: e.node,
        action: e.action,
        detail: e.detail,
        result: e.result,
        reason: e.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str) -> AuditEvent {
        AuditEvent {
            actor: "admin".into(),
            action: action.into(),
            result: "ok".into(),
            ..AuditEvent::default()
        }
    }

    #[tokio::test]
    async fn a_node_that_is_not_a_member_keeps_its_own_numbered_trail() {
        let dir = tempfile::tempdir().unwrap();
        let store = appliance_state::Store::open(&dir.path().join("db")).unwrap();
        let trail = Trail::new(store.clone(), None);
        for i in 1..=3u64 {
            let e = trail.record(event(&format!("a{i}"))).await.unwrap();
            assert_eq!(e.seq, i);
            assert!(e.at_unix_ms > 0);
        }
        let listed = trail.list(1, 0).await.unwrap();
        assert_eq!(
            listed.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["a2", "a3"]
        );
        // Another trail on the same database (a restart) goes on numbering.
        let again = Trail::new(store, None);
        assert_eq!(again.record(event("a4")).await.unwrap().seq, 4);
        assert_eq!(again.list(0, 2).await.unwrap()[0].seq, 3);
    }
}
