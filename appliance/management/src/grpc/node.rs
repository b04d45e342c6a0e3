//! The `Node` service on the management port: every method forwarded to
//! applianced over the local socket, after the role check. Viewers may call
//! the read-only methods; every other needs an administrator and is an
//! audit event (who, from where, the method, its object, the result).
//! `ClusterAdd` is forwarded as a stream; its outcome feeds the join figures.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use appliance_api::v1::node_server::Node;
use appliance_api::v1::*;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::{action, audit_call, authorize, authorize_change};
use crate::state::AppState;

/// The methods any signed-in account may call.
pub const READ_ONLY: &[&str] = &[
    "Status",
    "GetConfig",
    "ValidateConfig",
    "ListServices",
    "ShowFirewall",
    "Logs",
    "ListPeers",
    "ClusterStatus",
    "ClusterDiscovered",
];

/// The methods that need an administrator.
pub const CHANGING: &[&str] = &[
    "SetConfig",
    "RestartService",
    "AddPeer",
    "RemovePeer",
    "ClusterForm",
    "ClusterAdd",
    "ClusterRemove",
    "ClusterSetRoles",
];

/// The proxy.
pub struct NodeProxy {
    state: AppState,
}

impl NodeProxy {
    /// A proxy to the applianced of `state`.
    pub fn new(state: AppState) -> Self {
        NodeProxy { state }
    }
}

/// A read: the role check, then the call.
macro_rules! read {
    ($self:ident, $req:ident, $name:literal, $method:ident) => {{
        authorize(&$self.state, &$req, $name, false)?;
        $self
            .state
            .backend()
            .node()
            .$method($req.into_inner())
            .await
    }};
}

/// A change: the role check, the call, the audit event (its action named
/// as the web pages name it, see [`super::action`]).
macro_rules! change {
    ($self:ident, $req:ident, $name:literal, $method:ident, $detail:expr) => {{
        let detail: String = $detail($req.get_ref());
        let who = authorize_change(&$self.state, &$req, $name, &detail).await?;
        let result = $self
            .state
            .backend()
            .node()
            .$method($req.into_inner())
            .await;
        audit_call(&$self.state, &who, action($name), &detail, &result).await;
        result
    }};
}

type AddStream = Pin<Box<dyn Stream<Item = Result<ClusterAddEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Node for NodeProxy {
    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        read!(self, req, "Status", status)
    }

    async fn get_config(
        &self,
        req: Request<GetConfigRequest>,
    ) -> Result<Response<ConfigReply>, Status> {
        read!(self, req, "GetConfig", get_config)
    }

    async fn validate_config(
        &self,
        req: Request<ConfigText>,
    ) -> Result<Response<ValidateReply>, Status> {
        read!(self, req, "ValidateConfig", validate_config)
    }

    async fn set_config(&self, req: Request<ConfigText>) -> Result<Response<ConfigReply>, Status> {
        change!(
            self,
            req,
            "SetConfig",
            set_config,
            |r: &ConfigText| format!("configuration of {} bytes", r.toml.len())
        )
    }

    async fn list_services(
        &self,
        req: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesReply>, Status> {
        read!(self, req, "ListServices", list_services)
    }

    async fn restart_service(
        &self,
        req: Request<RestartServiceRequest>,
    ) -> Result<Response<ServiceInfo>, Status> {
        change!(
            self,
            req,
            "RestartService",
            restart_service,
            |r: &RestartServiceRequest| format!("service {}", r.name)
        )
    }

    async fn show_firewall(
        &self,
        req: Request<ShowFirewallRequest>,
    ) -> Result<Response<FirewallReply>, Status> {
        read!(self, req, "ShowFirewall", show_firewall)
    }

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<LogsReply>, Status> {
        read!(self, req, "Logs", logs)
    }

    async fn list_peers(
        &self,
        req: Request<ListPeersRequest>,
    ) -> Result<Response<PeersReply>, Status> {
        read!(self, req, "ListPeers", list_peers)
    }

    async fn add_peer(&self, req: Request<PeerRequest>) -> Result<Response<PeersReply>, Status> {
        change!(self, req, "AddPeer", add_peer, |r: &PeerRequest| format!(
            "peer {}",
            r.address
        ))
    }

    async fn remove_peer(&self, req: Request<PeerRequest>) -> Result<Response<PeersReply>, Status> {
        change!(
            self,
            req,
            "RemovePeer",
            remove_peer,
            |r: &PeerRequest| format!("peer {}", r.address)
        )
    }

    async fn cluster_status(
        &self,
        req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusReply>, Status> {
        read!(self, req, "ClusterStatus", cluster_status)
    }

    async fn cluster_form(
        &self,
        req: Request<ClusterFormRequest>,
    ) -> Result<Response<ClusterStatusReply>, Status> {
        change!(
            self,
            req,
            "ClusterForm",
            cluster_form,
            |r: &ClusterFormRequest| format!("cluster {}", r.name)
        )
    }

    type ClusterAddStream = AddStream;

    async fn cluster_add(
        &self,
        req: Request<ClusterAddRequest>,
    ) -> Result<Response<AddStream>, Status> {
        // Never the join code in the trail.
        let detail = format!(
            "address {} roles {}",
            req.get_ref().address,
            req.get_ref().roles.join(",")
        );
        let who = authorize_change(&self.state, &req, "ClusterAdd", &detail).await?;
        let started = Instant::now();
        let upstream = match self
            .state
            .backend()
            .node()
            .cluster_add(req.into_inner())
            .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => {
                self.state.metrics().join(false, elapsed_ms(started));
                audit_call::<()>(
                    &self.state,
                    &who,
                    action("ClusterAdd"),
                    &detail,
                    &Err(status.clone()),
                )
                .await;
                return Err(status);
            }
        };
        let state = self.state.clone();
        // Forward every event; the final one (or the end of the stream, or
        // an error) closes the join's audit event and figures.
        let stream = async_stream(upstream, move |outcome: Result<(), Status>| {
            let state = state.clone();
            let who = who.clone();
            let detail = detail.clone();
            async move {
                state.metrics().join(outcome.is_ok(), elapsed_ms(started));
                audit_call(&state, &who, action("ClusterAdd"), &detail, &outcome).await;
            }
        });
        Ok(Response::new(stream))
    }

    async fn cluster_remove(
        &self,
        req: Request<ClusterRemoveRequest>,
    ) -> Result<Response<ClusterChangeReply>, Status> {
        change!(
            self,
            req,
            "ClusterRemove",
            cluster_remove,
            |r: &ClusterRemoveRequest| format!("node {}", r.node)
        )
    }

    async fn cluster_set_roles(
        &self,
        req: Request<ClusterSetRolesRequest>,
    ) -> Result<Response<ClusterChangeReply>, Status> {
        change!(
            self,
            req,
            "ClusterSetRoles",
            cluster_set_roles,
            |r: &ClusterSetRolesRequest| format!("node {} roles {}", r.node, r.roles.join(","))
        )
    }

    async fn cluster_discovered(
        &self,
        req: Request<ClusterDiscoveredRequest>,
    ) -> Result<Response<ClusterDiscoveredReply>, Status> {
        read!(self, req, "ClusterDiscovered", cluster_discovered)
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Forwards `upstream` and calls `done` once with the join's outcome: the
/// final event's `ok`, an error, an end without a final event, or the
/// client going away (the stream dropped before its end).
fn async_stream<F, Fut>(upstream: tonic::Streaming<ClusterAddEvent>, done: F) -> AddStream
where
    F: Fn(Result<(), Status>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let end = Arc::new(JoinEnd {
        finished: AtomicBool::new(false),
        done: Box::new(move |outcome| Box::pin(done(outcome))),
    });
    let forward = {
        let end = end.clone();
        upstream.then(move |item| {
            let end = end.clone();
            async move {
                let outcome = match &item {
                    Ok(ev) if ev.r#final && ev.ok => Some(Ok(())),
                    Ok(ev) if ev.r#final => {
                        Some(Err(Status::failed_precondition(ev.message.clone())))
                    }
                    Ok(_) => None,
                    Err(status) => Some(Err(status.clone())),
                };
                if let Some(outcome) = outcome {
                    end.finish(outcome).await;
                }
                item
            }
        })
    };
    let guard = DropGuard(end);
    let tail = futures::stream::once(async move {
        let guard = guard;
        guard
            .0
            .finish(Err(Status::unavailable(
                "the join's stream ended without a final event",
            )))
            .await;
        None
    })
    .filter_map(|x: Option<Result<ClusterAddEvent, Status>>| async move { x });
    Box::pin(forward.chain(tail))
}

type Done =
    Box<dyn Fn(Result<(), Status>) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// The join's end, reported once.
struct JoinEnd {
    finished: AtomicBool,
    done: Done,
}

impl JoinEnd {
    async fn finish(&self, outcome: Result<(), Status>) {
        if !self.finished.swap(true, Ordering::SeqCst) {
            (self.done)(outcome).await;
        }
    }
}

/// Reports the join as cancelled when the stream is dropped before its end
/// (the client went away).
struct DropGuard(Arc<JoinEnd>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        if self.0.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        let report = (self.0.done)(Err(Status::cancelled(
            "the client went away before the join ended",
        )));
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(report);
            }
            Err(_) => tracing::warn!("join's end not audited: no runtime"),
        }
    }
}
