//! What the peer side hands the daemon: a join that succeeded, a newer
//! cluster state, this node's removal, a renewed certificate. Each is
//! stored first, then followed by the node as one desired-state
//! transition; an error refuses the step (the peer is told, nothing is
//! acknowledged).

use std::sync::{Arc, Weak};
use std::time::Duration;

use appliance_peering::{ClusterState, HookError, JoinedBundle, NodeHooks, NodeStatus};
use appliance_pki::NodeCert;
use async_trait::async_trait;
use tracing::{error, info, warn};

use super::ctx::Ctx;
use super::store::MembershipRecord;
use super::tasks;

/// The hooks of this node's peer side. Holds the cluster context weakly:
/// the peer side lives inside it.
pub(crate) struct Hooks {
    pub(crate) ctx: Weak<Ctx>,
}

impl Hooks {
    fn ctx(&self) -> Result<Arc<Ctx>, HookError> {
        self.ctx
            .upgrade()
            .ok_or_else(|| HookError("applianced is shutting down".into()))
    }
}

#[async_trait]
impl NodeHooks for Hooks {
    async fn joined(&self, bundle: &JoinedBundle) -> Result<(), HookError> {
        let ctx = self.ctx()?;
        ctx.store.save_membership(&MembershipRecord {
            ca_pem: bundle.ca.to_pem(),
            cert_pem: bundle.cert.to_pem(),
            state: bundle.state.clone(),
        })?;
        let part = ctx.part_for(Some(&bundle.state));
        if let Err(e) = ctx.node.set_cluster(part).await {
            // Not a member after all: the admin side takes the node out again.
            if let Err(c) = ctx.store.clear() {
                error!("could not forget the refused membership: {c}");
            }
            if let Err(u) = ctx.node.set_cluster(ctx.part_for(None)).await {
                error!("could not return to the unjoined state: {u}");
            }
            return Err(HookError(format!(
                "this node could not follow the cluster's configuration: {e}"
            )));
        }
        ctx.stop_waiting();
        info!(
            cluster = %bundle.state.config.cluster_id(),
            generation = bundle.state.generation(),
            "joined the cluster"
        );
        ctx.spawn(tasks::activate(ctx.clone()));
        Ok(())
    }

    async fn config_changed(&self, state: &ClusterState) -> Result<(), HookError> {
        let ctx = self.ctx()?;
        ctx.store.save_state(state)?;
        ctx.node
            .set_cluster(ctx.part_for(Some(state)))
            .await
            .map_err(|e| {
                HookError(format!(
                    "this node could not follow generation {}: {e}",
                    state.generation()
                ))
            })?;
        Ok(())
    }

    async fn left(&self, state: &ClusterState) {
        let Ok(ctx) = self.ctx() else { return };
        warn!(
            generation = state.generation(),
            "this node was removed from the cluster; it waits to be joined again"
        );
        if let Err(e) = ctx.store.clear() {
            error!("could not forget the membership: {e}");
        }
        if let Err(e) = ctx.node.set_cluster(ctx.part_for(None)).await {
            error!("could not return to the unjoined state: {e}");
        }
        // The peer side makes itself idle after this hook returns; only
        // then may it wait for a new join.
        let peer = ctx.peer.clone();
        let inner = ctx.clone();
        ctx.spawn(async move {
            for _ in 0..500 {
                if peer.status() == NodeStatus::Idle {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            match inner.wait_for_join() {
                Ok(()) => info!("waiting to be joined again"),
                Err(e) => error!("cannot wait to be joined: {e}"),
            }
        });
    }

    async fn certificate_renewed(&self, cert: &NodeCert) -> Result<(), HookError> {
        let ctx = self.ctx()?;
        ctx.store.save_cert(cert)?;
        info!(fingerprint = %cert.fingerprint(), "node certificate renewed");
        Ok(())
    }
}
