//! `/events`: the cluster's audit trail, newest first, a page at a time
//! (`?before=<seq>` for older ones); `/events/stream`: the events recorded
//! from now on, as server-sent events, which the first page shows as they
//! come.
//!
//! `ListEvents` gives the newest `limit` events after a sequence number, at
//! most 1000 in one listing; an older page asks for everything from its
//! first event on and keeps the page, so the pages reach back 1000 events
//! from the newest.

use appliance_api::v1::{AuditEvent, ListEventsRequest};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::Stream;
use maud::{html, Markup};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::layout::{app_page, error_box, Frame, Nav};
use super::view;
use crate::auth::web::WebSession;
use crate::state::AppState;

/// Events on a page.
pub const PAGE: u64 = 50;
/// The most one listing returns (the trail's cap).
const LISTING_MAX: u32 = 1000;
/// How often a live stream asks for new events.
pub const STREAM_POLL: Duration = Duration::from_secs(2);
/// Live streams open at once on this server (each polls applianced).
pub const MAX_STREAMS: usize = 64;

/// The permits of the live streams, shared by the handlers.
#[derive(Clone)]
pub struct Streams(Arc<Semaphore>);

impl Streams {
    /// [`MAX_STREAMS`] permits.
    pub fn shared() -> Self {
        Streams(Arc::new(Semaphore::new(MAX_STREAMS)))
    }
}

/// The page asked for.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// Show the events numbered below this one.
    pub before: Option<u64>,
}

/// Which listing a page needs: `(after_seq, limit)`.
pub fn listing_for(before: Option<u64>) -> (u64, u32) {
    match before {
        None => (0, PAGE as u32),
        // Everything from `before - PAGE` on; the trail keeps the newest
        // `limit` of them, so the page is cut out afterwards.
        Some(b) => (b.saturating_sub(PAGE + 1), LISTING_MAX),
    }
}

/// The page's events, newest first, out of a listing (oldest first).
pub fn page_of(mut listed: Vec<AuditEvent>, before: Option<u64>) -> Vec<AuditEvent> {
    if let Some(b) = before {
        listed.retain(|e| e.seq < b);
    }
    let skip = listed.len().saturating_sub(PAGE as usize);
    let mut page: Vec<AuditEvent> = listed.into_iter().skip(skip).collect();
    page.reverse();
    page
}

/// `GET /events`.
pub async fn page(
    State(state): State<AppState>,
    WebSession(who): WebSession,
    Query(q): Query<EventsQuery>,
) -> Response {
    let (after_seq, limit) = listing_for(q.before);
    let (cluster, listed) = tokio::join!(super::cluster_status(&state), async {
        state
            .backend()
            .admin()
            .list_events(ListEventsRequest { after_seq, limit })
            .await
            .map(|r| r.into_inner().events)
    });
    let frame = Frame {
        who: &who,
        nav: Nav::Events,
        cluster: super::cluster_badge(&cluster),
    };
    let events = match listed {
        Ok(listed) => page_of(listed, q.before),
        Err(e) => {
            let body = error_box("The audit trail cannot be read.", e.message(),
                "When this node is a member the trail is at the cluster's authority: check that it is reachable, then reload.");
            return (super::http_status(&e), app_page("Events", &frame, body)).into_response();
        }
    };
    // Page numbers run without gaps, so the page is short only when the
    // listing could not reach back (or the trail starts there).
    let expected = q.before.map(|b| b.saturating_sub(1).min(PAGE)).unwrap_or(0);
    let out_of_reach = q.before.is_some() && (events.len() as u64) < expected;
    let oldest = events.last().map(|e| e.seq);
    let newest_first_page = q.before.is_none();
    (StatusCode::OK, app_page("Events", &frame, html! {
        p.muted { "Every administrative action and every sign-in, cluster-wide, newest first. Times are UTC." }
        @if out_of_reach {
            div.alert.info { "Older events are kept by the trail but beyond the " (LISTING_MAX)
                " newest that one listing reaches." }
        }
        section.panel {
            @if events.is_empty() && !newest_first_page {
                p.muted { "No events." }
            } @else {
                @let newest = events.first().map(|e| e.seq).unwrap_or(0);
                (table(&events, newest_first_page.then_some(newest)))
            }
            div.pager {
                @if !newest_first_page { a.button.secondary.small href="/events" { "« Newest" } }
                @if let Some(o) = oldest {
                    @if o > 1 && !out_of_reach {
                        a.button.secondary.small href={ "/events?before=" (o) } { "Older ›" }
                    }
                }
            }
        }
    }))
        .into_response()
}

/// The events' table; `live_after` makes the page add the events recorded
/// after that number as they come.
fn table(events: &[AuditEvent], live_after: Option<u64>) -> Markup {
    html! {
        div.table-wrap { table #events {
            thead { tr {
                th.num { "#" } th { "When (UTC)" } th { "Who" } th { "Source" } th.wide-only { "Node" }
                th { "Action" } th { "Detail" } th { "Result" }
            } }
            tbody data-stream=[live_after.map(|n| format!("/events/stream?after={n}"))] {
                @for e in events { tr { (row(e)) } }
            }
        } }
    }
}

/// One event's cells.
fn row(e: &AuditEvent) -> Markup {
    html! {
        td.num.muted { (e.seq) }
        td.mono.small.nowrap { (view::utc(e.at_unix_ms)) }
        td { @if e.actor.is_empty() { span.muted { "(anonymous)" } } @else { (e.actor) } }
        td.mono.small.nowrap { (e.source) }
        td.wide-only.nowrap { (e.node) }
        td.nowrap { strong { (e.action) } }
        td { (e.detail) }
        td { span class={ "result-" (e.result) } { (e.result) }
             @if !e.reason.is_empty() { span.sub { (e.reason) } } }
    }
}

/// Where a live stream starts.
#[derive(Debug, Default, Deserialize)]
pub struct StreamQuery {
    /// The last event the client has; absent: from now on.
    pub after: Option<u64>,
}

/// `GET /events/stream`: the events recorded after `after` (or the
/// `Last-Event-ID` a reconnecting browser sends), as server-sent events
/// `audit` with `{seq, at_unix_ms, actor, source, node, action, detail,
/// result, reason, html}`, polling the trail every [`STREAM_POLL`].
pub async fn stream(
    State(state): State<AppState>,
    Extension(streams): Extension<Streams>,
    WebSession(_): WebSession,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> Response {
    let Ok(permit) = streams.0.try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live event streams; reload later",
        )
            .into_response();
    };
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let after = match resumed.or(q.after) {
        Some(n) => n,
        None => newest_seq(&state).await.unwrap_or(0),
    };
    Sse::new(live(state, after, permit))
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn newest_seq(state: &AppState) -> Result<u64, tonic::Status> {
    let request = ListEventsRequest {
        after_seq: 0,
        limit: 1,
    };
    let events = state
        .backend()
        .admin()
        .list_events(request)
        .await?
        .into_inner()
        .events;
    Ok(events.last().map(|e| e.seq).unwrap_or(0))
}

struct Live {
    state: AppState,
    after: u64,
    pending: VecDeque<AuditEvent>,
    first: bool,
    _permit: OwnedSemaphorePermit,
}

fn live(
    state: AppState,
    after: u64,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let start = Live {
        state,
        after,
        pending: VecDeque::new(),
        first: true,
        _permit: permit,
    };
    futures::stream::unfold(start, |mut l| async move {
        loop {
            if let Some(e) = l.pending.pop_front() {
                l.after = l.after.max(e.seq);
                return Some((Ok(audit_event(&e)), l));
            }
            if !l.first {
                tokio::time::sleep(STREAM_POLL).await;
            }
            l.first = false;
            let request = ListEventsRequest {
                after_seq: l.after,
                limit: 0,
            };
            match l.state.backend().admin().list_events(request).await {
                Ok(r) => l.pending.extend(r.into_inner().events),
                Err(e) => {
                    let event = Event::default()
                        .event("unavailable")
                        .data(e.message().replace('\n', " "));
                    return Some((Ok(event), l));
                }
            }
        }
    })
}

fn audit_event(e: &AuditEvent) -> Event {
    let data = serde_json::json!({
        "seq": e.seq,
        "at_unix_ms": e.at_unix_ms,
        "actor": e.actor,
        "source": e.source,
        "node": e.node,
        "action": e.action,
        "detail": e.detail,
        "result": e.result,
        "reason": e.reason,
        "html": row(e).into_string(),
    });
    Event::default()
        .event("audit")
        .id(e.seq.to_string())
        .data(data.to_string())
}

#[cfg(test)]
mod tests;
