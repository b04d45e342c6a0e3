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
//!
//! Certificates for new nodes are issued only by [`Authority::admit`], which
//! adds the node (state `joining`) and signs its certificate in one stored
//! step: there is no way to get a certificate for a node without adding
//! it, nor one for a node that is already a member. (Signing first and
//! adding after, as two calls, would let any member mint a certificate for
//! any node id, an existing member's included; adding first and signing
//! after cannot work, since the member record carries the fingerprint of
//! the certificate.) A join through a member that is not the authority is
//! the same one call, forwarded.
//!
//! Until consensus lands, the authority is the one back-end node, the one
//! that holds the CA key; members accept configurations only from it (see
//! `cluster_service`). So no change may move the back-end role away from it
//! or add back-ends beside it: the key would not follow, and no member
//! would accept the next configuration. Such changes are refused
//! ([`AuthorityError::AuthorityStays`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use appliance_cluster::{
    CertFingerprint, Change, ChangeError, ClusterConfig, Member, MemberState, NodeId,
};
use appliance_pki::{CaCert, CaKey, NodeCert, NodeCsr, PkiError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::client::ClusterDialer;
use crate::error::HookError;
use crate::node::authority_member;
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
    /// The node to admit does not match its certificate request, or is
    /// not a new node in state `joining`.
    #[error("the authority does not admit node {node}: {reason}; nothing was changed")]
    NotAdmitted {
        /// The node asked for.
        node: NodeId,
        /// What does not match.
        reason: String,
    },
    /// The change would move the authority off the node that holds the CA key.
    #[error(
        "{hostname} (node {node}) holds the cluster CA key and is the authority for changes; \
         until the cluster has consensus it must stay the only back-end node, and this change \
         {detail}; nothing was changed"
    )]
    AuthorityStays {
        /// The authority.
        node: NodeId,
        /// Its hostname.
        hostname: String,
        /// What the change would do.
        detail: String,
    },
}

/// What [`Authority::admit`] made: the certificate and the state with the node.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The new node's certificate.
    pub cert: NodeCert,
    /// The state with the node added (state `joining`, this certificate's fingerprint).
    pub state: ClusterState,
}

/// The one place cluster changes and certificates come from.
#[async_trait]
pub trait Authority: Send + Sync {
    /// The current configuration and revocation list.
    async fn current(&self) -> Result<ClusterState, AuthorityError>;
    /// Applies `change` (checked by [`ClusterConfig::apply`], stored, the
    /// generation bumped) and returns the new state.
    async fn propose(&self, change: Change) -> Result<ClusterState, AuthorityError>;
    /// Adds `member` (a node whose join an admin member authenticated; state
    /// `joining`) and signs its certificate from `csr`, which must name the
    /// same node, hostname and addresses, in one stored step. The member's
    /// fingerprint becomes the new certificate's.
    async fn admit(&self, csr: &NodeCsr, member: Member) -> Result<Admission, AuthorityError>;
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

    async fn admit(&self, csr: &NodeCsr, member: Member) -> Result<Admission, AuthorityError> {
        let member_json = serde_json::to_string(&member)
            .map_err(|e| AuthorityError::Unsupported(format!("cannot encode the member: {e}")))?;
        let reply = self
            .client()
            .await?
            .admit(pb::AdmitRequest {
                member_json,
                csr_der: csr.der().to_vec(),
            })
            .await
            .map_err(|s| self.remote(s.message()))?
            .into_inner();
        let state = reply
            .state
            .as_ref()
            .ok_or_else(|| self.remote("its answer has no cluster configuration"))?;
        Ok(Admission {
            cert: NodeCert::from_der(reply.cert_der).map_err(|e| self.remote(e))?,
            state: self.state(state)?,
        })
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
    use appliance_pki::{NodeKey, NodeSubject, RevocationList};
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

    /// Member `n` as a join adds it (joining), and its certificate request.
    fn joining(n: u8, roles: &[Role]) -> (Member, NodeCsr) {
        let mut m = member(n, roles);
        m.state = MemberState::Joining;
        (m.clone(), csr_for(&m))
    }

    fn csr_for(m: &Member) -> NodeCsr {
        let key = NodeKey::generate().unwrap();
        let subject = NodeSubject {
            node_id: m.id.uuid(),
            hostname: m.hostname.clone(),
            addresses: m.addresses.clone(),
        };
        NodeCsr::build(&key, &subject).unwrap()
    }

    fn authority(persist: Arc<dyn Persist>) -> LocalAuthority {
        let ca = CaKey::create("test", SystemTime::now()).unwrap();
        LocalAuthority::new(ca, record(), persist, crate::system_clock())
    }

    #[tokio::test]
    async fn a_change_that_cannot_be_stored_is_not_made() {
        let a = authority(Arc::new(Refusing));
        let (m, csr) = joining(2, &[Role::Frontend]);
        let e = a.admit(&csr, m).await.unwrap_err();
        assert!(e.to_string().contains("the disk is full"), "{e}");
        assert_eq!(a.record().await, record());
    }

    #[tokio::test]
    async fn removal_revokes_every_certificate_issued_to_the_node() {
        let persist = Arc::new(MemoryPersist::default());
        let a = authority(persist.clone());
        let (m, csr) = joining(2, &[Role::Frontend]);
        let admitted = a.admit(&csr, m).await.unwrap();
        let listed = admitted
            .state
            .config
            .member(&NodeId(Uuid::from_u128(2)))
            .unwrap()
            .clone();
        assert_eq!(listed.state, MemberState::Joining);
        assert_eq!(listed.fingerprint.to_string(), admitted.cert.fingerprint());
        let state = a
            .propose(Change::Remove {
                node: NodeId(Uuid::from_u128(2)),
            })
            .await
            .unwrap();
        let revoked: BTreeSet<&str> = state.revocations.fingerprints().collect();
        assert!(revoked.contains("ab".repeat(32).as_str()));
        assert!(revoked.contains(admitted.cert.fingerprint().as_str()));
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
        let (m, csr) = joining(2, &[Role::Backend]);
        let e = a.admit(&csr, m).await.unwrap_err();
        assert!(matches!(e, AuthorityError::Refused(_)), "{e}");
        assert_eq!(persist.saves(), 0);
    }

    #[tokio::test]
    async fn no_certificate_without_adding_a_new_joining_node() {
        let persist = Arc::new(MemoryPersist::default());
        let a = authority(persist.clone());
        // An existing member's id: refused before anything is signed.
        let existing = member(1, &[Role::Frontend]);
        let mut as_joining = existing.clone();
        as_joining.state = MemberState::Joining;
        let e = a.admit(&csr_for(&existing), as_joining).await.unwrap_err();
        assert!(e.to_string().contains("already a member"), "{e}");
        // A request for another node than the one added.
        let (m, _) = joining(2, &[Role::Frontend]);
        let (_, other) = joining(3, &[Role::Frontend]);
        let e = a.admit(&other, m.clone()).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("request names node 00000000-0000-0000-0000-000000000003"),
            "{e}"
        );
        // Another hostname, other addresses than the member record's.
        let mut renamed = m.clone();
        renamed.hostname = "node-x".into();
        assert!(a.admit(&csr_for(&renamed), m.clone()).await.is_err());
        let mut moved = m.clone();
        moved.addresses = vec!["10.77.0.99".parse().unwrap()];
        assert!(a.admit(&csr_for(&moved), m.clone()).await.is_err());
        // Not as an active node.
        let mut active = m.clone();
        active.state = MemberState::Active;
        let e = a.admit(&csr_for(&m), active).await.unwrap_err();
        assert!(e.to_string().contains("not active"), "{e}");
        // Nor added by a plain change (it would carry no certificate of ours).
        let e = a.propose(Change::Add(m)).await.unwrap_err();
        assert!(matches!(e, AuthorityError::NotAdmitted { .. }), "{e}");
        assert_eq!(persist.saves(), 0);
        assert_eq!(a.record().await, record());
    }

    #[tokio::test]
    async fn the_authority_keeps_the_back_end_role() {
        let persist = Arc::new(MemoryPersist::default());
        let a = authority(persist.clone());
        let (m, csr) = joining(2, &[Role::Frontend]);
        a.admit(&csr, m).await.unwrap();
        let before = a.record().await;
        let (one, two) = (NodeId(Uuid::from_u128(1)), NodeId(Uuid::from_u128(2)));
        // Moving the back-end role to node 2 (the rules alone allow it).
        let moved = Change::SetRoles {
            roles: BTreeMap::from([
                (one, BTreeSet::from([Role::Frontend])),
                (two, BTreeSet::from([Role::Frontend, Role::Backend])),
            ]),
        };
        assert!(before.state.config.apply(&moved).is_ok());
        let e = a.propose(moved).await.unwrap_err();
        assert!(matches!(e, AuthorityError::AuthorityStays { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("would make node-2 the back-end node"),
            "{e}"
        );
        assert_eq!(a.record().await, before);
        // Changes that keep it are made.
        a.propose(Change::set_roles(one, [Role::Backend]))
            .await
            .unwrap();
    }
}
