//! A node's peer side: its identity, its state (idle, waiting to be joined,
//! or a member), the one server on the peer port whose TLS configuration and
//! accepted calls follow that state, and the hooks through which the
//! embedding daemon stores what changes.
//!
//! The server accepts each connection with the configuration of the state
//! the node is in at that moment: the join configuration while it waits to
//! be joined, cluster mutual TLS once it is a member. Both services are
//! always mounted; each handler checks the channel its call came over, so a
//! `Cluster` call over the join channel (unauthenticated) is refused, and a
//! `Join` call to a member too. Switching state needs no restart.
//!
//! `embedding` has what the daemon passes in and is told.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use appliance_cluster::{
    diff, CertFingerprint, ChangeError, ClusterConfig, DiffError, Member, MemberState, NodeId, Role,
};
use appliance_pki::tls::{cluster_server_config, join_server_config};
use appliance_pki::{
    self_signed_join_cert, CaCert, CaKey, NodeCert, NodeCsr, NodeKey, NodeSubject, RevocationList,
    SharedRevocations,
};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::authority::{Authority, AuthorityRecord, LocalAuthority, Persist, RemoteAuthority};
use crate::client::{ClusterDialer, PeerResolver};
use crate::cluster_service::ClusterService;
use crate::error::{error_chain, HookError, PeerError};
use crate::join::{JoinService, SharedSlot};
use crate::pb::cluster_server::ClusterServer;
use crate::pb::join_server::JoinServer;
use crate::state::ClusterState;
use crate::transport::{accept_tls, ChannelKind, PickTls};
use crate::Timeouts;

mod embedding;

pub use embedding::{
    system_clock, Clock, FormedCluster, JoinedBundle, LocalFacts, MemberSetup, NodeHooks,
    NodeSetup, NodeStatus,
};

pub(crate) struct Unjoined {
    pub(crate) tls: Arc<ServerConfig>,
    pub(crate) fingerprint: CertFingerprint,
    pub(crate) slot: SharedSlot,
}

pub(crate) struct Membership {
    pub(crate) tls: Arc<ServerConfig>,
    pub(crate) ca: CaCert,
    pub(crate) cert: NodeCert,
    pub(crate) fingerprint: CertFingerprint,
    pub(crate) authority: Option<Arc<dyn Authority>>,
}

#[derive(Clone)]
enum Mode {
    Idle,
    Unjoined(Arc<Unjoined>),
    Member(Arc<Membership>),
}

pub(crate) struct Inner {
    pub(crate) id: NodeId,
    pub(crate) key: Arc<NodeKey>,
    facts: RwLock<LocalFacts>,
    pub(crate) hooks: Arc<dyn NodeHooks>,
    pub(crate) clock: Clock,
    pub(crate) resolver: Arc<dyn PeerResolver>,
    pub(crate) timeouts: Timeouts,
    /// One handle for every TLS configuration this node builds, so a new
    /// revocation refuses the next handshake everywhere.
    pub(crate) revocations: SharedRevocations,
    mode: RwLock<Mode>,
    state: RwLock<Option<ClusterState>>,
    /// Serialises accepting states, so hooks see generations in order.
    apply_lock: tokio::sync::Mutex<()>,
}

/// A node's peer side; cloning shares it.
#[derive(Clone)]
pub struct PeerNode {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for PeerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerNode")
            .field("node", &self.inner.id)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// Why a received state was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcceptRefusal {
    #[error("this node is not a cluster member")]
    NotMember,
    #[error(transparent)]
    Diff(#[from] DiffError),
    #[error("the configuration offered is not valid: {0}")]
    Invalid(#[from] ChangeError),
    #[error("this node could not store the configuration: {0}")]
    Hook(#[from] HookError),
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn write<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(|e| e.into_inner()) = value;
}

impl PeerNode {
    /// A node that is idle until told to wait for a join or to be a member.
    pub fn new(setup: NodeSetup) -> PeerNode {
        PeerNode {
            inner: Arc::new(Inner {
                id: setup.node_id,
                key: setup.key,
                facts: RwLock::new(setup.facts),
                hooks: setup.hooks,
                clock: setup.clock,
                resolver: setup.resolver,
                timeouts: setup.timeouts,
                revocations: SharedRevocations::default(),
                mode: RwLock::new(Mode::Idle),
                state: RwLock::new(None),
                apply_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Its node id.
    pub fn node_id(&self) -> NodeId {
        self.inner.id
    }

    /// What it tells about itself.
    pub fn facts(&self) -> LocalFacts {
        read(&self.inner.facts)
    }

    /// Updates what it tells about itself (a new hostname or address).
    pub fn set_facts(&self, facts: LocalFacts) {
        write(&self.inner.facts, facts);
    }

    /// Idle, waiting to be joined, or a member.
    pub fn status(&self) -> NodeStatus {
        match read(&self.inner.mode) {
            Mode::Idle => NodeStatus::Idle,
            Mode::Unjoined(u) => NodeStatus::Unjoined {
                fingerprint: u.fingerprint,
            },
            Mode::Member(m) => {
                let state = read(&self.inner.state);
                NodeStatus::Member {
                    cluster_id: state
                        .as_ref()
                        .map(|s| s.config.cluster_id())
                        .unwrap_or_default(),
                    generation: state.as_ref().map(ClusterState::generation).unwrap_or(0),
                    fingerprint: m.fingerprint,
                    authority: m.authority.is_some(),
                }
            }
        }
    }

    /// The state it has accepted last (also after it was removed).
    pub fn cluster_state(&self) -> Option<ClusterState> {
        read(&self.inner.state)
    }

    fn subject(&self) -> NodeSubject {
        let facts = self.facts();
        NodeSubject {
            node_id: self.inner.id.uuid(),
            hostname: facts.hostname,
            addresses: facts.addresses,
        }
    }

    /// The certificate request for this node's key and facts.
    pub(crate) fn csr(&self) -> Result<NodeCsr, PeerError> {
        Ok(NodeCsr::build(&self.inner.key, &self.subject())?)
    }

    /// Waits to be joined: serves `Join` with a fresh self-signed
    /// certificate, the handshake checking codes against `slot`. Returns the
    /// certificate's fingerprint (for the beacon and the console).
    pub fn become_unjoined(&self, slot: SharedSlot) -> Result<CertFingerprint, PeerError> {
        let cert = self_signed_join_cert(&self.inner.key, &self.subject(), (self.inner.clock)())?;
        let tls = join_server_config(&cert, &self.inner.key)?;
        let fingerprint = CertFingerprint::of_certificate_der(cert.der());
        write(&self.inner.state, None);
        self.inner.revocations.replace(RevocationList::new());
        write(
            &self.inner.mode,
            Mode::Unjoined(Arc::new(Unjoined {
                tls,
                fingerprint,
                slot,
            })),
        );
        tracing::info!(fingerprint = %fingerprint, "waiting to be joined to a cluster");
        Ok(fingerprint)
    }

    /// Becomes a member with `setup` (after a restart, or a join).
    pub fn become_member(&self, setup: MemberSetup) -> Result<(), PeerError> {
        if setup.cert.node_id() != self.inner.id.uuid() {
            return Err(PeerError::Invalid(format!(
                "the certificate {} is for node {}, not this node {}",
                setup.cert.fingerprint(),
                setup.cert.node_id(),
                self.inner.id
            )));
        }
        if !setup.ca.signed(setup.cert.der()) {
            return Err(PeerError::Invalid(format!(
                "the certificate {} is not signed by the cluster CA {}",
                setup.cert.fingerprint(),
                setup.ca.fingerprint()
            )));
        }
        self.inner
            .revocations
            .replace(setup.state.revocations.clone());
        let tls = cluster_server_config(
            &setup.ca,
            &setup.cert,
            &self.inner.key,
            self.inner.revocations.clone(),
        )?;
        let membership = Membership {
            tls,
            fingerprint: CertFingerprint::of_certificate_der(setup.cert.der()),
            ca: setup.ca,
            cert: setup.cert,
            authority: setup.authority,
        };
        tracing::info!(
            cluster = %setup.state.config.cluster_id(),
            generation = setup.state.generation(),
            "cluster member"
        );
        write(&self.inner.state, Some(setup.state));
        write(&self.inner.mode, Mode::Member(Arc::new(membership)));
        Ok(())
    }

    /// Forms a new cluster with this node as its only member (front-end and
    /// back-end, as the placement rules require of a founder): creates the
    /// CA, signs this node's certificate, makes generation 1, saves the
    /// authority's record through `persist`, and becomes a member.
    pub fn form_cluster(
        &self,
        cluster_id: Uuid,
        cluster_name: &str,
        persist: Arc<dyn Persist>,
    ) -> Result<FormedCluster, PeerError> {
        let now = (self.inner.clock)();
        let ca = CaKey::create(cluster_name, now)?;
        let cert = ca.sign_node_csr(&self.csr()?, self.inner.id.uuid(), now)?;
        let facts = self.facts();
        let founder = Member {
            id: self.inner.id,
            hostname: facts.hostname,
            addresses: facts.addresses,
            roles: [Role::Frontend, Role::Backend].into_iter().collect(),
            version: facts.version,
            fingerprint: CertFingerprint::of_certificate_der(cert.der()),
            state: MemberState::Active,
        };
        let state = ClusterState {
            config: ClusterConfig::new(cluster_id, founder)?,
            revocations: RevocationList::new(),
        };
        let record = AuthorityRecord {
            state: state.clone(),
            issued: [(self.inner.id, [cert.fingerprint()].into_iter().collect())]
                .into_iter()
                .collect(),
        };
        persist.save(&record)?;
        let ca_key_pem = ca.key_pem();
        let ca_cert = ca.cert().clone();
        let authority = Arc::new(LocalAuthority::new(
            ca,
            record,
            persist,
            self.inner.clock.clone(),
        ));
        self.become_member(MemberSetup {
            ca: ca_cert.clone(),
            cert: cert.clone(),
            state: state.clone(),
            authority: Some(authority.clone()),
        })?;
        tracing::info!(cluster = %cluster_id, "formed a new cluster");
        Ok(FormedCluster {
            ca_key_pem,
            ca: ca_cert,
            cert,
            state,
            authority,
        })
    }

    /// Serves the peer port on `listener` until `cancel` fires, then lets
    /// open calls finish.
    pub async fn serve(
        &self,
        listener: TcpListener,
        cancel: CancellationToken,
    ) -> Result<(), PeerError> {
        let inner = self.inner.clone();
        let pick: PickTls = Arc::new(move || match read(&inner.mode) {
            Mode::Idle => None,
            Mode::Unjoined(u) => Some((u.tls.clone(), ChannelKind::Join)),
            Mode::Member(m) => Some((m.tls.clone(), ChannelKind::Cluster)),
        });
        let incoming = accept_tls(listener, pick, self.inner.timeouts, cancel.clone());
        tonic::transport::Server::builder()
            // Dead peers' connections are reaped; one connection cannot
            // run unbounded calls at once.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .concurrency_limit_per_connection(32)
            .add_service(JoinServer::new(JoinService::new(self.clone())))
            .add_service(ClusterServer::new(ClusterService::new(self.clone())))
            .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
            .await
            .map_err(|e| PeerError::Serve(error_chain(&e)))
    }

    pub(crate) fn unjoined(&self) -> Option<Arc<Unjoined>> {
        match read(&self.inner.mode) {
            Mode::Unjoined(u) => Some(u),
            _ => None,
        }
    }

    pub(crate) fn membership(&self) -> Result<Arc<Membership>, PeerError> {
        match read(&self.inner.mode) {
            Mode::Member(m) => Ok(m),
            Mode::Idle => Err(PeerError::NotMember { state: "idle" }),
            Mode::Unjoined(_) => Err(PeerError::NotMember {
                state: "waiting to be joined",
            }),
        }
    }

    /// The state, for a member.
    pub(crate) fn member_state(&self) -> Result<ClusterState, PeerError> {
        self.membership()?;
        read(&self.inner.state).ok_or(PeerError::NotMember { state: "idle" })
    }

    /// This member's credentials for calling others.
    pub(crate) fn dialer(&self) -> Result<ClusterDialer, PeerError> {
        let m = self.membership()?;
        Ok(ClusterDialer::new(
            m.ca.clone(),
            m.cert.clone(),
            self.inner.key.clone(),
            self.inner.revocations.clone(),
            self.inner.resolver.clone(),
            self.inner.timeouts,
        ))
    }

    /// The authority: this node's own, or the back-end member reached remotely.
    pub(crate) fn authority(&self) -> Result<Arc<dyn Authority>, PeerError> {
        let m = self.membership()?;
        if let Some(a) = &m.authority {
            return Ok(a.clone());
        }
        Ok(Arc::new(RemoteAuthority::new(
            self.dialer()?,
            self.authority_target()?,
        )))
    }

    /// The member that is the authority in this node's configuration.
    pub(crate) fn authority_target(&self) -> Result<Member, PeerError> {
        let state = self.member_state()?;
        authority_member(&state.config).cloned().ok_or_else(|| {
            PeerError::Invalid(
                "the cluster has no single back-end node to act as its authority".into(),
            )
        })
    }

    /// Whether this node holds the authority (the CA key).
    pub(crate) fn is_authority(&self) -> bool {
        self.membership().is_ok_and(|m| m.authority.is_some())
    }

    /// Accepts `new` if it is this cluster's, not older than what the node
    /// has, and valid; stores it through the hooks, then makes it current
    /// (its revocations take effect at the next handshake). Returns the
    /// node's generation.
    pub(crate) async fn accept_state(&self, new: ClusterState) -> Result<u64, AcceptRefusal> {
        let _serial = self.inner.apply_lock.lock().await;
        if self.membership().is_err() {
            return Err(AcceptRefusal::NotMember);
        }
        let cur = read(&self.inner.state).ok_or(AcceptRefusal::NotMember)?;
        diff(Some(&cur.config), &new.config, &[])?;
        new.config.validate()?;
        let mut revocations = cur.revocations.clone();
        revocations.merge(&new.revocations);
        if new.generation() == cur.generation() && revocations == cur.revocations {
            return Ok(cur.generation());
        }
        let next = ClusterState {
            config: new.config,
            revocations,
        };
        let generation = next.generation();
        if next.config.member(&self.inner.id).is_some() {
            self.inner.hooks.config_changed(&next).await?;
            self.inner.revocations.replace(next.revocations.clone());
            write(&self.inner.state, Some(next));
            tracing::info!(generation, "accepted cluster configuration");
        } else {
            self.inner.hooks.left(&next).await;
            self.inner.revocations.replace(next.revocations.clone());
            write(&self.inner.state, Some(next));
            write(&self.inner.mode, Mode::Idle);
            tracing::warn!(
                generation,
                "this node was removed from the cluster; the peer port is idle"
            );
        }
        Ok(generation)
    }

    /// Replaces this member's certificate (after a renewal).
    pub(crate) fn replace_cert(&self, cert: NodeCert) -> Result<(), PeerError> {
        let m = self.membership()?;
        let tls = cluster_server_config(
            &m.ca,
            &cert,
            &self.inner.key,
            self.inner.revocations.clone(),
        )?;
        let next = Membership {
            tls,
            fingerprint: CertFingerprint::of_certificate_der(cert.der()),
            ca: m.ca.clone(),
            cert,
            authority: m.authority.clone(),
        };
        write(&self.inner.mode, Mode::Member(Arc::new(next)));
        Ok(())
    }
}

/// The member acting as authority: the single back-end node.
pub fn authority_member(config: &ClusterConfig) -> Option<&Member> {
    let mut backends = config
        .members()
        .filter(|m| m.roles.contains(&Role::Backend) && m.state != MemberState::Removing);
    match (backends.next(), backends.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}
