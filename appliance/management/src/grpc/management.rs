//! The `Management` service: sign-in (`Login`, the same limiter and audit
//! as the web form), sessions, accounts, events, settings and the
//! certificate. Replies never carry password hashes or the TLS key.

use appliance_api::v1::management_server::Management;
use appliance_api::v1::*;
use tonic::{Request, Response, Status};

use super::{audit_call, authorize, authorize_change, bearer, caller, source};
use crate::auth::sessions::{Kind, SessionView};
use crate::auth::{accounts, sign_in, SignInError};
use crate::state::{AppState, Outcome};

/// The service.
pub struct ManagementService {
    state: AppState,
}

impl ManagementService {
    /// The service over `state`.
    pub fn new(state: AppState) -> Self {
        ManagementService { state }
    }
}

fn info(v: &SessionView, current_id: &str) -> SessionInfo {
    SessionInfo {
        name: v.name.clone(),
        role: v.role.as_str().to_string(),
        source: v.source.to_string(),
        created_unix_ms: v.created_unix_ms,
        expires_unix_ms: v.expires_unix_ms,
        kind: v.kind.as_str().to_string(),
        current: v.id == current_id,
    }
}

fn strip_key(mut tls: ManagementTls) -> ManagementTls {
    tls.key_pem.clear();
    tls
}

impl ManagementService {
    fn session_info(&self, id: &str) -> Result<SessionInfo, Status> {
        self.state
            .sessions()
            .list()
            .iter()
            .find(|v| v.id == id)
            .map(|v| info(v, id))
            .ok_or_else(|| Status::unauthenticated(super::SIGN_IN_FIRST))
    }
}

#[tonic::async_trait]
impl Management for ManagementService {
    async fn login(&self, req: Request<LoginRequest>) -> Result<Response<LoginReply>, Status> {
        let source = source(&req)?;
        let LoginRequest { name, password } = req.into_inner();
        match sign_in(&self.state, &name, &password, source, Kind::Api).await {
            Ok((token, p)) => Ok(Response::new(LoginReply {
                token,
                session: Some(self.session_info(&p.session_id)?),
            })),
            Err(SignInError::NoAdministrator(hint)) => Err(Status::failed_precondition(format!(
                "this appliance has no administrator yet: {hint}"
            ))),
            Err(SignInError::Unreachable(s)) => Err(Status::unavailable(s.message().to_string())),
            Err(e @ SignInError::Throttled(_)) => Err(Status::resource_exhausted(e.to_string())),
            Err(e @ SignInError::Wrong) => Err(Status::unauthenticated(e.to_string())),
        }
    }

    async fn logout(&self, req: Request<LogoutRequest>) -> Result<Response<LogoutReply>, Status> {
        let who = caller(&self.state, &req)?;
        if let Some(token) = bearer(&req) {
            self.state.sessions().revoke_token(token);
        }
        self.state
            .audit(&who.name, who.source, "sign-out", "api", Outcome::Ok)
            .await;
        Ok(Response::new(LogoutReply {}))
    }

    async fn who_am_i(&self, req: Request<WhoAmIRequest>) -> Result<Response<SessionInfo>, Status> {
        let who = caller(&self.state, &req)?;
        Ok(Response::new(self.session_info(&who.session_id)?))
    }

    async fn list_sessions(
        &self,
        req: Request<ListSessionsRequest>,
    ) -> Result<Response<SessionsReply>, Status> {
        let who = caller(&self.state, &req)?;
        let sessions = self
            .state
            .sessions()
            .list()
            .iter()
            .map(|v| info(v, &who.session_id))
            .collect();
        Ok(Response::new(SessionsReply { sessions }))
    }

    async fn list_accounts(
        &self,
        req: Request<ListAccountsRequest>,
    ) -> Result<Response<AccountsReply>, Status> {
        caller(&self.state, &req)?;
        let reply = self.state.backend().accounts().await?;
        Ok(Response::new(accounts::without_hashes(reply)))
    }

    async fn add_account(
        &self,
        req: Request<AddAccountRequest>,
    ) -> Result<Response<AccountsReply>, Status> {
        let who = caller(&self.state, &req)?;
        let r = req.into_inner();
        accounts::add(&self.state, &who, &r.name, &r.role, &r.password)
            .await
            .map(Response::new)
    }

    async fn remove_account(
        &self,
        req: Request<RemoveAccountRequest>,
    ) -> Result<Response<AccountsReply>, Status> {
        let who = caller(&self.state, &req)?;
        accounts::remove(&self.state, &who, &req.into_inner().name)
            .await
            .map(Response::new)
    }

    async fn change_password(
        &self,
        req: Request<ChangePasswordRequest>,
    ) -> Result<Response<AccountsReply>, Status> {
        let who = caller(&self.state, &req)?;
        let r = req.into_inner();
        accounts::change_password(
            &self.state,
            &who,
            &r.name,
            &r.current_password,
            &r.new_password,
        )
        .await
        .map(Response::new)
    }

    async fn list_events(
        &self,
        req: Request<ListEventsRequest>,
    ) -> Result<Response<EventsReply>, Status> {
        caller(&self.state, &req)?;
        self.state
            .backend()
            .admin()
            .list_events(req.into_inner())
            .await
    }

    async fn get_settings(
        &self,
        req: Request<GetSettingsRequest>,
    ) -> Result<Response<Settings>, Status> {
        caller(&self.state, &req)?;
        self.state
            .backend()
            .admin()
            .get_settings(req.into_inner())
            .await
    }

    async fn set_settings(
        &self,
        req: Request<SetSettingsRequest>,
    ) -> Result<Response<Settings>, Status> {
        let detail = req
            .get_ref()
            .settings
            .as_ref()
            .map(|s| {
                format!(
                    "dns [{}] ntp [{}] management networks [{}]",
                    s.dns_servers.join(" "),
                    s.ntp_servers.join(" "),
                    s.management_networks.join(" ")
                )
            })
            .unwrap_or_default();
        let who = authorize_change(&self.state, &req, "SetSettings", &detail).await?;
        let mut r = req.into_inner();
        // The server, not the client, says where the client is.
        r.client_address = who.source.to_string();
        let result = self.state.backend().admin().set_settings(r).await;
        audit_call(&self.state, &who, "settings.set", &detail, &result).await;
        result
    }

    async fn get_management_tls(
        &self,
        req: Request<GetManagementTlsRequest>,
    ) -> Result<Response<ManagementTls>, Status> {
        authorize(&self.state, &req, "GetManagementTls", false)?;
        let tls = self
            .state
            .backend()
            .admin()
            .get_management_tls(req.into_inner())
            .await?;
        Ok(Response::new(strip_key(tls.into_inner())))
    }

    async fn set_management_certificate(
        &self,
        req: Request<SetManagementCertificateRequest>,
    ) -> Result<Response<ManagementTls>, Status> {
        let (action, detail) = if req.get_ref().cert_pem.is_empty() {
            (
                "certificate.clear",
                "back to the node's own certificate".to_string(),
            )
        } else {
            let bytes = req.get_ref().cert_pem.len();
            (
                "certificate.set",
                format!("uploaded certificate of {bytes} bytes"),
            )
        };
        let who = authorize_change(&self.state, &req, "SetManagementCertificate", &detail).await?;
        let result = self
            .state
            .backend()
            .admin()
            .set_management_certificate(req.into_inner())
            .await
            .map(|r| strip_key(r.into_inner()));
        audit_call(&self.state, &who, action, &detail, &result).await;
        result.map(Response::new)
    }
}
