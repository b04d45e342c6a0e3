//! What every handler shares: the client of applianced, the sessions, the
//! rate limiter and the metrics.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use appliance_api::v1::AuditEvent;

use crate::auth::limiter::Limiter;
use crate::auth::password::Hasher;
use crate::auth::sessions::now_ms;
use crate::auth::sessions::Sessions;
use crate::backend::Backend;
use crate::metrics::Metrics;

/// The server's shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    sessions: Sessions,
    limiter: Limiter,
    metrics: Metrics,
    /// Argon2 on the blocking pool, two at once.
    hasher: Hasher,
    /// This node's name in audit events (its hostname, once known).
    node: RwLock<String>,
}

impl AppState {
    /// Puts the parts together.
    pub fn new(backend: Backend, sessions: Sessions, limiter: Limiter, metrics: Metrics) -> Self {
        AppState {
            inner: Arc::new(Inner {
                backend,
                sessions,
                limiter,
                metrics,
                hasher: Hasher::new(),
                node: RwLock::new(String::new()),
            }),
        }
    }

    /// The client of applianced.
    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// The signed-in sessions of this node.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// Sign-in attempts per source and per account.
    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    /// The figures of `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Hashes and verifies passwords, a bounded number at once.
    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    /// The node named in audit events.
    pub fn node_name(&self) -> String {
        self.inner
            .node
            .read()
            .map(|n| n.clone())
            .unwrap_or_default()
    }

    /// Sets the node named in audit events (from applianced's status).
    pub fn set_node_name(&self, name: &str) {
        if let Ok(mut n) = self.inner.node.write() {
            *n = name.to_string();
        }
    }

    /// An audit event by `actor` from `source` on this node, now, with
    /// result "ok" (set `result` and `reason` otherwise) and send it.
    pub async fn audit(
        &self,
        actor: &str,
        source: IpAddr,
        action: &str,
        detail: &str,
        outcome: Outcome<'_>,
    ) {
        let (result, reason) = match outcome {
            Outcome::Ok => ("ok", ""),
            Outcome::Refused(r) => ("refused", r),
            Outcome::Failed(r) => ("failed", r),
        };
        let event = AuditEvent {
            seq: 0,
            at_unix_ms: now_ms(),
            actor: actor.to_string(),
            source: source.to_string(),
            node: self.node_name(),
            action: action.to_string(),
            detail: detail.to_string(),
            result: result.to_string(),
            reason: reason.to_string(),
        };
        tracing::info!(actor, %source, action, detail, result, reason, "audit");
        self.backend().audit(event).await;
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    Ok,
    /// Not allowed (a rule, a role, the rate limit), with why.
    Refused(&'a str),
    /// Tried and failed, with why.
    Failed(&'a str),
}
