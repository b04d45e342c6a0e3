//! `/nodes/{id}`: one appliance — addresses, roles, state; for the node
//! serving the page also its firewall rules with counters, its services
//! (with Restart) and its recent log. Change roles and Remove appliance,
//! each through a confirmation page.
//!
//! The API reaches the firewall, services and log of the node serving the
//! page only; for other members the page shows what the cluster's status
//! holds and points to their own management page.

use appliance_api::v1::{
    ClusterMember, ClusterRemoveRequest, ClusterSetRolesRequest, ClusterStatusReply, FirewallReply,
    ListServicesRequest, LogsRequest, RestartServiceRequest, ServiceInfo, ShowFirewallRequest,
    StatusReply, StatusRequest,
};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{app_page, csrf, error_box, light, notice_box, warning_box, Frame, Nav};
use super::view::{self, member_tone, service_health};
use super::DoneQuery;
use crate::auth::web::{check_csrf, AdminSession, WebSession};
use crate::auth::Principal;
use crate::state::AppState;

/// Log lines shown.
const LOG_LINES: u32 = 100;

/// What the page knows of the node.
struct Node {
    status: Result<StatusReply, tonic::Status>,
    cluster: Result<ClusterStatusReply, tonic::Status>,
    /// The member, from the cluster's status (or this node alone).
    member: Option<ClusterMember>,
    /// True when `id` is the node serving the page.
    this: bool,
}

async fn load(state: &AppState, id: &str) -> Node {
    let mut node = state.backend().node();
    let (status, cluster) = tokio::join!(
        async { Ok(node.status(StatusRequest {}).await?.into_inner()) },
        super::cluster_status(state),
    );
    let this = matches!(&status, Ok(s) if s.node_id == id || s.hostname == id);
    let member = cluster
        .as_ref()
        .ok()
        .and_then(|c| {
            c.members
                .iter()
                .find(|m| m.node_id == id || m.hostname == id)
                .cloned()
        })
        .or_else(|| {
            // Outside a cluster the node is its own only member.
            status
                .as_ref()
                .ok()
                .filter(|_| this)
                .map(|s| ClusterMember {
                    node_id: s.node_id.clone(),
                    hostname: s.hostname.clone(),
                    addresses: s.addresses.clone(),
                    roles: s.roles.clone(),
                    state: s.cluster_state.clone(),
                    version: s.version.clone(),
                    this_node: true,
                    ..Default::default()
                })
        });
    Node {
        status,
        cluster,
        member,
        this,
    }
}

fn is_member(n: &Node) -> bool {
    matches!(&n.cluster, Ok(c) if c.node_state == "member")
}

/// `GET /nodes/{id}`.
pub async fn page(
    State(state): State<AppState>,
    WebSession(who): WebSession,
    Path(id): Path<String>,
    Query(done): Query<DoneQuery>,
) -> Response {
    let node = load(&state, &id).await;
    let notice = super::notice(done.done.as_deref()).map(notice_box);
    render(&state, &who, &node, &id, notice).await
}

async fn render(
    state: &AppState,
    who: &Principal,
    node: &Node,
    id: &str,
    top: Option<Markup>,
) -> Response {
    let frame = Frame {
        who,
        nav: Nav::Other,
        cluster: super::cluster_badge(&node.cluster),
    };
    let Some(m) = &node.member else {
        let body = html! {
            @if let Err(e) = &node.cluster {
                (error_box("Cannot read the cluster's state from applianced.", e.message(), "Reload the page in a moment."))
            } @else {
                (error_box("No such appliance.", &format!("no member has the id or hostname {id}"),
                    "It may have been removed; go back to the dashboard."))
            }
            p { a href="/" { "← Dashboard" } }
        };
        return (StatusCode::NOT_FOUND, app_page("Appliance", &frame, body)).into_response();
    };
    let local = if node.this {
        Some(local_parts(state, who, &m.node_id).await)
    } else {
        None
    };
    let title = format!("Appliance {}", m.hostname);
    app_page(
        &title,
        &frame,
        html! {
            @if let Some(t) = top { (t) }
            div.grid2 {
                section.panel {
                    h2 { "Identity" }
                    dl.facts {
                        dt { "Hostname" } dd { (m.hostname)
                            @if m.this_node { " " span.tag.this { "this node" } }
                            @if m.authority { " " span.tag.authority { "authority" } } }
                        dt { "Node id" } dd.mono { (m.node_id) }
                        dt { "Addresses" } dd { @for a in &m.addresses { span.mono { (a) } " " } }
                        dt { "Roles" } dd { (view::describe_roles(&m.roles)) }
                        dt { "State" } dd { (light(member_tone(&m.state), &m.state)) }
                        dt { "Version" } dd { (m.version) }
                        @if !m.fingerprint.is_empty() {
                            dt { "Peer certificate" } dd.mono.small { (m.fingerprint) }
                        }
                        @if node.this {
                            @if let Ok(s) = &node.status {
                                dt { "Up" } dd { (view::ago(s.uptime_ms)) " · " (s.mode)
                                    " · " (if s.ready { "ready" } else { "not ready" }) }
                            }
                        }
                    }
                }
                (changes(who, node, m))
            }
            @match local {
                Some(parts) => (parts),
                None => div.alert.info {
                    strong { "Services, firewall and logs are shown by each appliance's own management page." }
                    p { "This page is served by "
                        (node.status.as_ref().map(|s| s.hostname.as_str()).unwrap_or("another node"))
                        ", which does not read another member's services, firewall or log. Open "
                        @for (i, a) in m.addresses.iter().enumerate() {
                            @if i > 0 { " or " }
                            span.mono { "https://" (host_of(a)) ":8443/" }
                        }
                        " to see them (the default management port)." }
                },
            }
        },
    )
    .into_response()
}

/// An address without its prefix length, bracketed when IPv6.
fn host_of(address: &str) -> String {
    let ip = address.split('/').next().unwrap_or(address);
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

fn changes(who: &Principal, node: &Node, m: &ClusterMember) -> Markup {
    let has = |r: &str| m.roles.iter().any(|x| x == r);
    html! {
        section.panel #changes {
            h2 { "Roles and membership" }
            @if !is_member(node) {
                p.muted { "This appliance is not in a cluster: roles and membership change once it is." }
            } @else if !who.can_change() {
                p.muted { "Only an administrator can change roles or remove an appliance." }
            } @else {
                form.stack method="post" action={ "/nodes/" (m.node_id) "/roles" } {
                    (csrf(who))
                    div.checks {
                        label { input type="checkbox" name="frontend" value="frontend" checked[has("frontend")]; "Front-end" }
                        label { input type="checkbox" name="backend" value="backend" checked[has("backend")]; "Back-end" }
                    }
                    div.actions { button.secondary type="submit" { "Change roles…" } }
                }
                h3 { "Remove" }
                p.muted.small { "Drains the appliance, removes it from the cluster and revokes its certificates." }
                form method="post" action={ "/nodes/" (m.node_id) "/remove" } {
                    (csrf(who))
                    button.danger type="submit" { "Remove appliance…" }
                }
            }
        }
    }
}

/// Services, firewall and log of the node serving the page.
async fn local_parts(state: &AppState, who: &Principal, id: &str) -> Markup {
    let mut n1 = state.backend().node();
    let mut n2 = n1.clone();
    let mut n3 = n1.clone();
    let (services, firewall, logs) = tokio::join!(
        async {
            n1.list_services(ListServicesRequest {})
                .await
                .map(|r| r.into_inner().services)
        },
        async {
            n2.show_firewall(ShowFirewallRequest {})
                .await
                .map(|r| r.into_inner())
        },
        async {
            let request = LogsRequest {
                lines: LOG_LINES,
                service: String::new(),
            };
            n3.logs(request).await.map(|r| r.into_inner().lines)
        },
    );
    html! {
        (services_panel(who, id, &services))
        (firewall_panel(&firewall))
        section.panel #logs {
            h2 { "Recent log" span.muted.small { "last " (LOG_LINES) " lines" } }
            @match &logs {
                Err(e) => p.muted { "The log cannot be read: " (e.message()) },
                Ok(lines) if lines.is_empty() => p.muted { "The log is empty." },
                Ok(lines) => pre.logs { (lines.join("\n")) },
            }
        }
    }
}

fn services_panel(
    who: &Principal,
    id: &str,
    services: &Result<Vec<ServiceInfo>, tonic::Status>,
) -> Markup {
    html! {
        section.panel #services {
            h2 { "Services" }
            @match services {
                Err(e) => p.muted { "The services cannot be listed: " (e.message()) },
                Ok(list) if list.is_empty() => p.muted { "No service is placed on this node." },
                Ok(list) => div.table-wrap { table {
                    thead { tr { th { "Service" } th { "Health" } th.wide-only { "Role" }
                        th.num.wide-only { "PID" } th.num { "Restarts" } th.wide-only { "Since (UTC)" } th.wide-only { "Ports" } th {} } }
                    tbody { @for s in list {
                        @let h = service_health(s);
                        tr {
                            td { strong { (s.name) } }
                            td { (light(h.tone, &h.reason)) }
                            td.wide-only { (view::describe_roles(std::slice::from_ref(&s.role))) }
                            td.num.wide-only { @if s.pid > 0 { (s.pid) } }
                            td.num { (s.restarts) }
                            td.wide-only.mono.small.nowrap { (view::utc(s.since_unix_ms)) }
                            td.wide-only.mono.small { (s.ports.join(", ")) }
                            td { @if who.can_change() {
                                form.inline method="post" action={ "/nodes/" (id) "/restart" } {
                                    (csrf(who))
                                    input type="hidden" name="service" value=(s.name);
                                    button.small.secondary type="submit" { "Restart" }
                                }
                            } }
                        }
                    } }
                } },
            }
        }
    }
}

fn firewall_panel(firewall: &Result<FirewallReply, tonic::Status>) -> Markup {
    html! {
        section.panel #firewall {
            h2 { "Firewall" }
            @match firewall {
                Err(e) => p.muted { "The firewall cannot be read: " (e.message()) },
                Ok(fw) => {
                    div.table-wrap { table {
                        thead { tr { th { "Chain" } th { "Rule" } th.num { "Packets" } th.num { "Bytes" } } }
                        tbody { @for r in &fw.rules {
                            tr { td { (r.chain) } td.mono.small { (r.text) }
                                 td.num { (r.packets) } td.num { (view::bytes(r.bytes)) } }
                        } }
                    } }
                    @if !fw.sets.is_empty() {
                        h3 { "Sets" }
                        dl.facts { @for s in &fw.sets {
                            dt { (s.name) }
                            dd.mono.small { @if s.elements.is_empty() { span.muted { "(empty)" } } @else { (s.elements.join(", ")) } }
                        } }
                    }
                }
            }
        }
    }
}

/// The roles form; without `confirm` it asks first.
#[derive(Debug, Default, Deserialize)]
pub struct RolesForm {
    #[serde(default)]
    pub csrf: String,
    pub frontend: Option<String>,
    pub backend: Option<String>,
    pub confirm: Option<String>,
}

/// `POST /nodes/{id}/roles`: confirmation, then `ClusterSetRoles`.
pub async fn set_roles(
    State(state): State<AppState>,
    AdminSession(who): AdminSession,
    Path(id): Path<String>,
    Form(form): Form<RolesForm>,
) -> Response {
    if let Err(refused) = check_csrf(&who, &form.csrf) {
        return refused;
    }
    let node = load(&state, &id).await;
    let Some(m) = node.member.clone() else {
        return render(&state, &who, &node, &id, None).await;
    };
    let roles = view::roles_from_checks(form.frontend.is_some(), form.backend.is_some());
    let detail = format!(
        "{} from {} to {}",
        m.hostname,
        view::describe_roles(&m.roles),
        view::describe_roles(&roles)
    );
    if form.confirm.as_deref() != Some("yes") {
        let frame = Frame {
            who: &who,
            nav: Nav::Other,
            cluster: super::cluster_badge(&node.cluster),
        };
        return app_page(
            "Change roles: confirm",
            &frame,
            html! {
                section.panel {
                    h2 { "What will change" }
                    p { strong { (m.hostname) } " goes from " strong { (view::describe_roles(&m.roles)) }
                        " to " strong { (view::describe_roles(&roles)) } "." }
                    p.muted { "Services of a role it loses stop on it; services of a role it gains are placed on it. \
                               The placement rules are checked first: if they refuse, nothing changes." }
                    form.stack method="post" action={ "/nodes/" (m.node_id) "/roles" } {
                        (csrf(&who))
                        @if form.frontend.is_some() { input type="hidden" name="frontend" value="on"; }
                        @if form.backend.is_some() { input type="hidden" name="backend" value="on"; }
                        input type="hidden" name="confirm" value="yes";
                        div.actions {
                            button type="submit" { "Change roles" }
                            a.button.secondary href={ "/nodes/" (m.node_id) } { "Cancel" }
                        }
                    }
                }
            },
        )
        .into_response();
    }
    let reply = state
        .backend()
        .node()
        .cluster_set_roles(ClusterSetRolesRequest {
            node: m.node_id.clone(),
            roles,
        })
        .await
        .map(|r| r.into_inner());
    super::audit_call(&state, &who, "cluster.set-roles", detail, &reply).await;
    match reply {
        Ok(r) if r.warnings.is_empty() && r.pushes.iter().all(|p| p.ok) => {
            Redirect::to(&format!("/nodes/{}?done=roles-changed", m.node_id)).into_response()
        }
        Ok(r) => {
            let node = load(&state, &m.node_id).await;
            let late: Vec<String> = r
                .pushes
                .iter()
                .filter(|p| !p.ok)
                .map(|p| format!("{}: {}", p.hostname, p.message))
                .collect();
            let top = html! {
                (notice_box("The roles were changed."))
                (warning_box("Worth knowing", &r.warnings))
                (warning_box("Members that did not take the change yet (they catch up later)", &late))
            };
            render(&state, &who, &node, &m.node_id, Some(top)).await
        }
        Err(e) => {
            let top = error_box("The roles were not changed.", e.message(),
                "Nothing changed. The message says which rule the change breaks and what to do instead.");
            let (code, page) = (
                super::http_status(&e),
                render(&state, &who, &node, &id, Some(top)).await,
            );
            (code, page).into_response()
        }
    }
}

/// The removal form; without `confirm` it asks first.
#[derive(Debug, Default, Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    pub csrf: String,
    pub confirm: Option<String>,
}

/// `POST /nodes/{id}/remove`: confirmation, then `ClusterRemove`.
pub async fn remove(
    State(state): State<AppState>,
    AdminSession(who): AdminSession,
    Path(id): Path<String>,
    Form(form): Form<RemoveForm>,
) -> Response {
    if let Err(refused) = check_csrf(&who, &form.csrf) {
        return refused;
    }
    let node = load(&state, &id).await;
    let Some(m) = node.member.clone() else {
        return render(&state, &who, &node, &id, None).await;
    };
    if form.confirm.as_deref() != Some("yes") {
        let frame = Frame {
            who: &who,
            nav: Nav::Other,
            cluster: super::cluster_badge(&node.cluster),
        };
        return app_page(
            "Remove appliance: confirm",
            &frame,
            html! {
                section.panel {
                    h2 { "What will change" }
                    p { strong { (m.hostname) } " (" (view::describe_roles(&m.roles)) ") is drained, removed from the \
                        cluster and its certificates are revoked. Its services move to the remaining members \
                        according to their roles." }
                    @if m.this_node {
                        div.alert.warn { "This is the appliance serving this page: after it leaves, sign in on another member." }
                    }
                    p.muted { "The placement rules are checked first: if they refuse, nothing changes." }
                    form.stack method="post" action={ "/nodes/" (m.node_id) "/remove" } {
                        (csrf(&who))
                        input type="hidden" name="confirm" value="yes";
                        div.actions {
                            button.danger type="submit" { "Remove " (m.hostname) }
                            a.button.secondary href={ "/nodes/" (m.node_id) } { "Cancel" }
                        }
                    }
                }
            },
        )
        .into_response();
    }
    let reply = state
        .backend()
        .node()
        .cluster_remove(ClusterRemoveRequest {
            node: m.node_id.clone(),
        })
        .await
        .map(|r| r.into_inner());
    super::audit_call(&state, &who, "cluster.remove", m.hostname.clone(), &reply).await;
    match reply {
        Ok(_) => Redirect::to("/?done=node-removed").into_response(),
        Err(e) => {
            let top = error_box("The appliance was not removed.", e.message(),
                "Nothing changed. The message says which rule the removal breaks and what to do first.");
            let (code, page) = (
                super::http_status(&e),
                render(&state, &who, &node, &id, Some(top)).await,
            );
            (code, page).into_response()
        }
    }
}

/// The restart form.
#[derive(Debug, Default, Deserialize)]
pub struct RestartForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub service: String,
}

/// `POST /nodes/{id}/restart`: restarts a service of the node serving the page.
pub async fn restart(
    State(state): State<AppState>,
    AdminSession(who): AdminSession,
    Path(id): Path<String>,
    Form(form): Form<RestartForm>,
) -> Response {
    if let Err(refused) = check_csrf(&who, &form.csrf) {
        return refused;
    }
    let node = load(&state, &id).await;
    if !node.this {
        let top = error_box(
            "Not restarted.",
            "services can be restarted only on the node serving this page",
            "Open the appliance's own management page to restart its services.",
        );
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            render(&state, &who, &node, &id, Some(top)).await,
        )
            .into_response();
    }
    let reply = state
        .backend()
        .node()
        .restart_service(RestartServiceRequest {
            name: form.service.clone(),
        })
        .await;
    super::audit_call(
        &state,
        &who,
        "service.restart",
        form.service.clone(),
        &reply,
    )
    .await;
    match reply {
        Ok(_) => Redirect::to(&format!("/nodes/{id}?done=restarted#services")).into_response(),
        Err(e) => {
            let top = error_box(
                &format!("{} was not restarted.", form.service),
                e.message(),
                "Check the service's last error below and the log, then try again.",
            );
            (
                super::http_status(&e),
                render(&state, &who, &node, &id, Some(top)).await,
            )
                .into_response()
        }
    }
}
