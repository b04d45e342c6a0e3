//! Add appliance: the discovered appliances (or an address typed in), the
//! join code and the roles (`/add`); a confirmation saying what will
//! change (`/add/confirm`); then the join itself (`/add/start`), which runs
//! here in a task while the browser watches its steps arrive as
//! server-sent events (`/add/progress/{id}` and its `/events`), until the
//! new member is active or the join failed with what to do next.
//!
//! Running and recent adds live in memory ([`Runs`]), keyed by a random
//! id, at most [`MAX_RUNS`]; a finished one is forgotten after
//! [`KEEP_FINISHED`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use appliance_api::v1::{
    ClusterAddEvent, ClusterAddRequest, ClusterDiscoveredRequest, ClusterFormRequest,
    DiscoveredAppliance, ListServicesRequest,
};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use futures::{Stream, StreamExt};
use maud::{html, Markup};
use rand::RngCore;
use serde::Deserialize;
use tokio::sync::watch;

use super::layout::{app_page, csrf, error_box, light, Frame, Nav};
use super::view::{self, Tone};
use crate::auth::web::{check_csrf, AdminSession, WebSession};
use crate::auth::Principal;
use crate::state::AppState;

/// Adds kept at once (running or recently finished).
pub const MAX_RUNS: usize = 16;
/// How long a finished add stays viewable.
pub const KEEP_FINISHED: Duration = Duration::from_secs(30 * 60);
/// The longest an add may take, from the request to the new member being
/// active.
pub const ADD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long to wait, after a successful join, for the member to be active.
pub const ACTIVE_WAIT: Duration = Duration::from_secs(90);

/// One step of an add as the browser sees it.
#[derive(Debug, Clone)]
pub struct Step {
    /// ClusterAdd's kind, or `active` / `waiting` / `error` from here.
    pub kind: String,
    pub message: String,
    pub details: Vec<String>,
    pub elapsed_ms: u64,
    pub tone: Tone,
}

/// How an add ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// True when the appliance joined.
    pub ok: bool,
    /// Why it did not (applianced's words), or what is still pending.
    pub reason: String,
    /// What to do next; empty when there is nothing to do.
    pub next: String,
}

/// An add in progress or finished.
pub struct Run {
    /// Who started it.
    pub actor: String,
    /// The address and roles asked for.
    pub address: String,
    pub roles: Vec<String>,
    started: Instant,
    steps: Mutex<Vec<Step>>,
    /// How it ended, once it has.
    outcome: Mutex<Option<Outcome>>,
    /// Bumped at every step and at the end, so watchers wake up.
    changed: watch::Sender<u64>,
}

impl Run {
    fn steps(&self) -> MutexGuard<'_, Vec<Step>> {
        self.steps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, step: Step) {
        self.steps().push(step);
        self.changed.send_modify(|n| *n += 1);
    }

    fn finish(&self, ok: bool, reason: String, next: String) {
        let outcome = Outcome { ok, reason, next };
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        self.changed.send_modify(|n| *n += 1);
    }

    /// How it ended, or `None` while it runs.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The adds of this server, bounded.
#[derive(Default)]
pub struct Runs {
    map: Mutex<HashMap<String, (Instant, Arc<Run>)>>,
}

impl Runs {
    /// An empty registry to share between handlers.
    pub fn shared() -> Arc<Runs> {
        Arc::new(Runs::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Instant, Arc<Run>)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new run under a fresh id; `None` when [`MAX_RUNS`] are
    /// still running or recent.
    fn insert(&self, run: Arc<Run>) -> Option<String> {
        let mut map = self.lock();
        map.retain(|_, (at, r)| r.outcome().is_none() || at.elapsed() < KEEP_FINISHED);
        if map.len() >= MAX_RUNS {
            // Make room by forgetting the oldest finished run, never a running one.
            let oldest = map
                .iter()
                .filter(|(_, (_, r))| r.outcome().is_some())
                .min_by_key(|(_, (at, _))| *at)
                .map(|(id, _)| id.clone())?;
            map.remove(&oldest);
        }
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        map.insert(id.clone(), (Instant::now(), run));
        Some(id)
    }

    /// The run `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Run>> {
        self.lock().get(id).map(|(_, r)| r.clone())
    }

    /// How many runs are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What `/add` may be opened with: a discovered appliance's "Add…" link.
#[derive(Debug, Default, Deserialize)]
pub struct Prefill {
    pub address: Option<String>,
    pub hostname: Option<String>,
}

/// The add form (and the confirmation's hidden copy of it).
#[derive(Debug, Default, Deserialize)]
pub struct AddForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub code: String,
    pub frontend: Option<String>,
    pub backend: Option<String>,
}

impl AddForm {
    fn roles(&self) -> Vec<String> {
        view::roles_from_checks(self.frontend.is_some(), self.backend.is_some())
    }

    /// What is missing, one sentence each.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.address.trim().is_empty() {
            p.push("Type the appliance's address (or pick a discovered one).".to_string());
        }
        if self.code.trim().is_empty() {
            p.push("Type the join code that the new appliance's console shows.".to_string());
        }
        if self.roles().is_empty() {
            p.push("Choose front-end, back-end or both.".to_string());
        }
        p
    }

    /// "node X at 10.0.0.3" or "the appliance at 10.0.0.3".
    fn who(&self) -> String {
        match self.hostname.trim() {
            "" => format!("the appliance at {}", self.address.trim()),
            h => format!("{h} at {}", self.address.trim()),
        }
    }
}

async fn discovered(state: &AppState) -> Result<Vec<DiscoveredAppliance>, tonic::Status> {
    Ok(state
        .backend()
        .node()
        .cluster_discovered(ClusterDiscoveredRequest {})
        .await?
        .into_inner()
        .appliances)
}

/// `GET /add`: discovered appliances and the form.
pub async fn page(
    State(state): State<AppState>,
    WebSession(who): WebSession,
    Query(prefill): Query<Prefill>,
) -> Markup {
    let form = AddForm {
        address: prefill.address.unwrap_or_default(),
        hostname: prefill.hostname.unwrap_or_default(),
        frontend: Some("on".into()),
        ..AddForm::default()
    };
    form_page(&state, &who, &form, None).await
}

async fn form_page(
    state: &AppState,
    who: &Principal,
    form: &AddForm,
    problem: Option<Markup>,
) -> Markup {
    let (cluster, found) = tokio::join!(super::cluster_status(state), discovered(state));
    let member = matches!(&cluster, Ok(c) if c.node_state == "member");
    let frame = Frame {
        who,
        nav: Nav::Add,
        cluster: super::cluster_badge(&cluster),
    };
    app_page(
        "Add appliance",
        &frame,
        html! {
            @if let Some(p) = problem { (p) }
            @if let Ok(c) = &cluster {
                @if c.node_state != "member" {
                    (not_member(who, &c.node_state))
                }
            }
            section.panel #discovered {
                h2 { "Discovered on the network" }
                @match &found {
                    Err(e) => p.muted { "Discovery cannot be read: " (e.message()) },
                    Ok(list) if list.is_empty() => p.muted {
                        "No appliance is announcing itself right now. A new appliance announces itself \
                         while it waits to be joined; you can also type its address below." },
                    Ok(list) => div.table-wrap { table {
                        thead { tr { th { "Appliance" } th { "Addresses" } th.wide-only { "Version" }
                            th.wide-only { "Certificate fingerprint" } th { "Last seen" } th {} } }
                        tbody { @for a in list {
                            @let address = a.addresses.first().cloned().unwrap_or_else(|| a.source.clone());
                            tr {
                                td { strong { (a.hostname) } }
                                td { @for addr in &a.addresses { span.mono { (addr) } br; } }
                                td.wide-only { (a.version) }
                                td.wide-only.mono.small { (a.fingerprint) }
                                td { (view::ago(a.last_seen_ms_ago)) " ago" }
                                td { @if who.can_change() && member {
                                    a.button.small.secondary href={ "/add?address=" (urlencode(&address))
                                        "&hostname=" (urlencode(&a.hostname)) "#add-form" } { "Add…" }
                                } }
                            }
                        } }
                    } },
                }
            }
            @if who.can_change() && member {
                (add_form(who, form))
            } @else if !who.can_change() {
                p.muted { "Only an administrator can add appliances." }
            }
        },
    )
}

fn not_member(who: &Principal, node_state: &str) -> Markup {
    html! {
        div.alert.info {
            strong { "This appliance is not in a cluster (" (node_state) ")." }
            p { "Appliances are added from a cluster member. Make this one the first member of a \
                 new cluster (it becomes front-end, back-end and the cluster's authority), then \
                 add the others here; or add this one from an existing cluster's page with the \
                 join code its console shows." }
            @if who.can_change() && node_state == "unjoined" {
                form.inline method="post" action="/add/form" {
                    (csrf(who))
                    button type="submit" { "Form a cluster with this appliance" }
                }
            }
        }
    }
}

fn add_form(who: &Principal, form: &AddForm) -> Markup {
    html! {
        section.panel #add-form {
            h2 { "Add an appliance" }
            form.stack method="post" action="/add/confirm" {
                (csrf(who))
                input type="hidden" name="hostname" value=(form.hostname);
                label { "Address"
                    span.hint { "Its IP address, optionally with the peer port (10.0.0.3, 10.0.0.3:7443, [fd00::3]:7443)." }
                    input type="text" name="address" value=(form.address) required autocomplete="off" spellcheck="false";
                }
                label { "Join code"
                    span.hint { "Shown on the new appliance's console while it waits to be joined; dashes, spaces and case do not matter." }
                    input type="text" name="code" value=(form.code) required autocomplete="off" spellcheck="false"
                        autofocus[!form.address.is_empty()];
                }
                fieldset.checks {
                    legend.hint { "Roles" }
                    label { input type="checkbox" name="frontend" value="frontend" checked[form.frontend.is_some()]; "Front-end" }
                    label { input type="checkbox" name="backend" value="backend" checked[form.backend.is_some()]; "Back-end" }
                }
                div.actions { button type="submit" { "Continue…" } }
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    crate::auth::web::encode_component(s)
}

/// `POST /add/confirm`: says what will change and asks to go ahead.
pub async fn confirm(
    State(state): State<AppState>,
    AdminSession(who): AdminSession,
    Form(form): Form<AddForm>,
) -> Response {
    if let Err(refused) = check_csrf(&who, &form.csrf) {
        return refused;
    }
    let problems = form.problems();
    if !problems.is_empty() {
        let boxed = error_box(
            "The appliance cannot be added yet.",
            &problems.join(" "),
            "",
        );
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            form_page(&state, &who, &form, Some(boxed)).await,
        )
            .into_response();
    }
    let (cluster, services) = tokio::join!(super::cluster_status(&state), async {
        state
            .backend()
            .node()
            .list_services(ListServicesRequest {})
            .await
            .map(|r| r.into_inner().services)
    });
    let roles = form.roles();
    // The services each role runs, as this node knows them from its own placement.
    let placed: Vec<String> = services
        .as_ref()
        .map(|list| {
            list.iter()
                .filter(|s| roles.contains(&s.role))
                .map(|s| s.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let members = cluster.as_ref().map(|c| c.members.len()).unwrap_or(0);
    let frame = Frame {
        who: &who,
        nav: Nav::Add,
        cluster: super::cluster_badge(&cluster),
    };
    app_page(
        "Add appliance: confirm",
        &frame,
        html! {
            section.panel {
                h2 { "What will change" }
                ul {
                    li { strong { (form.who()) } " joins the cluster as "
                         strong { (view::describe_roles(&roles)) } "." }
                    li { @if placed.is_empty() {
                            "The " (view::describe_roles(&roles)) " services will be placed on it."
                         } @else {
                            "Services that will be placed on it: "
                            @for (i, s) in placed.iter().enumerate() {
                                @if i > 0 { ", " } span.mono { (s) }
                            } "."
                         } }
                    li { "The cluster goes from " (members) " to " (members + 1) " members; every member gets the new configuration." }
                    li { "First the cluster checks the appliance (preflight): if any check fails, nothing changes." }
                }
                form.stack method="post" action="/add/start" {
                    (csrf(&who))
                    input type="hidden" name="address" value=(form.address.trim());
                    input type="hidden" name="hostname" value=(form.hostname.trim());
                    input type="hidden" name="code" value=(form.code.trim());
                    @if form.frontend.is_some() { input type="hidden" name="frontend" value="on"; }
                    @if form.backend.is_some() { input type="hidden" name="backend" value="on"; }
                    div.actions {
                        button type="submit" { "Add " (form.hostname.trim()) @if form.hostname.trim().is_empty() { "the appliance" } }
                        a.button.secondary href={ "/add?address=" (urlencode(form.address.trim())) "&hostname=" (urlencode(form.hostname.trim())) } { "Back" }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `POST /add/form`: makes this node the first member of a new cluster.
pub async fn form_cluster(
    State(state): State<AppState>,
    AdminSession(who): AdminSession,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Err(refused) = check_csrf(&who, &f.csrf) {
        return refused;
    }
    let reply = state
        .backend()
        .node()
        .cluster_form(ClusterFormRequest {
            name: String::new(),
        })
        .await;
    super::audit_call(
        &state,
        &who,
        "cluster.form",
        "this node forms a new cluster".into(),
        &reply,
    )
    .await;
    match reply {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => {
            let boxed = error_box("The cluster was not formed.", e.message(),
                "Nothing changed. Fix what the message says (for example configure an address), then try again.");
            (
                super::http_status(&e),
                form_page(&state, &who, &AddForm::default(), Some(boxed)).await,
            )
                .into_response()
        }
    }
}

/// A form with only its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /add/start`: starts the join and sends the browser to its progress.
pub async fn start(
    State(state): State<AppState>,
    Extension(runs): Extension<Arc<Runs>>,
    AdminSession(who): AdminSession,
    Form(form): Form<AddForm>,
) -> Response {
    if let Err(refused) = check_csrf(&who, &form.csrf) {
        return refused;
    }
    let problems = form.problems();
    if !problems.is_empty() {
        let boxed = error_box(
            "The appliance cannot be added yet.",
            &problems.join(" "),
            "",
        );
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            form_page(&state, &who, &form, Some(boxed)).await,
        )
            .into_response();
    }
    let (tx, _) = watch::channel(0);
    let run = Arc::new(Run {
        actor: who.name.clone(),
        address: form.address.trim().to_string(),
        roles: form.roles(),
        started: Instant::now(),
        steps: Mutex::new(Vec::new()),
        outcome: Mutex::new(None),
        changed: tx,
    });
    let Some(id) = runs.insert(run.clone()) else {
        let boxed = error_box(
            "Too many adds are running.",
            &format!("{MAX_RUNS} adds are in progress on this server."),
            "Wait for one of them to finish, then try again.",
        );
        return (
            StatusCode::TOO_MANY_REQUESTS,
            form_page(&state, &who, &form, Some(boxed)).await,
        )
            .into_response();
    };
    let request = ClusterAddRequest {
        address: run.address.clone(),
        code: form.code.trim().to_string(),
        roles: run.roles.clone(),
    };
    let hostname = form.hostname.trim().to_string();
    tokio::spawn(async move {
        let work = drive(&state, &who, &run, request, hostname);
        if tokio::time::timeout(ADD_TIMEOUT, work).await.is_err() {
            run.push(Step {
                kind: "error".into(),
                message: format!(
                    "no answer after {} s; stopped watching",
                    ADD_TIMEOUT.as_secs()
                ),
                details: Vec::new(),
                elapsed_ms: run.elapsed_ms(),
                tone: Tone::Red,
            });
            run.finish(
                false,
                format!("no answer after {} s", ADD_TIMEOUT.as_secs()),
                "Look at the dashboard and the events to see whether it joined.".into(),
            );
        }
    });
    Redirect::to(&format!("/add/progress/{id}")).into_response()
}

fn tone_of(e: &ClusterAddEvent) -> Tone {
    match e.kind.as_str() {
        "preflight_failed" | "failed" => Tone::Red,
        "push_failed" => Tone::Amber,
        "preflight_passed" | "added" | "done" => Tone::Green,
        _ => Tone::Grey,
    }
}

/// What to do after a failed add, from the step that failed.
fn next_after_failure(kind: &str) -> &'static str {
    match kind {
        "preflight_failed" => {
            "Nothing changed in the cluster. Fix each failed check listed above (a placement \
             refusal names the roles to choose instead), then add the appliance again."
        }
        // Failed after the preflight, before both sides proved the code.
        "preflight_passed" => {
            "Nothing changed in the cluster. Read the join code again from the new appliance's \
             console (it shows a new one when it expires or after too many wrong tries) and add \
             the appliance again with it."
        }
        "connecting" | "facts" | "" => {
            "Nothing changed in the cluster. Check the address, that the appliance is on and \
             waiting to be joined, that its peer port is reachable from this node, and that \
             the join code is the one its console shows now (codes expire), then try again."
        }
        _ => {
            "Nothing changed in the cluster unless a step above says it joined. Read the step \
             that failed, fix it, then add the appliance again."
        }
    }
}

/// Runs the join and records it; then waits for the member to be active.
async fn drive(
    state: &AppState,
    who: &Principal,
    run: &Run,
    request: ClusterAddRequest,
    hostname: String,
) {
    let detail_of = |hostname: &str| {
        let name = if hostname.is_empty() {
            String::new()
        } else {
            format!("{hostname} ")
        };
        format!(
            "{name}at {} as {}",
            run.address,
            view::describe_roles(&run.roles)
        )
    };
    let mut node_name = hostname;
    let mut last_kind = String::new();
    let mut refused = false;
    let mut final_event: Option<ClusterAddEvent> = None;
    match state.backend().node().cluster_add(request).await {
        Err(e) => {
            run.push(Step {
                kind: "error".into(),
                message: e.message().to_string(),
                details: Vec::new(),
                elapsed_ms: run.elapsed_ms(),
                tone: Tone::Red,
            });
            refused = super::result_of(&e) == "refused";
        }
        Ok(stream) => {
            let mut stream = stream.into_inner();
            loop {
                match stream.next().await {
                    Some(Ok(e)) => {
                        if !e.hostname.is_empty() && node_name.is_empty() {
                            node_name = e.hostname.clone();
                        }
                        refused |= e.kind == "preflight_failed";
                        if !e.r#final {
                            last_kind = e.kind.clone();
                        }
                        // A final failure is said once, in the outcome's alert.
                        if !e.r#final || e.ok {
                            run.push(Step {
                                kind: e.kind.clone(),
                                message: e.message.clone(),
                                details: e.details.clone(),
                                elapsed_ms: e.elapsed_ms,
                                tone: tone_of(&e),
                            });
                        }
                        if e.r#final {
                            final_event = Some(e);
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        run.push(Step {
                            kind: "error".into(),
                            message: format!("the progress stream broke: {}", e.message()),
                            details: Vec::new(),
                            elapsed_ms: run.elapsed_ms(),
                            tone: Tone::Red,
                        });
                        break;
                    }
                    None => {
                        run.push(Step {
                            kind: "error".into(),
                            message: "applianced ended the progress without a final step".into(),
                            details: Vec::new(),
                            elapsed_ms: run.elapsed_ms(),
                            tone: Tone::Red,
                        });
                        break;
                    }
                }
            }
        }
    }
    let joined = final_event.as_ref().is_some_and(|e| e.ok);
    let detail = detail_of(&node_name);
    if joined {
        super::audit(state, who, "cluster.add", detail, Ok(())).await;
    } else {
        let reason = match &final_event {
            Some(e) if e.details.is_empty() => e.message.clone(),
            Some(e) => format!("{}: {}", e.message, e.details.join("; ")),
            None => run
                .steps()
                .last()
                .map(|s| s.message.clone())
                .unwrap_or_default(),
        };
        let result = if refused { "refused" } else { "failed" };
        super::audit(
            state,
            who,
            "cluster.add",
            detail,
            Err((result, reason.clone())),
        )
        .await;
        run.finish(false, reason, next_after_failure(&last_kind).to_string());
        return;
    }
    let node_id = final_event.map(|e| e.node_id).unwrap_or_default();
    wait_active(state, run, &node_id, &node_name).await;
}

/// After the join: polls the cluster until the member is active (its
/// services healthy), at most [`ACTIVE_WAIT`].
async fn wait_active(state: &AppState, run: &Run, node_id: &str, name: &str) {
    let name = if name.is_empty() {
        "the new member"
    } else {
        name
    };
    run.push(Step {
        kind: "waiting".into(),
        message: format!("waiting for {name} to become active (its services healthy)"),
        details: Vec::new(),
        elapsed_ms: run.elapsed_ms(),
        tone: Tone::Grey,
    });
    let deadline = Instant::now() + ACTIVE_WAIT;
    let mut last_state = String::new();
    while Instant::now() < deadline {
        if let Ok(c) = super::cluster_status(state).await {
            if let Some(m) = c.members.iter().find(|m| m.node_id == node_id) {
                last_state = m.state.clone();
                if m.state == "active" {
                    run.push(Step {
                        kind: "active".into(),
                        message: format!("{} is active in the cluster", m.hostname),
                        details: Vec::new(),
                        elapsed_ms: run.elapsed_ms(),
                        tone: Tone::Green,
                    });
                    run.finish(true, String::new(), String::new());
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let state_word = if last_state.is_empty() {
        "unknown".to_string()
    } else {
        last_state
    };
    run.push(Step {
        kind: "waiting".into(),
        message: format!(
            "{name} joined but is not active after {} s (state: {state_word})",
            ACTIVE_WAIT.as_secs()
        ),
        details: Vec::new(),
        elapsed_ms: run.elapsed_ms(),
        tone: Tone::Amber,
    });
    run.finish(
        true,
        format!("{name} is not active yet (state: {state_word})"),
        "Open its page from the dashboard to see which service is not healthy yet; it turns \
         active once they are."
            .to_string(),
    );
}

fn step_markup(s: &Step) -> Markup {
    html! {
        span.when { (format!("{:.1} s", s.elapsed_ms as f64 / 1000.0)) }
        div {
            (light(s.tone, &s.message))
            @if !s.details.is_empty() {
                ul.details { @for d in &s.details { li { (d) } } }
            }
        }
    }
}

fn outcome_markup(run: &Run) -> Markup {
    let Some(o) = run.outcome() else {
        return html! {};
    };
    match o.ok {
        true if o.next.is_empty() => html! {
            div.alert.ok role="status" { strong { "The appliance joined the cluster and is active." }
                p { a href="/" { "Back to the dashboard" } } }
        },
        true => html! {
            div.alert.warn role="status" { strong { "The appliance joined the cluster." }
                p { (o.reason) "." } p { (o.next) }
                p { a href="/" { "Back to the dashboard" } } }
        },
        false => html! {
            // An alert: the one thing on the page to read now.
            div.alert.error role="alert" { strong { "The appliance was not added." }
                p.verbatim { (o.reason) } p.next { (o.next) }
                p { a href="/add" { "Add appliance" } " · " a href="/events" { "Events" } } }
        },
    }
}

/// `GET /add/progress/{id}`: the steps so far; the script follows the rest.
pub async fn progress(
    State(state): State<AppState>,
    Extension(runs): Extension<Arc<Runs>>,
    WebSession(who): WebSession,
    Path(id): Path<String>,
) -> Response {
    let cluster = super::cluster_status(&state).await;
    let frame = Frame {
        who: &who,
        nav: Nav::Add,
        cluster: super::cluster_badge(&cluster),
    };
    let Some(run) = runs.get(&id) else {
        let body = app_page(
            "Add appliance: progress",
            &frame,
            html! {
                (error_box("No such add on this server.", &format!("add {id} is unknown or finished long ago"),
                    "See the events for how it ended."))
            },
        );
        return (StatusCode::NOT_FOUND, body).into_response();
    };
    let steps = run.steps().clone();
    let finished = run.outcome().is_some();
    app_page(
        "Add appliance: progress",
        &frame,
        html! {
            @if !finished {
                noscript { meta http-equiv="refresh" content="2"; }
            }
            section.panel {
                h2 { "Adding " (run.address) " as " (view::describe_roles(&run.roles)) }
                p.muted.small { "Started by " (run.actor) ". Each step appears as it happens." }
                @if finished {
                    ol.steps #steps { @for s in &steps { li { (step_markup(s)) } } }
                } @else {
                    ol.steps #steps data-events={ "/add/progress/" (id) "/events" } data-count=(steps.len()) {
                        @for s in &steps { li { (step_markup(s)) } }
                    }
                    p #progress-waiting { span.spinner aria-hidden="true" {} " In progress…" }
                }
                div #progress-outcome { (outcome_markup(&run)) }
            }
        },
    )
    .into_response()
}

/// Where the browser's event stream starts.
#[derive(Debug, Default, Deserialize)]
pub struct After {
    #[serde(default)]
    pub after: usize,
}

/// `GET /add/progress/{id}/events`: the steps after `after`, as
/// server-sent events (`step` with `{html}`, then `end` with `{outcome}`).
pub async fn progress_events(
    Extension(runs): Extension<Arc<Runs>>,
    WebSession(_): WebSession,
    Path(id): Path<String>,
    Query(after): Query<After>,
) -> Response {
    let Some(run) = runs.get(&id) else {
        return (StatusCode::NOT_FOUND, "no such add").into_response();
    };
    Sse::new(step_events(run, after.after))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn step_events(run: Arc<Run>, after: usize) -> impl Stream<Item = Result<Event, Infallible>> {
    let rx = run.changed.subscribe();
    futures::stream::unfold(
        (run, rx, after, false),
        |(run, mut rx, next, ended)| async move {
            if ended {
                return None;
            }
            loop {
                // Mark the current version seen before reading, so a step
                // pushed meanwhile wakes the wait below.
                rx.borrow_and_update();
                let step = run.steps().get(next).cloned();
                if let Some(step) = step {
                    let data = serde_json::json!({ "html": step_markup(&step).into_string() });
                    let event = Event::default().event("step").data(data.to_string());
                    return Some((Ok(event), (run, rx, next + 1, false)));
                }
                if run.outcome().is_some() {
                    let data = serde_json::json!({ "outcome": outcome_markup(&run).into_string(), "done": true });
                    let event = Event::default().event("end").data(data.to_string());
                    return Some((Ok(event), (run, rx, next, true)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    )
}
