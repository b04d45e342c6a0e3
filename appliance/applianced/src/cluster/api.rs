//! The cluster calls of the node API (`appliance.v1.Node`'s `Cluster*`),
//! translated into peer-side operations and their replies into messages.
//! Every refusal comes back as a sentence saying what to do.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use appliance_api::v1::{
    ClusterAddEvent, ClusterAddRequest, ClusterChangeReply, ClusterDiscoveredReply, ClusterMember,
    ClusterStatusReply, DiscoveredAppliance, PushResult,
};
use appliance_cluster::{Change, JoinCode, NodeId, Role};
use appliance_peering::{authority_member, JoinProgress, NodeStatus, PushOutcome};
use futures::{Stream, StreamExt};
use tracing::{info, warn};

use super::ctx::{lock, not_member, parse_roles, Cluster, ClusterError, Ctx};
use super::store::MembershipRecord;
use crate::time::unix_ms;

/// The progress events of one join, as the API streams them.
pub type AddStream = Pin<Box<dyn Stream<Item = Result<ClusterAddEvent, tonic::Status>> + Send>>;

/// The cluster fields of `appliancectl status`.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// "unjoined", "member" or "idle".
    pub state: String,
    /// The join code, while unjoined.
    pub join_code: String,
    /// When it expires (Unix ms).
    pub join_code_expires_unix_ms: u64,
    /// The cluster, as a member.
    pub cluster_id: String,
    /// Its generation, as a member.
    pub generation: u64,
}

fn state_name(s: &NodeStatus) -> &'static str {
    match s {
        NodeStatus::Idle => "idle",
        NodeStatus::Unjoined { .. } => "unjoined",
        NodeStatus::Member { .. } => "member",
    }
}

fn role_names(roles: &std::collections::BTreeSet<Role>) -> Vec<String> {
    roles.iter().map(ToString::to_string).collect()
}

/// `10.0.0.2`, `10.0.0.2:7443`, `fd00::2` or `[fd00::2]:7443`.
fn parse_address(text: &str, default_port: u16) -> Result<SocketAddr, ClusterError> {
    let text = text.trim();
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| {
            ClusterError::Invalid(format!(
                "{text:?} is not an IP address; give the appliance's address as its console \
                 shows it, such as 10.0.0.2 or fd00::2 (optionally with the peer port, \
                 10.0.0.2:{default_port})"
            ))
        })
}

fn push_result(p: &PushOutcome) -> PushResult {
    PushResult {
        node_id: p.node.to_string(),
        hostname: p.hostname.clone(),
        ok: p.result.is_ok(),
        message: match &p.result {
            Ok(g) => format!("has generation {g}"),
            Err(e) => e.to_string(),
        },
    }
}

/// Names nodes in events: from the join's own facts, else the membership.
struct Names<'a> {
    ctx: &'a Ctx,
    seen: &'a mut HashMap<NodeId, String>,
}

impl Names<'_> {
    fn of(&self, node: &NodeId) -> String {
        self.seen
            .get(node)
            .cloned()
            .or_else(|| {
                self.ctx
                    .peer
                    .cluster_state()
                    .and_then(|s| s.config.member(node).map(|m| m.hostname.clone()))
            })
            .unwrap_or_else(|| node.to_string())
    }
}

fn event(names: &mut Names<'_>, p: JoinProgress, started: Instant) -> ClusterAddEvent {
    let mut e = ClusterAddEvent {
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ..ClusterAddEvent::default()
    };
    let node = |e: &mut ClusterAddEvent, id: &NodeId, names: &Names<'_>| {
        e.node_id = id.to_string();
        e.hostname = names.of(id);
    };
    match p {
        JoinProgress::Connecting { address } => {
            e.kind = "connecting".into();
            e.message = format!("connecting to the appliance at {address}");
        }
        JoinProgress::Facts {
            node: id,
            hostname,
            addresses,
            version,
            fingerprint,
        } => {
            names.seen.insert(id, hostname.clone());
            node(&mut e, &id, names);
            e.kind = "facts".into();
            let addrs: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            e.message = format!(
                "{hostname} answered: version {version}, addresses {}, certificate {}",
                addrs.join(", "),
                fingerprint
            );
        }
        JoinProgress::PreflightPassed { warnings } => {
            e.kind = "preflight_passed".into();
            e.message = "preflight checks passed".into();
            e.details = warnings;
        }
        JoinProgress::PreflightFailed { failures } => {
            e.kind = "preflight_failed".into();
            e.message = format!("{} preflight check(s) failed", failures.len());
            e.details = failures;
        }
        JoinProgress::Handshake { session } => {
            e.kind = "handshake".into();
            e.message = format!(
                "both sides proved the join code over the connection's certificates (session {session})"
            );
        }
        JoinProgress::Certified {
            node: id,
            fingerprint,
        } => {
            node(&mut e, &id, names);
            e.kind = "certified".into();
            e.message = format!(
                "the cluster CA signed the certificate of {} ({fingerprint})",
                e.hostname
            );
        }
        JoinProgress::Added {
            node: id,
            generation,
        } => {
            node(&mut e, &id, names);
            e.kind = "added".into();
            e.generation = generation;
            e.message = format!("{} is a member at generation {generation}", e.hostname);
        }
        JoinProgress::ConfigPushed {
            node: id,
            generation,
        } => {
            node(&mut e, &id, names);
            e.kind = "config_pushed".into();
            e.generation = generation;
            e.message = format!("{} has generation {generation}", e.hostname);
        }
        JoinProgress::PushFailed {
            node: id,
            hostname,
            reason,
        } => {
            e.node_id = id.to_string();
            e.hostname = hostname.clone();
            e.kind = "push_failed".into();
            e.message =
                format!("{hostname} did not take the change (it catches up later): {reason}");
        }
        JoinProgress::Done {
            node: id,
            generation,
        } => {
            node(&mut e, &id, names);
            e.kind = "done".into();
            e.generation = generation;
            e.r#final = true;
            e.ok = true;
            e.message = format!(
                "{} joined the cluster (generation {generation}); it becomes active once its \
                 services are healthy",
                e.hostname
            );
        }
        JoinProgress::Failed { reason } => {
            e.kind = "failed".into();
            e.r#final = true;
            e.message = reason;
        }
    }
    e
}

impl Cluster {
    /// The cluster fields of the node's status.
    pub fn summary(&self) -> Summary {
        let ctx = &self.ctx;
        let status = ctx.peer.status();
        let mut s = Summary {
            state: state_name(&status).to_owned(),
            ..Summary::default()
        };
        match status {
            NodeStatus::Unjoined { .. } => {
                if let Some((code, expires)) = ctx.join_code() {
                    s.join_code = code;
                    s.join_code_expires_unix_ms = unix_ms(expires);
                }
            }
            NodeStatus::Member {
                cluster_id,
                generation,
                ..
            } => {
                s.cluster_id = cluster_id.to_string();
                s.generation = generation;
            }
            NodeStatus::Idle => {}
        }
        s
    }

    /// `ClusterStatus`.
    pub fn status(&self) -> ClusterStatusReply {
        let ctx = &self.ctx;
        let status = ctx.peer.status();
        let summary = self.summary();
        let mut reply = ClusterStatusReply {
            node_state: summary.state,
            node_id: ctx.me.to_string(),
            join_code: summary.join_code,
            join_code_expires_unix_ms: summary.join_code_expires_unix_ms,
            peer_port: u32::from(ctx.ports.peer),
            ..ClusterStatusReply::default()
        };
        match status {
            NodeStatus::Unjoined { fingerprint } => reply.fingerprint = fingerprint.to_string(),
            NodeStatus::Member {
                fingerprint,
                authority,
                ..
            } => {
                reply.fingerprint = fingerprint.to_string();
                reply.authority = authority;
            }
            NodeStatus::Idle => {}
        }
        if let Some(state) = ctx.member_state() {
            let authority = authority_member(&state.config).map(|m| m.id);
            reply.cluster_id = state.config.cluster_id().to_string();
            reply.generation = state.generation();
            reply.warnings = state
                .config
                .warnings()
                .iter()
                .map(ToString::to_string)
                .collect();
            reply.members = state
                .config
                .members()
                .map(|m| ClusterMember {
                    node_id: m.id.to_string(),
                    hostname: m.hostname.clone(),
                    addresses: m.addresses.iter().map(ToString::to_string).collect(),
                    roles: role_names(&m.roles),
                    state: m.state.to_string(),
                    version: m.version.clone(),
                    fingerprint: m.fingerprint.to_string(),
                    this_node: m.id == ctx.me,
                    authority: Some(m.id) == authority,
                })
                .collect();
        }
        reply
    }

    /// `ClusterForm`: this node becomes the first member, front-end and
    /// back-end, and the authority (it keeps the CA key).
    pub async fn form(&self, name: &str) -> Result<ClusterStatusReply, ClusterError> {
        let ctx = &self.ctx;
        if let NodeStatus::Member { cluster_id, .. } = ctx.peer.status() {
            return Err(ClusterError::State(format!(
                "this node is already a member of cluster {cluster_id}; to form another, \
                 remove it from that cluster first (from another member)"
            )));
        }
        ctx.refresh_facts().await;
        let facts = ctx.peer.facts();
        if facts.addresses.is_empty() {
            return Err(ClusterError::State(
                "this node has no configured address for its peers to reach it on; \
                 configure one (appliancectl config set) and form the cluster again"
                    .into(),
            ));
        }
        let name = match name.trim() {
            "" => facts.hostname.clone(),
            n => n.to_owned(),
        };
        let formed =
            ctx.peer
                .form_cluster(uuid::Uuid::new_v4(), &name, Arc::new(ctx.store.persist()))?;
        let stored = ctx.store.save_ca_key(&formed.ca_key_pem).and_then(|()| {
            ctx.store.save_membership(&MembershipRecord {
                ca_pem: formed.ca.to_pem(),
                cert_pem: formed.cert.to_pem(),
                state: formed.state.clone(),
            })
        });
        if let Err(e) = stored {
            // Not formed after all: nothing of it may survive a restart.
            if let Err(c) = ctx.store.clear() {
                warn!("could not clear the half-formed cluster: {c}");
            }
            if let Err(u) = ctx.wait_for_join() {
                warn!("cannot wait to be joined again: {u}");
            }
            return Err(e.into());
        }
        ctx.stop_waiting();
        info!(cluster = %formed.state.config.cluster_id(), "formed a cluster");
        if let Err(e) = ctx
            .node
            .set_cluster(ctx.part_for(Some(&formed.state)))
            .await
        {
            // The reconcile loop tries again; the cluster exists either way.
            warn!("the node could not follow its new cluster yet: {e}");
        }
        ctx.carry_own_admin().await;
        Ok(self.status())
    }

    /// `ClusterAdd`: the join's progress, ending with a final event.
    pub fn add(&self, req: ClusterAddRequest) -> Result<AddStream, ClusterError> {
        let ctx = self.ctx.clone();
        if ctx.member_state().is_none() {
            return Err(not_member());
        }
        let address = parse_address(&req.address, ctx.ports.peer)?;
        let code = JoinCode::parse(&req.code).map_err(|e| ClusterError::Invalid(e.to_string()))?;
        let mut roles = parse_roles(&req.roles)?;
        if roles.is_empty() {
            roles.insert(Role::Frontend);
        }
        info!(%address, roles = ?roles, "adding an appliance to the cluster");
        let started = Instant::now();
        let progress = ctx.peer.join_candidate(address, code, roles);
        let mut seen = HashMap::new();
        let stream = progress.map(move |p| {
            let mut names = Names {
                ctx: &ctx,
                seen: &mut seen,
            };
            Ok(event(&mut names, p, started))
        });
        Ok(Box::pin(stream))
    }

    fn change_reply(&self, generation: u64, pushes: Vec<PushResult>) -> ClusterChangeReply {
        let warnings = self
            .ctx
            .member_state()
            .map(|s| {
                s.config
                    .warnings()
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            })
            .unwrap_or_default();
        ClusterChangeReply {
            generation,
            pushes,
            warnings,
        }
    }

    /// `ClusterRemove`: drain, remove, revoke, tell everyone.
    pub async fn remove(&self, node: &str) -> Result<ClusterChangeReply, ClusterError> {
        let id = self.ctx.resolve(node)?;
        let report = self.ctx.peer.remove_member(id).await?;
        let pushes = report
            .pushes
            .iter()
            .chain(std::iter::once(&report.removed_node))
            .map(push_result)
            .collect();
        Ok(self.change_reply(report.generation, pushes))
    }

    /// `ClusterSetRoles`.
    pub async fn set_roles(
        &self,
        node: &str,
        roles: &[String],
    ) -> Result<ClusterChangeReply, ClusterError> {
        let id = self.ctx.resolve(node)?;
        let roles = parse_roles(roles)?;
        if roles.is_empty() {
            return Err(ClusterError::Invalid(
                "give at least one role: frontend, backend, or both".into(),
            ));
        }
        let report = self
            .ctx
            .peer
            .apply_change(Change::set_roles(id, roles))
            .await?;
        let pushes = report.pushes.iter().map(push_result).collect();
        Ok(self.change_reply(report.state.generation(), pushes))
    }

    /// `ClusterDiscovered`: appliances heard that are neither members nor this node.
    pub async fn discovered(&self) -> ClusterDiscoveredReply {
        let ctx = &self.ctx;
        let desired = ctx.node.desired().await;
        let members = ctx.member_state();
        let own_fp = match ctx.peer.status() {
            NodeStatus::Unjoined { fingerprint } => Some(fingerprint),
            _ => None,
        };
        let is_member = |ip: &IpAddr| {
            members
                .as_ref()
                .is_some_and(|s| s.config.member_by_address(ip).is_some())
        };
        let now = Instant::now();
        let table = lock(&ctx.discovered);
        let appliances = table
            .list(now)
            .into_iter()
            .filter(|e| Some(e.beacon.fingerprint) != own_fp)
            .filter(|e| {
                !e.beacon
                    .addresses
                    .iter()
                    .chain(std::iter::once(&e.source))
                    .any(|a| is_member(a) || super::facts::is_own(desired.as_ref(), a))
            })
            .map(|e| DiscoveredAppliance {
                hostname: e.beacon.hostname.clone(),
                addresses: e.beacon.addresses.iter().map(ToString::to_string).collect(),
                version: e.beacon.version.clone(),
                fingerprint: e.beacon.fingerprint.to_string(),
                join_port: u32::from(e.beacon.join_port),
                source: e.source.to_string(),
                last_seen_ms_ago: u64::try_from(
                    now.saturating_duration_since(e.last_seen).as_millis(),
                )
                .unwrap_or(u64::MAX),
            })
            .collect();
        drop(table);
        ClusterDiscoveredReply { appliances }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_the_peer_port_unless_given() {
        assert_eq!(
            parse_address("10.0.0.2", 7443).unwrap().to_string(),
            "10.0.0.2:7443"
        );
        assert_eq!(
            parse_address(" [fd00::2]:9000 ", 7443).unwrap().to_string(),
            "[fd00::2]:9000"
        );
        assert_eq!(
            parse_address("fd00::2", 7443).unwrap().to_string(),
            "[fd00::2]:7443"
        );
        let e = parse_address("node-b", 7443).unwrap_err().to_string();
        assert!(e.contains("\"node-b\" is not an IP address"), "{e}");
    }
}
