//! The client of applianced: the `Node` and `Admin` services on its Unix
//! socket, and the audit trail.

use appliance_api::v1::admin_client::AdminClient;
use appliance_api::v1::node_client::NodeClient;
use appliance_api::v1::{AccountsReply, AuditEvent, ListAccountsRequest};
use tonic::transport::Channel;

/// applianced, as managementd reaches it.
#[derive(Clone)]
pub struct Backend {
    channel: Channel,
}

impl Backend {
    /// A backend over an open channel (see `appliance_api::connect_unix`).
    pub fn new(channel: Channel) -> Self {
        Backend { channel }
    }

    /// The node API.
    pub fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel.clone())
    }

    /// Accounts, settings, the audit trail and the TLS certificate.
    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
    }

    /// Records an administrative action in the cluster's audit trail. It
    /// never fails its caller: when the trail cannot be reached the event
    /// goes to the log instead.
    pub async fn audit(&self, event: AuditEvent) {
        let mut admin = self.admin();
        if let Err(e) = admin.record_event(event.clone()).await {
            tracing::warn!(action = %event.action, actor = %event.actor, result = %event.result,
                error = %e.message(), "audit trail unreachable; event only logged");
        }
    }

    /// Every account (with hashes: for managementd's own use only).
    pub async fn accounts(&self) -> Result<AccountsReply, tonic::Status> {
        Ok(self
            .admin()
            .list_accounts(ListAccountsRequest {})
            .await?
            .into_inner())
    }

    /// True when some account is an administrator (anyone can sign in).
    pub async fn has_administrator(&self) -> Result<bool, tonic::Status> {
        Ok(self
            .accounts()
            .await?
            .accounts
            .iter()
            .any(|a| a.role == "administrator"))
    }
}
