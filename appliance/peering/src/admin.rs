//! What a member does on an administrator's behalf besides joining (see
//! [`crate::join`]): make a change and push it ([`PeerNode::apply_change`]),
//! remove a member ([`PeerNode::remove_member`]); and what a member does for
//! itself: catch up after being down ([`PeerNode::catch_up`]) and renew its
//! certificate ([`PeerNode::renew_certificate`]).
//!
//! Every change is made by the authority, followed here, then pushed to
//! the other members in parallel, each push bounded in time; a member that
//! does not answer is reported and catches up later.

use std::time::Duration;

use appliance_cluster::{Change, ChangeError, Member, MemberState, NodeId};
use appliance_pki::{NodeCert, SharedRevocations};

use crate::client::ClusterDialer;
use crate::error::PeerError;
use crate::node::PeerNode;
use crate::pb;
use crate::state::ClusterState;

/// The outcome of pushing a generation to one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The member.
    pub node: NodeId,
    /// Its hostname.
    pub hostname: String,
    /// Its generation after the push, or why it failed.
    pub result: Result<u64, String>,
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
        let wire = state.to_pb().map_err(PeerError::Invalid)?;
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

    /// Has the authority make `change`, follows it here and pushes it to
    /// every other member.
    pub async fn apply_change(&self, change: Change) -> Result<ChangeReport, PeerError> {
        let authority = self.authority()?;
        let state = authority.propose(change).await?;
        self.accept_local(&state).await;
        let pushes = self.push_to_members(&state, &[self.node_id()]).await?;
        Ok(ChangeReport { state, pushes })
    }

    /// Removes `node`: drains it (state `removing`, pushed to every member),
    /// then removes it and revokes its certificates (pushed to every
    /// remaining member, and last to the removed node, so it knows it left).
    pub async fn remove_member(&self, node: NodeId) -> Result<RemoveReport, PeerError> {
        if node == self.node_id() {
            return Err(PeerError::Invalid(
                "a node cannot remove itself; remove it from another member".into(),
            ));
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
        let wire = removed.state.to_pb().map_err(PeerError::Invalid)?;
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

    /// Asks every other member for its configuration and accepts the newest
    /// (a node that was down). Returns this node's generation after.
    pub async fn catch_up(&self) -> Result<u64, PeerError> {
        let state = self.member_state()?;
        let dialer = self.dialer()?;
        let limit = self.inner.timeouts.rpc;
        let have = state.generation();
        let asks = state
            .config
            .members()
            .filter(|m| m.id != self.node_id())
            .cloned()
            .map(|m| {
                let dialer = dialer.clone();
                async move {
                    let ask = async {
                        let mut client = dialer.connect(&m).await?;
                        let reply = client
                            .get_config(pb::GetConfigRequest {
                                have_generation: have,
                            })
                            .await
                            .map_err(|s| status_message(&m.hostname, "GetConfig", &s))?;
                        ClusterState::from_pb(reply.get_ref()).map_err(|detail| {
                            PeerError::Protocol {
                                peer: m.hostname.clone(),
                                what: "configuration",
                                detail,
                            }
                        })
                    };
                    match tokio::time::timeout(limit, ask).await {
                        Ok(r) => r,
                        Err(_) => Err(PeerError::MemberUnreachable {
                            node: m.id,
                            hostname: m.hostname.clone(),
                            detail: format!("no answer within {limit:?}"),
                        }),
                    }
                }
            });
        let answers = futures::future::join_all(asks).await;
        let mut errors = Vec::new();
        let mut best: Option<ClusterState> = None;
        for a in answers {
            match a {
                Ok(s) if s.config.cluster_id() == state.config.cluster_id() => {
                    if best
                        .as_ref()
                        .is_none_or(|b| s.generation() > b.generation())
                    {
                        best = Some(s);
                    }
                }
                Ok(s) => errors.push(format!(
                    "a member answered for another cluster {}",
                    s.config.cluster_id()
                )),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let Some(best) = best else {
            return Err(PeerError::Invalid(format!(
                "no member answered with the configuration: {}",
                errors.join("; ")
            )));
        };
        self.accept_state(best)
            .await
            .map_err(|e| PeerError::Invalid(e.to_string()))
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
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
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
