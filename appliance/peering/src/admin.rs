//! What a member does on an administrator's behalf besides joining (see
//! [`crate::join`]): make a change and push it ([`PeerNode::apply_change`]),
//! remove a member ([`PeerNode::remove_member`]); and what a member does for
//! itself: catch up after being down ([`PeerNode::catch_up`]) and renew its
//! certificate ([`PeerNode::renew_certificate`]).
//!
//! Every change is made by the authority, followed here, then pushed to
//! the other members in parallel, each push bounded in time; a member that
//! does not answer is reported and catches up later. Members accept a
//! configuration only from the authority (a push from it, or its answer
//! when catching up), so the authority is the one that pushes: on another
//! member, a change is proposed to the authority and then the authority is
//! asked to push it (`Distribute`), and a removal is the authority's from
//! start to end (`Remove`), including the last push to the removed node.

use std::time::Duration;

use appliance_cluster::{Change, ChangeError, Member, MemberState, NodeId};
use appliance_pki::{NodeCert, SharedRevocations};
use uuid::Uuid;

use crate::authority::SignedManagementCert;
use crate::client::ClusterDialer;
use crate::error::PeerError;
use crate::node::PeerNode;
use crate::pb;
use crate::state::ClusterState;
use crate::trail::Event;

/// The outcome of pushing a generation to one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The member.
    pub node: NodeId,
    /// Its hostname.
    pub hostname: String,
    /// Its generation after the push, or why it failed.
    pub result: Result<u64, PushFailure>,
}

/// Why a member did not take a pushed generation. It is compared and
/// cloned with the outcome, and crosses the wire as text, so the causes
/// are kept as their messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushFailure {
    /// The member did not answer within the limit.
    #[error("no answer within {limit:?}")]
    Timeout {
        /// The limit.
        limit: Duration,
    },
    /// The member could not be reached or refused the push.
    #[error("{0}")]
    Failed(String),
    /// The authority, asked to push, could not be reached.
    #[error("the authority {authority} was not reached to push it: {detail}")]
    AuthorityUnreached {
        /// Its hostname.
        authority: String,
        /// Why.
        detail: String,
    },
    /// A failure the authority reported over the wire, in its words.
    #[error("{0}")]
    Reported(String),
}

/// What a change did.
#[derive(Debug, Clone)]
pub struct ChangeReport {
    /// The new state.
    pub state: ClusterState,
    /// One outcome per other member.
    pub pushes: Vec<PushOutcome>,
}

/// What a removal did.
#[derive(Debug, Clone)]
pub struct RemoveReport {
    /// The generation without the node.
    pub generation: u64,
    /// Pushes of the drain step and of the removal to the members.
    pub pushes: Vec<PushOutcome>,
    /// The last push, to the removed node itself.
    pub removed_node: PushOutcome,
}

pub(crate) fn status_message(peer: &str, call: &'static str, s: &tonic::Status) -> PeerError {
    PeerError::Refused {
        peer: peer.to_string(),
        call,
        message: s.message().to_string(),
    }
}

impl PeerNode {
    /// Accepts a state this node obtained from the authority itself.
    pub(crate) async fn accept_local(&self, state: &ClusterState) {
        if let Err(e) = self.accept_state(state.clone()).await {
            tracing::warn!(
                generation = state.generation(),
                "this node could not follow the cluster change it made: {e}"
            );
        }
    }

    /// Pushes `state` to every member of it not in `skip`, in parallel,
    /// each within the RPC time limit.
    pub(crate) async fn push_to_members(
        &self,
        state: &ClusterState,
        skip: &[NodeId],
    ) -> Result<Vec<PushOutcome>, PeerError> {
        let dialer = self.dialer()?;
        let wire = state.to_pb()?;
        let pushes = state
            .config
            .members()
            .filter(|m| !skip.contains(&m.id))
            .map(|m| {
                push_one(
                    &dialer,
                    m.clone(),
                    wire.clone(),
                    None,
                    self.inner.timeouts.rpc,
                )
            });
        Ok(futures::future::join_all(pushes).await)
    }

    /// Has `state` pushed to every member of it not in `skip`. On the
    /// authority that is its own push; on another member the authority is
    /// asked to push its current state (at least `state`'s generation). If
    /// the authority cannot be asked, every push is reported failed (the
    /// members catch up later), except the authority's own: it made the
    /// change.
    pub(crate) async fn distribute(
        &self,
        state: &ClusterState,
        skip: &[NodeId],
    ) -> Result<Vec<PushOutcome>, PeerError> {
        if self.is_authority() {
            return self.push_to_members(state, skip).await;
        }
        let target = self.authority_target()?;
        let dialer = self.dialer()?;
        // The authority's pushes run in parallel, each within the RPC limit.
        let limit = self.inner.timeouts.rpc * 2;
        let asked = async {
            let mut client = dialer.connect_with_rpc_limit(&target, limit).await?;
            let reply = client
                .distribute(pb::DistributeRequest {
                    generation: state.generation(),
                    skip: skip.iter().map(ToString::to_string).collect(),
                })
                .await
                .map_err(|s| status_message(&target.hostname, "Distribute", &s))?;
            reply
                .into_inner()
                .pushes
                .iter()
                .map(|p| outcome_from_pb(p, &target.hostname))
                .collect::<Result<Vec<_>, _>>()
        };
        match asked.await {
            Ok(pushes) => Ok(pushes),
            Err(e) => {
                tracing::warn!(
                    authority = %target.hostname,
                    generation = state.generation(),
                    "the authority could not be asked to push the change: {e}"
                );
                Ok(state
                    .config
                    .members()
                    .filter(|m| !skip.contains(&m.id))
                    .map(|m| PushOutcome {
                        node: m.id,
                        hostname: m.hostname.clone(),
                        result: if m.id == target.id {
                            Ok(state.generation())
                        } else {
                            Err(PushFailure::AuthorityUnreached {
                                authority: target.hostname.clone(),
                                detail: e.to_string(),
                            })
                        },
                    })
                    .collect())
            }
        }
    }

    /// Records `event` in the cluster's audit trail, at the authority
    /// (this node's own, or forwarded to it); the event as stored.
    pub async fn record_event(&self, event: Event) -> Result<Event, PeerError> {
        Ok(self.authority()?.record_event(event).await?)
    }

    /// The cluster's audit trail from the authority: the newest `limit`
    /// events after `after_seq`, oldest first.
    pub async fn events(&self, after_seq: u64, limit: u32) -> Result<Vec<Event>, PeerError> {
        Ok(self.authority()?.events(after_seq, limit).await?)
    }

    /// Has the authority sign this node's management-port certificate from
    /// the PEM request `csr_pem` (for this node's hostname and addresses in
    /// the configuration only).
    pub async fn sign_management(&self, csr_pem: &str) -> Result<SignedManagementCert, PeerError> {
        Ok(self
            .authority()?
            .sign_management(self.node_id(), csr_pem)
            .await?)
    }

    /// Has the authority make `change`, follows it here and has it pushed
    /// to every other member.
    pub async fn apply_change(&self, change: Change) -> Result<ChangeReport, PeerError> {
        let authority = self.authority()?;
        let state = authority.propose(change).await?;
        self.accept_local(&state).await;
        let pushes = self.distribute(&state, &[self.node_id()]).await?;
        Ok(ChangeReport { state, pushes })
    }

    /// Removes `node`: drains it (state `removing`, pushed to every member),
    /// then removes it and revokes its certificates (pushed to every
    /// remaining member, and last to the removed node, so it knows it left).
    /// All of it is done by the authority (asked over `Remove` from another
    /// member), since members accept configurations only from it.
    pub async fn remove_member(&self, node: NodeId) -> Result<RemoveReport, PeerError> {
        if node == self.node_id() {
            return Err(PeerError::Invalid(
                "a node cannot remove itself; remove it from another member".into(),
            ));
        }
        if !self.is_authority() {
            return self.remove_through_authority(node).await;
        }
        let authority = self.authority()?;
        let before = authority.current().await?;
        let member = before
            .config
            .member(&node)
            .cloned()
            .ok_or(ChangeError::UnknownNode { node })?;
        let mut pushes = Vec::new();
        let draining = if member.state == MemberState::Removing {
            before
        } else {
            let report = self
                .apply_change(Change::SetState {
                    node,
                    state: MemberState::Removing,
                })
                .await?;
            pushes.extend(report.pushes);
            report.state
        };
        let removed = self.apply_change(Change::Remove { node }).await?;
        pushes.extend(removed.pushes);
        // The removed node's certificate is revoked now; this one push
        // trusts it with the list from before.
        let dialer = self.dialer()?;
        let wire = removed.state.to_pb()?;
        let before_revocation = SharedRevocations::new(draining.revocations.clone());
        let removed_node = push_one(
            &dialer,
            member,
            wire,
            Some(before_revocation),
            self.inner.timeouts.rpc,
        )
        .await;
        Ok(RemoveReport {
            generation: removed.state.generation(),
            pushes,
            removed_node,
        })
    }

    /// The removal, asked of the authority; then this node follows the
    /// authority's state (it was pushed to it too, unless that failed).
    async fn remove_through_authority(&self, node: NodeId) -> Result<RemoveReport, PeerError> {
        let target = self.authority_target()?;
        // Three rounds of pushes on the authority (drain, removal, the
        // removed node), each within the RPC limit.
        let limit = self.inner.timeouts.rpc * 4;
        let mut client = self
            .dialer()?
            .connect_with_rpc_limit(&target, limit)
            .await?;
        let reply = client
            .remove(pb::RemoveRequest {
                node_id: node.to_string(),
            })
            .await
            .map_err(|s| status_message(&target.hostname, "Remove", &s))?
            .into_inner();
        let pushes = reply
            .pushes
            .iter()
            .map(|p| outcome_from_pb(p, &target.hostname))
            .collect::<Result<Vec<_>, _>>()?;
        let removed_node = reply
            .removed_node
            .as_ref()
            .ok_or_else(|| PeerError::Protocol {
                peer: target.hostname.clone(),
                what: "removal report",
                detail: "it does not say how the removed node was told".into(),
            })
            .and_then(|p| outcome_from_pb(p, &target.hostname))?;
        match self.authority()?.current().await {
            Ok(state) => self.accept_local(&state).await,
            Err(e) => tracing::warn!("could not follow the removal made by the authority: {e}"),
        }
        Ok(RemoveReport {
            generation: reply.generation,
            pushes,
            removed_node,
        })
    }

    /// Brings this node up to date after it was down: on the authority,
    /// from its own record; elsewhere, from the authority (the only node
    /// whose configurations a member accepts; another member's answer
    /// could be made up). Returns this node's generation after.
    ///
    /// A node that was removed while it was down is refused by the
    /// authority (its certificate is revoked, or it is not listed any more):
    /// that is [`PeerError::RemovedWhileDown`], not a failure to retry.
    pub async fn catch_up(&self) -> Result<u64, PeerError> {
        let state = self.member_state()?;
        let accept = |e: crate::node::AcceptRefusal| PeerError::Invalid(e.to_string());
        if let Some(authority) = self.membership()?.authority.clone() {
            let current = authority.current().await?;
            return self.accept_state(current).await.map_err(accept);
        }
        let target = self.authority_target()?;
        let dialer = self.dialer()?;
        let limit = self.inner.timeouts.rpc;
        let have = state.generation();
        let removed = |detail: String| PeerError::RemovedWhileDown {
            node: target.id,
            hostname: target.hostname.clone(),
            detail,
        };
        let ask = async {
            let mut client = dialer.connect(&target).await?;
            let s = match client
                .get_config(pb::GetConfigRequest {
                    have_generation: have,
                })
                .await
            {
                Ok(reply) => return Ok(reply),
                Err(s) => s,
            };
            if s.code() == tonic::Code::PermissionDenied {
                return Err(removed(format!("does not list it: {}", s.message())));
            }
            // In TLS 1.3 the server judges the client's certificate after
            // the client's side of the handshake is done, so a refusal
            // reaches the call only as a closed connection (or a failed
            // write): ask the authority's TLS for its verdict directly.
            if dialer
                .refusal_of_own_certificate(&target)
                .await
                .is_some_and(|e| is_revoked_alert(&e))
            {
                return Err(removed("refuses its certificate as revoked".into()));
            }
            Err(status_message(&target.hostname, "GetConfig", &s))
        };
        let reply = match tokio::time::timeout(limit, ask).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(PeerError::MemberUnreachable {
                    node: target.id,
                    hostname: target.hostname.clone(),
                    detail: format!("no answer within {limit:?}"),
                })
            }
        };
        let offered = ClusterState::from_pb(reply.get_ref()).map_err(|e| PeerError::Protocol {
            peer: target.hostname.clone(),
            what: "configuration",
            detail: e.to_string(),
        })?;
        self.accept_state(offered).await.map_err(accept)
    }

    /// Has the authority renew this node's certificate (same key), stores
    /// it through the hooks and serves with it from the next connection on.
    pub async fn renew_certificate(&self) -> Result<NodeCert, PeerError> {
        let membership = self.membership()?;
        let authority = self.authority()?;
        let cert = authority.renew(&membership.cert, &self.csr()?).await?;
        if cert.node_id() != self.node_id().uuid()
            || !cert.matches_key(&self.inner.key)
            || !membership.ca.signed(cert.der())
        {
            return Err(PeerError::Invalid(format!(
                "the renewed certificate {} is not this node's, for its key, by its CA",
                cert.fingerprint()
            )));
        }
        self.inner.hooks.certificate_renewed(&cert).await?;
        self.replace_cert(cert.clone())?;
        Ok(cert)
    }
}

/// A push outcome for the wire.
pub(crate) fn outcome_to_pb(p: &PushOutcome) -> pb::PushResult {
    pb::PushResult {
        node_id: p.node.to_string(),
        hostname: p.hostname.clone(),
        result: Some(match &p.result {
            Ok(generation) => pb::push_result::Result::Generation(*generation),
            Err(e) => pb::push_result::Result::Error(e.to_string()),
        }),
    }
}

/// A push outcome from the wire, as `peer` reported it.
fn outcome_from_pb(p: &pb::PushResult, peer: &str) -> Result<PushOutcome, PeerError> {
    let bad = |detail: String| PeerError::Protocol {
        peer: peer.to_string(),
        what: "push outcome",
        detail,
    };
    let node = Uuid::parse_str(&p.node_id)
        .map(NodeId)
        .map_err(|e| bad(format!("{:?} is not a node id: {e}", p.node_id)))?;
    let result = match &p.result {
        Some(pb::push_result::Result::Generation(g)) => Ok(*g),
        Some(pb::push_result::Result::Error(e)) => Err(PushFailure::Reported(e.clone())),
        None => return Err(bad(format!("the push to {} has no result", p.hostname))),
    };
    Ok(PushOutcome {
        node,
        hostname: p.hostname.clone(),
        result,
    })
}

fn is_revoked_alert(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked)
    )
}

/// One push, within `limit`; `revocations` overrides the dialer's list.
async fn push_one(
    dialer: &ClusterDialer,
    member: Member,
    wire: pb::ClusterState,
    revocations: Option<SharedRevocations>,
    limit: Duration,
) -> PushOutcome {
    let push = async {
        let mut client = match revocations {
            Some(r) => dialer.connect_checking(&member, r).await?,
            None => dialer.connect(&member).await?,
        };
        client
            .push_config(wire)
            .await
            .map(|r| r.into_inner().generation)
            .map_err(|s| status_message(&member.hostname, "PushConfig", &s))
    };
    let result = match tokio::time::timeout(limit, push).await {
        Ok(r) => r.map_err(|e| PushFailure::Failed(e.to_string())),
        Err(_) => Err(PushFailure::Timeout { limit }),
    };
    if let Err(e) = &result {
        tracing::warn!(node = %member.id, hostname = %member.hostname, "push failed: {e}");
    }
    PushOutcome {
        node: member.id,
        hostname: member.hostname,
        result,
    }
}
