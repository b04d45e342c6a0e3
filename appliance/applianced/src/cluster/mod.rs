//! The cluster in applianced: this node's peer side (appliance-peering's
//! [`PeerNode`]) served on the peer port, its membership stored in the state
//! database, and the membership turned into the node's desired state.
//!
//! A node is either waiting to be joined (it shows a one-time join code on
//! its console and in `appliancectl status`, serves the join service on the
//! peer port, open to the LAN, and announces itself with UDP beacons), or a
//! member (cluster mutual TLS on the peer port, open to the members only).
//! Every accepted membership becomes the cluster part of the desired state
//! ([`crate::desired::cluster`]): the other members' addresses join the
//! firewall's peer sets, the services follow the cluster's placement, and
//! `APPLIANCE_BACKENDS` tells services where the back-end runs; the node
//! applies it as one incremental transition.
//!
//! Layout, from the bottom: [`store`] (records and the CA key), [`facts`]
//! (what the node tells about itself, beacon targets), `ctx` (the shared
//! state, the [`Cluster`] handle, [`ctx::ClusterError`]), then `tasks`
//! (waiting to be joined, beacons, the console's join code, activation,
//! renewal), `hooks` (what the peer side hands the daemon), `api` (the
//! cluster calls of the node API) and `admin_data` (the management plane's
//! accounts and settings in the configuration), each adding methods to
//! `Ctx` or `Cluster`; this file sets the side up, starts and stops it.
//! [`own_admin`], beside [`store`], keeps a non-member's own admin data.

mod admin_data;
mod api;
mod ctx;
pub mod facts;
mod hooks;
pub mod own_admin;
pub mod store;
mod tasks;

pub use api::{AddStream, Summary};
pub use ctx::Cluster;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use appliance_cluster::{Discovered, NodeId};
use appliance_peering::{system_clock, NodeSetup, PeerNode, SamePort, Timeouts};
use appliance_pki::NodeKey;
use appliance_state::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::desired::cluster::{service_specs, PeerPorts};
use crate::node::Node;
use ctx::{lock, Ctx};
use store::ClusterStore;

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

/// The node key, read from `<state-dir>/node-key.pem` (created at first
/// start by the identity module).
fn node_key(state_dir: &std::path::Path) -> Result<NodeKey, KeyError> {
    let path = state_dir.join(crate::identity::NODE_KEY_FILE);
    let pem = match std::fs::read_to_string(&path) {
        Ok(pem) => pem,
        Err(source) => return Err(KeyError::Read { path, source }),
    };
    NodeKey::from_pem(&pem).map_err(|source| KeyError::Parse { path, source })
}

/// Why the cluster side cannot start: the node key cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file holds no usable key.
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: appliance_pki::PkiError,
    },
}

impl Cluster {
    /// The cluster side of `setup.node`, idle until [`Cluster::prepare`]
    /// and [`Cluster::start`]; refused without a readable node key.
    pub fn new(setup: ClusterSetup) -> Result<Cluster, KeyError> {
        let key = node_key(&setup.state_dir)?;
        Ok(Self::with_key(setup, key))
    }

    fn with_key(setup: ClusterSetup, key: NodeKey) -> Cluster {
        let ports = setup.ports;
        let me = NodeId(setup.node.identity.node_id);
        let specs = service_specs(setup.node.manifests());
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

    /// The peer side while this node is a cluster member (the audit trail
    /// and the management certificate go through its authority).
    pub fn member_peer(&self) -> Option<PeerNode> {
        self.ctx.member_state().map(|_| self.ctx.peer.clone())
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
