//! A member's `Cluster` service. Every call must come over cluster mutual
//! TLS (the caller's node id is the one its CA-signed certificate names)
//! from a node the member's configuration lists; `Propose`, `Sign` and
//! `Renew` are served by the authority only.

use std::sync::Arc;

use appliance_cluster::{Change, DiffError, NodeId};
use appliance_pki::{NodeCert, NodeCsr};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::authority::{Authority, AuthorityError};
use crate::node::{AcceptRefusal, PeerNode};
use crate::pb;
use crate::state::ClusterState;
use crate::transport::{ChannelKind, PeerInfo};

pub(crate) struct ClusterService {
    node: PeerNode,
}

fn refusal_status(e: &AcceptRefusal) -> Status {
    let msg = e.to_string();
    match e {
        AcceptRefusal::NotMember => Status::failed_precondition(msg),
        AcceptRefusal::Diff(DiffError::Conflict { .. }) => Status::aborted(msg),
        AcceptRefusal::Diff(_) => Status::failed_precondition(msg),
        AcceptRefusal::Invalid(_) => Status::invalid_argument(msg),
        AcceptRefusal::Hook(_) => Status::unavailable(msg),
    }
}

fn authority_status(e: &AuthorityError) -> Status {
    let msg = e.to_string();
    match e {
        AuthorityError::Refused(_) => Status::failed_precondition(msg),
        AuthorityError::Pki(_) => Status::invalid_argument(msg),
        AuthorityError::Persist(_) | AuthorityError::Remote { .. } => Status::unavailable(msg),
        AuthorityError::Unsupported(_) => Status::unimplemented(msg),
    }
}

impl ClusterService {
    pub(crate) fn new(node: PeerNode) -> Self {
        ClusterService { node }
    }

    /// The caller's connection info and node id, if it came over cluster TLS.
    fn caller<T>(&self, req: &Request<T>) -> Result<(PeerInfo, NodeId), Status> {
        let info = req
            .extensions()
            .get::<PeerInfo>()
            .cloned()
            .ok_or_else(|| Status::internal("the connection carries no peer information"))?;
        if info.kind != ChannelKind::Cluster {
            return Err(Status::unauthenticated(
                "cluster calls need cluster mutual TLS; this node is not a member yet",
            ));
        }
        let node = info
            .node_id
            .ok_or_else(|| Status::unauthenticated("the client certificate names no node"))?;
        Ok((info, node))
    }

    /// As [`ClusterService::caller`], and the caller must be a member now.
    fn member_caller<T>(
        &self,
        req: &Request<T>,
        call: &str,
    ) -> Result<(PeerInfo, NodeId, ClusterState), Status> {
        let (info, node) = self.caller(req)?;
        let state = self
            .node
            .member_state()
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        if state.config.member(&node).is_none() {
            tracing::warn!(peer = %info.remote, %node, "{call} refused: the caller is not a member");
            return Err(Status::permission_denied(format!(
                "node {node} is not a member of this cluster (generation {})",
                state.generation()
            )));
        }
        Ok((info, node, state))
    }

    fn authority(&self, info: &PeerInfo, call: &str) -> Result<Arc<dyn Authority>, Status> {
        let m = self
            .node
            .membership()
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        m.authority.clone().ok_or_else(|| {
            tracing::warn!(peer = %info.remote, "{call} refused: this node is not the authority");
            Status::failed_precondition(
                "this node is not the cluster's authority; send changes to the back-end node",
            )
        })
    }
}

fn encode(state: &ClusterState) -> Result<pb::ClusterState, Status> {
    state.to_pb().map_err(Status::internal)
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn push_config(
        &self,
        req: Request<pb::ClusterState>,
    ) -> Result<Response<pb::PushReply>, Status> {
        let (info, caller) = self.caller(&req)?;
        let offered = ClusterState::from_pb(req.get_ref()).map_err(|e| {
            tracing::warn!(peer = %info.remote, "refused a pushed configuration: {e}");
            Status::invalid_argument(e)
        })?;
        let current = self
            .node
            .member_state()
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        // A member that joined while this node was down is only in the offered one.
        if current.config.member(&caller).is_none() && offered.config.member(&caller).is_none() {
            tracing::warn!(peer = %info.remote, %caller, "refused a pushed configuration: the caller is not a member");
            return Err(Status::permission_denied(format!(
                "node {caller} is not a member of this cluster"
            )));
        }
        let offered_generation = offered.generation();
        match self.node.accept_state(offered).await {
            Ok(generation) => Ok(Response::new(pb::PushReply { generation })),
            Err(e) => {
                tracing::warn!(
                    peer = %info.remote,
                    %caller,
                    offered = offered_generation,
                    "refused a pushed configuration: {e}"
                );
                Err(refusal_status(&e))
            }
        }
    }

    async fn get_config(
        &self,
        req: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::ClusterState>, Status> {
        let (info, caller, state) = self.member_caller(&req, "GetConfig")?;
        tracing::debug!(
            peer = %info.remote,
            %caller,
            have = req.get_ref().have_generation,
            generation = state.generation(),
            "configuration asked"
        );
        Ok(Response::new(encode(&state)?))
    }

    async fn propose(
        &self,
        req: Request<pb::ProposeRequest>,
    ) -> Result<Response<pb::ClusterState>, Status> {
        let (info, caller, _) = self.member_caller(&req, "Propose")?;
        let authority = self.authority(&info, "Propose")?;
        let change: Change = serde_json::from_str(&req.get_ref().change_json)
            .map_err(|e| Status::invalid_argument(format!("the change is not valid: {e}")))?;
        let next = authority.propose(change).await.map_err(|e| {
            tracing::warn!(peer = %info.remote, %caller, "proposed change refused: {e}");
            authority_status(&e)
        })?;
        if let Err(e) = self.node.accept_state(next.clone()).await {
            tracing::warn!(
                generation = next.generation(),
                "the authority could not follow its own change: {e}"
            );
        }
        Ok(Response::new(encode(&next)?))
    }

    async fn sign(
        &self,
        req: Request<pb::SignRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let (info, caller, _) = self.member_caller(&req, "Sign")?;
        let authority = self.authority(&info, "Sign")?;
        let node = Uuid::parse_str(&req.get_ref().node_id)
            .map(NodeId)
            .map_err(|e| {
                Status::invalid_argument(format!(
                    "{:?} is not a node id: {e}",
                    req.get_ref().node_id
                ))
            })?;
        let csr = NodeCsr::from_der(req.get_ref().csr_der.clone());
        let cert = authority.sign(&csr, node).await.map_err(|e| {
            tracing::warn!(peer = %info.remote, %caller, %node, "signing refused: {e}");
            authority_status(&e)
        })?;
        tracing::info!(%caller, %node, fingerprint = %cert.fingerprint(), "signed a joining node's certificate");
        Ok(Response::new(pb::Certificate {
            cert_der: cert.der().to_vec(),
        }))
    }

    async fn renew(
        &self,
        req: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let (info, caller, _) = self.member_caller(&req, "Renew")?;
        let authority = self.authority(&info, "Renew")?;
        let current = NodeCert::from_der(info.cert_der.as_ref().clone())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let csr = NodeCsr::from_der(req.get_ref().csr_der.clone());
        let cert = authority.renew(&current, &csr).await.map_err(|e| {
            tracing::warn!(peer = %info.remote, %caller, "renewal refused: {e}");
            authority_status(&e)
        })?;
        tracing::info!(%caller, fingerprint = %cert.fingerprint(), "renewed a member's certificate");
        Ok(Response::new(pb::Certificate {
            cert_der: cert.der().to_vec(),
        }))
    }
}
