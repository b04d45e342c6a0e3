//! The single authority for cluster changes (until consensus replaces it):
//! the [`Authority`] trait every change and every certificate goes through,
//! [`LocalAuthority`] (the back-end node that holds the CA key; state kept in
//! memory and handed to a [`Persist`] before each change takes effect) and
//! [`RemoteAuthority`] (any other member, forwarding over the `Cluster`
//! service).
//!
//! The authority serialises changes: each is checked by
//! [`ClusterConfig::apply`], stored, and only then visible. Removing a
//! member revokes, in the same step, its certificate in the configuration
//! and every certificate the authority ever issued to that node.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use appliance_cluster::{Change, ChangeError, ClusterConfig, Member, NodeId};
use appliance_pki::{CaCert, CaKey, NodeCert, NodeCsr, PkiError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::client::ClusterDialer;
use crate::error::HookError;
use crate::state::ClusterState;
use crate::{pb, Clock};

/// Why the authority did not make a change or issue a certificate. On any
/// of these, nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The membership rules refuse the change.
    #[error(transparent)]
    Refused(#[from] ChangeError),
    /// The CA refused the request (or failed).
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The change could not be stored.
    #[error("the authority could not store the change, so it was not made: {0}")]
    Persist(HookError),
    /// The remote authority refused or could not be reached.
    #[error("the cluster authority {hostname} (node {node}): {detail}")]
    Remote {
        /// The authority node.
        node: NodeId,
        /// Its hostname.
        hostname: String,
        /// What it said, or why it could not be asked.
        detail: String,
    },
    /// A request the authority does not serve.
    #[error("{0}")]
    Unsupported(String),
}

/// The one place cluster changes and certificates come from.
#[async_trait]
pub trait Authority: Send + Sync {
    /// The current configuration and revocation list.
    async fn current(&self) -> Result<ClusterState, AuthorityError>;
    /// Applies `change` (checked by [`ClusterConfig::apply`], stored, the
    /// generation bumped) and returns the new state.
    async fn propose(&self, change: Change) -> Result<ClusterState, AuthorityError>;
    /// Signs the certificate of `node` (whose join an admin member
    /// authenticated) from its request, which must name that node.
    async fn sign(&self, csr: &NodeCsr, node: NodeId) -> Result<NodeCert, AuthorityError>;
    /// Renews `current` (same node, same key) from `csr`.
    async fn renew(&self, current: &NodeCert, csr: &NodeCsr) -> Result<NodeCert, AuthorityError>;
}

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
}

/// A [`Persist`] that keeps the last record in memory (tests, and nodes
/// whose durability is handled elsewhere). Counts saves.
#[derive(Debug, Default)]
pub struct MemoryPersist {
    last: Mutex<Option<AuthorityRecord>>,
    saves: AtomicUsize,
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
}

impl Persist for MemoryPersist {
    fn save(&self, record: &AuthorityRecord) -> Result<(), HookError> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(record.clone());
        self.saves.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// The authority on the node that holds the CA key.
pub struct LocalAuthority {
    ca: CaKey,
    record: tokio::sync::Mutex<AuthorityRecord>,
    persist: Arc<dyn Persist>,
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
    /// made when the cluster was formed); `persist` stores every change.
    pub fn new(
        ca: CaKey,
        record: AuthorityRecord,
        persist: Arc<dyn Persist>,
        clock: Clock,
    ) -> Self {
        LocalAuthority {
            ca,
            record: tokio::sync::Mutex::new(record),
            persist,
            clock,
        }
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

#[async_trait]
impl Authority for LocalAuthority {
    async fn current(&self) -> Result<ClusterState, AuthorityError> {
        Ok(self.record.lock().await.state.clone())
    }

    async fn propose(&self, change: Change) -> Result<ClusterState, AuthorityError> {
        let mut record = self.record.lock().await;
        let config = record.state.config.apply(&change)?;
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

    async fn sign(&self, csr: &NodeCsr, node: NodeId) -> Result<NodeCert, AuthorityError> {
        let mut record = self.record.lock().await;
        let cert = self.ca.sign_node_csr(csr, node.uuid(), (self.clock)())?;
        let mut next = record.clone();
        next.issued
            .entry(node)
            .or_default()
            .insert(cert.fingerprint());
        self.store(&next)?;
        *record = next;
        Ok(cert)
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
}

/// A change in a few words, for logs.
pub(crate) fn describe(change: &Change, config: &ClusterConfig) -> String {
    let name = |id: &NodeId| {
        config
            .member(id)
            .map(|m| m.hostname.clone())
            .unwrap_or_else(|| id.to_string())
    };
    match change {
        Change::Add(m) => format!("add {} ({})", m.hostname, m.id),
        Change::Remove { node } => format!("remove {node}"),
        Change::SetRoles { roles } => format!(
            "set roles of {}",
            roles.keys().map(name).collect::<Vec<_>>().join(", ")
        ),
        Change::SetState { node, state } => format!("make {} {state}", name(node)),
    }
}

/// The authority seen from another member: every request forwarded over
/// mutual TLS to the authority node.
pub struct RemoteAuthority {
    dialer: ClusterDialer,
    target: Member,
}

impl std::fmt::Debug for RemoteAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAuthority")
            .field("target", &self.target.hostname)
            .finish_non_exhaustive()
    }
}

impl RemoteAuthority {
    /// Forwards to `target` (the authority member) with `dialer`'s credentials.
    pub fn new(dialer: ClusterDialer, target: Member) -> Self {
        RemoteAuthority { dialer, target }
    }

    fn remote(&self, detail: impl std::fmt::Display) -> AuthorityError {
        AuthorityError::Remote {
            node: self.target.id,
            hostname: self.target.hostname.clone(),
            detail: detail.to_string(),
        }
    }

    async fn client(
        &self,
    ) -> Result<pb::cluster_client::ClusterClient<tonic::transport::Channel>, AuthorityError> {
        self.dialer
            .connect(&self.target)
            .await
            .map_err(|e| self.remote(e))
    }

    fn state(&self, reply: &pb::ClusterState) -> Result<ClusterState, AuthorityError> {
        ClusterState::from_pb(reply).map_err(|e| self.remote(e))
    }

    fn cert(&self, reply: pb::Certificate) -> Result<NodeCert, AuthorityError> {
        NodeCert::from_der(reply.cert_der).map_err(|e| self.remote(e))
    }
}

#[async_trait]
impl Authority for RemoteAuthority {
    async fn current(&self) -> Result<ClusterState, AuthorityError> {
        let reply = self
            .client()
            .await?
            .get_config(pb::GetConfigRequest { have_generation: 0 })
            .await
            .map_err(|s| self.remote(s.message()))?;
        self.state(reply.get_ref())
    }

    async fn propose(&self, change: Change) -> Result<ClusterState, AuthorityError> {
        let change_json = serde_json::to_string(&change)
            .map_err(|e| AuthorityError::Unsupported(format!("cannot encode the change: {e}")))?;
        let reply = self
            .client()
            .await?
            .propose(pb::ProposeRequest { change_json })
            .await
            .map_err(|s| self.remote(s.message()))?;
        self.state(reply.get_ref())
    }

    async fn sign(&self, csr: &NodeCsr, node: NodeId) -> Result<NodeCert, AuthorityError> {
        let reply = self
            .client()
            .await?
            .sign(pb::SignRequest {
                node_id: node.to_string(),
                csr_der: csr.der().to_vec(),
            })
            .await
            .map_err(|s| self.remote(s.message()))?;
        self.cert(reply.into_inner())
    }

    async fn renew(&self, current: &NodeCert, csr: &NodeCsr) -> Result<NodeCert, AuthorityError> {
        // The authority renews the certificate the caller connects with.
        if current != self.dialer.cert() {
            return Err(AuthorityError::Unsupported(format!(
                "a member renews only its own certificate; {} is not this node's",
                current.fingerprint()
            )));
        }
        let reply = self
            .client()
            .await?
            .renew(pb::RenewRequest {
                csr_der: csr.der().to_vec(),
            })
            .await
            .map_err(|s| self.remote(s.message()))?;
        self.cert(reply.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use appliance_cluster::{CertFingerprint, MemberState, Role};
    use appliance_pki::RevocationList;
    use uuid::Uuid;

    use super::*;

    struct Refusing;

    impl Persist for Refusing {
        fn save(&self, _: &AuthorityRecord) -> Result<(), HookError> {
            Err(HookError("the disk is full".into()))
        }
    }

    fn member(n: u8, roles: &[Role]) -> Member {
        Member {
            id: NodeId(Uuid::from_u128(u128::from(n))),
            hostname: format!("node-{n}"),
            addresses: vec![format!("10.77.0.{n}").parse().unwrap()],
            roles: roles.iter().copied().collect(),
            version: "0.1.0".into(),
            fingerprint: CertFingerprint::of_certificate_der(&[n]),
            state: MemberState::Active,
        }
    }

    fn record() -> AuthorityRecord {
        let config = ClusterConfig::new(
            Uuid::from_u128(1),
            member(1, &[Role::Frontend, Role::Backend]),
        )
        .unwrap();
        AuthorityRecord {
            state: ClusterState {
                config,
                revocations: RevocationList::new(),
            },
            issued: BTreeMap::from([(
                NodeId(Uuid::from_u128(2)),
                BTreeSet::from(["ab".repeat(32)]),
            )]),
        }
    }

    fn authority(persist: Arc<dyn Persist>) -> LocalAuthority {
        let ca = CaKey::create("test", SystemTime::now()).unwrap();
        LocalAuthority::new(ca, record(), persist, crate::system_clock())
    }

    #[tokio::test]
    async fn a_change_that_cannot_be_stored_is_not_made() {
        let a = authority(Arc::new(Refusing));
        let e = a
            .propose(Change::Add(member(2, &[Role::Frontend])))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("the disk is full"), "{e}");
        assert_eq!(a.record().await, record());
    }

    #[tokio::test]
    async fn removal_revokes_every_certificate_issued_to_the_node() {
        let persist = Arc::new(MemoryPersist::default());
        let a = authority(persist.clone());
        a.propose(Change::Add(member(2, &[Role::Frontend])))
            .await
            .unwrap();
        let state = a
            .propose(Change::Remove {
                node: NodeId(Uuid::from_u128(2)),
            })
            .await
            .unwrap();
        let revoked: BTreeSet<&str> = state.revocations.fingerprints().collect();
        assert!(revoked.contains("ab".repeat(32).as_str()));
        assert!(revoked.contains(
            CertFingerprint::of_certificate_der(&[2])
                .to_string()
                .as_str()
        ));
        assert_eq!(persist.saves(), 2);
        // What is stored reads back the same.
        let stored = persist.last().unwrap();
        let json = serde_json::to_string(&stored).unwrap();
        assert_eq!(
            serde_json::from_str::<AuthorityRecord>(&json).unwrap(),
            stored
        );
        assert_eq!(stored, a.record().await);
    }

    #[tokio::test]
    async fn refused_changes_are_not_stored() {
        let persist = Arc::new(MemoryPersist::default());
        let a = authority(persist.clone());
        let e = a
            .propose(Change::Add(member(2, &[Role::Backend])))
            .await
            .unwrap_err();
        assert!(matches!(e, AuthorityError::Refused(_)), "{e}");
        assert_eq!(persist.saves(), 0);
    }
}
