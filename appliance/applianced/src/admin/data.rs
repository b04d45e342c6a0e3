//! Where the admin data (accounts, settings, uploaded certificate) is read
//! and changed ([`DataSource`]): the cluster's while this node is a member
//! (changed through the authority), else the node's own in its state
//! database. The other parts of the `Admin` service build on it.

use std::sync::Arc;

use appliance_cluster::{AdminChange, AdminData, AdminError};
use appliance_state::Store;
use tokio::sync::Mutex;
use tonic::Status;
use tracing::info;

use crate::cluster::{own_admin, Cluster};
use crate::node::Node;

/// The admin data as this node has it: the cluster's while a member, else
/// its own.
pub struct DataSource {
    node: Arc<Node>,
    store: Store,
    cluster: Option<Cluster>,
    /// Serializes changes of the node's own data (read, apply, store).
    own_lock: Mutex<()>,
}

/// Admin data and the generation of the configuration holding it (0: the
/// node's own).
pub type Versioned = (AdminData, u64);

impl DataSource {
    /// The data source of `node`, its own data in `store`, the cluster's
    /// through `cluster` (`None` when the cluster side is off).
    pub fn new(node: Arc<Node>, store: Store, cluster: Option<Cluster>) -> DataSource {
        DataSource {
            node,
            store,
            cluster,
            own_lock: Mutex::new(()),
        }
    }

    /// The current data.
    pub fn current(&self) -> Result<Versioned, Status> {
        if let Some(v) = self.cluster.as_ref().and_then(Cluster::member_admin) {
            return Ok(v);
        }
        self.not_resuming()?;
        let own = own_admin::load(&self.store).map_err(|e| Status::internal(e.to_string()))?;
        Ok((own, 0))
    }

    /// Applies `change`: through the authority while a member, else to the
    /// node's own data (stored, then followed by the node when it moved
    /// the settings). A refusal changes nothing.
    pub async fn change(&self, change: AdminChange) -> Result<Versioned, Status> {
        if let Some(c) = &self.cluster {
            if let Some(v) = c.change_admin(change.clone()).await? {
                info!(
                    generation = v.1,
                    "admin change through the cluster: {change}"
                );
                return Ok(v);
            }
        }
        self.not_resuming()?;
        let _guard = self.own_lock.lock().await;
        let mut own = own_admin::load(&self.store).map_err(|e| Status::internal(e.to_string()))?;
        let settings_before = own.settings().clone();
        own.apply(&change).map_err(refused)?;
        own_admin::save(&self.store, &own).map_err(|e| Status::internal(e.to_string()))?;
        info!("admin change on this node: {change}");
        if own.settings() != &settings_before {
            self.follow_own_settings().await?;
        }
        Ok((own, 0))
    }

    /// Refuses, for now, a node that is a member but not yet again after a
    /// start: its accounts are the cluster's, not its own record's.
    fn not_resuming(&self) -> Result<(), Status> {
        if self
            .cluster
            .as_ref()
            .is_some_and(Cluster::has_stored_membership)
        {
            return Err(Status::unavailable(
                "this node is becoming a cluster member again after its start; its accounts \
                 and settings are the cluster's: try again in a few seconds",
            ));
        }
        Ok(())
    }

    /// The node follows its own (changed) settings.
    async fn follow_own_settings(&self) -> Result<(), Status> {
        let result = match &self.cluster {
            Some(c) => c.follow_own_settings().await,
            None => self
                .node
                .set_cluster(crate::desired::cluster::ClusterPart {
                    settings: own_admin::load(&self.store)
                        .map_err(|e| Status::internal(e.to_string()))?
                        .settings()
                        .clone(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        };
        // Stored either way: the reconcile loop tries the transition again.
        result.map_err(|e| {
            Status::internal(format!(
                "the settings are stored, but the node could not apply them yet: {e}"
            ))
        })
    }

    /// The node's own settings into its desired state at start, when the
    /// cluster side is off (otherwise the cluster side gives them).
    pub async fn prepare_without_cluster(&self) {
        if self.cluster.is_none() {
            if let Err(e) = self.follow_own_settings().await {
                tracing::warn!("{}", e.message());
            }
        }
    }
}

/// A refusal of the model as a gRPC status.
pub fn refused(e: AdminError) -> Status {
    if e.is_precondition() {
        Status::failed_precondition(e.to_string())
    } else {
        Status::invalid_argument(e.to_string())
    }
}
