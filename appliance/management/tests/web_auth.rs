//! The web face's guards, against a stand-in applianced: no page without a
//! session, viewers refused changes, cross-site POSTs refused, the cookie's
//! flags, the rate limit on sign-in and its audit events, the setup page,
//! and `/metrics` (token needed, format parses).

mod common;

use std::net::SocketAddr;

use appliance_management::auth::sessions::Kind;
use appliance_management::auth::Role;
use axum::http::{header, StatusCode};
use common::{peer, request, text, Harness, PASSWORD};

const HOST: &str = "node1:8443";
const ORIGIN: &str = "https://node1:8443";
const FORM: &str = "application/x-www-form-urlencoded";

/// The pages' routes (method, path) as H4's router declares them, with
/// `{param}` filled in.
fn page_routes() -> Vec<(&'static str, String)> {
    let src = include_str!("../src/web/mod.rs");
    let mut routes = Vec::new();
    for line in src
        .lines()
        .filter(|l| l.trim_start().starts_with(".route(\""))
    {
        let path = line.split('"').nth(1).expect("a quoted path");
        let path: String = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        if path.starts_with("/assets/") {
            continue;
        }
        if line.contains("get(") {
            routes.push(("GET", path.clone()));
        }
        if line.contains("post(") {
            routes.push(("POST", path));
        }
    }
    assert!(
        routes.len() >= 5,
        "the router's routes were not found: {routes:?}"
    );
    routes
}

fn location(resp: &axum::http::Response<axum::body::Body>) -> String {
    resp.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Signs in through the form; returns the token and the Set-Cookie value.
async fn sign_in(
    h: &Harness,
    name: &str,
    password: &str,
    from: SocketAddr,
) -> (StatusCode, String, String) {
    let body = format!(
        "name={name}&password={}&next=%2Fevents",
        password.replace(' ', "+")
    );
    let resp = h
        .send(
            request(
                "POST",
                "/signin",
                &[("host", HOST), ("origin", ORIGIN), ("content-type", FORM)],
                &body,
            ),
            from,
        )
        .await;
    let status = resp.status();
    let cookie = resp
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let token = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("appliance_session="))
        .unwrap_or("")
        .to_string();
    (status, token, cookie)
}

#[tokio::test]
async fn no_page_works_without_a_session() {
    let h = Harness::start().await;
    for cookie in [None, Some("appliance_session=forged"), Some("other=1")] {
        for (method, path) in page_routes()
            .into_iter()
            .chain([("POST", "/signout".to_string())])
        {
            let mut headers = vec![("host", HOST), ("origin", ORIGIN), ("content-type", FORM)];
            if let Some(c) = cookie {
                headers.push(("cookie", c));
            }
            let resp = h
                .send(request(method, &path, &headers, "csrf=x"), peer())
                .await;
            assert_eq!(
                resp.status(),
                StatusCode::SEE_OTHER,
                "{method} {path} with {cookie:?}"
            );
            assert!(
                location(&resp).starts_with("/signin"),
                "{method} {path}: to {}",
                location(&resp)
            );
        }
    }
    // A web session's token is no API token, and an API token no cookie.
    let (_, web_token, _) = sign_in(&h, "admin", PASSWORD, peer()).await;
    let resp = h
        .send(
            request(
                "GET",
                "/metrics",
                &[("authorization", &format!("Bearer {web_token}"))],
                "",
            ),
            peer(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (api_token, _) =
        h.state
            .sessions()
            .create("admin", Role::Administrator, peer().ip(), Kind::Api);
    let resp = h
        .send(
            request(
                "GET",
                "/",
                &[("cookie", &format!("appliance_session={api_token}"))],
                "",
            ),
            peer(),
        )
        .await;
    assert!(location(&resp).starts_with("/signin"));
    // Nothing reached applianced's changing methods.
    assert!(h
        .fake
        .lock()
        .node_calls
        .iter()
        .all(|m| !m.starts_with("Cluster") || m == "ClusterStatus"));
}

#[tokio::test]
async fn a_viewer_is_refused_every_change() {
    let h = Harness::start().await;
    let (status, token, _) = sign_in(&h, "viewer", PASSWORD, peer()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let csrf = h
        .state
        .sessions()
        .check(&token, Kind::Web, peer().ip())
        .expect("session")
        .csrf;
    let accounts_before = h.fake.lock().accounts.clone();
    let cookie = format!("appliance_session={token}");
    let admin_posts = [
        "/add/confirm",
        "/add/start",
        "/nodes/x/roles",
        "/nodes/x/remove",
        "/nodes/x/restart",
        "/settings",
        "/settings/certificate",
        "/accounts/add",
        "/accounts/remove",
    ];
    let declared = page_routes();
    for path in admin_posts
        .iter()
        .filter(|p| declared.iter().any(|(m, d)| *m == "POST" && d == *p))
    {
        let body = format!("csrf={csrf}&name=eve&role=administrator&password=0123456789abc&password2=0123456789abc&node=x&roles=backend&address=192.0.2.9&code=ABCD");
        let resp = h
            .send(
                request(
                    "POST",
                    path,
                    &[
                        ("host", HOST),
                        ("origin", ORIGIN),
                        ("content-type", FORM),
                        ("cookie", &cookie),
                    ],
                    &body,
                ),
                peer(),
            )
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "POST {path} as a viewer"
        );
        assert!(
            text(resp).await.contains("viewer"),
            "POST {path}: the page says why"
        );
    }
    let d = h.fake.lock();
    assert_eq!(d.accounts, accounts_before);
    let changing = appliance_management::grpc::node::CHANGING;
    assert!(
        d.node_calls.iter().all(|m| !changing.contains(&m.as_str())),
        "{:?}",
        d.node_calls
    );
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let h = Harness::start().await;
    let cases: [&[(&str, &str)]; 5] = [
        &[("host", HOST), ("origin", "https://evil.example")],
        &[("host", HOST)],
        &[("host", HOST), ("sec-fetch-site", "cross-site")],
        &[
            ("host", HOST),
            ("sec-fetch-site", "same-site"),
            ("origin", ORIGIN),
        ],
        &[("host", HOST), ("origin", "null")],
    ];
    for headers in cases {
        let mut headers = headers.to_vec();
        headers.push(("content-type", FORM));
        let body = format!("name=admin&password={}", PASSWORD.replace(' ', "+"));
        let resp = h
            .send(request("POST", "/signin", &headers, &body), peer())
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(resp.headers().get(header::SET_COOKIE).is_none());
        assert!(text(resp).await.contains("another site"), "{headers:?}");
    }
    // A signed-in administrator's form, with its CSRF token, from another site.
    let (_, token, _) = sign_in(&h, "admin", PASSWORD, peer()).await;
    let csrf = h
        .state
        .sessions()
        .check(&token, Kind::Web, peer().ip())
        .expect("session")
        .csrf;
    let body = format!(
        "csrf={csrf}&name=eve&role=administrator&password=0123456789abc&password2=0123456789abc"
    );
    let cookie = format!("appliance_session={token}");
    let resp = h
        .send(
            request(
                "POST",
                "/accounts/add",
                &[
                    ("host", HOST),
                    ("origin", "https://evil.example"),
                    ("content-type", FORM),
                    ("cookie", &cookie),
                ],
                &body,
            ),
            peer(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(h.fake.lock().accounts.iter().all(|a| a.name != "eve"));
    // Same site, sign-out without the form's token: refused too.
    let resp = h
        .send(
            request(
                "POST",
                "/signout",
                &[
                    ("host", HOST),
                    ("origin", ORIGIN),
                    ("content-type", FORM),
                    ("cookie", &cookie),
                ],
                "csrf=wrong",
            ),
            peer(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(h
        .state
        .sessions()
        .check(&token, Kind::Web, peer().ip())
        .is_some());
}

#[tokio::test]
async fn sign_in_sets_a_strict_cookie_and_sign_out_ends_the_session() {
    let h = Harness::start().await;
    let (status, token, cookie) = sign_in(&h, "admin", PASSWORD, peer()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(token.len(), 64);
    let flags: Vec<&str> = cookie.split("; ").collect();
    for flag in [
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(flags.contains(&flag), "{flag} in {cookie}");
    }
    // Only local paths are followed after sign-in.
    for (next, to) in [
        ("%2Fevents", "/events"),
        ("%2F%2Fevil.example", "/"),
        ("https%3A%2F%2Fevil.example", "/"),
    ] {
        let body = format!(
            "name=admin&password={}&next={next}",
            PASSWORD.replace(' ', "+")
        );
        let resp = h
            .send(
                request(
                    "POST",
                    "/signin",
                    &[("host", HOST), ("origin", ORIGIN), ("content-type", FORM)],
                    &body,
                ),
                peer(),
            )
            .await;
        assert_eq!(location(&resp), to, "next={next}");
    }
    let session = format!("appliance_session={token}");
    let resp = h
        .send(
            request("GET", "/signin", &[("cookie", &session)], ""),
            peer(),
        )
        .await;
    assert_eq!(location(&resp), "/", "signed in already");

    let csrf = h
        .state
        .sessions()
        .check(&token, Kind::Web, peer().ip())
        .expect("session")
        .csrf;
    let resp = h
        .send(
            request(
                "POST",
                "/signout",
                &[
                    ("host", HOST),
                    ("origin", ORIGIN),
                    ("content-type", FORM),
                    ("cookie", &session),
                ],
                &format!("csrf={csrf}"),
            ),
            peer(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cleared = resp
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(h
        .state
        .sessions()
        .check(&token, Kind::Web, peer().ip())
        .is_none());
    let events = h.fake.events();
    let actions: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.result.as_str()))
        .collect();
    assert!(actions.contains(&("admin", "sign-in", "ok")), "{actions:?}");
    assert!(
        actions.contains(&("admin", "sign-out", "ok")),
        "{actions:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e.node == "node1" && e.source == "192.0.2.10"),
        "{events:?}"
    );
}

#[tokio::test]
async fn failed_sign_ins_are_slowed_down_and_recorded() {
    let h = Harness::start().await;
    for i in 0..5 {
        let (status, token, _) = sign_in(&h, "admin", "wrong password!", peer()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}");
        assert!(token.is_empty());
    }
    // The sixth, even with the right password, waits; from another address
    // too, since the account is limited as well as the source.
    let other: SocketAddr = "198.51.100.7:40000".parse().expect("addr");
    for from in [peer(), other] {
        let body = format!("name=admin&password={}", PASSWORD.replace(' ', "+"));
        let resp = h
            .send(
                request(
                    "POST",
                    "/signin",
                    &[("host", HOST), ("origin", ORIGIN), ("content-type", FORM)],
                    &body,
                ),
                from,
            )
            .await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "from {from}");
        assert!(resp.headers().get(header::SET_COOKIE).is_none());
        assert!(text(resp).await.contains("try again in"));
    }
    // An unknown name from the limited source is refused as well (no Argon2
    // run), and so is a flood: each refused, audited once per wait.
    for _ in 0..20 {
        let (status, _, _) = sign_in(&h, "nobody", PASSWORD, peer()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }

    let events = h.fake.events();
    let failed: Vec<_> = events.iter().filter(|e| e.result == "failed").collect();
    assert_eq!(failed.len(), 5, "{events:?}");
    assert!(failed
        .iter()
        .all(|e| e.action == "sign-in" && e.actor.is_empty() && e.detail.contains("\"admin\"")));
    let refused: Vec<_> = events.iter().filter(|e| e.result == "refused").collect();
    // One for the first source, one for the second (a new source on the
    // limited account); the flood from the first is only logged.
    assert_eq!(refused.len(), 2, "{events:?}");
    assert!(refused.iter().all(|e| e.reason.contains("try again in")));
    assert!(refused.iter().any(|e| e.source == "198.51.100.7"));
}

#[tokio::test]
async fn without_an_administrator_every_page_leads_to_setup() {
    let h = Harness::with_accounts(&[("viewer", "viewer")]).await;
    for path in ["/", "/signin", "/events"] {
        let resp = h.send(request("GET", path, &[], ""), peer()).await;
        assert_eq!(location(&resp), "/setup", "GET {path}");
    }
    let resp = h.send(request("GET", "/setup", &[], ""), peer()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(text(resp).await.contains("Set it on the console."));
    let (status, token, _) = sign_in(&h, "viewer", PASSWORD, peer()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        token.is_empty(),
        "no sign-in while there is no administrator"
    );
}

/// Checks the OpenMetrics text: every sample line is `name{labels} value`
/// with a number, every family has a TYPE, and it ends with `# EOF`.
fn parse_metrics(body: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "{body}");
    for line in &lines {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT ")
                    || *line == "# EOF",
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let name = series.split('{').next().expect("name");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
        }
        let family = name.trim_end_matches("_total");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("# TYPE {family} "))),
            "no TYPE for {name}"
        );
        samples.push((series.to_string(), value));
    }
    samples
}

#[tokio::test]
async fn metrics_need_a_token_and_parse() {
    let h = Harness::start().await;
    let resp = h.send(request("GET", "/metrics", &[], ""), peer()).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = h
        .send(
            request("GET", "/metrics", &[("authorization", "Bearer forged")], ""),
            peer(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let (token, _) = h
        .state
        .sessions()
        .create("viewer", Role::Viewer, peer().ip(), Kind::Api);
    h.state.metrics().join(true, 1500);
    let resp = h
        .send(
            request(
                "GET",
                "/metrics",
                &[("authorization", &format!("Bearer {token}"))],
                "",
            ),
            peer(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/openmetrics-text")));
    let body = text(resp).await;
    let samples = parse_metrics(&body);
    let value = |prefix: &str, contains: &[&str]| -> f64 {
        samples
            .iter()
            .find(|(s, _)| s.starts_with(prefix) && contains.iter().all(|c| s.contains(c)))
            .unwrap_or_else(|| panic!("{prefix} {contains:?} in\n{body}"))
            .1
    };
    assert_eq!(value("appliance_node_up", &["hostname=\"node1\""]), 1.0);
    assert_eq!(value("appliance_node_ready", &[]), 1.0);
    assert_eq!(value("appliance_node_generation", &[]), 3.0);
    assert_eq!(value("appliance_node_uptime_seconds", &[]), 5.0);
    assert_eq!(
        value(
            "appliance_service_state",
            &["service=\"portal\"", "state=\"healthy\""]
        ),
        1.0
    );
    assert_eq!(
        value(
            "appliance_service_state",
            &["service=\"portal\"", "state=\"failed\""]
        ),
        0.0
    );
    assert_eq!(
        value("appliance_service_restarts", &["service=\"portal\""]),
        2.0
    );
    assert_eq!(
        value(
            "appliance_firewall_rule_packets_total",
            &["rule=\"mgmt-v4\""]
        ),
        7.0
    );
    assert_eq!(
        value("appliance_firewall_rule_bytes_total", &["rule=\"mgmt-v4\""]),
        420.0
    );
    assert_eq!(
        value("appliance_cluster_members", &["state=\"active\""]),
        1.0
    );
    assert_eq!(
        value("appliance_cluster_members_with_role", &["role=\"backend\""]),
        1.0
    );
    assert_eq!(
        value("appliance_cluster_joins_total", &["result=\"ok\""]),
        1.0
    );
    assert_eq!(value("appliance_cluster_last_join_seconds", &[]), 1.5);
    assert_eq!(
        value("appliance_management_sessions", &["kind=\"api\""]),
        1.0
    );
    value(
        "appliance_management_sign_ins_total",
        &["result=\"failed\""],
    );
}

#[tokio::test]
async fn healthz_answers_without_a_session() {
    let h = Harness::start().await;
    let resp = h.send(request("GET", "/healthz", &[], ""), peer()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}
