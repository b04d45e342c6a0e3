//! The in-process lab: nodes are real `PeerNode` servers on loopback
//! addresses (127.0.0.x, port 0), found through a resolver that knows
//! which port each address got; hooks record what each node was told.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use appliance_cluster::{JoinCode, JoinCodeSlot, Member, NodeId, Role, SlotPolicy};
use appliance_peering::{
    AuthorityRecord, ClusterState, FormedCluster, HookError, JoinProgress, JoinedBundle,
    LocalFacts, MemoryPersist, NodeHooks, NodeSetup, PeerError, PeerNode, PeerResolver, Timeouts,
};
use appliance_pki::{NodeCert, NodeKey};
use async_trait::async_trait;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const F: Role = Role::Frontend;
pub const B: Role = Role::Backend;

/// Every wait in these tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(30);

pub fn roles(r: &[Role]) -> BTreeSet<Role> {
    r.iter().copied().collect()
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
}

/// Maps each loopback address to the port its node listens on.
#[derive(Default)]
pub struct LabResolver {
    ports: Mutex<HashMap<IpAddr, u16>>,
}

impl PeerResolver for LabResolver {
    fn addresses(&self, member: &Member) -> Vec<SocketAddr> {
        let ports = self.ports.lock().unwrap();
        member
            .addresses
            .iter()
            .filter_map(|ip| ports.get(ip).map(|p| SocketAddr::new(*ip, *p)))
            .collect()
    }
}

/// What a node's daemon was told.
#[derive(Default)]
pub struct Recorder {
    pub generations: Mutex<Vec<u64>>,
    pub joined: Mutex<Option<JoinedBundle>>,
    pub left: Mutex<Option<u64>>,
    pub renewed: Mutex<Vec<String>>,
    /// Makes `joined` fail, as a daemon that cannot write its disk would.
    pub refuse_join: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl NodeHooks for Recorder {
    async fn joined(&self, bundle: &JoinedBundle) -> Result<(), HookError> {
        if self.refuse_join.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(HookError("cannot write /data: no space left".into()));
        }
        self.generations
            .lock()
            .unwrap()
            .push(bundle.state.generation());
        *self.joined.lock().unwrap() = Some(bundle.clone());
        Ok(())
    }

    async fn config_changed(&self, state: &ClusterState) -> Result<(), HookError> {
        self.generations.lock().unwrap().push(state.generation());
        Ok(())
    }

    async fn left(&self, state: &ClusterState) {
        *self.left.lock().unwrap() = Some(state.generation());
    }

    async fn certificate_renewed(&self, cert: &NodeCert) -> Result<(), HookError> {
        self.renewed.lock().unwrap().push(cert.fingerprint());
        Ok(())
    }
}

/// How a test node presents itself.
#[derive(Clone)]
pub struct Spec {
    pub ip: IpAddr,
    pub hostname: String,
    pub addresses: Vec<IpAddr>,
    pub version: String,
    pub mtu: u32,
    pub clock_offset: Duration,
}

pub type Slot = Arc<Mutex<JoinCodeSlot<StdRng>>>;

pub struct TestNode {
    pub node: PeerNode,
    pub key: Arc<NodeKey>,
    pub hooks: Arc<Recorder>,
    pub ip: IpAddr,
    pub addr: SocketAddr,
    cancel: CancellationToken,
    server: Option<JoinHandle<Result<(), PeerError>>>,
    pub slot: Option<Slot>,
    pub formed: Option<FormedCluster>,
    pub persist: Option<Arc<MemoryPersist>>,
}

pub struct Lab {
    pub resolver: Arc<LabResolver>,
    pub timeouts: Timeouts,
    /// Third octet of this lab's addresses, so tests running at once do not share them.
    net: u8,
}

impl Lab {
    pub fn new(net: u8) -> Lab {
        init_tracing();
        Lab {
            resolver: Arc::new(LabResolver::default()),
            timeouts: Timeouts {
                tls_handshake: Duration::from_secs(1),
                connect: Duration::from_secs(2),
                rpc: Duration::from_secs(3),
                step: Duration::from_secs(5),
                max_pending_handshakes: 16,
            },
            net,
        }
    }

    pub fn ip(&self, n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, self.net, n))
    }

    pub fn spec(&self, n: u8) -> Spec {
        Spec {
            ip: self.ip(n),
            hostname: format!("node-{n}"),
            addresses: vec![self.ip(n)],
            version: "0.1.0".into(),
            mtu: 1500,
            clock_offset: Duration::ZERO,
        }
    }

    /// A node, serving its peer port (idle until told otherwise).
    pub async fn node(&self, spec: Spec) -> TestNode {
        let key = Arc::new(NodeKey::generate().unwrap());
        let hooks = Arc::new(Recorder::default());
        let offset = spec.clock_offset;
        let node = PeerNode::new(NodeSetup {
            node_id: NodeId(Uuid::new_v4()),
            key: key.clone(),
            facts: LocalFacts {
                hostname: spec.hostname.clone(),
                addresses: spec.addresses.clone(),
                version: spec.version.clone(),
                mtu: spec.mtu,
            },
            hooks: hooks.clone(),
            clock: Arc::new(move || SystemTime::now() + offset),
            resolver: self.resolver.clone(),
            timeouts: self.timeouts,
        });
        let mut t = TestNode {
            node,
            key,
            hooks,
            ip: spec.ip,
            addr: SocketAddr::new(spec.ip, 0),
            cancel: CancellationToken::new(),
            server: None,
            slot: None,
            formed: None,
            persist: None,
        };
        self.start(&mut t).await;
        t
    }

    /// Serves `t` on a new port of its address.
    pub async fn start(&self, t: &mut TestNode) {
        let listener = TcpListener::bind(SocketAddr::new(t.ip, 0)).await.unwrap();
        t.addr = listener.local_addr().unwrap();
        self.resolver
            .ports
            .lock()
            .unwrap()
            .insert(t.ip, t.addr.port());
        t.cancel = CancellationToken::new();
        let node = t.node.clone();
        let cancel = t.cancel.clone();
        t.server = Some(tokio::spawn(
            async move { node.serve(listener, cancel).await },
        ));
    }

    /// A node that forms a cluster.
    pub async fn founder(&self, n: u8) -> TestNode {
        let mut t = self.node(self.spec(n)).await;
        let persist = Arc::new(MemoryPersist::default());
        let formed = t
            .node
            .form_cluster(Uuid::new_v4(), "lab", persist.clone())
            .unwrap();
        t.hooks
            .generations
            .lock()
            .unwrap()
            .push(formed.state.generation());
        t.formed = Some(formed);
        t.persist = Some(persist);
        t
    }

    /// A node waiting to be joined, with a slot seeded by `seed`.
    pub async fn candidate(&self, spec: Spec, seed: u64, policy: SlotPolicy) -> TestNode {
        let mut t = self.node(spec).await;
        let slot: Slot = Arc::new(Mutex::new(JoinCodeSlot::new(
            StdRng::seed_from_u64(seed),
            policy,
            Instant::now(),
        )));
        t.node.become_unjoined(slot.clone()).unwrap();
        t.slot = Some(slot);
        t
    }
}

impl TestNode {
    pub fn id(&self) -> NodeId {
        self.node.node_id()
    }

    pub fn state(&self) -> ClusterState {
        self.node.cluster_state().unwrap()
    }

    pub fn generation(&self) -> u64 {
        self.state().generation()
    }

    /// The code its console would show.
    pub fn code(&self) -> JoinCode {
        self.slot
            .as_ref()
            .unwrap()
            .lock()
            .unwrap()
            .current(Instant::now())
            .unwrap()
            .0
            .clone()
    }

    pub fn wrong_attempts(&self) -> u32 {
        self.slot.as_ref().unwrap().lock().unwrap().wrong_attempts()
    }

    pub fn generations(&self) -> Vec<u64> {
        self.hooks.generations.lock().unwrap().clone()
    }

    pub async fn record(&self) -> AuthorityRecord {
        self.formed.as_ref().unwrap().authority.record().await
    }

    /// Stops serving; returns once the server has shut down.
    pub async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(s) = self.server.take() {
            tokio::time::timeout(LIMIT, s)
                .await
                .expect("the server stops in time")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Runs a join from `admin` and collects every event.
pub async fn join(
    admin: &TestNode,
    address: SocketAddr,
    code: JoinCode,
    r: &[Role],
) -> Vec<JoinProgress> {
    let events = admin.node.join_candidate(address, code, roles(r));
    tokio::time::timeout(LIMIT, events.collect::<Vec<_>>())
        .await
        .expect("the join ends in time")
}

pub fn done(events: &[JoinProgress]) -> bool {
    matches!(events.last(), Some(JoinProgress::Done { .. }))
}

pub fn failure(events: &[JoinProgress]) -> String {
    match events.last() {
        Some(JoinProgress::Failed { reason }) => reason.clone(),
        other => panic!("expected a failed join, got {other:?} in {events:#?}"),
    }
}

pub fn preflight_failures(events: &[JoinProgress]) -> Vec<String> {
    events
        .iter()
        .find_map(|e| match e {
            JoinProgress::PreflightFailed { failures } => Some(failures.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A code that is not `right`.
pub fn wrong_code(right: &JoinCode) -> JoinCode {
    let w = JoinCode::parse("0000000000").unwrap();
    if w.ct_eq(right) {
        JoinCode::parse("1111111110").unwrap()
    } else {
        w
    }
}

/// Everything a refused join must leave as it was.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    states: Vec<Option<ClusterState>>,
    generations: Vec<Vec<u64>>,
    record: AuthorityRecord,
    saves: usize,
}

pub async fn snapshot(authority: &TestNode, members: &[&TestNode]) -> Snapshot {
    Snapshot {
        states: members.iter().map(|m| m.node.cluster_state()).collect(),
        generations: members.iter().map(|m| m.generations()).collect(),
        record: authority.record().await,
        saves: authority.persist.as_ref().unwrap().saves(),
    }
}
