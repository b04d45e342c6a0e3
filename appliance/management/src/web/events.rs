//! `/events`: the cluster's audit trail, newest first, a page at a time
//! (`?before=<seq>` for older ones).
//!
//! `ListEvents` gives the newest `limit` events after a sequence number, at
//! most 1000 in one listing; an older page asks for everything from its
//! first event on and keeps the page, so the pages reach back 1000 events
//! from the newest.

use appliance_api::v1::{AuditEvent, ListEventsRequest};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{app_page, error_box, Frame, Nav};
use super::view;
use crate::auth::web::WebSession;
use crate::state::AppState;

/// Events on a page.
pub const PAGE: u64 = 50;
/// The most one listing returns (the trail's cap).
const LISTING_MAX: u32 = 1000;

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
            @if events.is_empty() {
                p.muted { "No events." }
            } @else {
                (table(&events))
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

fn table(events: &[AuditEvent]) -> Markup {
    html! {
        div.table-wrap { table #events {
            thead { tr {
                th.num { "#" } th { "When (UTC)" } th { "Who" } th { "Source" } th.wide-only { "Node" }
                th { "Action" } th { "Detail" } th { "Result" }
            } }
            tbody { @for e in events {
                tr {
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
            } }
        } }
    }
}

#[cfg(test)]
mod tests;
