//! The `Admin` service (`appliance.v1.Admin`, management.proto): what the
//! management server (managementd) needs from this node, served on the
//! node's Unix socket only, never on the peer port.
//!
//! - [`data`]: where the admin data is read and changed ([`DataSource`]);
//! - [`accounts`]: admin accounts (Argon2id hashes only; applianced checks
//!   their shape and never sees a password) and the first administrator
//!   from the kernel parameter, the seed disk or `--first-admin`;
//! - [`settings`]: cluster-wide settings (resolvers, time servers,
//!   management networks);
//! - [`events`]: the audit trail;
//! - [`tls`]: the management certificate.
//!
//! Where accounts and settings live ([`AdminData`]): a member's are the
//! cluster's, in its configuration, changed through the authority and
//! pushed to every member; a node that is not a member has its own, in its
//! state database (`cluster::own_admin`). Every change is checked by the
//! pure model (`appliance_cluster::AdminData::apply`); a refused one
//! changes nothing and comes back as `INVALID_ARGUMENT` or
//! `FAILED_PRECONDITION` with the model's sentence.
//!
//! This module sits beside `api`: it uses `cluster`, `node` and `desired`;
//! nothing below uses it.

pub mod accounts;
pub mod data;
pub mod events;
pub mod settings;
pub mod tls;

use std::sync::Arc;

use appliance_api::v1::{
    admin_server, AccountsReply, AuditEvent, EventsReply, GetManagementTlsRequest,
    GetSettingsRequest, ListAccountsRequest, ListEventsRequest, ManagementTls, PutAccountRequest,
    RemoveAccountRequest, SetManagementCertificateRequest, SetSettingsRequest, Settings,
};
use appliance_cluster::AdminChange;
use appliance_state::Store;

pub use data::DataSource;
use tonic::{Request, Response, Status};

use crate::cluster::Cluster;
use crate::node::Node;

/// The `Admin` service of this node.
pub struct AdminService {
    data: Arc<DataSource>,
    trail: events::Trail,
    tls: tls::ManagementTlsSource,
}

impl std::fmt::Debug for AdminService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminService").finish_non_exhaustive()
    }
}

/// What the service is built from.
pub struct AdminSetup {
    /// The node (its desired state follows the node's own settings).
    pub node: Arc<Node>,
    /// The node's state database (its own admin data, its own trail).
    pub store: Store,
    /// The cluster side; `None` when it is off (`--peer-port 0`).
    pub cluster: Option<Cluster>,
}

impl AdminService {
    /// The service of this node.
    pub fn new(setup: AdminSetup) -> AdminService {
        let data = Arc::new(DataSource::new(
            setup.node.clone(),
            setup.store.clone(),
            setup.cluster.clone(),
        ));
        AdminService {
            trail: events::Trail::new(setup.store.clone(), setup.cluster.clone()),
            tls: tls::ManagementTlsSource::new(
                setup.node,
                setup.store,
                setup.cluster,
                data.clone(),
            ),
            data,
        }
    }

    /// The tonic server of it, for the Unix socket.
    pub fn server(self) -> admin_server::AdminServer<AdminService> {
        admin_server::AdminServer::new(self)
    }

    /// The data source, for the first-admin seed.
    pub(crate) fn data(&self) -> Arc<DataSource> {
        self.data.clone()
    }

    /// The management certificate's source, for the console line.
    pub(crate) fn tls(&self) -> tls::ManagementTlsSource {
        self.tls.clone()
    }
}

#[tonic::async_trait]
impl admin_server::Admin for AdminService {
    async fn list_accounts(
        &self,
        _req: Request<ListAccountsRequest>,
    ) -> Result<Response<AccountsReply>, Status> {
        Ok(Response::new(accounts::reply(&self.data.current()?)))
    }

    async fn put_account(
        &self,
        req: Request<PutAccountRequest>,
    ) -> Result<Response<AccountsReply>, Status> {
        let change = accounts::put_change(
            req.into_inner(),
            crate::time::unix_ms(std::time::SystemTime::now()),
        )?;
        Ok(Response::new(accounts::reply(
            &self.data.change(change).await?,
        )))
    }

    async fn remove_account(
        &self,
        req: Request<RemoveAccountRequest>,
    ) -> Result<Response<AccountsReply>, Status> {
        let change = AdminChange::RemoveAccount {
            name: req.into_inner().name.trim().to_owned(),
        };
        Ok(Response::new(accounts::reply(
            &self.data.change(change).await?,
        )))
    }

    async fn record_event(&self, req: Request<AuditEvent>) -> Result<Response<AuditEvent>, Status> {
        Ok(Response::new(self.trail.record(req.into_inner()).await?))
    }

    async fn list_events(
        &self,
        req: Request<ListEventsRequest>,
    ) -> Result<Response<EventsReply>, Status> {
        let r = req.into_inner();
        let events = self.trail.list(r.after_seq, r.limit).await?;
        Ok(Response::new(EventsReply { events }))
    }

    async fn get_settings(
        &self,
        _req: Request<GetSettingsRequest>,
    ) -> Result<Response<Settings>, Status> {
        Ok(Response::new(settings::reply(&self.data.current()?)))
    }

    async fn set_settings(
        &self,
        req: Request<SetSettingsRequest>,
    ) -> Result<Response<Settings>, Status> {
        let change = settings::set_change(&req.into_inner())?;
        Ok(Response::new(settings::reply(
            &self.data.change(change).await?,
        )))
    }

    async fn get_management_tls(
        &self,
        _req: Request<GetManagementTlsRequest>,
    ) -> Result<Response<ManagementTls>, Status> {
        Ok(Response::new(self.tls.get().await?))
    }

    async fn set_management_certificate(
        &self,
        req: Request<SetManagementCertificateRequest>,
    ) -> Result<Response<ManagementTls>, Status> {
        Ok(Response::new(self.tls.set(req.into_inner()).await?))
    }
}
