//! `/metrics`: node, service, firewall-counter, membership and join figures
//! in the Prometheus text format (OpenMetrics), gathered from applianced at
//! each scrape, plus this server's own counters (sign-ins, sessions, joins
//! seen through it). A part applianced does not answer is left out and
//! `appliance_node_up` says so; the scrape itself still succeeds.
//!
//! The endpoint needs `Authorization: Bearer <token>` (an API token of any
//! role, from `Management.Login`).

use std::sync::atomic::{AtomicU64, Ordering};

use appliance_api::v1::{
    ClusterStatusRequest, ListServicesRequest, ShowFirewallRequest, StatusRequest,
};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::auth::sessions::Kind;
use crate::auth::web::ClientAddr;
use crate::state::AppState;

/// The states a service can be in, each a series of `appliance_service_state`.
pub const SERVICE_STATES: &[&str] = &[
    "starting",
    "running",
    "healthy",
    "unhealthy",
    "backoff",
    "failed",
    "stopping",
    "stopped",
];

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// This server's own counters.
#[derive(Default)]
pub struct Metrics {
    sign_ins_ok: AtomicU64,
    sign_ins_failed: AtomicU64,
    sign_ins_throttled: AtomicU64,
    joins_ok: AtomicU64,
    joins_failed: AtomicU64,
    last_join_ms: AtomicU64,
}

impl Metrics {
    /// A successful sign-in (web or API).
    pub fn sign_in_ok(&self) {
        self.sign_ins_ok.fetch_add(1, Ordering::Relaxed);
    }

    /// A failed sign-in.
    pub fn sign_in_failed(&self) {
        self.sign_ins_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A sign-in refused by the rate limiter.
    pub fn sign_in_throttled(&self) {
        self.sign_ins_throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// A `ClusterAdd` through this server ended, after `ms` milliseconds.
    pub fn join(&self, ok: bool, ms: u64) {
        if ok {
            self.joins_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.joins_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.last_join_ms.store(ms, Ordering::Relaxed);
    }
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn gauge_family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, i64)>,
) {
    let family = Family::<Labels, Gauge>::default();
    for (l, v) in series {
        family.get_or_create(&l).set(v);
    }
    registry.register(name, help, family);
}

fn counter_family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, u64)>,
) {
    let family = Family::<Labels, Counter>::default();
    for (l, v) in series {
        family.get_or_create(&l).inc_by(v);
    }
    registry.register(name, help, family);
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Every figure, asked of applianced now, in the text format.
pub async fn gather(state: &AppState) -> String {
    let mut r = Registry::with_prefix("appliance");
    let mut node = state.backend().node();

    match node
        .status(StatusRequest {})
        .await
        .map(tonic::Response::into_inner)
    {
        Ok(s) => {
            gauge_family(
                &mut r,
                "node_up",
                "1 when applianced answers",
                [(
                    labels(&[
                        ("node_id", &s.node_id),
                        ("hostname", &s.hostname),
                        ("version", &s.version),
                        ("mode", &s.mode),
                    ]),
                    1,
                )],
            );
            gauge(
                &mut r,
                "node_ready",
                "1 when the node is ready",
                i64::from(s.ready),
            );
            gauge(
                &mut r,
                "node_generation",
                "Generation of the applied desired state",
                clamp(s.generation),
            );
            gauge(
                &mut r,
                "node_uptime_seconds",
                "Seconds since applianced started",
                clamp(s.uptime_ms / 1000),
            );
            gauge_family(
                &mut r,
                "reconciler_ok",
                "1 when the reconciler's last run converged",
                s.reconcilers
                    .iter()
                    .map(|c| (labels(&[("reconciler", &c.name)]), i64::from(c.ok))),
            );
        }
        Err(e) => {
            tracing::warn!(error = %e.message(), "metrics: applianced's status unavailable");
            gauge_family(
                &mut r,
                "node_up",
                "1 when applianced answers",
                [(Labels::new(), 0)],
            );
        }
    }

    if let Ok(s) = node
        .list_services(ListServicesRequest {})
        .await
        .map(tonic::Response::into_inner)
    {
        gauge_family(
            &mut r,
            "service_state",
            "1 for the state each service is in",
            s.services.iter().flat_map(|svc| {
                SERVICE_STATES.iter().map(move |st| {
                    (
                        labels(&[("service", &svc.name), ("role", &svc.role), ("state", st)]),
                        i64::from(svc.state == *st),
                    )
                })
            }),
        );
        gauge_family(
            &mut r,
            "service_restarts",
            "Restarts of each service since applianced started",
            s.services
                .iter()
                .map(|svc| (labels(&[("service", &svc.name)]), i64::from(svc.restarts))),
        );
    }

    if let Ok(f) = node
        .show_firewall(ShowFirewallRequest {})
        .await
        .map(tonic::Response::into_inner)
    {
        counter_family(
            &mut r,
            "firewall_rule_packets",
            "Packets matched by each firewall rule",
            f.rules.iter().map(|rule| {
                (
                    labels(&[("rule", &rule.id), ("chain", &rule.chain)]),
                    rule.packets,
                )
            }),
        );
        counter_family(
            &mut r,
            "firewall_rule_bytes",
            "Bytes matched by each firewall rule",
            f.rules.iter().map(|rule| {
                (
                    labels(&[("rule", &rule.id), ("chain", &rule.chain)]),
                    rule.bytes,
                )
            }),
        );
    }

    if let Ok(c) = node
        .cluster_status(ClusterStatusRequest {})
        .await
        .map(tonic::Response::into_inner)
    {
        gauge_family(
            &mut r,
            "cluster_node_state",
            "1 for this node's cluster state",
            [(labels(&[("state", &c.node_state)]), 1)],
        );
        gauge(
            &mut r,
            "cluster_generation",
            "Generation of the cluster configuration",
            clamp(c.generation),
        );
        gauge(
            &mut r,
            "cluster_authority",
            "1 when this node is the cluster's authority",
            i64::from(c.authority),
        );
        let mut by_state: Vec<(String, i64)> = ["joining", "active", "removing"]
            .iter()
            .map(|s| (s.to_string(), 0))
            .collect();
        let mut by_role: Vec<(String, i64)> = ["frontend", "backend"]
            .iter()
            .map(|s| (s.to_string(), 0))
            .collect();
        for m in &c.members {
            bump(&mut by_state, &m.state);
            for role in &m.roles {
                bump(&mut by_role, role);
            }
        }
        gauge_family(
            &mut r,
            "cluster_members",
            "Members per state",
            by_state.iter().map(|(s, n)| (labels(&[("state", s)]), *n)),
        );
        gauge_family(
            &mut r,
            "cluster_members_with_role",
            "Members per role",
            by_role.iter().map(|(s, n)| (labels(&[("role", s)]), *n)),
        );
    }

    let m = state.metrics();
    counter_family(
        &mut r,
        "cluster_joins",
        "ClusterAdd calls through this management server, by result",
        [
            (
                labels(&[("result", "ok")]),
                m.joins_ok.load(Ordering::Relaxed),
            ),
            (
                labels(&[("result", "failed")]),
                m.joins_failed.load(Ordering::Relaxed),
            ),
        ],
    );
    let last: Gauge<f64, AtomicU64> = Gauge::default();
    // Milliseconds to seconds for display only; precision loss is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    last.set(m.last_join_ms.load(Ordering::Relaxed) as f64 / 1000.0);
    r.register(
        "cluster_last_join_seconds",
        "Duration of the last ClusterAdd through this server",
        last,
    );
    counter_family(
        &mut r,
        "management_sign_ins",
        "Sign-ins (web and API) by result",
        [
            (
                labels(&[("result", "ok")]),
                m.sign_ins_ok.load(Ordering::Relaxed),
            ),
            (
                labels(&[("result", "failed")]),
                m.sign_ins_failed.load(Ordering::Relaxed),
            ),
            (
                labels(&[("result", "throttled")]),
                m.sign_ins_throttled.load(Ordering::Relaxed),
            ),
        ],
    );
    let sessions = state.sessions().list();
    gauge_family(
        &mut r,
        "management_sessions",
        "Live sessions on this node, by kind",
        [Kind::Web, Kind::Api].iter().map(|k| {
            let n = sessions.iter().filter(|s| s.kind == *k).count();
            (
                labels(&[("kind", k.as_str())]),
                i64::try_from(n).unwrap_or(i64::MAX),
            )
        }),
    );

    let mut out = String::new();
    if let Err(e) = encode(&mut out, &r) {
        tracing::error!(error = %e, "metrics: encoding failed");
    }
    out
}

fn bump(counts: &mut Vec<(String, i64)>, key: &str) {
    match counts.iter_mut().find(|(k, _)| k == key) {
        Some((_, n)) => *n += 1,
        None => counts.push((key.to_string(), 1)),
    }
}

/// `GET /metrics`: the figures for a caller with an API token.
pub async fn handler(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    if token
        .and_then(|t| state.sessions().check(t, Kind::Api, source))
        .is_none()
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "metrics need Authorization: Bearer <token> (appliancectl --server URL login)\n",
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], gather(&state).await).into_response()
}
