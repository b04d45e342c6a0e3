//! The audit trail's core, independent of where it is stored: the
//! [`Event`], the [`EventLog`] seam that stores events (applianced: sled;
//! [`MemoryEventLog`] for tests), and [`EventTrail`], which numbers events
//! in one gapless, increasing sequence, keeps at most a given number of the
//! newest, and caps the length of every text field.
//!
//! The cluster's authority keeps the cluster's trail
//! ([`crate::Authority::record_event`]); a node that is not a member keeps
//! its own with the same type.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::HookError;

/// The longest text field of an event, in bytes. Longer fields are not
/// refused: they are cut (at a character boundary) and end with
/// [`TRUNCATED`], so that an event is always recorded.
pub const MAX_FIELD_BYTES: usize = 1024;
/// What a cut field ends with.
pub const TRUNCATED: &str = "…[truncated]";
/// The most events one listing returns; a limit of 0 means [`DEFAULT_LIST_LIMIT`].
pub const MAX_LIST_LIMIT: u32 = 1000;
/// The events a listing returns when no limit is given.
pub const DEFAULT_LIST_LIMIT: u32 = 200;
/// How many events the cluster's authority keeps (the oldest go first).
pub const AUTHORITY_EVENTS_KEPT: u64 = 100_000;
/// How many events a node that is not a member keeps.
pub const LOCAL_EVENTS_KEPT: u64 = 10_000;

/// One audit event (the peer protocol's and the trail's; applianced maps it
/// to and from the management API's `AuditEvent`, field for field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Assigned by the trail: increasing, without gaps.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch (the trail's clock when 0).
    pub at_unix_ms: u64,
    /// The account, or "" for an anonymous attempt.
    pub actor: String,
    /// The client's address.
    pub source: String,
    /// The node that recorded it.
    pub node: String,
    /// What was done ("sign-in", "account.add", ...).
    pub action: String,
    /// Its object and parameters, one line.
    pub detail: String,
    /// "ok", "refused" or "failed".
    pub result: String,
    /// Why, when not ok.
    pub reason: String,
}

impl Event {
    /// The event with every text field on one line (control characters
    /// become spaces) and at most [`MAX_FIELD_BYTES`] long.
    pub fn bounded(mut self) -> Event {
        for f in [
            &mut self.actor,
            &mut self.source,
            &mut self.node,
            &mut self.action,
            &mut self.detail,
            &mut self.result,
            &mut self.reason,
        ] {
            *f = bound_field(f);
        }
        self
    }
}

impl From<crate::pb::Event> for Event {
    fn from(e: crate::pb::Event) -> Self {
        Event {
            seq: e.seq,
            at_unix_ms: e.at_unix_ms,
            actor: e.actor,
            source: e.source,
            node: e.node,
            action: e.action,
            detail: e.detail,
            result: e.result,
            reason: e.reason,
        }
    }
}

impl From<Event> for crate::pb::Event {
    fn from(e: Event) -> Self {
        crate::pb::Event {
            seq: e.seq,
            at_unix_ms: e.at_unix_ms,
            actor: e.actor,
            source: e.source,
            node: e.node,
            action: e.action,
            detail: e.detail,
            result: e.result,
            reason: e.reason,
        }
    }
}

fn bound_field(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.len() <= MAX_FIELD_BYTES {
        return one_line;
    }
    let mut cut = MAX_FIELD_BYTES - TRUNCATED.len();
    while !one_line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{TRUNCATED}", &one_line[..cut])
}

/// The sequence numbers a log keeps: `first..next` (empty when equal).
/// A new log is `1..1`: the first event is number 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpan {
    /// The oldest kept.
    pub first: u64,
    /// The number the next event gets.
    pub next: u64,
}

impl Default for EventSpan {
    fn default() -> Self {
        EventSpan { first: 1, next: 1 }
    }
}

/// Where a trail's events are stored. Calls are serialised by the
/// [`EventTrail`] that owns the log.
pub trait EventLog: Send + Sync {
    /// The numbers kept ([`EventSpan::default`] for a new log).
    fn span(&self) -> Result<EventSpan, HookError>;
    /// Stores `event` (numbered the span's `next`), makes the span
    /// `keep_from..event.seq + 1` and drops the events before `keep_from`,
    /// all in one durable, atomic write.
    fn append(&self, event: &Event, keep_from: u64) -> Result<(), HookError>;
    /// The kept events numbered `from..to`, oldest first.
    fn read(&self, from: u64, to: u64) -> Result<Vec<Event>, HookError>;
}

/// An [`EventLog`] in memory (tests, and an authority whose [`crate::Persist`]
/// stores no trail).
#[derive(Debug, Default)]
pub struct MemoryEventLog {
    inner: Mutex<(EventSpan, VecDeque<Event>)>,
}

impl MemoryEventLog {
    /// A copy of every event kept, oldest first.
    pub fn events(&self) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.1.iter().cloned().collect()
    }
}

impl EventLog for MemoryEventLog {
    fn span(&self) -> Result<EventSpan, HookError> {
        Ok(self.inner.lock().unwrap_or_else(|e| e.into_inner()).0)
    }

    fn append(&self, event: &Event, keep_from: u64) -> Result<(), HookError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.1.push_back(event.clone());
        while inner.1.front().is_some_and(|e| e.seq < keep_from) {
            inner.1.pop_front();
        }
        inner.0 = EventSpan {
            first: keep_from,
            next: event.seq + 1,
        };
        Ok(())
    }

    fn read(&self, from: u64, to: u64) -> Result<Vec<Event>, HookError> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Ok(inner
            .1
            .iter()
            .filter(|e| (from..to).contains(&e.seq))
            .cloned()
            .collect())
    }
}

/// A trail: numbers events and keeps the newest `capacity` of them in its log.
///
/// The span is read from the log at every call (one small read), not
/// cached: the trail of a node that forms a cluster and its authority's
/// are two trails on one log, used one after the other.
pub struct EventTrail {
    log: Arc<dyn EventLog>,
    capacity: u64,
    /// Serialises numbering.
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for EventTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventTrail")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl EventTrail {
    /// A trail kept in `log`, at most `capacity` events (at least 1).
    pub fn new(log: Arc<dyn EventLog>, capacity: u64) -> Self {
        EventTrail {
            log,
            capacity: capacity.max(1),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Stores `event` with the next number ([`Event::bounded`]; its time
    /// `now_unix_ms` when it has none) and returns it as stored. The
    /// number is used only once the log has stored it, so a failure leaves
    /// no gap.
    pub async fn record(&self, event: Event, now_unix_ms: u64) -> Result<Event, HookError> {
        let _serial = self.lock.lock().await;
        let span = self.log.span()?;
        let mut event = event.bounded();
        event.seq = span.next;
        if event.at_unix_ms == 0 {
            event.at_unix_ms = now_unix_ms;
        }
        let keep_from = span
            .first
            .max((event.seq + 1).saturating_sub(self.capacity));
        self.log.append(&event, keep_from)?;
        Ok(event)
    }

    /// The newest `limit` events numbered after `after_seq` (0: from the
    /// start; a `limit` of 0 means [`DEFAULT_LIST_LIMIT`], at most
    /// [`MAX_LIST_LIMIT`]), oldest first.
    pub async fn list(&self, after_seq: u64, limit: u32) -> Result<Vec<Event>, HookError> {
        let span = self.span().await?;
        let limit = match limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        let from = span
            .first
            .max(after_seq.saturating_add(1))
            .max(span.next.saturating_sub(u64::from(limit)));
        if from >= span.next {
            return Ok(Vec::new());
        }
        self.log.read(from, span.next)
    }

    /// The numbers kept now.
    pub async fn span(&self) -> Result<EventSpan, HookError> {
        let _serial = self.lock.lock().await;
        self.log.span()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str) -> Event {
        Event {
            action: action.into(),
            result: "ok".into(),
            ..Event::default()
        }
    }

    #[tokio::test]
    async fn numbers_are_gapless_and_only_the_newest_are_kept() {
        let log = Arc::new(MemoryEventLog::default());
        let trail = EventTrail::new(log.clone(), 3);
        for i in 1..=5u64 {
            let e = trail.record(ev(&format!("a{i}")), 77).await.unwrap();
            assert_eq!(e.seq, i);
            assert_eq!(e.at_unix_ms, 77);
        }
        let all = trail.list(0, 0).await.unwrap();
        let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert_eq!(log.events().len(), 3);
        assert_eq!(trail.span().await.unwrap(), EventSpan { first: 3, next: 6 });
        // After a number, and the newest `limit` of those.
        let after: Vec<u64> = trail
            .list(3, 0)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(after, [4, 5]);
        let newest: Vec<u64> = trail
            .list(0, 1)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(newest, [5]);
        assert!(trail.list(5, 10).await.unwrap().is_empty());
        assert!(trail.list(u64::MAX, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_trail_on_an_existing_log_continues_its_numbers() {
        let log = Arc::new(MemoryEventLog::default());
        let first = EventTrail::new(log.clone(), 10);
        first.record(ev("a"), 1).await.unwrap();
        first.record(ev("b"), 1).await.unwrap();
        let again = EventTrail::new(log.clone(), 10);
        assert_eq!(again.record(ev("c"), 1).await.unwrap().seq, 3);
    }

    /// A log whose writes fail while `fail` is set.
    #[derive(Default)]
    struct Flaky {
        log: MemoryEventLog,
        fail: std::sync::atomic::AtomicBool,
    }

    impl EventLog for Flaky {
        fn span(&self) -> Result<EventSpan, HookError> {
            self.log.span()
        }
        fn append(&self, event: &Event, keep_from: u64) -> Result<(), HookError> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(HookError("disk full".into()));
            }
            self.log.append(event, keep_from)
        }
        fn read(&self, from: u64, to: u64) -> Result<Vec<Event>, HookError> {
            self.log.read(from, to)
        }
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_and_uses_no_number() {
        let log = Arc::new(Flaky::default());
        let trail = EventTrail::new(log.clone(), 10);
        assert_eq!(trail.record(ev("a"), 1).await.unwrap().seq, 1);
        log.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let e = trail.record(ev("b"), 1).await.unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
        log.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(trail.record(ev("c"), 1).await.unwrap().seq, 2);
        let actions: Vec<String> = trail
            .list(0, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, ["a", "c"]);
    }

    #[test]
    fn long_fields_are_cut_with_a_marker_and_made_one_line() {
        let e = Event {
            detail: "é".repeat(MAX_FIELD_BYTES),
            reason: "two\nlines".into(),
            ..Event::default()
        }
        .bounded();
        assert!(e.detail.len() <= MAX_FIELD_BYTES, "{}", e.detail.len());
        assert!(e.detail.ends_with(TRUNCATED));
        assert_eq!(e.reason, "two lines");
        let short = "x".repeat(MAX_FIELD_BYTES);
        assert_eq!(bound_field(&short), short);
    }
}
