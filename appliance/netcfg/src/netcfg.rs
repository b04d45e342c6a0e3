//! The [`Netcfg`] front: observe, plan, run the actions, and on the first
//! failure roll back to the addresses, routes and MTUs seen before.
//!
//! Crash safety is the caller's half: [`Netcfg::apply`] takes the [`Owned`]
//! record and returns the new one; a caller that wants to persist the intent
//! first uses [`Netcfg::observe`], [`crate::plan()`] and [`Netcfg::execute`].

use std::time::Instant;

use rtnetlink::Handle;
use tracing::{info, warn};

use crate::apply::{self, ApplyError};
use crate::model::{Action, NetworkSpec, Observed, Owned, Plan};
use crate::observe::{observe, ObserveError};
use crate::plan::{plan, PlanError};
use crate::restore::restore;

/// Passes of observe-plan-run per apply. A second pass repairs what the kernel
/// undid behind our back (deleting a link's last IPv4 address flushes its routes).
const MAX_PASSES: usize = 3;

/// Why an apply did not reach the desired state.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No netlink socket could be opened.
    #[error(
        "cannot open a netlink socket: {0}; applianced needs CAP_NET_ADMIN and a tokio runtime"
    )]
    Connect(std::io::Error),
    /// Reading the kernel state failed.
    #[error(transparent)]
    Observe(#[from] ObserveError),
    /// The configuration does not fit the machine.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// An action failed and everything done before it was undone.
    #[error(
        "applying the network configuration failed: {source}; the previous configuration \
         was restored; fix the configuration and apply again"
    )]
    RolledBack {
        /// The action that failed.
        action: Box<Action>,
        /// The kernel's error.
        source: Box<ApplyError>,
        /// The actions that had succeeded before it, and were undone.
        undone: Vec<Action>,
        /// The owned record to persist (the one from before the apply).
        owned: Owned,
    },
    /// An action failed, and undoing the earlier ones failed too.
    #[error(
        "applying the network configuration failed: {source}; the previous configuration could \
         NOT be fully restored, still to undo: {}; check the interfaces by hand",
        list(remaining)
    )]
    RollbackIncomplete {
        /// The action that failed.
        action: Box<Action>,
        /// The kernel's error.
        source: Box<ApplyError>,
        /// The restore actions that are still needed.
        remaining: Vec<Action>,
        /// The owned record to persist (old ∪ attempted: nothing leaks).
        owned: Owned,
    },
    /// Every action succeeded but the kernel state still differs.
    #[error(
        "the network configuration did not settle after {MAX_PASSES} passes, still to do: {}; \
         something else is changing the interfaces",
        list(remaining)
    )]
    NotConverged {
        /// What a further pass would still do.
        remaining: Vec<Action>,
        /// The owned record to persist.
        owned: Owned,
    },
}

fn list(actions: &[Action]) -> String {
    actions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What an apply changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Every action that ran, in order; empty when nothing needed changing.
    pub actions: Vec<Action>,
    /// The owned record to persist.
    pub owned: Owned,
}

/// A netlink connection to the network namespace it was opened in.
pub struct Netcfg {
    /// rtnetlink request handle; its connection task runs on the caller's runtime.
    handle: Handle,
}

impl std::fmt::Debug for Netcfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Netcfg")
    }
}

impl Netcfg {
    /// Opens a netlink socket in the calling thread's network namespace and
    /// spawns its connection task. Must run inside a tokio runtime.
    pub fn connect() -> Result<Self, NetError> {
        if tokio::runtime::Handle::try_current().is_err() {
            let e = std::io::Error::other("Netcfg::connect called outside a tokio runtime");
            return Err(NetError::Connect(e));
        }
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::Connect)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Reads links, addresses and main-table routes.
    pub async fn observe(&self) -> Result<Observed, NetError> {
        Ok(observe(&self.handle).await?)
    }

    /// Brings the kernel to `desired`; `owned` is the record from the last run.
    pub async fn apply(
        &mut self,
        desired: &NetworkSpec,
        owned: &Owned,
    ) -> Result<ApplyReport, NetError> {
        let before = self.observe().await?;
        self.apply_from(desired, before, owned).await
    }

    /// [`Netcfg::apply`] from an observation the caller already made (to plan
    /// and record the intent first), so the kernel is not read twice. `before`
    /// must be fresh: it is also what a rollback restores.
    pub async fn apply_from(
        &mut self,
        desired: &NetworkSpec,
        before: Observed,
        owned: &Owned,
    ) -> Result<ApplyReport, NetError> {
        let started = Instant::now();
        let mut now = before.clone();
        let mut report = ApplyReport {
            actions: Vec::new(),
            owned: owned.clone(),
        };
        let mut intent = owned.clone();
        for _ in 0..MAX_PASSES {
            let p = plan(desired, &now, &report.owned)?;
            if p.actions.is_empty() {
                info!(actions = report.actions.len(), elapsed = ?started.elapsed(), "network configured");
                return Ok(report);
            }
            intent = intent.union(&p.intent);
            if let Err((action, source)) = self.run_all(&p.actions, &mut report.actions).await {
                return Err(self
                    .roll_back(&before, &report.actions, action, source, owned, intent)
                    .await);
            }
            report.owned = p.owned;
            now = self.observe().await?;
        }
        let remaining = plan(desired, &now, &report.owned)?.actions;
        if remaining.is_empty() {
            return Ok(report);
        }
        Err(NetError::NotConverged {
            remaining,
            owned: intent,
        })
    }

    /// Runs a [`Plan`] made against `before`, rolling back on failure. Returns
    /// the actions run. Persist `plan.intent` before and `plan.owned` after;
    /// on error, persist the `owned` the error carries.
    pub async fn execute(
        &mut self,
        plan: &Plan,
        before: &Observed,
        owned: &Owned,
    ) -> Result<Vec<Action>, NetError> {
        let mut done = Vec::new();
        match self.run_all(&plan.actions, &mut done).await {
            Ok(()) => Ok(done),
            Err((action, source)) => Err(self
                .roll_back(before, &done, action, source, owned, plan.intent.clone())
                .await),
        }
    }

    /// Runs `actions` in order, appending each success to `done`; stops at the first failure.
    async fn run_all(
        &mut self,
        actions: &[Action],
        done: &mut Vec<Action>,
    ) -> Result<(), (Action, ApplyError)> {
        for action in actions {
            info!(%action, "network change");
            apply::run(&self.handle, action)
                .await
                .map_err(|e| (action.clone(), e))?;
            done.push(action.clone());
        }
        Ok(())
    }

    /// Undoes `done` until the kernel matches `before` again (bounded passes).
    async fn roll_back(
        &mut self,
        before: &Observed,
        done: &[Action],
        action: Action,
        source: ApplyError,
        owned: &Owned,
        intent: Owned,
    ) -> NetError {
        warn!(%action, error = %source, undo = done.len(), "network change failed; rolling back");
        let (action, source) = (Box::new(action), Box::new(source));
        let mut remaining = Vec::new();
        for pass in 0..=MAX_PASSES {
            remaining = match self.observe().await {
                Ok(now) => restore(before, &now, done),
                Err(e) => {
                    warn!(error = %e, "cannot observe during rollback");
                    break;
                }
            };
            if remaining.is_empty() {
                info!("rollback complete");
                return NetError::RolledBack {
                    action,
                    source,
                    undone: done.to_vec(),
                    owned: owned.clone(),
                };
            }
            if pass == MAX_PASSES {
                break;
            }
            for undo in &remaining {
                // Errors are judged by the next observation, not here: an
                // "exists" or "not found" answer means the undo is already done.
                if let Err(e) = apply::run(&self.handle, undo).await {
                    warn!(%undo, error = %e, "rollback step failed");
                }
            }
        }
        NetError::RollbackIncomplete {
            action,
            source,
            remaining,
            owned: intent,
        }
    }
}
