//! `/`: the dashboard — every member with its roles, state and (for the
//! node serving the page) the health of each placed service; the cluster's
//! high availability and warnings; the recent events. `/dashboard/live`
//! serves the same content as a fragment, which the page fetches every 3 s.
//!
//! Service health comes from this node's supervisor (`ListServices`); the
//! API has no per-member service health, so other members show their
//! membership state only.

use appliance_api::v1::{
    AuditEvent, ClusterMember, ClusterStatusReply, ListEventsRequest, ListServicesRequest,
    ServiceInfo, StatusReply, StatusRequest,
};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::layout::{app_page, error_box, light, notice_box, Frame, Nav};
use super::view::{self, member_tone, service_health, Tone};
use super::DoneQuery;
use crate::auth::web::WebSession;
use crate::state::AppState;

/// How many events the dashboard shows.
const RECENT_EVENTS: u32 = 10;

/// Everything the dashboard shows, read from applianced in one go.
struct Snapshot {
    status: Result<StatusReply, tonic::Status>,
    cluster: Result<ClusterStatusReply, tonic::Status>,
    services: Result<Vec<ServiceInfo>, tonic::Status>,
    events: Result<Vec<AuditEvent>, tonic::Status>,
}

async fn snapshot(state: &AppState) -> Snapshot {
    let mut node = state.backend().node();
    let mut node2 = node.clone();
    let mut admin = state.backend().admin();
    let (status, cluster, services, events) = tokio::join!(
        async { Ok(node.status(StatusRequest {}).await?.into_inner()) },
        super::cluster_status(state),
        async {
            Ok(node2
                .list_services(ListServicesRequest {})
                .await?
                .into_inner()
                .services)
        },
        async {
            let request = ListEventsRequest {
                after_seq: 0,
                limit: RECENT_EVENTS,
            };
            Ok(admin.list_events(request).await?.into_inner().events)
        },
    );
    if let Ok(s) = &status {
        if state.node_name() != s.hostname {
            state.set_node_name(&s.hostname);
        }
    }
    Snapshot {
        status,
        cluster,
        services,
        events,
    }
}

/// `GET /`: the dashboard.
pub async fn page(
    State(state): State<AppState>,
    WebSession(who): WebSession,
    Query(done): Query<DoneQuery>,
) -> Markup {
    let snap = snapshot(&state).await;
    let notice = super::notice(done.done.as_deref());
    let frame = Frame {
        who: &who,
        nav: Nav::Dashboard,
        cluster: super::cluster_badge(&snap.cluster),
    };
    app_page(
        "Dashboard",
        &frame,
        html! {
            @if let Some(n) = notice { (notice_box(n)) }
            p.live-status #live-status aria-live="polite" { "Live · refreshes every 3 seconds" }
            div data-live="/dashboard/live" data-every="3000" data-status="live-status" {
                (content(&snap))
            }
        },
    )
}

/// `GET /dashboard/live`: the dashboard's content alone, for the refresh.
pub async fn live(State(state): State<AppState>, WebSession(_): WebSession) -> Response {
    let snap = snapshot(&state).await;
    ([(header::CACHE_CONTROL, "no-store")], content(&snap)).into_response()
}

fn content(snap: &Snapshot) -> Markup {
    html! {
        @if let Err(e) = &snap.cluster {
            (error_box("Cannot read the cluster's state from applianced.", e.message(),
                "Check that applianced runs on this node; the page retries by itself."))
        }
        @if let Ok(cluster) = &snap.cluster {
            (summary(cluster, snap.status.as_ref().ok()))
            (members(cluster, snap))
        }
        (recent_events(&snap.events))
    }
}

fn summary(cluster: &ClusterStatusReply, status: Option<&StatusReply>) -> Markup {
    let ha = view::availability(cluster);
    let active = cluster
        .members
        .iter()
        .filter(|m| m.state == "active")
        .count();
    html! {
        div.summary {
            section.panel #availability {
                h2 { "Availability" }
                div.figure { (light(ha.tone, &ha.headline)) }
                p.muted { (ha.why) "." }
                @for w in &cluster.warnings { p.small { "⚠ " (w) } }
            }
            section.panel {
                h2 { "Cluster" }
                @if cluster.node_state == "member" {
                    div.figure { (active) " of " (cluster.members.len()) " active" }
                    p.muted.small { "Cluster " span.mono { (short(&cluster.cluster_id)) }
                        " · configuration generation " (cluster.generation) }
                } @else {
                    div.figure { (view::availability(cluster).headline) }
                    p.muted.small { "State: " (cluster.node_state) }
                }
            }
            @if let Some(s) = status {
                section.panel {
                    h2 { "This node" }
                    div.figure { (s.hostname) }
                    p.muted.small { "Version " (s.version) " · up " (view::ago(s.uptime_ms))
                        " · " (if s.ready { "ready" } else { "not ready" }) }
                }
            }
        }
    }
}

fn members(cluster: &ClusterStatusReply, snap: &Snapshot) -> Markup {
    // Outside a cluster the node is its own only member.
    let alone;
    let members: &[ClusterMember] = if cluster.members.is_empty() {
        alone = snap.status.as_ref().ok().map(|s| ClusterMember {
            node_id: s.node_id.clone(),
            hostname: s.hostname.clone(),
            addresses: s.addresses.clone(),
            roles: s.roles.clone(),
            state: s.cluster_state.clone(),
            version: s.version.clone(),
            this_node: true,
            ..Default::default()
        });
        alone.as_slice()
    } else {
        &cluster.members
    };
    html! {
        section.panel #members {
            h2 { "Appliances" span.muted.small { (members.len()) } }
            div.table-wrap {
                table {
                    thead { tr {
                        th { "Appliance" } th { "Addresses" } th { "Roles" }
                        th.wide-only { "Version" } th { "State" } th { "Services" }
                    } }
                    tbody {
                        @for m in members {
                            tr {
                                td {
                                    a href={ "/nodes/" (m.node_id) } { strong { (m.hostname) } }
                                    " "
                                    @if m.this_node { span.tag.this { "this node" } }
                                    @if m.authority { span.tag.authority title="Makes changes and signs certificates" { "authority" } }
                                }
                                td { @for a in &m.addresses { span.mono { (a) } br; } }
                                td { @for r in &m.roles { span.tag { (view::describe_roles(std::slice::from_ref(r))) } } }
                                td.wide-only { (m.version) }
                                td { (light(member_tone(&m.state), &m.state)) }
                                td { (services_cell(m, &snap.services)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn services_cell(m: &ClusterMember, services: &Result<Vec<ServiceInfo>, tonic::Status>) -> Markup {
    if !m.this_node {
        return html! {
            span.muted.small { "Not reported to this node; see "
                a href={ "/nodes/" (m.node_id) } { "its page" } "." }
        };
    }
    match services {
        Err(e) => html! { (light(Tone::Red, &format!("cannot list services: {}", e.message()))) },
        Ok(list) if list.is_empty() => html! { span.muted { "no services placed" } },
        Ok(list) => html! {
            ul.services {
                @for s in list {
                    @let h = service_health(s);
                    li { (light(h.tone, &s.name)) " " span.muted.small { (h.reason) } }
                }
            }
        },
    }
}

fn recent_events(events: &Result<Vec<AuditEvent>, tonic::Status>) -> Markup {
    html! {
        section.panel #recent-events {
            h2 { "Recent events" a.small href="/events" { "All events →" } }
            @match events {
                Err(e) => p.muted { "The audit trail cannot be read: " (e.message()) },
                Ok(list) if list.is_empty() => p.muted { "No events yet." },
                Ok(list) => div.table-wrap { table {
                    thead { tr { th { "When (UTC)" } th { "Who" } th { "What" } th { "Result" } } }
                    tbody {
                        @for e in list.iter().rev() {
                            tr {
                                td.mono.nowrap { (view::utc(e.at_unix_ms)) }
                                td { (if e.actor.is_empty() { "(anonymous)" } else { &e.actor })
                                     span.sub { (e.source) } }
                                td { strong { (e.action) } span.sub { (e.detail) } }
                                td { span class={ "result-" (e.result) } { (e.result) }
                                     @if !e.reason.is_empty() { span.sub { (e.reason) } } }
                            }
                        }
                    }
                } },
            }
        }
    }
}

/// The first 12 characters of an id, enough to tell clusters apart.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
