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
//!
//! Files: this one has the trait and its error; `local` the
//! [`LocalAuthority`] with its [`Persist`] seam; `remote` the
//! [`RemoteAuthority`].

mod local;
mod remote;

use appliance_cluster::{Change, ChangeError, ClusterConfig, Member, NodeId};
use appliance_pki::{NodeCert, NodeCsr, PkiError};
use async_trait::async_trait;

use crate::error::HookError;
use crate::state::ClusterState;
use crate::trail::Event;

pub use local::{AuthorityRecord, LocalAuthority, MemoryPersist, Persist};
pub use remote::RemoteAuthority;

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

/// A management-port server certificate the authority signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedManagementCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The cluster CA's certificate, PEM (the chain after it).
    pub ca_pem: String,
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
    /// Appends `event` to the cluster's audit trail with the next number
    /// (gapless, increasing), stored before it returns; the event as
    /// stored (fields cut to [`crate::trail::MAX_FIELD_BYTES`] with a marker,
    /// the authority's time when it had none). Forwarded by a member, its
    /// `node` is the member's hostname, whatever it said.
    async fn record_event(&self, event: Event) -> Result<Event, AuthorityError>;
    /// The newest `limit` events numbered after `after_seq`, oldest first
    /// (see [`crate::EventTrail::list`]).
    async fn events(&self, after_seq: u64, limit: u32) -> Result<Vec<Event>, AuthorityError>;
    /// Signs a management-port server certificate for member `node` from
    /// the PEM request `csr_pem`, with the cluster CA, only for the
    /// hostname and addresses `node` has in the configuration (a request
    /// for any other name is refused, naming it). A member asks for its
    /// own node only.
    async fn sign_management(
        &self,
        node: NodeId,
        csr_pem: &str,
    ) -> Result<SignedManagementCert, AuthorityError>;
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
        // Its Display names the account or setting, never a hash or key.
        Change::Admin(admin) => admin.to_string(),
    }
}
