//! The management plane's admin data (accounts, settings, uploaded
//! certificate) as a member has it: read from the cluster configuration,
//! changed through the authority like any other change ([`Change::Admin`]:
//! checked here first against the configuration this node has, so that a
//! refusal carries the model's reason), and carried into a cluster this node
//! forms. A node that is not a member has its own ([`super::own_admin`]).

use appliance_cluster::{AdminChange, AdminData, AdminRole, Change, ChangeError};
use tracing::{info, warn};

use super::ctx::{Cluster, ClusterError, Ctx};
use super::own_admin;

/// A refusal of the model as a cluster error: about the current state
/// (`FAILED_PRECONDITION`) or about the input (`INVALID_ARGUMENT`).
fn refusal(e: ChangeError) -> ClusterError {
    match &e {
        ChangeError::Admin(a) if a.is_precondition() => ClusterError::State(e.to_string()),
        _ => ClusterError::Invalid(e.to_string()),
    }
}

impl Cluster {
    /// The cluster's admin data and the generation of the configuration
    /// that holds it, while this node is a member.
    pub fn member_admin(&self) -> Option<(AdminData, u64)> {
        self.ctx
            .member_state()
            .map(|s| (s.config.admin().clone(), s.generation()))
    }

    /// Applies `change` to the cluster's admin data through the authority;
    /// the new data and generation, or `Ok(None)` when this node is not a
    /// member (its own data is the caller's to change). A refused change
    /// changes nothing anywhere.
    pub async fn change_admin(
        &self,
        change: AdminChange,
    ) -> Result<Option<(AdminData, u64)>, ClusterError> {
        let Some(state) = self.ctx.member_state() else {
            return Ok(None);
        };
        let change = Change::Admin(change);
        // The authority checks again; this gives the reason without a round trip.
        state.config.apply(&change).map_err(refusal)?;
        let report = match self.ctx.peer.apply_change(change).await {
            Ok(r) => r,
            Err(appliance_peering::PeerError::Authority(
                appliance_peering::AuthorityError::Refused(e),
            )) => return Err(refusal(e)),
            Err(e) => return Err(e.into()),
        };
        for p in report.pushes.iter().filter(|p| p.result.is_err()) {
            warn!(
                node = %p.hostname,
                "a member did not take the admin change yet (it catches up later)"
            );
        }
        Ok(Some((
            report.state.config.admin().clone(),
            report.state.generation(),
        )))
    }

    /// After the node's own settings changed: follows them, unless it is a
    /// member (then the cluster's settings count).
    pub async fn follow_own_settings(&self) -> Result<(), crate::error::NodeError> {
        if self.ctx.member_state().is_some() {
            return Ok(());
        }
        self.ctx
            .node
            .set_cluster(self.ctx.part_for(None))
            .await
            .map(|_| ())
    }

    /// True when the state database holds a membership (the node is, or
    /// is about to be again at start, a member).
    pub fn has_stored_membership(&self) -> bool {
        matches!(self.ctx.store.membership(), Ok(Some(_)))
    }
}

impl Ctx {
    /// Right after this node formed a cluster: its own accounts, settings
    /// and certificate become the cluster's, one change each (the
    /// administrators first, so the first account is one). A change that
    /// fails is logged and the rest still carried.
    pub(super) async fn carry_own_admin(&self) {
        let own = match own_admin::load(self.store.db()) {
            Ok(d) => d,
            Err(e) => {
                warn!("the new cluster starts without this node's accounts: {e}");
                return;
            }
        };
        if own.is_empty() {
            return;
        }
        let (admins, others): (Vec<_>, Vec<_>) = own
            .accounts()
            .partition(|a| a.role == AdminRole::Administrator);
        let mut changes: Vec<AdminChange> = admins
            .into_iter()
            .chain(others)
            .map(|a| AdminChange::PutAccount {
                account: a.clone(),
                create: true,
            })
            .collect();
        if own.settings() != &appliance_cluster::Settings::default() {
            changes.push(AdminChange::SetSettings(own.settings().clone()));
        }
        if let Some(c) = own.certificate() {
            changes.push(AdminChange::SetCertificate(Some(c.clone())));
        }
        let total = changes.len();
        let mut carried = 0;
        for change in changes {
            let what = change.to_string();
            match self.peer.apply_change(Change::Admin(change)).await {
                Ok(_) => carried += 1,
                Err(e) => warn!("could not carry into the new cluster: {what}: {e}"),
            }
        }
        info!(
            carried,
            total, "this node's accounts and settings are the new cluster's"
        );
    }
}

#[cfg(test)]
mod tests {
    use appliance_cluster::AdminError;

    use super::*;

    #[test]
    fn refusals_keep_the_models_sentence_and_say_whose_fault() {
        let state = refusal(ChangeError::Admin(AdminError::LastAdministrator {
            name: "root".into(),
            action: "removed",
        }));
        assert!(matches!(state, ClusterError::State(_)), "{state:?}");
        let status = tonic::Status::from(state);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(status
            .message()
            .contains("\"root\" is the last administrator"));

        let input = refusal(ChangeError::Admin(AdminError::InvalidName {
            name: "Root".into(),
            reason: "starts with 'R', not a letter a-z".into(),
        }));
        let status = tonic::Status::from(input);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("\"Root\""));
    }
}
