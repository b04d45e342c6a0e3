//! A stand-in applianced for managementd's crate tests: a tonic server on a
//! temporary Unix socket answering `Node` (default replies, a `ClusterAdd`
//! stream of one final event) and `Admin` (accounts, events, settings and a
//! self-signed certificate in memory). The real end-to-end tests against
//! applianced are in qa/.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use appliance_api::v1::admin_server::{Admin, AdminServer};
use appliance_api::v1::node_server::{Node, NodeServer};
use appliance_api::v1::*;
use appliance_management::auth::limiter::Limiter;
use appliance_management::auth::sessions::Sessions;
use appliance_management::backend::Backend;
use appliance_management::metrics::Metrics;
use appliance_management::server::App;
use appliance_management::state::AppState;
use axum::body::Body;
use axum::http::{Request, Response};
use futures::{Stream, StreamExt};
use tonic::{Response as TResponse, Status};

/// A ClusterAdd to this address sends one event, then nothing.
pub const HANGING_JOIN: &str = "192.0.2.99";

/// A password every seeded account has.
pub const PASSWORD: &str = "correct horse battery";

/// One Argon2id hash of [`PASSWORD`], made once (Argon2 is slow in debug builds).
pub fn hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| appliance_management::auth::password::hash(PASSWORD).expect("hash"))
        .clone()
}

/// What the stand-in holds; tests read and change it.
#[derive(Default)]
pub struct Data {
    pub accounts: Vec<Account>,
    pub events: Vec<AuditEvent>,
    pub settings: Settings,
    /// The last `client_address` of SetSettings.
    pub client_address: String,
    pub tls: ManagementTls,
    /// Node methods that reached the stand-in.
    pub node_calls: Vec<String>,
}

#[derive(Clone, Default)]
pub struct Fake {
    pub data: Arc<Mutex<Data>>,
}

impl Fake {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().expect("fake lock")
    }

    /// The audit events recorded so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.lock().events.clone()
    }

    fn node(&self, method: &str) {
        self.lock().node_calls.push(method.to_string());
    }
}

impl Fake {
    /// A stand-in with these accounts (name, role; all with [`PASSWORD`])
    /// serving on `socket` (a task of the current runtime).
    pub fn serve_at(socket: &std::path::Path, accounts: &[(&str, &str)]) -> Fake {
        let fake = Fake::default();
        {
            let mut d = fake.lock();
            d.accounts = accounts
                .iter()
                .map(|(n, r)| Account {
                    name: n.to_string(),
                    role: r.to_string(),
                    password_hash: hash(),
                    changed_unix_ms: 1,
                })
                .collect();
            d.tls = certificate("node1");
        }
        let listener = tokio::net::UnixListener::bind(socket).expect("bind unix socket");
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let server = tonic::transport::Server::builder()
            .add_service(NodeServer::new(fake.clone()))
            .add_service(AdminServer::new(fake.clone()))
            .serve_with_incoming(incoming);
        tokio::spawn(server);
        fake
    }
}

/// A self-signed certificate and key for `name`.
pub fn certificate(name: &str) -> ManagementTls {
    let key = rcgen::generate_simple_self_signed(vec![name.to_string(), "127.0.0.1".to_string()])
        .expect("rcgen");
    let fingerprint =
        appliance_management::auth::sessions::hex(&sha2_digest(key.cert.der().as_ref()));
    ManagementTls {
        cert_pem: key.cert.pem(),
        key_pem: key.signing_key.serialize_pem(),
        fingerprint,
        source: "self-signed".into(),
        ..Default::default()
    }
}

fn sha2_digest(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

#[tonic::async_trait]
impl Node for Fake {
    async fn status(
        &self,
        _: tonic::Request<StatusRequest>,
    ) -> Result<TResponse<StatusReply>, Status> {
        self.node("Status");
        Ok(TResponse::new(StatusReply {
            node_id: "n1".into(),
            hostname: "node1".into(),
            version: "0.1.0".into(),
            generation: 3,
            ready: true,
            uptime_ms: 5000,
            mode: "hosted".into(),
            reconcilers: vec![ReconcilerStatus {
                name: "firewall".into(),
                ok: true,
                ..Default::default()
            }],
            ..Default::default()
        }))
    }
    async fn get_config(
        &self,
        _: tonic::Request<GetConfigRequest>,
    ) -> Result<TResponse<ConfigReply>, Status> {
        self.node("GetConfig");
        Ok(TResponse::new(ConfigReply::default()))
    }
    async fn validate_config(
        &self,
        _: tonic::Request<ConfigText>,
    ) -> Result<TResponse<ValidateReply>, Status> {
        self.node("ValidateConfig");
        Ok(TResponse::new(ValidateReply::default()))
    }
    async fn set_config(
        &self,
        _: tonic::Request<ConfigText>,
    ) -> Result<TResponse<ConfigReply>, Status> {
        self.node("SetConfig");
        Ok(TResponse::new(ConfigReply::default()))
    }
    async fn list_services(
        &self,
        _: tonic::Request<ListServicesRequest>,
    ) -> Result<TResponse<ListServicesReply>, Status> {
        self.node("ListServices");
        Ok(TResponse::new(ListServicesReply {
            services: vec![ServiceInfo {
                name: "portal".into(),
                role: "frontend".into(),
                state: "healthy".into(),
                restarts: 2,
                ..Default::default()
            }],
        }))
    }
    async fn restart_service(
        &self,
        _: tonic::Request<RestartServiceRequest>,
    ) -> Result<TResponse<ServiceInfo>, Status> {
        self.node("RestartService");
        Ok(TResponse::new(ServiceInfo::default()))
    }
    async fn show_firewall(
        &self,
        _: tonic::Request<ShowFirewallRequest>,
    ) -> Result<TResponse<FirewallReply>, Status> {
        self.node("ShowFirewall");
        Ok(TResponse::new(FirewallReply {
            rules: vec![FirewallRule {
                id: "mgmt-v4".into(),
                chain: "input".into(),
                packets: 7,
                bytes: 420,
                ..Default::default()
            }],
            ..Default::default()
        }))
    }
    async fn logs(&self, _: tonic::Request<LogsRequest>) -> Result<TResponse<LogsReply>, Status> {
        self.node("Logs");
        Ok(TResponse::new(LogsReply::default()))
    }
    async fn list_peers(
        &self,
        _: tonic::Request<ListPeersRequest>,
    ) -> Result<TResponse<PeersReply>, Status> {
        self.node("ListPeers");
        Ok(TResponse::new(PeersReply::default()))
    }
    async fn add_peer(
        &self,
        _: tonic::Request<PeerRequest>,
    ) -> Result<TResponse<PeersReply>, Status> {
        self.node("AddPeer");
        Ok(TResponse::new(PeersReply::default()))
    }
    async fn remove_peer(
        &self,
        _: tonic::Request<PeerRequest>,
    ) -> Result<TResponse<PeersReply>, Status> {
        self.node("RemovePeer");
        Ok(TResponse::new(PeersReply::default()))
    }
    async fn cluster_status(
        &self,
        _: tonic::Request<ClusterStatusRequest>,
    ) -> Result<TResponse<ClusterStatusReply>, Status> {
        self.node("ClusterStatus");
        Ok(TResponse::new(ClusterStatusReply {
            node_state: "member".into(),
            generation: 4,
            authority: true,
            members: vec![ClusterMember {
                node_id: "n1".into(),
                roles: vec!["frontend".into(), "backend".into()],
                state: "active".into(),
                ..Default::default()
            }],
            ..Default::default()
        }))
    }
    async fn cluster_form(
        &self,
        _: tonic::Request<ClusterFormRequest>,
    ) -> Result<TResponse<ClusterStatusReply>, Status> {
        self.node("ClusterForm");
        Ok(TResponse::new(ClusterStatusReply::default()))
    }
    type ClusterAddStream = Pin<Box<dyn Stream<Item = Result<ClusterAddEvent, Status>> + Send>>;
    async fn cluster_add(
        &self,
        req: tonic::Request<ClusterAddRequest>,
    ) -> Result<TResponse<Self::ClusterAddStream>, Status> {
        self.node("ClusterAdd");
        if req.get_ref().address == HANGING_JOIN {
            let first = futures::stream::iter([Ok(ClusterAddEvent {
                kind: "connecting".into(),
                ..Default::default()
            })]);
            return Ok(TResponse::new(Box::pin(
                first.chain(futures::stream::pending()),
            )));
        }
        let events = vec![
            Ok(ClusterAddEvent {
                kind: "connecting".into(),
                ..Default::default()
            }),
            Ok(ClusterAddEvent {
                kind: "done".into(),
                r#final: true,
                ok: true,
                ..Default::default()
            }),
        ];
        Ok(TResponse::new(Box::pin(futures::stream::iter(events))))
    }
    async fn cluster_remove(
        &self,
        _: tonic::Request<ClusterRemoveRequest>,
    ) -> Result<TResponse<ClusterChangeReply>, Status> {
        self.node("ClusterRemove");
        Ok(TResponse::new(ClusterChangeReply::default()))
    }
    async fn cluster_set_roles(
        &self,
        _: tonic::Request<ClusterSetRolesRequest>,
    ) -> Result<TResponse<ClusterChangeReply>, Status> {
        self.node("ClusterSetRoles");
        Ok(TResponse::new(ClusterChangeReply::default()))
    }
    async fn cluster_discovered(
        &self,
        _: tonic::Request<ClusterDiscoveredRequest>,
    ) -> Result<TResponse<ClusterDiscoveredReply>, Status> {
        self.node("ClusterDiscovered");
        Ok(TResponse::new(ClusterDiscoveredReply::default()))
    }
}

#[tonic::async_trait]
impl Admin for Fake {
    async fn list_accounts(
        &self,
        _: tonic::Request<ListAccountsRequest>,
    ) -> Result<TResponse<AccountsReply>, Status> {
        let d = self.lock();
        Ok(TResponse::new(AccountsReply {
            accounts: d.accounts.clone(),
            first_admin_hint: "Set it on the console.".into(),
            generation: 0,
        }))
    }
    async fn put_account(
        &self,
        req: tonic::Request<PutAccountRequest>,
    ) -> Result<TResponse<AccountsReply>, Status> {
        let r = req.into_inner();
        let account = r
            .account
            .ok_or_else(|| Status::invalid_argument("no account"))?;
        if !account.password_hash.starts_with("$argon2id$") {
            return Err(Status::invalid_argument("not an argon2id hash"));
        }
        {
            let mut d = self.lock();
            let existing = d.accounts.iter().position(|a| a.name == account.name);
            match (existing, r.create) {
                (Some(_), true) => {
                    return Err(Status::already_exists(format!(
                        "account {} exists",
                        account.name
                    )))
                }
                (None, false) => {
                    return Err(Status::not_found(format!("no account {}", account.name)))
                }
                (Some(i), false) => d.accounts[i] = account,
                (None, true) => d.accounts.push(account),
            }
        }
        self.list_accounts(tonic::Request::new(ListAccountsRequest {}))
            .await
    }
    async fn remove_account(
        &self,
        req: tonic::Request<RemoveAccountRequest>,
    ) -> Result<TResponse<AccountsReply>, Status> {
        let name = req.into_inner().name;
        self.lock().accounts.retain(|a| a.name != name);
        self.list_accounts(tonic::Request::new(ListAccountsRequest {}))
            .await
    }
    async fn record_event(
        &self,
        req: tonic::Request<AuditEvent>,
    ) -> Result<TResponse<AuditEvent>, Status> {
        let mut e = req.into_inner();
        let mut d = self.lock();
        e.seq = d.events.len() as u64 + 1;
        d.events.push(e.clone());
        Ok(TResponse::new(e))
    }
    async fn list_events(
        &self,
        _: tonic::Request<ListEventsRequest>,
    ) -> Result<TResponse<EventsReply>, Status> {
        Ok(TResponse::new(EventsReply {
            events: self.events(),
        }))
    }
    async fn get_settings(
        &self,
        _: tonic::Request<GetSettingsRequest>,
    ) -> Result<TResponse<Settings>, Status> {
        Ok(TResponse::new(self.lock().settings.clone()))
    }
    async fn set_settings(
        &self,
        req: tonic::Request<SetSettingsRequest>,
    ) -> Result<TResponse<Settings>, Status> {
        let r = req.into_inner();
        let mut d = self.lock();
        d.client_address = r.client_address;
        d.settings = r.settings.unwrap_or_default();
        Ok(TResponse::new(d.settings.clone()))
    }
    async fn get_management_tls(
        &self,
        _: tonic::Request<GetManagementTlsRequest>,
    ) -> Result<TResponse<ManagementTls>, Status> {
        Ok(TResponse::new(self.lock().tls.clone()))
    }
    async fn set_management_certificate(
        &self,
        _: tonic::Request<SetManagementCertificateRequest>,
    ) -> Result<TResponse<ManagementTls>, Status> {
        Ok(TResponse::new(self.lock().tls.clone()))
    }
}

/// A running stand-in and the managementd state and app over it.
pub struct Harness {
    pub fake: Fake,
    pub state: AppState,
    pub app: App,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A stand-in with accounts `admin` (administrator) and `viewer`.
    pub async fn start() -> Harness {
        Self::with_accounts(&[("admin", "administrator"), ("viewer", "viewer")]).await
    }

    /// A stand-in with these accounts (name, role), all with [`PASSWORD`].
    pub async fn with_accounts(accounts: &[(&str, &str)]) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("applianced.sock");
        let fake = Fake::serve_at(&socket, accounts);
        let channel = appliance_api::connect_unix(&socket)
            .await
            .expect("connect to the stand-in");
        let state = AppState::new(
            Backend::new(channel),
            Sessions::new(),
            Limiter::new(),
            Metrics::default(),
        );
        state.set_node_name("node1");
        let app = App::new(state.clone());
        Harness {
            fake,
            state,
            app,
            _dir: dir,
        }
    }

    /// Sends one request as from `peer` (what the server does per connection).
    pub async fn send(&self, req: Request<Body>, peer: SocketAddr) -> Response<Body> {
        self.app.clone().call(req, peer).await
    }

    /// Serves the app over plain HTTP/2 (h2c) on loopback, as the TLS
    /// server would, for tonic clients; returns the URL.
    pub async fn serve_h2c(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = self.app.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    return;
                };
                let app = app.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let app = app.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(
                                    app.call(req.map(Body::new), peer).await,
                                )
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                });
            }
        });
        format!("http://{addr}")
    }
}

/// The client address of most tests.
pub fn peer() -> SocketAddr {
    "192.0.2.10:50000".parse().expect("addr")
}

/// A request with a body (a form when `form` is set) and headers.
pub fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_string())).expect("request")
}

/// The body of a response as text.
pub async fn text(resp: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}
