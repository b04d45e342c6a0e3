//! A member's `Cluster` service. Every call must come over cluster mutual
//! TLS (the caller's node id is the one its CA-signed certificate names)
//! from a node the member's configuration lists; `Propose`, `Admit`,
//! `Distribute`, `Remove`, `Renew`, `RecordEvent`, `ListEvents` and
//! `SignManagement` are served by the authority only.
//! `PushConfig` is accepted only from the node that is the authority in
//! this member's current configuration: any member holds a valid
//! certificate, only the authority makes configurations.

use std::sync::Arc;

use appliance_cluster::{Change, DiffError, Member, NodeId};
use appliance_pki::{NodeCert, NodeCsr};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::admin::{outcome_to_pb, PushFailure, PushOutcome};
use crate::authority::{Authority, AuthorityError};
use crate::error::PeerError;
use crate::node::{authority_member, AcceptRefusal, PeerNode};
use crate::pb;
use crate::state::ClusterState;
use crate::trail::Event;
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
        AuthorityError::NotAdmitted { .. } => Status::invalid_argument(msg),
        AuthorityError::AuthorityStays { .. } => Status::failed_precondition(msg),
    }
}

fn peer_status(e: &PeerError) -> Status {
    let msg = e.to_string();
    match e {
        PeerError::Authority(a) => authority_status(a),
        PeerError::Unreachable { .. } | PeerError::MemberUnreachable { .. } => {
            Status::unavailable(msg)
        }
        PeerError::Invalid(_) | PeerError::Pki(_) => Status::invalid_argument(msg),
        _ => Status::failed_precondition(msg),
    }
}

fn node_id(text: &str) -> Result<NodeId, Status> {
    Uuid::parse_str(text)
        .map(NodeId)
        .map_err(|e| Status::invalid_argument(format!("{text:?} is not a node id: {e}")))
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
    state.to_pb().map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn push_config(
        &self,
        req: Request<pb::ClusterState>,
    ) -> Result<Response<pb::PushReply>, Status> {
        let (info, caller) = self.caller(&req)?;
        let current = self
            .node
            .member_state()
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        // Only the authority of the configuration this node has may push the
        // next one: that also covers a push that hands the authority to
        // another node (its old holder pushes it) and the last push to a
        // removed node (whose configuration still names the authority).
        let authority = authority_member(&current.config);
        if authority.map(|m| m.id) != Some(caller) {
            let who = match authority {
                Some(m) => format!("{} (node {})", m.hostname, m.id),
                None => "none: the configuration has no single back-end node".into(),
            };
            tracing::warn!(
                peer = %info.remote,
                %caller,
                authority = %who,
                "refused a pushed configuration: the caller is not the authority"
            );
            return Err(Status::permission_denied(format!(
                "node {caller} is not the cluster's authority, so its configuration is not \
                 accepted; the authority is {who}"
            )));
        }
        let offered = ClusterState::from_pb(req.get_ref()).map_err(|e| {
            tracing::warn!(peer = %info.remote, "refused a pushed configuration: {e}");
            Status::invalid_argument(e.to_string())
        })?;
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
        let (info, caller, mut state) = self.member_caller(&req, "GetConfig")?;
        // The authority answers with its record, the newest state there is.
        if let Some(authority) = self
            .node
            .membership()
            .ok()
            .and_then(|m| m.authority.clone())
        {
            state = authority
                .current()
                .await
                .map_err(|e| authority_status(&e))?;
        }
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

    async fn admit(
        &self,
        req: Request<pb::AdmitRequest>,
    ) -> Result<Response<pb::AdmitReply>, Status> {
        let (info, caller, _) = self.member_caller(&req, "Admit")?;
        let authority = self.authority(&info, "Admit")?;
        let member: Member = serde_json::from_str(&req.get_ref().member_json)
            .map_err(|e| Status::invalid_argument(format!("the member is not valid: {e}")))?;
        let node = member.id;
        let csr = NodeCsr::from_der(req.get_ref().csr_der.clone());
        let admission = authority.admit(&csr, member).await.map_err(|e| {
            tracing::warn!(peer = %info.remote, %caller, %node, "admission refused: {e}");
            authority_status(&e)
        })?;
        tracing::info!(
            %caller,
            %node,
            fingerprint = %admission.cert.fingerprint(),
            generation = admission.state.generation(),
            "admitted a joining node and signed its certificate"
        );
        self.node.accept_local(&admission.state).await;
        Ok(Response::new(pb::AdmitReply {
            cert_der: admission.cert.der().to_vec(),
            state: Some(encode(&admission.state)?),
        }))
    }

    async fn distribute(
        &self,
        req: Request<pb::DistributeRequest>,
    ) -> Result<Response<pb::DistributeReply>, Status> {
        let (info, caller, _) = self.member_caller(&req, "Distribute")?;
        let authority = self.authority(&info, "Distribute")?;
        let state = authority
            .current()
            .await
            .map_err(|e| authority_status(&e))?;
        let asked = req.get_ref().generation;
        if state.generation() < asked {
            return Err(Status::failed_precondition(format!(
                "asked to push generation {asked}, but the authority has generation {}",
                state.generation()
            )));
        }
        let mut skip = req
            .get_ref()
            .skip
            .iter()
            .map(|s| node_id(s))
            .collect::<Result<Vec<_>, _>>()?;
        let me = self.node.node_id();
        let report_me = !skip.contains(&me);
        skip.push(me);
        let mut pushes = self
            .node
            .push_to_members(&state, &skip)
            .await
            .map_err(|e| peer_status(&e))?;
        if report_me {
            // The authority has the state already: it made it.
            let own = self.node.member_state().map(|s| s.generation());
            pushes.insert(
                0,
                PushOutcome {
                    node: me,
                    hostname: state
                        .config
                        .member(&me)
                        .map(|m| m.hostname.clone())
                        .unwrap_or_default(),
                    result: own.map_err(|e| PushFailure::Failed(e.to_string())),
                },
            );
        }
        tracing::info!(
            %caller,
            generation = state.generation(),
            failed = pushes.iter().filter(|p| p.result.is_err()).count(),
            "pushed the configuration for a member"
        );
        Ok(Response::new(pb::DistributeReply {
            pushes: pushes.iter().map(outcome_to_pb).collect(),
        }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveReply>, Status> {
        let (info, caller, state) = self.member_caller(&req, "Remove")?;
        self.authority(&info, "Remove")?;
        let node = node_id(&req.get_ref().node_id)?;
        if node == caller {
            return Err(Status::failed_precondition(
                "a node cannot remove itself; remove it from another member",
            ));
        }
        if node == self.node.node_id() {
            let hostname = state
                .config
                .member(&node)
                .map(|m| m.hostname.clone())
                .unwrap_or_default();
            return Err(Status::failed_precondition(format!(
                "{hostname} (node {node}) holds the cluster CA key and is the authority for \
                 changes; it cannot be removed until the cluster has consensus"
            )));
        }
        let report = self.node.remove_member(node).await.map_err(|e| {
            tracing::warn!(peer = %info.remote, %caller, %node, "removal refused: {e}");
            peer_status(&e)
        })?;
        tracing::info!(%caller, %node, generation = report.generation, "removed a member for a member");
        Ok(Response::new(pb::RemoveReply {
            generation: report.generation,
            pushes: report.pushes.iter().map(outcome_to_pb).collect(),
            removed_node: Some(outcome_to_pb(&report.removed_node)),
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

    async fn record_event(&self, req: Request<pb::Event>) -> Result<Response<pb::Event>, Status> {
        let (info, caller, state) = self.member_caller(&req, "RecordEvent")?;
        let authority = self.authority(&info, "RecordEvent")?;
        let mut event = Event::from(req.into_inner());
        // A member records its own events only: the node is the one its
        // certificate names, whatever the event says.
        event.node = state
            .config
            .member(&caller)
            .map(|m| m.hostname.clone())
            .unwrap_or_else(|| caller.to_string());
        let stored = authority.record_event(event).await.map_err(|e| {
            tracing::warn!(peer = %info.remote, %caller, "audit event not recorded: {e}");
            authority_status(&e)
        })?;
        Ok(Response::new(stored.into()))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::EventsReply>, Status> {
        let (info, _, _) = self.member_caller(&req, "ListEvents")?;
        let authority = self.authority(&info, "ListEvents")?;
        let pb::ListEventsRequest { after_seq, limit } = req.into_inner();
        let events = authority
            .events(after_seq, limit)
            .await
            .map_err(|e| authority_status(&e))?;
        Ok(Response::new(pb::EventsReply {
            events: events.into_iter().map(Into::into).collect(),
        }))
    }

    async fn sign_management(
        &self,
        req: Request<pb::SignManagementRequest>,
    ) -> Result<Response<pb::ManagementCertificate>, Status> {
        let (info, caller, _) = self.member_caller(&req, "SignManagement")?;
        let authority = self.authority(&info, "SignManagement")?;
        let signed = authority
            .sign_management(caller, &req.get_ref().csr_pem)
            .await
            .map_err(|e| {
                tracing::warn!(peer = %info.remote, %caller, "management certificate refused: {e}");
                authority_status(&e)
            })?;
        Ok(Response::new(pb::ManagementCertificate {
            cert_pem: signed.cert_pem,
            ca_pem: signed.ca_pem,
        }))
    }
}
