//! The cluster in applianced: this node's peer side (appliance-peering's
//! [`PeerNode`]) served on the peer port, its membership stored in the state
//! database, and the membership turned into the node's desired state.
//!
//! A node is either waiting to be joined (it shows a one-time join code on
//! its console and in `appliancectl status`, serves the join service on the
//! peer port, open to the LAN, and announces itself with UDP beacons), or a
//! member (cluster mutual TLS on the peer port, open to the members only).
//! Every accepted membership becomes the cluster part of the desired state
//! ([`view`]): the other members' addresses join the firewall's peer sets,
//! the services follow the cluster's placement, and `APPLIANCE_BACKENDS`
//! tells services where the back-end runs; the node applies it as one
//! incremental transition.
//!
//! Layout: [`view`] (membership to desired state, pure), [`store`] (records
//! and the CA key), [`facts`] (what the node tells about itself, beacon
//! targets), `hooks` (what the peer side hands the daemon), `tasks`
//! (beacons, the console's join code, activation, renewal), `api` (the
//! cluster calls of the node API).

mod api;
pub use api::{AddStream, Summary};
pub mod facts;
mod hooks;
pub mod store;
mod tasks;
pub mod view;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use appliance_cluster::rand_core::OsRng;
use appliance_cluster::{Discovered, JoinCodeSlot, NodeId, ServiceSpec, SlotPolicy};
use appliance_peering::{
    system_clock, ClusterState, LocalAuthority, MemberSetup, NodeSetup, NodeStatus, PeerError,
    PeerNode, SamePort, Timeouts,
};
use appliance_pki::{CaKey, NodeKey};
use appliance_state::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::node::Node;
use store::{ClusterStore, StoreError};
use view::{ClusterPart, PeerPorts};

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

/// What the cluster module needs from the daemon.
pub struct ClusterSetup {
    /// The node it turns the membership into desired states for.
    pub node: Arc<Node>,
    /// The node's state database.
    pub store: Store,
    /// The state directory (node key, CA key).
    pub state_dir: PathBuf,
    /// Peer and beacon ports.
    pub ports: PeerPorts,
    /// How long a joined node waits for its services before it reports active anyway.
    pub activation_limit: Duration,
}

/// This node's cluster side; cloning shares it.
#[derive(Clone)]
pub struct Cluster {
    ctx: Arc<Ctx>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The node key, read from `<state-dir>/node-key.pem` (created at first
/// start by the identity module).
fn node_key(state_dir: &std::path::Path) -> Result<NodeKey, String> {
    let path = state_dir.join(crate::identity::NODE_KEY_FILE);
    let pem = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    NodeKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

impl Cluster {
    /// The cluster side of `setup.node`, idle until [`Cluster::prepare`]
    /// and [`Cluster::start`]; refused without a readable node key.
    pub fn new(setup: ClusterSetup) -> Result<Cluster, String> {
        let key = node_key(&setup.state_dir)?;
        Ok(Self::with_key(setup, key))
    }

    fn with_key(setup: ClusterSetup, key: NodeKey) -> Cluster {
        let ports = setup.ports;
        let me = NodeId(setup.node.identity.node_id);
        let specs = view::service_specs(setup.node.manifests());
        let sys_net = PathBuf::from("/sys/class/net");
        let ctx = Arc::new_cyclic(|weak: &Weak<Ctx>| {
            let peer = PeerNode::new(NodeSetup {
                node_id: me,
                key: Arc::new(key),
                facts: facts::local_facts(None, &sys_net),
                hooks: Arc::new(hooks::Hooks { ctx: weak.clone() }),
                clock: system_clock(),
                resolver: Arc::new(SamePort(ports.peer)),
                timeouts: Timeouts::default(),
            });
            Ctx {
                node: setup.node,
                store: ClusterStore::new(setup.store, setup.state_dir),
                ports,
                peer,
                me,
                specs,
                slot: Mutex::new(None),
                beacons: Mutex::new(None),
                discovered: Arc::new(Mutex::new(Discovered::new(
                    appliance_cluster::beacon::DEFAULT_TTL,
                    appliance_cluster::beacon::DEFAULT_CAPACITY,
                ))),
                cancel: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
                sys_net,
                activation_limit: setup.activation_limit,
            }
        });
        Cluster { ctx }
    }

    /// Before the node's first convergence: gives the node the cluster part
    /// of its desired state from the stored membership, so it boots with
    /// its cluster's placement and peer sets.
    pub async fn prepare(&self) {
        let part = match self.ctx.stored_part() {
            Ok(p) => p,
            Err(e) => {
                error!("the stored cluster membership cannot be read: {e}");
                self.ctx.part_for(None)
            }
        };
        if let Err(e) = self.ctx.node.set_cluster(part).await {
            warn!("{e}");
        }
    }

    /// After the node's first convergence: serves the peer port, becomes a
    /// member again (and catches up) or waits to be joined, and starts the
    /// beacons and the console's join code.
    pub async fn start(&self) {
        let ctx = &self.ctx;
        let ports = ctx.ports;
        ctx.refresh_facts().await;
        match ctx.store.membership() {
            Ok(Some(_)) => match ctx.resume_membership() {
                Ok(joining) => {
                    if joining {
                        ctx.spawn(tasks::activate(self.ctx.clone()));
                    }
                    let peer = ctx.peer.clone();
                    ctx.spawn(async move {
                        match peer.catch_up().await {
                            Ok(g) => info!(generation = g, "caught up with the cluster"),
                            Err(e) => warn!("could not catch up with the cluster: {e}"),
                        }
                    });
                }
                Err(e) => error!(
                    "cannot be a cluster member again: {e}; the peer port stays closed until \
                     this is repaired"
                ),
            },
            Ok(None) => {
                if let Err(e) = ctx.wait_for_join() {
                    error!("cannot wait to be joined: {e}");
                }
            }
            Err(e) => error!("the stored cluster membership cannot be read: {e}"),
        }
        match bind_peer_port(ports.peer).await {
            Ok(listener) => {
                let peer = ctx.peer.clone();
                let cancel = ctx.cancel.clone();
                info!(port = ports.peer, "peer port listening");
                ctx.spawn(async move {
                    if let Err(e) = peer.serve(listener, cancel).await {
                        error!("{e}");
                    }
                });
            }
            Err(e) => error!("cannot listen on the peer port {}: {e}", ports.peer),
        }
        tasks::listen_beacons(&self.ctx, ports.beacon);
        ctx.spawn(tasks::show_join_code(self.ctx.clone()));
        ctx.spawn(tasks::renew_certificate(self.ctx.clone()));
    }

    /// Stops the peer port, the beacons and every task, bounded in time.
    pub async fn shutdown(&self) {
        self.ctx.cancel.cancel();
        let tasks: Vec<JoinHandle<()>> = lock(&self.ctx.tasks).drain(..).collect();
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(3), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// Listens on the peer port on every address: `[::]` (dual-stack), or
/// `0.0.0.0` where IPv6 is off.
async fn bind_peer_port(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)).await {
        Ok(l) => Ok(l),
        Err(e) => {
            warn!("cannot listen on [::]:{port} ({e}); trying IPv4 only");
            tokio::net::TcpListener::bind(SocketAddr::new(
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                port,
            ))
            .await
        }
    }
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

    /// The cluster part for `state`: this node's share of its membership.
    pub(crate) fn part_for(&self, state: Option<&ClusterState>) -> ClusterPart {
        ClusterPart {
            ports: Some(self.ports),
            member: state.and_then(|s| view::member_part(&s.config, self.me, &self.specs)),
        }
    }

    fn stored_part(&self) -> Result<ClusterPart, StoreError> {
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
    fn resume_membership(&self) -> Result<bool, ClusterError> {
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

    /// Waits to be joined: a new join code, the join service, the beacons.
    pub(crate) fn wait_for_join(&self) -> Result<(), ClusterError> {
        let ports = self.ports;
        let slot: TypedSlot = Arc::new(Mutex::new(JoinCodeSlot::new(
            OsRng,
            SlotPolicy::default(),
            Instant::now(),
        )));
        let fingerprint = self.peer.become_unjoined(slot.clone())?;
        *lock(&self.slot) = Some(slot);
        self.stop_beacons();
        let token = self.cancel.child_token();
        *lock(&self.beacons) = Some(token.clone());
        let node = self.node.clone();
        let peer = self.peer.clone();
        let sys_net = self.sys_net.clone();
        self.spawn(tasks::send_beacons(
            node,
            peer,
            fingerprint,
            ports,
            sys_net,
            token,
        ));
        Ok(())
    }

    /// A member now: no more join code or beacons.
    pub(crate) fn stop_waiting(&self) {
        *lock(&self.slot) = None;
        self.stop_beacons();
    }

    fn stop_beacons(&self) {
        if let Some(t) = lock(&self.beacons).take() {
            t.cancel();
        }
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
