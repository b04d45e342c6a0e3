//! The cluster side's shared state ([`Ctx`]), the handle the daemon holds
//! ([`Cluster`]), and why a cluster request is refused ([`ClusterError`]).
//! The other files of the folder add behaviour to these: `tasks` (waiting
//! to be joined, beacons, activation, renewal), `hooks` (what the peer side
//! calls), `api` (the node API's cluster calls), `mod.rs` (setup, start and
//! shutdown).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appliance_cluster::rand_core::OsRng;
use appliance_cluster::{Discovered, JoinCodeSlot, NodeId, ServiceSpec};
use appliance_peering::{
    system_clock, ClusterState, LocalAuthority, MemberSetup, NodeStatus, PeerError, PeerNode,
};
use appliance_pki::CaKey;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::facts;
use super::own_admin;
use super::store::{ClusterStore, StoreError};
use crate::desired::cluster::{member_part, ClusterPart, PeerPorts};
use crate::node::Node;

/// The join code slot with its RNG, as this node holds it to show the code.
pub type TypedSlot = Arc<Mutex<JoinCodeSlot<OsRng>>>;

/// Why a cluster request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The request does not fit what this node is.
    #[error("{0}")]
    State(String),
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The peer protocol refused or failed.
    #[error("{0}")]
    Peer(#[from] PeerError),
    /// The membership could not be stored.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<ClusterError> for tonic::Status {
    fn from(e: ClusterError) -> Self {
        use appliance_peering::AuthorityError;
        let msg = e.to_string();
        match e {
            ClusterError::State(_) => tonic::Status::failed_precondition(msg),
            ClusterError::Invalid(_) => tonic::Status::invalid_argument(msg),
            ClusterError::Peer(
                PeerError::Unreachable { .. }
                | PeerError::MemberUnreachable { .. }
                | PeerError::Authority(AuthorityError::Remote { .. }),
            ) => tonic::Status::unavailable(msg),
            ClusterError::Peer(_) => tonic::Status::failed_precondition(msg),
            ClusterError::Store(_) => tonic::Status::internal(msg),
        }
    }
}

/// This node's cluster side; cloning shares it.
#[derive(Clone)]
pub struct Cluster {
    pub(super) ctx: Arc<Ctx>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("peer", &self.ctx.peer)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Ctx {
    pub(crate) node: Arc<Node>,
    pub(crate) store: ClusterStore,
    pub(crate) ports: PeerPorts,
    pub(crate) peer: PeerNode,
    pub(crate) me: NodeId,
    /// The services of this node's manifests, as placement sees them.
    pub(crate) specs: Vec<ServiceSpec>,
    /// The join code slot while waiting to be joined.
    pub(crate) slot: Mutex<Option<TypedSlot>>,
    /// Stops the beacon sender.
    pub(crate) beacons: Mutex<Option<CancellationToken>>,
    /// Appliances heard announcing themselves.
    pub(crate) discovered: Arc<Mutex<Discovered>>,
    /// Stops everything at shutdown.
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) sys_net: PathBuf,
    pub(crate) activation_limit: Duration,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ctx {
    pub(crate) fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        let handle = tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = f => {}
            }
        });
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    /// The cluster part for `state`: this node's share of its membership,
    /// and the management settings (the cluster's, or the node's own while
    /// it is not a member).
    pub(crate) fn part_for(&self, state: Option<&ClusterState>) -> ClusterPart {
        let settings = match state {
            Some(s) => s.config.admin().settings().clone(),
            None => own_admin::load(self.store.db())
                .map(|d| d.settings().clone())
                .unwrap_or_else(|e| {
                    tracing::error!("{e}; the node follows no management settings");
                    Default::default()
                }),
        };
        ClusterPart {
            ports: Some(self.ports),
            member: state.and_then(|s| member_part(&s.config, self.me, &self.specs)),
            settings,
        }
    }

    pub(super) fn stored_part(&self) -> Result<ClusterPart, StoreError> {
        let record = self.store.membership()?;
        Ok(self.part_for(record.as_ref().map(|r| &r.state)))
    }

    /// Updates the facts the peer side tells from the node's desired state.
    pub(crate) async fn refresh_facts(&self) {
        let desired = self.node.desired().await;
        let facts = facts::local_facts(desired.as_ref(), &self.sys_net);
        if facts != self.peer.facts() {
            self.peer.set_facts(facts);
        }
    }

    /// A member again after a restart, with the authority if this node
    /// holds the CA key. Returns true if it is still joining.
    pub(super) fn resume_membership(&self) -> Result<bool, ClusterError> {
        let record = self
            .store
            .membership()?
            .ok_or_else(|| ClusterError::State("no membership is stored".into()))?;
        let ca = record.ca()?;
        let cert = record.cert()?;
        let authority: Option<Arc<dyn appliance_peering::Authority>> =
            match (self.store.ca_key()?, self.store.authority()?) {
                (Some(key_pem), Some(auth)) => {
                    let ca_key = CaKey::from_pem(&ca.to_pem(), &key_pem).map_err(|e| {
                        ClusterError::Store(StoreError::Corrupt {
                            what: "cluster CA key",
                            detail: e.to_string(),
                        })
                    })?;
                    Some(Arc::new(LocalAuthority::new(
                        ca_key,
                        auth,
                        Arc::new(self.store.persist()),
                        system_clock(),
                    )))
                }
                _ => None,
            };
        let joining = record
            .state
            .config
            .member(&self.me)
            .is_some_and(|m| m.state == appliance_cluster::MemberState::Joining);
        self.peer.become_member(MemberSetup {
            ca,
            cert,
            state: record.state,
            authority,
        })?;
        Ok(joining)
    }

    /// The current join code and when it expires, while unjoined.
    pub(crate) fn join_code(&self) -> Option<(String, std::time::SystemTime)> {
        let slot = lock(&self.slot).clone()?;
        let mut slot = lock(&slot);
        let now = Instant::now();
        let (code, expires) = slot.current(now)?;
        let left = expires.saturating_duration_since(now);
        Some((code.to_string(), std::time::SystemTime::now() + left))
    }

    /// The membership as this node has it (`None` unless a member).
    pub(crate) fn member_state(&self) -> Option<ClusterState> {
        match self.peer.status() {
            NodeStatus::Member { .. } => self.peer.cluster_state(),
            _ => None,
        }
    }

    /// A member named by node id or hostname.
    pub(crate) fn resolve(&self, name: &str) -> Result<NodeId, ClusterError> {
        let state = self.member_state().ok_or_else(not_member)?;
        let name = name.trim();
        let by_id = uuid::Uuid::parse_str(name)
            .ok()
            .map(NodeId)
            .filter(|id| state.config.member(id).is_some());
        by_id
            .or_else(|| state.config.member_by_hostname(name).map(|m| m.id))
            .ok_or_else(|| {
                let known: Vec<&str> = state
                    .config
                    .members()
                    .map(|m| m.hostname.as_str())
                    .collect();
                ClusterError::Invalid(format!(
                    "no member is named {name:?} (by node id or hostname); the members are: {}",
                    known.join(", ")
                ))
            })
    }
}

pub(crate) fn not_member() -> ClusterError {
    ClusterError::State(
        "this node is not a cluster member: form a cluster here (appliancectl cluster form) \
         or add this node to one from a member"
            .into(),
    )
}

/// Parses role names ("frontend", "backend", also "front-end", "back-end").
pub fn parse_roles(names: &[String]) -> Result<BTreeSet<appliance_cluster::Role>, ClusterError> {
    use appliance_cluster::Role;
    let mut roles = BTreeSet::new();
    for n in names.iter().flat_map(|n| n.split(',')) {
        let n = n.trim();
        if n.is_empty() {
            continue;
        }
        let role = match n.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "frontend" => Role::Frontend,
            "backend" => Role::Backend,
            _ => {
                return Err(ClusterError::Invalid(format!(
                    "{n:?} is not a role; the roles are frontend and backend"
                )))
            }
        };
        roles.insert(role);
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_read_leniently_and_checked() {
        use appliance_cluster::Role;
        let r = parse_roles(&["front-end,backend".into()]).unwrap();
        assert_eq!(r, BTreeSet::from([Role::Frontend, Role::Backend]));
        assert!(parse_roles(&[]).unwrap().is_empty());
        let e = parse_roles(&["database".into()]).unwrap_err().to_string();
        assert!(e.contains("\"database\" is not a role"), "{e}");
    }
}
