//! The web pages against a stand-in applianced (the `Node` and `Admin`
//! services in memory, on a Unix socket as the real one): what each page
//! shows, that a viewer gets no change buttons and is refused a change, that
//! a form without its CSRF token changes nothing, that refusals are shown
//! verbatim and nothing is asked of applianced before a confirmation, and
//! that an Add's progress streams to its end.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use appliance_api::v1::admin_server::{Admin, AdminServer};
use appliance_api::v1::node_server::{Node, NodeServer};
use appliance_api::v1::*;
use appliance_management::auth::limiter::Limiter;
use appliance_management::auth::sessions::{Kind, Sessions, COOKIE};
use appliance_management::auth::Role;
use appliance_management::backend::Backend;
use appliance_management::metrics::Metrics;
use appliance_management::state::AppState;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use futures::Stream;
use tonic::{Response, Status};
use tower::ServiceExt;

// ------------------------------------------------------------ the stand-in --

/// What the stand-in applianced holds, and what it was asked to change.
#[derive(Default)]
struct World {
    accounts: Vec<Account>,
    events: Vec<AuditEvent>,
    settings: Settings,
    members: Vec<ClusterMember>,
    services: Vec<ServiceInfo>,
    /// Every changing call, in order ("set_roles node-b frontend", ...).
    changes: Vec<String>,
    /// Refusals to answer with (FAILED_PRECONDITION and this message).
    refuse_settings: Option<String>,
    refuse_roles: Option<String>,
    /// The events a ClusterAdd streams.
    add_script: Vec<ClusterAddEvent>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<World>>);

impl Fake {
    fn world(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn member(id: &str, name: &str, addr: &str, roles: &[&str], this: bool) -> ClusterMember {
    ClusterMember {
        node_id: id.into(),
        hostname: name.into(),
        addresses: vec![addr.into()],
        roles: roles.iter().map(|r| r.to_string()).collect(),
        state: "active".into(),
        version: "0.1.0".into(),
        fingerprint: "ab:cd".into(),
        this_node: this,
        authority: this,
    }
}

fn service(name: &str, role: &str, state: &str, error: &str) -> ServiceInfo {
    ServiceInfo {
        name: name.into(),
        role: role.into(),
        state: state.into(),
        pid: 42,
        last_error: error.into(),
        ports: vec!["8080/tcp".into()],
        ..Default::default()
    }
}

fn add_event(kind: &str, message: &str, details: &[&str], last: bool, ok: bool) -> ClusterAddEvent {
    ClusterAddEvent {
        kind: kind.into(),
        message: message.into(),
        details: details.iter().map(|d| d.to_string()).collect(),
        node_id: "id-c".into(),
        hostname: "node-c".into(),
        r#final: last,
        ok,
        elapsed_ms: 5,
        ..Default::default()
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Node for Fake {
    async fn status(&self, _: tonic::Request<StatusRequest>) -> Reply<StatusReply> {
        Ok(Response::new(StatusReply {
            node_id: "id-a".into(),
            hostname: "node-a".into(),
            version: "0.1.0".into(),
            ready: true,
            uptime_ms: 3_600_000,
            mode: "hosted".into(),
            addresses: vec!["10.77.0.11/24".into()],
            roles: vec!["frontend".into(), "backend".into()],
            cluster_state: "member".into(),
            ..Default::default()
        }))
    }
    async fn get_config(&self, _: tonic::Request<GetConfigRequest>) -> Reply<ConfigReply> {
        Err(Status::unimplemented("not in the stand-in"))
    }
    async fn validate_config(&self, _: tonic::Request<ConfigText>) -> Reply<ValidateReply> {
        Err(Status::unimplemented("not in the stand-in"))
    }
    async fn set_config(&self, _: tonic::Request<ConfigText>) -> Reply<ConfigReply> {
        Err(Status::unimplemented("not in the stand-in"))
    }
    async fn list_services(
        &self,
        _: tonic::Request<ListServicesRequest>,
    ) -> Reply<ListServicesReply> {
        let services = self.world().services.clone();
        Ok(Response::new(ListServicesReply { services }))
    }
    async fn restart_service(
        &self,
        r: tonic::Request<RestartServiceRequest>,
    ) -> Reply<ServiceInfo> {
        let name = r.into_inner().name;
        let mut w = self.world();
        w.changes.push(format!("restart {name}"));
        let found = w.services.iter().find(|s| s.name == name).cloned();
        found
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no service {name}")))
    }
    async fn show_firewall(&self, _: tonic::Request<ShowFirewallRequest>) -> Reply<FirewallReply> {
        Ok(Response::new(FirewallReply {
            ruleset: String::new(),
            rules: vec![FirewallRule {
                id: "1".into(),
                chain: "input".into(),
                text: "tcp dport 8443 accept".into(),
                packets: 12,
                bytes: 3000,
            }],
            sets: vec![FirewallSet {
                name: "peers".into(),
                elements: vec!["10.77.0.12".into()],
            }],
        }))
    }
    async fn logs(&self, _: tonic::Request<LogsRequest>) -> Reply<LogsReply> {
        Ok(Response::new(LogsReply {
            lines: vec!["portal started".into(), "<script>alert(1)</script>".into()],
        }))
    }
    async fn list_peers(&self, _: tonic::Request<ListPeersRequest>) -> Reply<PeersReply> {
        Err(Status::unimplemented("not in the stand-in"))
    }
    async fn add_peer(&self, _: tonic::Request<PeerRequest>) -> Reply<PeersReply> {
        Err(Status::unimplemented("not in the stand-in"))
    }
    async fn remove_peer(&self, _: tonic::Request<PeerRequest>) -> Reply<PeersReply> {
        Err(Status::unimplemented("not in the stand-in"))
    }
    async fn cluster_status(
        &self,
        _: tonic::Request<ClusterStatusRequest>,
    ) -> Reply<ClusterStatusReply> {
        let w = self.world();
        let backends = w
            .members
            .iter()
            .filter(|m| m.roles.iter().any(|r| r == "backend"))
            .count();
        let warnings = if w.members.len() == 2 && backends == 1 {
            vec!["a 2-node cluster has no high availability".to_string()]
        } else {
            Vec::new()
        };
        Ok(Response::new(ClusterStatusReply {
            node_state: "member".into(),
            node_id: "id-a".into(),
            cluster_id: "c0ffee00c0ffee00c0ffee".into(),
            generation: 7,
            members: w.members.clone(),
            warnings,
            authority: true,
            ..Default::default()
        }))
    }
    async fn cluster_form(
        &self,
        _: tonic::Request<ClusterFormRequest>,
    ) -> Reply<ClusterStatusReply> {
        Err(Status::failed_precondition("this node is already a member"))
    }

    type ClusterAddStream = Pin<Box<dyn Stream<Item = Result<ClusterAddEvent, Status>> + Send>>;

    async fn cluster_add(
        &self,
        r: tonic::Request<ClusterAddRequest>,
    ) -> Reply<Self::ClusterAddStream> {
        let r = r.into_inner();
        let mut w = self.world();
        w.changes.push(format!(
            "add {} {} {}",
            r.address,
            r.code,
            r.roles.join(",")
        ));
        let script = w.add_script.clone();
        if script.iter().any(|e| e.ok) {
            let mut c = member("id-c", "node-c", &r.address, &["frontend"], false);
            c.authority = false;
            w.members.push(c);
        }
        Ok(Response::new(Box::pin(futures::stream::iter(
            script.into_iter().map(Ok),
        ))))
    }
    async fn cluster_remove(
        &self,
        r: tonic::Request<ClusterRemoveRequest>,
    ) -> Reply<ClusterChangeReply> {
        let node = r.into_inner().node;
        let mut w = self.world();
        w.changes.push(format!("remove {node}"));
        w.members.retain(|m| m.node_id != node);
        Ok(Response::new(ClusterChangeReply::default()))
    }
    async fn cluster_set_roles(
        &self,
        r: tonic::Request<ClusterSetRolesRequest>,
    ) -> Reply<ClusterChangeReply> {
        let r = r.into_inner();
        let mut w = self.world();
        if let Some(why) = w.refuse_roles.clone() {
            return Err(Status::failed_precondition(why));
        }
        w.changes
            .push(format!("set_roles {} {}", r.node, r.roles.join(",")));
        if let Some(m) = w.members.iter_mut().find(|m| m.node_id == r.node) {
            m.roles = r.roles;
        }
        Ok(Response::new(ClusterChangeReply::default()))
    }
    async fn cluster_discovered(
        &self,
        _: tonic::Request<ClusterDiscoveredRequest>,
    ) -> Reply<ClusterDiscoveredReply> {
        Ok(Response::new(ClusterDiscoveredReply {
            appliances: vec![DiscoveredAppliance {
                hostname: "node-c".into(),
                addresses: vec!["10.77.0.13".into()],
                version: "0.1.0".into(),
                fingerprint: "12:34".into(),
                join_port: 7443,
                source: "10.77.0.13".into(),
                last_seen_ms_ago: 1500,
            }],
        }))
    }
}

#[tonic::async_trait]
impl Admin for Fake {
    async fn list_accounts(&self, _: tonic::Request<ListAccountsRequest>) -> Reply<AccountsReply> {
        let accounts = self.world().accounts.clone();
        Ok(Response::new(AccountsReply {
            accounts,
            ..Default::default()
        }))
    }
    async fn put_account(&self, r: tonic::Request<PutAccountRequest>) -> Reply<AccountsReply> {
        let r = r.into_inner();
        let account = r
            .account
            .ok_or_else(|| Status::invalid_argument("no account"))?;
        let mut w = self.world();
        if r.create && w.accounts.iter().any(|a| a.name == account.name) {
            return Err(Status::already_exists(format!(
                "account {} exists",
                account.name
            )));
        }
        w.changes
            .push(format!("put_account {} {}", account.name, account.role));
        w.accounts.retain(|a| a.name != account.name);
        w.accounts.push(account);
        Ok(Response::new(AccountsReply {
            accounts: w.accounts.clone(),
            ..Default::default()
        }))
    }
    async fn remove_account(
        &self,
        r: tonic::Request<RemoveAccountRequest>,
    ) -> Reply<AccountsReply> {
        let name = r.into_inner().name;
        let mut w = self.world();
        w.changes.push(format!("remove_account {name}"));
        w.accounts.retain(|a| a.name != name);
        Ok(Response::new(AccountsReply {
            accounts: w.accounts.clone(),
            ..Default::default()
        }))
    }
    async fn record_event(&self, r: tonic::Request<AuditEvent>) -> Reply<AuditEvent> {
        let mut e = r.into_inner();
        let mut w = self.world();
        e.seq = w.events.len() as u64 + 1;
        w.events.push(e.clone());
        Ok(Response::new(e))
    }
    async fn list_events(&self, r: tonic::Request<ListEventsRequest>) -> Reply<EventsReply> {
        let r = r.into_inner();
        let limit = if r.limit == 0 { 200 } else { r.limit.min(1000) } as usize;
        let after: Vec<AuditEvent> = self
            .world()
            .events
            .iter()
            .filter(|e| e.seq > r.after_seq)
            .cloned()
            .collect();
        let skip = after.len().saturating_sub(limit);
        Ok(Response::new(EventsReply {
            events: after.into_iter().skip(skip).collect(),
        }))
    }
    async fn get_settings(&self, _: tonic::Request<GetSettingsRequest>) -> Reply<Settings> {
        Ok(Response::new(self.world().settings.clone()))
    }
    async fn set_settings(&self, r: tonic::Request<SetSettingsRequest>) -> Reply<Settings> {
        let r = r.into_inner();
        let mut w = self.world();
        if let Some(why) = w.refuse_settings.clone() {
            return Err(Status::failed_precondition(why));
        }
        let s = r.settings.unwrap_or_default();
        w.changes.push(format!(
            "set_settings dns={} ntp={} mgmt={} client={}",
            s.dns_servers.join(","),
            s.ntp_servers.join(","),
            s.management_networks.join(","),
            r.client_address
        ));
        w.settings = s.clone();
        Ok(Response::new(s))
    }
    async fn get_management_tls(
        &self,
        _: tonic::Request<GetManagementTlsRequest>,
    ) -> Reply<ManagementTls> {
        Ok(Response::new(ManagementTls {
            cert_pem: "CERT".into(),
            key_pem: "SECRET KEY MATERIAL".into(),
            fingerprint: "aa:bb:cc".into(),
            source: "cluster-ca".into(),
            not_after_unix_ms: 4_102_444_800_000,
            names: vec!["node-a".into(), "10.77.0.11".into()],
            port: 8443,
            management_networks: Vec::new(),
        }))
    }
    async fn set_management_certificate(
        &self,
        _: tonic::Request<SetManagementCertificateRequest>,
    ) -> Reply<ManagementTls> {
        Err(Status::invalid_argument(
            "the certificate expired on 2020-01-01",
        ))
    }
}

// --------------------------------------------------------------- harness --

struct Harness {
    app: Router,
    state: AppState,
    fake: Fake,
    _dir: tempfile::TempDir,
}

const CLIENT: [u8; 4] = [10, 77, 0, 99];

async fn harness() -> Harness {
    let fake = Fake::default();
    {
        let mut w = fake.world();
        w.members = vec![
            member(
                "id-a",
                "node-a",
                "10.77.0.11/24",
                &["frontend", "backend"],
                true,
            ),
            member("id-b", "node-b", "10.77.0.12/24", &["frontend"], false),
        ];
        w.services = vec![
            service("portal", "frontend", "healthy", ""),
            service("audit", "backend", "failed", "cannot bind :9000"),
        ];
        w.accounts = vec![
            Account {
                name: "ann".into(),
                role: "administrator".into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
                    .into(),
                changed_unix_ms: 1_796_416_507_000,
            },
            Account {
                name: "vic".into(),
                role: "viewer".into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
                    .into(),
                changed_unix_ms: 1_796_416_507_000,
            },
        ];
        w.settings.dns_servers = vec!["10.77.0.1".into()];
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("applianced.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let server = tonic::transport::Server::builder()
        .add_service(NodeServer::new(fake.clone()))
        .add_service(AdminServer::new(fake.clone()))
        .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener));
    tokio::spawn(server);
    let channel = appliance_api::connect_unix(&path).await.expect("connect");
    let state = AppState::new(
        Backend::new(channel),
        Sessions::new(),
        Limiter::new(),
        Metrics::default(),
    );
    let app = appliance_management::web::router().with_state(state.clone());
    Harness {
        app,
        state,
        fake,
        _dir: dir,
    }
}

/// A signed-in session: its cookie and CSRF token.
struct Who {
    cookie: String,
    csrf: String,
}

impl Harness {
    fn sign_in(&self, name: &str, role: Role) -> Who {
        let (token, p) = self
            .state
            .sessions()
            .create(name, role, IpAddr::from(CLIENT), Kind::Web);
        Who {
            cookie: format!("{COOKIE}={token}"),
            csrf: p.csrf,
        }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, String, Option<String>) {
        let mut req = req;
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((CLIENT, 50_000))));
        let res = self.app.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let location = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = axum::body::to_bytes(res.into_body(), 4 << 20)
            .await
            .expect("body");
        (
            status,
            String::from_utf8_lossy(&body).into_owned(),
            location,
        )
    }

    async fn get(&self, who: Option<&Who>, path: &str) -> (StatusCode, String, Option<String>) {
        let mut b = Request::get(path);
        if let Some(w) = who {
            b = b.header(header::COOKIE, &w.cookie);
        }
        self.send(b.body(Body::empty()).expect("request")).await
    }

    async fn post(
        &self,
        who: &Who,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>) {
        let body: String = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    appliance_management::auth::web::encode_component(v)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let req = Request::post(path)
            .header(header::COOKIE, &who.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        self.send(req).await
    }

    fn changes(&self) -> Vec<String> {
        self.fake.world().changes.clone()
    }

    fn actions(&self) -> Vec<(String, String, String)> {
        self.fake
            .world()
            .events
            .iter()
            .map(|e| (e.actor.clone(), e.action.clone(), e.result.clone()))
            .collect()
    }
}

// ----------------------------------------------------------------- tests --

#[tokio::test]
async fn without_a_session_every_page_leads_to_the_sign_in_page() {
    let h = harness().await;
    for path in [
        "/",
        "/dashboard/live",
        "/add",
        "/nodes/id-a",
        "/events",
        "/settings",
        "/accounts",
    ] {
        let (status, _, location) = h.get(None, path).await;
        assert!(status.is_redirection(), "{path}: {status}");
        let location = location.unwrap_or_default();
        assert!(location.starts_with("/signin"), "{path} went to {location}");
    }
    // The assets need no session.
    let (status, css, _) = h.get(None, "/assets/style.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(css.contains(".topbar"));
    assert_eq!(
        h.get(None, "/assets/nothing.js").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_dashboard_shows_members_health_availability_and_events() {
    let h = harness().await;
    let ann = h.sign_in("ann", Role::Administrator);
    h.fake.world().events.push(AuditEvent {
        seq: 1,
        at_unix_ms: 1_796_416_507_000,
        actor: "ann".into(),
        action: "settings.set".into(),
        detail: "dns [10.77.0.1]".into(),
        result: "ok".into(),
        ..Default::default()
    });
    let (status, page, _) = h.get(Some(&ann), "/").await;
    assert_eq!(status, StatusCode::OK);
    for want in [
        "id=\"members\"",
        "node-a",
        "node-b",
        "10.77.0.12/24",
        "authority",
        "this node",
        // This node's services, with their colour and reason.
        "light green",
        "portal",
        "failed: cannot bind :9000",
        "light red",
        // Other members: said, not invented.
        "Not reported to this node",
        // One back-end: no HA, and why.
        "No high availability",
        "node-a is the only back-end",
        "a 2-node cluster has no high availability",
        // The recent events and the live refresh.
        "settings.set",
        "2026-12-04T20:35:07Z",
        "data-live=\"/dashboard/live\"",
        // The top bar: account and sign-out with the CSRF token.
        "action=\"/signout\"",
        &ann.csrf,
    ] {
        assert!(page.contains(want), "the dashboard lacks {want:?}");
    }
    let (status, fragment, _) = h.get(Some(&ann), "/dashboard/live").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        fragment.contains("node-b") && !fragment.contains("<html"),
        "the fragment is the content alone"
    );
}

#[tokio::test]
async fn a_viewer_sees_the_pages_without_change_buttons_and_is_refused_changes() {
    let h = harness().await;
    let vic = h.sign_in("vic", Role::Viewer);
    for (path, forbidden) in [
        ("/add", "action=\"/add/confirm\""),
        ("/nodes/id-b", "/roles\""),
        ("/nodes/id-a", "/restart\""),
        ("/accounts", "action=\"/accounts/add\""),
        ("/accounts", "action=\"/accounts/remove\""),
        ("/settings", "action=\"/settings/certificate\""),
        ("/settings", "Save settings"),
    ] {
        let (status, page, _) = h.get(Some(&vic), path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            !page.contains(forbidden),
            "a viewer's {path} has {forbidden}"
        );
    }
    // A viewer may still change their own password.
    assert!(h
        .get(Some(&vic), "/accounts")
        .await
        .1
        .contains("action=\"/accounts/password\""));
    for (path, form) in [
        (
            "/nodes/id-b/roles",
            vec![("frontend", "frontend"), ("confirm", "yes")],
        ),
        ("/nodes/id-b/remove", vec![("confirm", "yes")]),
        ("/nodes/id-a/restart", vec![("service", "portal")]),
        ("/settings", vec![("dns_servers", "1.1.1.1")]),
        (
            "/accounts/remove",
            vec![("name", "ann"), ("confirm", "yes")],
        ),
        (
            "/add/start",
            vec![
                ("address", "10.77.0.13"),
                ("code", "X"),
                ("frontend", "frontend"),
            ],
        ),
    ] {
        let mut form = form;
        form.push(("csrf", &vic.csrf));
        let (status, _, _) = h.post(&vic, path, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a viewer's POST {path}");
    }
    assert!(h.changes().is_empty(), "a viewer changed {:?}", h.changes());
}

#[tokio::test]
async fn a_form_without_its_csrf_token_changes_nothing() {
    let h = harness().await;
    let ann = h.sign_in("ann", Role::Administrator);
    for (path, form) in [
        (
            "/nodes/id-b/roles",
            vec![("frontend", "frontend"), ("confirm", "yes")],
        ),
        ("/nodes/id-b/remove", vec![("confirm", "yes")]),
        ("/settings", vec![("dns_servers", "1.1.1.1")]),
        (
            "/accounts/remove",
            vec![("name", "vic"), ("confirm", "yes")],
        ),
    ] {
        let mut form = form;
        form.push(("csrf", "guessed"));
        let (status, _, _) = h.post(&ann, path, &form).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "POST {path} with a wrong token"
        );
    }
    assert!(h.changes().is_empty(), "changed {:?}", h.changes());
}

#[tokio::test]
async fn roles_and_removal_ask_for_confirmation_first_then_change_and_record() {
    let h = harness().await;
    let ann = h.sign_in("ann", Role::Administrator);
    let (status, page, _) = h
        .post(
            &ann,
            "/nodes/id-b/roles",
            &[("csrf", &ann.csrf), ("backend", "backend")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("goes from") && page.contains("name=\"confirm\" value=\"yes\""),
        "{page}"
    );
    assert!(
        h.changes().is_empty(),
        "changed before the confirmation: {:?}",
        h.changes()
    );
    let (status, _, location) = h
        .post(
            &ann,
            "/nodes/id-b/roles",
            &[
                ("csrf", &ann.csrf),
                ("backend", "backend"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(location.as_deref(), Some("/nodes/id-b?done=roles-changed"));
    assert_eq!(h.changes(), vec!["set_roles id-b backend"]);
    let (_, page, _) = h.get(Some(&ann), "/nodes/id-b?done=roles-changed").await;
    assert!(page.contains("The roles were changed"));

    let (_, page, _) = h
        .post(&ann, "/nodes/id-b/remove", &[("csrf", &ann.csrf)])
        .await;
    assert!(page.contains("is drained, removed"), "{page}");
    assert_eq!(h.changes().len(), 1, "removed before the confirmation");
    let (status, _, location) = h
        .post(
            &ann,
            "/nodes/id-b/remove",
            &[("csrf", &ann.csrf), ("confirm", "yes")],
        )
        .await;
    assert!(status.is_redirection());
    assert_eq!(location.as_deref(), Some("/?done=node-removed"));
    assert_eq!(h.changes()[1], "remove id-b");
    let actions = h.actions();
    assert!(
        actions.contains(&("ann".into(), "cluster.set-roles".into(), "ok".into())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("ann".into(), "cluster.remove".into(), "ok".into())),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_placement_refusal_is_shown_verbatim_and_recorded_as_refused() {
    let h = harness().await;
    let ann = h.sign_in("ann", Role::Administrator);
    let why = "making node-b a back-end would leave 2 back-end nodes (node-a, node-b): make it 1 or 3 back-ends";
    h.fake.world().refuse_roles = Some(why.into());
    let (status, page, _) = h
        .post(
            &ann,
            "/nodes/id-b/roles",
            &[
                ("csrf", &ann.csrf),
                ("frontend", "frontend"),
                ("backend", "backend"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("role=\"alert\""), "no alert box");
    assert!(
        page.contains("(node-a, node-b): make it 1 or 3 back-ends"),
        "{page}"
    );
    assert!(page.contains("Nothing changed"));
    let refused = h.fake.world().events.last().cloned().unwrap_or_default();
    assert_eq!(
        (refused.action.as_str(), refused.result.as_str()),
        ("cluster.set-roles", "refused")
    );
    assert_eq!(refused.reason, why);
    assert_eq!(refused.source, "10.77.0.99");
}

#[tokio::test]
async fn settings_are_parsed_one_a_line_and_a_refusal_keeps_what_was_typed() {
    let h = harness().await;
    let ann = h.sign_in("ann", Role::Administrator);
    let (status, _, location) = h
        .post(
            &ann,
            "/settings",
            &[
                ("csrf", &ann.csrf),
                ("dns_servers", "10.77.0.1\r\n10.77.0.2\r\n"),
                ("ntp_servers", "ntp.example\n"),
                ("management_networks", "10.77.0.0/24\n\n"),
            ],
        )
        .await;
    assert!(status.is_redirection());
    assert_eq!(location.as_deref(), Some("/settings?done=settings-saved"));
    assert_eq!(
        h.changes(),
        vec!["set_settings dns=10.77.0.1,10.77.0.2 ntp=ntp.example mgmt=10.77.0.0/24 client=10.77.0.99"]
    );
    let why = "management networks [192.0.2.0/24] do not include your address 10.77.0.99";
    h.fake.world().refuse_settings = Some(why.into());
    let (status, page, _) = h
        .post(
            &ann,
            "/settings",
            &[("csrf", &ann.csrf), ("management_networks", "192.0.2.0/24")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains(why), "{page}");
    assert!(
        page.contains(">192.0.2.0/24</textarea>"),
        "the typed value is kept: {page}"
    );
    // The certificate: shown without its key; a refused upload says why.
    let (_, page, _) = h.get(Some(&ann), "/settings").await;
    assert!(page.contains("aa:bb:cc") && page.contains("signed by the cluster"));
    assert!(
        !page.contains("SECRET KEY MATERIAL"),
        "the key reached the page"
    );
    let (status, page, _) = h
        .post(
            &ann,
            "/settings/certificate",
            &[("csrf", &ann.csrf), ("cert_pem", "C"), ("key_pem", "K")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("the certificate expired on 2020-01-01"));
}

#[tokio::test]
async fn node_detail_escapes_the_log_and_restarts_a_service() {
    let h = harness().await;
    let ann = h.sign_in("ann", Role::Administrator);
    let (status, page, _) = h.get(Some(&ann), "/nodes/id-a").await;
    assert_eq!(status, StatusCode::OK);
    for want in [
        "tcp dport 8443 accept",
        "2.9 KiB",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "cannot bind :9000",
    ] {
        assert!(page.contains(want), "node detail lacks {want:?}");
    }
    assert!(
        !page.contains("<script>alert(1)"),
        "the log was not escaped"
    );
    // Another member: what the cluster knows, and where to see the rest.
    let (_, other, _) = h.get(Some(&ann), "/nodes/id-b").await;
    assert!(other.contains("https://10.77.0.12:8443/"), "{other}");
    assert!(!other.contains("tcp dport 8443 accept"));
    assert_eq!(
        h.get(Some(&ann), "/nodes/nobody").await.0,
        StatusCode::NOT_FOUND
    );

    let (status, _, location) = h
        .post(
            &ann,
            "/nodes/id-a/restart",
            &[("csrf", &ann.csrf), ("service", "portal")],
        )
        .await;
    assert!(status.is_redirection());
    assert_eq!(
        location.as_deref(),
        Some("/nodes/id-a?done=restarted#services")
    );
    assert_eq!(h.changes(), vec!["restart portal"]);
}

#[tokio::test]
async fn events_are_paged_newest_first() {
    let h = harness().await;
    let ann = h.sign_in("ann", Role::Administrator);
    {
        let mut w = h.fake.world();
        for seq in 1..=120u64 {
            w.events.push(AuditEvent {
                seq,
                action: format!("action-{seq}"),
                result: "ok".into(),
                ..Default::default()
            });
        }
    }
    let (_, page, _) = h.get(Some(&ann), "/events").await;
    let first = page.find("action-120").expect("the newest");
    let later = page.find("action-71").expect("the 50th newest");
    assert!(first < later, "newest first");
    assert!(!page.contains("action-70<"), "one page only");
    assert!(page.contains("/events?before=71"), "a link to older ones");
    let (_, older, _) = h.get(Some(&ann), "/events?before=71").await;
    assert!(
        older.contains("action-70<")
            && older.contains("action-21<")
            && !older.contains("action-20<")
    );
}

#[tokio::test]
async fn an_add_is_confirmed_then_its_progress_streams_to_the_end() {
    let h = harness().await;
    let ann = h.sign_in("ann", Role::Administrator);
    h.fake.world().add_script = vec![
        add_event(
            "connecting",
            "connecting to the appliance at 10.77.0.13:7443",
            &[],
            false,
            false,
        ),
        add_event(
            "preflight_passed",
            "preflight checks passed",
            &[],
            false,
            false,
        ),
        add_event(
            "done",
            "node-c joined the cluster (generation 8)",
            &[],
            true,
            true,
        ),
    ];
    let (_, page, _) = h
        .get(Some(&ann), "/add?address=10.77.0.13&hostname=node-c")
        .await;
    assert!(
        page.contains("value=\"10.77.0.13\"") && page.contains("12:34"),
        "prefilled from discovery"
    );
    let form = [
        ("csrf", ann.csrf.as_str()),
        ("address", "10.77.0.13"),
        ("hostname", "node-c"),
        ("code", "ABCD-EFGH"),
        ("frontend", "frontend"),
    ];
    let (status, page, _) = h.post(&ann, "/add/confirm", &form).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("node-c at 10.77.0.13") && page.contains("portal"),
        "{page}"
    );
    assert!(h.changes().is_empty(), "added before the confirmation");
    let (status, _, location) = h.post(&ann, "/add/start", &form).await;
    assert!(status.is_redirection());
    let progress = location.unwrap_or_default();
    assert!(progress.starts_with("/add/progress/"), "{progress}");
    // The stream ends by itself once the member is active (the stand-in
    // makes it active at once).
    let events = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        h.get(Some(&ann), &format!("{progress}/events")),
    )
    .await
    .expect("the progress stream ended");
    let body = events.1;
    for want in [
        "event: step",
        "preflight checks passed",
        "node-c joined the cluster",
        "node-c is active",
        "event: end",
    ] {
        assert!(body.contains(want), "the stream lacks {want:?}: {body}");
    }
    assert_eq!(h.changes(), vec!["add 10.77.0.13 ABCD-EFGH frontend"]);
    let (_, page, _) = h.get(Some(&ann), &progress).await;
    assert!(page.contains("joined the cluster and is active"), "{page}");
    assert!(h
        .actions()
        .contains(&("ann".into(), "cluster.add".into(), "ok".into())));
}

#[tokio::test]
async fn a_failed_add_says_why_and_what_to_do_next() {
    let h = harness().await;
    let ann = h.sign_in("ann", Role::Administrator);
    h.fake.world().add_script = vec![
        add_event(
            "connecting",
            "connecting to the appliance at 10.77.0.13:7443",
            &[],
            false,
            false,
        ),
        add_event(
            "preflight_failed",
            "1 preflight check(s) failed",
            &["adding node-c as a second back-end would leave 2 back-end nodes"],
            false,
            false,
        ),
        add_event("failed", "preflight failed", &[], true, false),
    ];
    let form = [
        ("csrf", ann.csrf.as_str()),
        ("address", "10.77.0.13"),
        ("code", "ABCD-EFGH"),
        ("backend", "backend"),
    ];
    let (_, _, location) = h.post(&ann, "/add/start", &form).await;
    let progress = location.unwrap_or_default();
    let (_, body, _) = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        h.get(Some(&ann), &format!("{progress}/events")),
    )
    .await
    .expect("the progress stream ended");
    assert!(body.contains("second back-end"), "{body}");
    let (_, page, _) = h.get(Some(&ann), &progress).await;
    assert!(
        page.contains("role=\"alert\"") && page.contains("was not added"),
        "{page}"
    );
    assert!(page.contains("Fix each failed check"), "{page}");
    let last = h.fake.world().events.last().cloned().unwrap_or_default();
    assert_eq!(
        (last.action.as_str(), last.result.as_str()),
        ("cluster.add", "refused")
    );
    // An incomplete form is refused before anything is asked.
    let (status, page, _) = h
        .post(
            &ann,
            "/add/confirm",
            &[("csrf", &ann.csrf), ("address", "10.77.0.13")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("join code") && page.contains("Choose front-end, back-end or both"));
}

#[tokio::test]
async fn accounts_list_without_hashes_and_add_and_remove_with_confirmation() {
    let h = harness().await;
    let ann = h.sign_in("ann", Role::Administrator);
    let (_, page, _) = h.get(Some(&ann), "/accounts").await;
    assert!(page.contains("vic") && page.contains("viewer"));
    assert!(!page.contains("$argon2id$"), "a hash reached the page");
    assert!(
        page.contains("10.77.0.99"),
        "the sessions list shows the source"
    );
    // Two different passwords: refused here, nothing asked.
    let (status, page, _) = h
        .post(
            &ann,
            "/accounts/add",
            &[
                ("csrf", &ann.csrf),
                ("name", "bob"),
                ("role", "viewer"),
                ("password", "correct horse battery"),
                ("password2", "other"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("the two passwords differ") && page.contains("value=\"bob\""));
    let (status, _, location) = h
        .post(
            &ann,
            "/accounts/add",
            &[
                ("csrf", &ann.csrf),
                ("name", "bob"),
                ("role", "viewer"),
                ("password", "correct horse battery"),
                ("password2", "correct horse battery"),
            ],
        )
        .await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(location.as_deref(), Some("/accounts?done=account-added"));
    assert_eq!(h.changes(), vec!["put_account bob viewer"]);
    let stored = h
        .fake
        .world()
        .accounts
        .iter()
        .find(|a| a.name == "bob")
        .cloned()
        .unwrap_or_default();
    assert!(
        stored.password_hash.starts_with("$argon2id$"),
        "{}",
        stored.password_hash
    );

    let (_, page, _) = h
        .post(
            &ann,
            "/accounts/remove",
            &[("csrf", &ann.csrf), ("name", "bob")],
        )
        .await;
    assert!(page.contains("Remove bob"), "{page}");
    assert_eq!(h.changes().len(), 1, "removed before the confirmation");
    let (status, _, _) = h
        .post(
            &ann,
            "/accounts/remove",
            &[("csrf", &ann.csrf), ("name", "bob"), ("confirm", "yes")],
        )
        .await;
    assert!(status.is_redirection());
    assert_eq!(h.changes()[1], "remove_account bob");
}

#[tokio::test]
async fn new_events_stream_to_the_events_page() {
    use futures::StreamExt;
    let h = harness().await;
    let ann = h.sign_in("ann", Role::Administrator);
    let record = |seq: u64, action: &str| AuditEvent {
        seq,
        actor: "ann".into(),
        action: action.into(),
        detail: "<b>bold</b>".into(),
        result: "ok".into(),
        ..Default::default()
    };
    h.fake.world().events.push(record(1, "old.action"));
    let (_, page, _) = h.get(Some(&ann), "/events").await;
    assert!(
        page.contains("data-stream=\"/events/stream?after=1\""),
        "{page}"
    );
    let mut req = Request::get("/events/stream?after=1")
        .header(header::COOKIE, &ann.cookie)
        .body(Body::empty())
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((CLIENT, 50_000))));
    let res = h.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    h.fake.world().events.push(record(2, "new.action"));
    let mut body = res.into_body().into_data_stream();
    let mut seen = String::new();
    let deadline = std::time::Duration::from_secs(15);
    tokio::time::timeout(deadline, async {
        while !seen.contains("new.action") {
            match body.next().await {
                Some(Ok(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                _ => break,
            }
        }
    })
    .await
    .expect("the new event arrived");
    assert!(
        seen.contains("event: audit") && seen.contains("id: 2"),
        "{seen}"
    );
    assert!(!seen.contains("old.action"), "only events after 1: {seen}");
    assert!(
        seen.contains("&lt;b&gt;bold&lt;/b&gt;"),
        "the row is escaped: {seen}"
    );
}

#[tokio::test]
async fn a_wrong_code_is_said_once_with_where_to_read_the_code() {
    let h = harness().await;
    let ann = h.sign_in("ann", Role::Administrator);
    let why = "the appliance refused the join: the join code did not match";
    h.fake.world().add_script = vec![
        add_event(
            "connecting",
            "connecting to the appliance at 10.77.0.13:7443",
            &[],
            false,
            false,
        ),
        add_event(
            "preflight_passed",
            "preflight checks passed",
            &[],
            false,
            false,
        ),
        add_event("failed", why, &[], true, false),
    ];
    let form = [
        ("csrf", ann.csrf.as_str()),
        ("address", "10.77.0.13"),
        ("code", "WRONG-CODE"),
        ("frontend", "frontend"),
    ];
    let (_, _, location) = h.post(&ann, "/add/start", &form).await;
    let progress = location.unwrap_or_default();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        h.get(Some(&ann), &format!("{progress}/events")),
    )
    .await
    .expect("the progress stream ended");
    let (_, page, _) = h.get(Some(&ann), &progress).await;
    assert_eq!(page.matches(why).count(), 1, "said once: {page}");
    assert!(page.contains("Read the join code again"), "{page}");
    let last = h.fake.world().events.last().cloned().unwrap_or_default();
    assert_eq!(
        (last.result.as_str(), last.reason.as_str()),
        ("failed", why)
    );
}
