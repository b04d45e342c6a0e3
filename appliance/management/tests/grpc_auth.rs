//! The remote API's guards, with tonic clients over HTTP/2 against a
//! stand-in applianced: no method without a token (every one enumerated),
//! viewers read and administrators change, every change audited, Login's
//! hints and limits, accounts without hashes, sessions ended when an
//! account changes, the caller's address in settings, the TLS key hidden.

mod common;

use appliance_api::v1::management_client::ManagementClient;
use appliance_api::v1::node_client::NodeClient;
use appliance_api::v1::*;
use appliance_management::grpc::action;
use appliance_management::grpc::node::{CHANGING, READ_ONLY};
use common::{Harness, PASSWORD};
use tonic::transport::Channel;
use tonic::{Code, Status};

type Node = NodeClient<Channel>;
type Mgmt = ManagementClient<Channel>;

fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("metadata"),
        );
    }
    req
}

/// Calls Node method `name`; the stream of ClusterAdd is read to its end.
async fn call_node(c: &mut Node, name: &str, token: Option<&str>) -> Result<(), Status> {
    macro_rules! unary {
        ($m:ident, $msg:expr) => {
            c.$m(with_token($msg, token)).await.map(|_| ())
        };
    }
    match name {
        "Status" => unary!(status, StatusRequest {}),
        "GetConfig" => unary!(get_config, GetConfigRequest {}),
        "ValidateConfig" => unary!(validate_config, ConfigText::default()),
        "SetConfig" => unary!(set_config, ConfigText::default()),
        "ListServices" => unary!(list_services, ListServicesRequest {}),
        "RestartService" => unary!(
            restart_service,
            RestartServiceRequest {
                name: "portal".into()
            }
        ),
        "ShowFirewall" => unary!(show_firewall, ShowFirewallRequest {}),
        "Logs" => unary!(logs, LogsRequest::default()),
        "ListPeers" => unary!(list_peers, ListPeersRequest {}),
        "AddPeer" => unary!(add_peer, PeerRequest::default()),
        "RemovePeer" => unary!(remove_peer, PeerRequest::default()),
        "ClusterStatus" => unary!(cluster_status, ClusterStatusRequest {}),
        "ClusterForm" => unary!(cluster_form, ClusterFormRequest::default()),
        "ClusterAdd" => {
            let mut stream = c
                .cluster_add(with_token(
                    ClusterAddRequest {
                        address: "192.0.2.20".into(),
                        code: "SECRET-CODE".into(),
                        roles: vec!["backend".into()],
                    },
                    token,
                ))
                .await?
                .into_inner();
            let mut events = 0;
            while let Some(ev) = stream.message().await? {
                events += 1;
                assert!(events < 10, "{ev:?}");
            }
            assert_eq!(events, 2, "every event of the join is forwarded");
            Ok(())
        }
        "ClusterRemove" => unary!(cluster_remove, ClusterRemoveRequest::default()),
        "ClusterSetRoles" => unary!(cluster_set_roles, ClusterSetRolesRequest::default()),
        "ClusterDiscovered" => unary!(cluster_discovered, ClusterDiscoveredRequest {}),
        other => panic!("unknown method {other}"),
    }
}

/// Calls every Management method but Login; returns (method, result).
async fn call_management(
    c: &mut Mgmt,
    token: Option<&str>,
) -> Vec<(&'static str, Result<(), Status>)> {
    let mut out = Vec::new();
    macro_rules! unary {
        ($n:literal, $m:ident, $msg:expr) => {
            out.push(($n, c.$m(with_token($msg, token)).await.map(|_| ())))
        };
    }
    unary!("WhoAmI", who_am_i, WhoAmIRequest {});
    unary!("ListSessions", list_sessions, ListSessionsRequest {});
    unary!("ListAccounts", list_accounts, ListAccountsRequest {});
    unary!(
        "AddAccount",
        add_account,
        AddAccountRequest {
            name: "eve".into(),
            role: "viewer".into(),
            password: "0123456789abcdef".into()
        }
    );
    unary!(
        "ChangePassword",
        change_password,
        ChangePasswordRequest {
            name: "viewer".into(),
            current_password: String::new(),
            new_password: "0123456789abcdef".into()
        }
    );
    unary!(
        "RemoveAccount",
        remove_account,
        RemoveAccountRequest { name: "eve".into() }
    );
    unary!("ListEvents", list_events, ListEventsRequest::default());
    unary!("GetSettings", get_settings, GetSettingsRequest {});
    unary!("SetSettings", set_settings, SetSettingsRequest::default());
    unary!(
        "GetManagementTls",
        get_management_tls,
        GetManagementTlsRequest {}
    );
    unary!(
        "SetManagementCertificate",
        set_management_certificate,
        SetManagementCertificateRequest::default()
    );
    unary!("Logout", logout, LogoutRequest {});
    out
}

async fn clients(h: &Harness) -> (Node, Mgmt) {
    let url = h.serve_h2c().await;
    let channel = Channel::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connect");
    (
        NodeClient::new(channel.clone()),
        ManagementClient::new(channel),
    )
}

async fn login(m: &mut Mgmt, name: &str, password: &str) -> Result<String, Status> {
    let reply = m
        .login(LoginRequest {
            name: name.into(),
            password: password.into(),
        })
        .await?
        .into_inner();
    let session = reply.session.expect("session info");
    assert_eq!(
        (
            session.name.as_str(),
            session.kind.as_str(),
            session.current
        ),
        (name, "api", true)
    );
    Ok(reply.token)
}

#[tokio::test]
async fn no_method_works_without_a_token() {
    let h = Harness::start().await;
    let (mut node, mut mgmt) = clients(&h).await;
    assert_eq!(
        READ_ONLY.len() + CHANGING.len(),
        17,
        "every Node method is classified"
    );
    // The web cookie's token is no API token.
    let (web_token, _) = h.state.sessions().create(
        "admin",
        appliance_management::auth::Role::Administrator,
        "127.0.0.1".parse().expect("ip"),
        appliance_management::auth::sessions::Kind::Web,
    );
    for token in [None, Some("forged"), Some(web_token.as_str())] {
        for name in READ_ONLY.iter().chain(CHANGING) {
            let err = call_node(&mut node, name, token).await.expect_err(name);
            assert_eq!(err.code(), Code::Unauthenticated, "{name} with {token:?}");
            assert_eq!(
                err.message(),
                "sign in first: appliancectl --server URL login"
            );
        }
        for (name, result) in call_management(&mut mgmt, token).await {
            let err = result.expect_err(name);
            assert_eq!(err.code(), Code::Unauthenticated, "{name} with {token:?}");
        }
    }
    assert!(
        h.fake.lock().node_calls.is_empty(),
        "nothing reached applianced"
    );
    assert!(h.fake.lock().accounts.iter().all(|a| a.name != "eve"));
}

#[tokio::test]
async fn viewers_read_and_administrators_change() {
    let h = Harness::start().await;
    let (mut node, mut mgmt) = clients(&h).await;
    let viewer = login(&mut mgmt, "viewer", PASSWORD)
        .await
        .expect("viewer login");
    for name in READ_ONLY {
        call_node(&mut node, name, Some(&viewer))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for name in CHANGING {
        let err = call_node(&mut node, name, Some(&viewer))
            .await
            .expect_err(name);
        assert_eq!(err.code(), Code::PermissionDenied, "{name}");
        assert!(
            err.message().contains(name) && err.message().contains("viewer"),
            "{}",
            err.message()
        );
    }
    assert_eq!(
        h.fake.lock().node_calls,
        READ_ONLY.to_vec(),
        "only the reads reached applianced"
    );

    let admin = login(&mut mgmt, "admin", PASSWORD)
        .await
        .expect("admin login");
    for name in READ_ONLY.iter().chain(CHANGING) {
        call_node(&mut node, name, Some(&admin))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let events = h.fake.events();
    for name in CHANGING {
        assert!(
            events.iter().any(|e| e.action == action(name)
                && e.actor == "admin"
                && e.result == "ok"
                && e.node == "node1"),
            "{name} audited: {events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| e.action == action(name) && e.actor == "viewer" && e.result == "refused"),
            "{name}'s refusal audited"
        );
    }
    assert!(
        events.iter().all(|e| !e.detail.contains("SECRET-CODE")),
        "no join code in the trail"
    );
    assert!(
        events
            .iter()
            .all(|e| !READ_ONLY.contains(&e.action.as_str())),
        "reads are not audited"
    );
    assert!(events.iter().any(|e| e.action == "sign-in"
        && e.detail == "api"
        && e.actor == "viewer"
        && e.source == "127.0.0.1"));
    let text = appliance_management::metrics::gather(&h.state).await;
    assert!(
        text.contains("appliance_cluster_joins_total{result=\"ok\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn login_says_why_and_is_limited() {
    let h = Harness::with_accounts(&[]).await;
    let (_, mut mgmt) = clients(&h).await;
    let err = login(&mut mgmt, "admin", PASSWORD)
        .await
        .expect_err("no admin");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("Set it on the console."),
        "{}",
        err.message()
    );

    let h = Harness::start().await;
    let (_, mut mgmt) = clients(&h).await;
    for _ in 0..5 {
        let err = login(&mut mgmt, "admin", "not the password")
            .await
            .expect_err("wrong");
        assert_eq!(err.code(), Code::Unauthenticated);
        assert_eq!(err.message(), "wrong account name or password");
    }
    let err = login(&mut mgmt, "admin", PASSWORD)
        .await
        .expect_err("throttled");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("try again in"), "{}", err.message());
    // An unknown name is answered as a wrong password (never which one).
    let h = Harness::start().await;
    let (_, mut mgmt) = clients(&h).await;
    let err = login(&mut mgmt, "nobody", PASSWORD)
        .await
        .expect_err("unknown");
    assert_eq!(err.message(), "wrong account name or password");
}

#[tokio::test]
async fn accounts_never_carry_hashes_and_changes_end_sessions() {
    let h = Harness::start().await;
    let (mut node, mut mgmt) = clients(&h).await;
    let admin = login(&mut mgmt, "admin", PASSWORD).await.expect("admin");
    let viewer = login(&mut mgmt, "viewer", PASSWORD).await.expect("viewer");

    let reply = mgmt
        .list_accounts(with_token(ListAccountsRequest {}, Some(&viewer)))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(reply.accounts.len(), 2);
    assert!(reply.accounts.iter().all(|a| a.password_hash.is_empty()));

    let add = |name: &str, password: &str| AddAccountRequest {
        name: name.into(),
        role: "viewer".into(),
        password: password.into(),
    };
    let err = mgmt
        .add_account(with_token(add("eve", "0123456789abcdef"), Some(&viewer)))
        .await
        .expect_err("viewer");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = mgmt
        .add_account(with_token(add("eve", "short"), Some(&admin)))
        .await
        .expect_err("short");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = mgmt
        .add_account(with_token(add("Eve!", "0123456789abcdef"), Some(&admin)))
        .await
        .expect_err("name");
    assert_eq!(err.code(), Code::InvalidArgument);
    let reply = mgmt
        .add_account(with_token(add("eve", "0123456789abcdef"), Some(&admin)))
        .await
        .expect("add")
        .into_inner();
    assert!(reply.accounts.iter().all(|a| a.password_hash.is_empty()));
    let stored = h
        .fake
        .lock()
        .accounts
        .iter()
        .find(|a| a.name == "eve")
        .cloned()
        .expect("stored");
    assert!(
        stored
            .password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        stored.password_hash
    );
    let eve = login(&mut mgmt, "eve", "0123456789abcdef")
        .await
        .expect("eve signs in");

    // Own password: the current one is needed.
    let change = |name: &str, current: &str| ChangePasswordRequest {
        name: name.into(),
        current_password: current.into(),
        new_password: "a new password!".into(),
    };
    let err = mgmt
        .change_password(with_token(change("", "wrong"), Some(&viewer)))
        .await
        .expect_err("wrong current");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = mgmt
        .change_password(with_token(change("admin", ""), Some(&viewer)))
        .await
        .expect_err("another's");
    assert_eq!(err.code(), Code::PermissionDenied);
    // An administrator changes the viewer's: the viewer's sessions end.
    mgmt.change_password(with_token(change("viewer", ""), Some(&admin)))
        .await
        .expect("changed");
    let err = call_node(&mut node, "Status", Some(&viewer))
        .await
        .expect_err("signed out");
    assert_eq!(err.code(), Code::Unauthenticated);
    login(&mut mgmt, "viewer", "a new password!")
        .await
        .expect("the new password works");
    // Removing an account ends its sessions.
    mgmt.remove_account(with_token(
        RemoveAccountRequest { name: "eve".into() },
        Some(&admin),
    ))
    .await
    .expect("removed");
    let err = call_node(&mut node, "Status", Some(&eve))
        .await
        .expect_err("removed");
    assert_eq!(err.code(), Code::Unauthenticated);
    call_node(&mut node, "Status", Some(&admin))
        .await
        .expect("the administrator's session stays");

    let actions: Vec<(String, String)> = h
        .fake
        .events()
        .iter()
        .map(|e| (e.action.clone(), e.result.clone()))
        .collect();
    for expected in [
        ("account.add", "ok"),
        ("account.add", "refused"),
        ("account.password", "ok"),
        ("account.remove", "ok"),
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, r)| a == expected.0 && r == expected.1),
            "{expected:?} in {actions:?}"
        );
    }
}

#[tokio::test]
async fn sessions_settings_and_the_certificate() {
    let h = Harness::start().await;
    let (_, mut mgmt) = clients(&h).await;
    let admin = login(&mut mgmt, "admin", PASSWORD).await.expect("admin");
    let viewer = login(&mut mgmt, "viewer", PASSWORD).await.expect("viewer");

    let me = mgmt
        .who_am_i(with_token(WhoAmIRequest {}, Some(&viewer)))
        .await
        .expect("whoami")
        .into_inner();
    assert_eq!(
        (me.name.as_str(), me.role.as_str(), me.source.as_str()),
        ("viewer", "viewer", "127.0.0.1")
    );
    let list = mgmt
        .list_sessions(with_token(ListSessionsRequest {}, Some(&admin)))
        .await
        .expect("sessions")
        .into_inner();
    assert_eq!(list.sessions.len(), 2);
    assert_eq!(list.sessions.iter().filter(|s| s.current).count(), 1);
    assert!(list.sessions.iter().any(|s| s.current && s.name == "admin"));

    // The client's address is the server's to say.
    let settings = Settings {
        management_networks: vec!["10.0.0.0/8".into()],
        ..Default::default()
    };
    let err = mgmt
        .set_settings(with_token(
            SetSettingsRequest {
                settings: Some(settings.clone()),
                client_address: "10.1.2.3".into(),
            },
            Some(&viewer),
        ))
        .await
        .expect_err("viewer");
    assert_eq!(err.code(), Code::PermissionDenied);
    mgmt.set_settings(with_token(
        SetSettingsRequest {
            settings: Some(settings),
            client_address: "10.1.2.3".into(),
        },
        Some(&admin),
    ))
    .await
    .expect("set");
    assert_eq!(h.fake.lock().client_address, "127.0.0.1");
    assert!(h
        .fake
        .events()
        .iter()
        .any(|e| e.action == "settings.set" && e.detail.contains("10.0.0.0/8")));

    let tls = mgmt
        .get_management_tls(with_token(GetManagementTlsRequest {}, Some(&viewer)))
        .await
        .expect("tls")
        .into_inner();
    assert!(tls.key_pem.is_empty(), "the key never leaves");
    assert!(tls.cert_pem.contains("BEGIN CERTIFICATE"));
    let tls = mgmt
        .set_management_certificate(with_token(
            SetManagementCertificateRequest::default(),
            Some(&admin),
        ))
        .await
        .expect("set certificate")
        .into_inner();
    assert!(tls.key_pem.is_empty());

    mgmt.logout(with_token(LogoutRequest {}, Some(&viewer)))
        .await
        .expect("logout");
    let err = mgmt
        .who_am_i(with_token(WhoAmIRequest {}, Some(&viewer)))
        .await
        .expect_err("logged out");
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_join_whose_client_goes_away_is_still_audited() {
    let h = Harness::start().await;
    let (mut node, mut mgmt) = clients(&h).await;
    let admin = login(&mut mgmt, "admin", PASSWORD).await.expect("admin");
    let mut stream = node
        .cluster_add(with_token(
            ClusterAddRequest {
                address: common::HANGING_JOIN.into(),
                code: "SECRET-CODE".into(),
                roles: vec![],
            },
            Some(&admin),
        ))
        .await
        .expect("join")
        .into_inner();
    assert!(stream.message().await.expect("first event").is_some());
    drop(stream);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let events = h.fake.events();
        if let Some(e) = events.iter().find(|e| e.action == "cluster.add") {
            assert_eq!(e.result, "failed", "{e:?}");
            assert!(e.reason.contains("went away"), "{e:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit event: {events:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = appliance_management::metrics::gather(&h.state).await;
    assert!(
        text.contains("appliance_cluster_joins_total{result=\"failed\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn parallel_guesses_do_not_pass_the_limit_together() {
    let h = Harness::start().await;
    let (_, mgmt) = clients(&h).await;
    let attempts = (0..30).map(|i| {
        let mut m = mgmt.clone();
        async move { login(&mut m, "admin", &format!("guess number {i}")).await }
    });
    let results = futures::future::join_all(attempts).await;
    assert!(results.iter().all(Result::is_err));
    let failed = h
        .fake
        .events()
        .iter()
        .filter(|e| e.result == "failed")
        .count();
    assert!(
        (1..=5).contains(&failed),
        "{failed} passwords checked out of 30 parallel guesses"
    );
    let refused = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .err()
                .is_some_and(|s| s.code() == Code::ResourceExhausted)
        })
        .count();
    assert_eq!(refused + failed, 30);
}
