//! [`LocalAuthority`], the authority on the back-end node that holds the CA
//! key: its state in memory, handed to a [`Persist`] (its record,
//! [`AuthorityRecord`]) before each change takes effect, and the cluster's
//! audit trail in the [`EventLog`] its [`Persist`] gives; [`MemoryPersist`]
//! for tests and nodes whose durability is elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use appliance_cluster::{
    CertFingerprint, Change, ChangeError, ClusterConfig, Member, MemberState, NodeId,
};
use appliance_pki::{CaCert, CaKey, NodeCert, NodeCsr};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{describe, Admission, Authority, AuthorityError, SignedManagementCert};
use crate::error::HookError;
use crate::node::authority_member;
use crate::state::ClusterState;
use crate::trail::{Event, EventLog, EventTrail, MemoryEventLog, AUTHORITY_EVENTS_KEPT};
use crate::Clock;

/// What the authority keeps: the state, and the fingerprints of every
/// certificate it issued to each node (all revoked when the node is removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityRecord {
    /// Configuration and revocation list.
    pub state: ClusterState,
    /// Node to the SHA-256 fingerprints of the certificates issued to it.
    pub issued: BTreeMap<NodeId, BTreeSet<String>>,
}

/// Where the authority's record is stored (applianced: sled). `save` is
/// called with the authority's lock held, before the change is visible; an
/// error refuses the change. It should be quick (one atomic batch).
pub trait Persist: Send + Sync {
    /// Stores `record` durably, replacing the previous one.
    fn save(&self, record: &AuthorityRecord) -> Result<(), HookError>;

    /// Where the cluster's audit trail is stored, read once when the
    /// authority is made. The default, `None`, keeps it in memory only.
    fn event_log(&self) -> Option<Arc<dyn EventLog>> {
        None
    }
}

/// A [`Persist`] that keeps the last record in memory (tests, and nodes
/// whose durability is handled elsewhere). Counts saves; keeps the
/// trail in a [`MemoryEventLog`].
#[derive(Debug, Default)]
pub struct MemoryPersist {
    last: Mutex<Option<AuthorityRecord>>,
    saves: AtomicUsize,
    events: Arc<MemoryEventLog>,
}

impl MemoryPersist {
    /// How many records were saved.
    pub fn saves(&self) -> usize {
        self.saves.load(Ordering::SeqCst)
    }

    /// The last record saved.
    pub fn last(&self) -> Option<AuthorityRecord> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The trail's events as stored, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.events.events()
    }
}

impl Persist for MemoryPersist {
    fn save(&self, record: &AuthorityRecord) -> Result<(), HookError> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(record.clone());
        self.saves.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn event_log(&self) -> Option<Arc<dyn EventLog>> {
        Some(self.events.clone())
    }
}

/// The authority on the node that holds the CA key.
pub struct LocalAuthority {
    ca: CaKey,
    record: tokio::sync::Mutex<AuthorityRecord>,
    persist: Arc<dyn Persist>,
    events: EventTrail,
    clock: Clock,
}

impl std::fmt::Debug for LocalAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAuthority")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl LocalAuthority {
    /// An authority with `ca` and the `record` loaded from storage (or
    /// made when the cluster was formed); `persist` stores every change,
    /// and its [`Persist::event_log`] the audit trail (the newest
    /// [`AUTHORITY_EVENTS_KEPT`] events).
    pub fn new(
        ca: CaKey,
        record: AuthorityRecord,
        persist: Arc<dyn Persist>,
        clock: Clock,
    ) -> Self {
        let log = persist
            .event_log()
            .unwrap_or_else(|| Arc::new(MemoryEventLog::default()));
        LocalAuthority {
            ca,
            record: tokio::sync::Mutex::new(record),
            persist,
            events: EventTrail::new(log, AUTHORITY_EVENTS_KEPT),
            clock,
        }
    }

    fn now_unix_ms(&self) -> u64 {
        (self.clock)()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    /// The CA's certificate.
    pub fn ca_cert(&self) -> &CaCert {
        self.ca.cert()
    }

    /// A copy of the record.
    pub async fn record(&self) -> AuthorityRecord {
        self.record.lock().await.clone()
    }

    fn store(&self, next: &AuthorityRecord) -> Result<(), AuthorityError> {
        self.persist.save(next).map_err(AuthorityError::Persist)
    }
}

/// Refuses `next` if it moves the authority off the node that is it in
/// `current` (see the module documentation). A configuration that has no
/// single authority already is not made worse by any change.
fn keep_authority(current: &ClusterConfig, next: &ClusterConfig) -> Result<(), AuthorityError> {
    let Some(now) = authority_member(current) else {
        return Ok(());
    };
    let detail = match authority_member(next) {
        Some(m) if m.id == now.id => return Ok(()),
        Some(m) => format!("would make {} the back-end node", m.hostname),
        None => "would leave the cluster without a single back-end node".to_string(),
    };
    Err(AuthorityError::AuthorityStays {
        node: now.id,
        hostname: now.hostname.clone(),
        detail,
    })
}

/// The checks of [`Authority::admit`] that need no CA: the request names
/// `member` as it is to be added.
fn check_admission(csr: &NodeCsr, member: &Member) -> Result<(), AuthorityError> {
    let refuse = |reason: String| AuthorityError::NotAdmitted {
        node: member.id,
        reason,
    };
    if member.state != MemberState::Joining {
        return Err(refuse(format!(
            "a new node is added in state joining, not {}",
            member.state
        )));
    }
    let subject = csr.verify()?.subject;
    if subject.node_id != member.id.uuid() {
        return Err(refuse(format!(
            "its certificate request names node {}",
            subject.node_id
        )));
    }
    if !subject.hostname.eq_ignore_ascii_case(&member.hostname) {
        return Err(refuse(format!(
            "its certificate request names host {:?}, the member record {:?}",
            subject.hostname, member.hostname
        )));
    }
    let asked: BTreeSet<_> = subject.addresses.iter().collect();
    let listed: BTreeSet<_> = member.addresses.iter().collect();
    if asked != listed {
        return Err(refuse(format!(
            "its certificate request names the addresses {asked:?}, the member record {listed:?}"
        )));
    }
    Ok(())
}

#[async_trait]
impl Authority for LocalAuthority {
    async fn current(&self) -> Result<ClusterState, AuthorityError> {
        Ok(self.record.lock().await.state.clone())
    }

    async fn propose(&self, change: Change) -> Result<ClusterState, AuthorityError> {
        let mut record = self.record.lock().await;
        if let Change::Add(m) = &change {
            // Only `admit` adds nodes: an added node has a certificate from
            // this CA, and that certificate is the one its record names.
            return Err(AuthorityError::NotAdmitted {
                node: m.id,
                reason: "nodes are added with their certificate (a join), not by a change".into(),
            });
        }
        let config = record.state.config.apply(&change)?;
        keep_authority(&record.state.config, &config)?;
        let mut revocations = record.state.revocations.clone();
        if let Change::Remove { node } = &change {
            let in_config = record
                .state
                .config
                .member(node)
                .map(|m| m.fingerprint.to_string());
            let issued = record.issued.get(node).into_iter().flatten().cloned();
            for fp in in_config.into_iter().chain(issued) {
                revocations.revoke_fingerprint(&fp)?;
            }
        }
        let next = AuthorityRecord {
            state: ClusterState {
                config,
                revocations,
            },
            issued: record.issued.clone(),
        };
        self.store(&next)?;
        *record = next;
        tracing::info!(
            generation = record.state.generation(),
            change = %describe(&change, &record.state.config),
            "cluster change made"
        );
        Ok(record.state.clone())
    }

    async fn admit(&self, csr: &NodeCsr, mut member: Member) -> Result<Admission, AuthorityError> {
        let mut record = self.record.lock().await;
        check_admission(csr, &member)?;
        // The change is checked before anything is signed, so a node that
        // is already a member (or would break the placement rules) gets no
        // certificate at all.
        let probe = record.state.config.apply(&Change::Add(member.clone()))?;
        keep_authority(&record.state.config, &probe)?;
        let node = member.id;
        let cert = self.ca.sign_node_csr(csr, node.uuid(), (self.clock)())?;
        member.fingerprint = CertFingerprint::of_certificate_der(cert.der());
        let hostname = member.hostname.clone();
        let config = record.state.config.apply(&Change::Add(member))?;
        let mut next = AuthorityRecord {
            state: ClusterState {
                config,
                revocations: record.state.revocations.clone(),
            },
            issued: record.issued.clone(),
        };
        next.issued
            .entry(node)
            .or_default()
            .insert(cert.fingerprint());
        self.store(&next)?;
        *record = next;
        tracing::info!(
            generation = record.state.generation(),
            %node,
            %hostname,
            fingerprint = %cert.fingerprint(),
            "cluster change made: admitted a node and signed its certificate"
        );
        Ok(Admission {
            cert,
            state: record.state.clone(),
        })
    }

    async fn renew(&self, current: &NodeCert, csr: &NodeCsr) -> Result<NodeCert, AuthorityError> {
        let mut record = self.record.lock().await;
        let node = NodeId(current.node_id());
        if record.state.config.member(&node).is_none() {
            return Err(ChangeError::UnknownNode { node }.into());
        }
        let cert = self
            .ca
            .renew(current, csr, &record.state.revocations, (self.clock)())?;
        let mut next = record.clone();
        next.issued
            .entry(node)
            .or_default()
            .insert(cert.fingerprint());
        self.store(&next)?;
        *record = next;
        Ok(cert)
    }

    async fn record_event(&self, event: Event) -> Result<Event, AuthorityError> {
        self.events
            .record(event, self.now_unix_ms())
            .await
            .map_err(AuthorityError::Persist)
    }

    async fn events(&self, after_seq: u64, limit: u32) -> Result<Vec<Event>, AuthorityError> {
        self.events
            .list(after_seq, limit)
            .await
            .map_err(AuthorityError::Persist)
    }

    async fn sign_management(
        &self,
        node: NodeId,
        csr_pem: &str,
    ) -> Result<SignedManagementCert, AuthorityError> {
        let member = {
            let record = self.record.lock().await;
            record
                .state
                .config
                .member(&node)
                .cloned()
                .ok_or(ChangeError::UnknownNode { node })?
        };
        let cert_pem = self.ca.sign_server_csr(
            csr_pem,
            std::slice::from_ref(&member.hostname),
            &member.addresses,
            (self.clock)(),
        )?;
        tracing::info!(%node, hostname = %member.hostname, "signed a management certificate");
        Ok(SignedManagementCert {
            cert_pem,
            ca_pem: self.ca.cert().to_pem(),
        })
    }
}

#[cfg(test)]
mod tests;
