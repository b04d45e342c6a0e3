//! What every handler shares: the client of applianced, the sessions, the
//! rate limiter and the metrics.

use std::sync::Arc;

use crate::auth::limiter::Limiter;
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
}
