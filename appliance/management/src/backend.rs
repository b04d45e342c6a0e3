//! The client of applianced: the `Node` and `Admin` services on its Unix
//! socket, and the audit trail.
//!
//! Requests without a session ask whether an administrator exists (to send
//! the browser to `/setup` or `/signin`); that answer is cached for
//! [`SETUP_CACHE`] so that anonymous traffic cannot turn into a flood of
//! calls on PID 1.

use appliance_api::v1::admin_client::AdminClient;
use appliance_api::v1::node_client::NodeClient;
use appliance_api::v1::{AccountsReply, AuditEvent, ListAccountsRequest};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::Channel;

/// How long "is there an administrator" (and the setup hint) is reused.
pub const SETUP_CACHE: Duration = Duration::from_secs(2);

/// applianced, as managementd reaches it.
#[derive(Clone)]
pub struct Backend {
    channel: Channel,
    /// When it was last asked, whether an administrator exists, the hint.
    setup: Arc<Mutex<Option<(Instant, bool, String)>>>,
}

impl Backend {
    /// A backend over an open channel (see `appliance_api::connect_unix`).
    pub fn new(channel: Channel) -> Self {
        Backend {
            channel,
            setup: Arc::default(),
        }
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

    /// True when some account is an administrator (anyone can sign in),
    /// and the hint where to set the first one; cached for [`SETUP_CACHE`].
    pub async fn setup_state(&self) -> Result<(bool, String), tonic::Status> {
        if let Ok(cache) = self.setup.lock() {
            if let Some((at, has, hint)) = cache.as_ref() {
                if at.elapsed() < SETUP_CACHE {
                    return Ok((*has, hint.clone()));
                }
            }
        }
        let reply = self.accounts().await?;
        let has = reply.accounts.iter().any(|a| a.role == "administrator");
        if let Ok(mut cache) = self.setup.lock() {
            *cache = Some((Instant::now(), has, reply.first_admin_hint.clone()));
        }
        Ok((has, reply.first_admin_hint))
    }

    /// True when some account is an administrator (cached, see
    /// [`Backend::setup_state`]).
    pub async fn has_administrator(&self) -> Result<bool, tonic::Status> {
        Ok(self.setup_state().await?.0)
    }
}
