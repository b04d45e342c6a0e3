//! The node API served on the Unix socket: translates gRPC calls into node
//! operations and node state into replies.

use std::sync::Arc;

use appliance_api::v1::node_server::Node as NodeApi;
use appliance_api::v1::*;
use appliance_supervisor::{ServiceState, ServiceStatus};
use tonic::{Request, Response, Status};

use crate::cluster::Cluster;
use crate::node::Node;
use crate::ready::Readiness;
use crate::time::unix_ms;

/// The API service of one node.
pub struct Api {
    /// The node it serves.
    pub node: Arc<Node>,
    /// Whether the node reached "ready".
    pub readiness: Readiness,
    /// Its cluster side; `None` when the cluster is off.
    pub cluster: Option<Cluster>,
}

fn service_info(s: &ServiceStatus, ports: Vec<String>) -> ServiceInfo {
    let last_error = match &s.state {
        ServiceState::Failed { reason } => reason.clone(),
        _ => s.last_error.clone().unwrap_or_default(),
    };
    ServiceInfo {
        name: s.name.clone(),
        role: format!("{:?}", s.role).to_lowercase(),
        state: s.state.name().to_owned(),
        pid: s.pid.unwrap_or(0),
        restarts: s.restarts,
        last_exit: s.last_exit.map(|e| e.to_string()).unwrap_or_default(),
        last_error,
        since_unix_ms: unix_ms(s.since),
        ports,
    }
}

impl Api {
    fn cluster(&self) -> Result<&Cluster, Status> {
        self.cluster.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "the cluster is off on this node (applianced runs with --peer-port 0, or its \
                 node key could not be read: see its log)",
            )
        })
    }

    async fn services(&self) -> Vec<ServiceInfo> {
        // The management port is the node's configured one, not the manifest's default.
        let management_port = self.node.desired().await.map(|d| d.config.management.port);
        self.node
            .supervisor
            .status()
            .iter()
            .map(|s| service_info(s, self.node.ports_of(&s.name, management_port)))
            .collect()
    }
}

#[tonic::async_trait]
impl NodeApi for Api {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let desired = self.node.desired().await;
        let reconcilers = self
            .node
            .observations
            .all()
            .into_iter()
            .map(|(name, o)| ReconcilerStatus {
                name: name.to_owned(),
                ok: o.ok,
                generation: o.generation,
                message: o.message,
                at_unix_ms: o.at_unix_ms,
            })
            .collect();
        let (hostname, generation, addresses, roles) = match &desired {
            Some(d) => (
                d.config.hostname.clone(),
                d.generation,
                d.config
                    .interfaces
                    .iter()
                    .flat_map(|i| i.addresses.iter().map(move |a| format!("{a} ({})", i.name)))
                    .collect(),
                d.roles().iter().map(|r| r.to_string()).collect(),
            ),
            None => (String::new(), 0, Vec::new(), Vec::new()),
        };
        let cluster = match &self.cluster {
            Some(c) => c.summary(),
            None => crate::cluster::Summary {
                state: "off".to_owned(),
                ..Default::default()
            },
        };
        Ok(Response::new(StatusReply {
            node_id: self.node.identity.node_id.to_string(),
            hostname,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            generation,
            ready: self.readiness.is_ready(),
            uptime_ms: u64::try_from(self.node.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            mode: self.node.mode.as_str().to_owned(),
            reconcilers,
            addresses,
            roles,
            cluster_state: cluster.state,
            join_code: cluster.join_code,
            join_code_expires_unix_ms: cluster.join_code_expires_unix_ms,
            cluster_id: cluster.cluster_id,
            cluster_generation: cluster.generation,
        }))
    }

    async fn get_config(
        &self,
        _: Request<GetConfigRequest>,
    ) -> Result<Response<ConfigReply>, Status> {
        let d = self
            .node
            .desired()
            .await
            .ok_or_else(|| Status::failed_precondition("this node has no configuration yet"))?;
        Ok(Response::new(ConfigReply {
            toml: d.config.to_toml(),
            generation: d.generation,
            changes: Vec::new(),
        }))
    }

    async fn validate_config(
        &self,
        req: Request<ConfigText>,
    ) -> Result<Response<ValidateReply>, Status> {
        let reply = match appliance_config::parse(&req.into_inner().toml) {
            Ok(_) => ValidateReply {
                valid: true,
                problems: Vec::new(),
            },
            Err(e) => {
                let problems = if e.problems().is_empty() {
                    vec![e.to_string()]
                } else {
                    e.problems().iter().map(|p| p.to_string()).collect()
                };
                ValidateReply {
                    valid: false,
                    problems,
                }
            }
        };
        Ok(Response::new(reply))
    }

    async fn set_config(&self, req: Request<ConfigText>) -> Result<Response<ConfigReply>, Status> {
        let (d, changes) = self.node.set_config(&req.into_inner().toml).await?;
        Ok(Response::new(ConfigReply {
            toml: d.config.to_toml(),
            generation: d.generation,
            changes,
        }))
    }

    async fn list_services(
        &self,
        _: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesReply>, Status> {
        Ok(Response::new(ListServicesReply {
            services: self.services().await,
        }))
    }

    async fn restart_service(
        &self,
        req: Request<RestartServiceRequest>,
    ) -> Result<Response<ServiceInfo>, Status> {
        let name = req.into_inner().name;
        self.node
            .supervisor
            .restart(&name)
            .await
            .map_err(crate::error::NodeError::from)?;
        self.services()
            .await
            .into_iter()
            .find(|s| s.name == name)
            .map(Response::new)
            .ok_or_else(|| {
                Status::not_found(format!("service {name:?} is not placed on this node"))
            })
    }

    async fn show_firewall(
        &self,
        _: Request<ShowFirewallRequest>,
    ) -> Result<Response<FirewallReply>, Status> {
        let (status, ruleset) = self.node.firewall().await?;
        Ok(Response::new(FirewallReply {
            ruleset,
            rules: status
                .rules
                .iter()
                .map(|r| FirewallRule {
                    id: r.id.clone().unwrap_or_default(),
                    chain: r.chain.clone(),
                    text: r.text.clone(),
                    packets: r.packets,
                    bytes: r.bytes,
                })
                .collect(),
            sets: status
                .sets
                .iter()
                .map(|(name, elems)| FirewallSet {
                    name: name.clone(),
                    elements: elems.iter().map(|e| e.to_string()).collect(),
                })
                .collect(),
        }))
    }

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<LogsReply>, Status> {
        let req = req.into_inner();
        let lines = if req.lines == 0 {
            50
        } else {
            req.lines.min(10_000)
        };
        let service = (!req.service.is_empty()).then_some(req.service.as_str());
        let path = self.node.paths.log_file.clone();
        let lines = crate::logging::tail(&path, lines as usize, service)
            .map_err(|e| Status::internal(format!("reading {}: {e}", path.display())))?;
        Ok(Response::new(LogsReply { lines }))
    }

    async fn list_peers(
        &self,
        _: Request<ListPeersRequest>,
    ) -> Result<Response<PeersReply>, Status> {
        let d = self.node.desired().await;
        Ok(Response::new(peers_reply(d.as_ref())))
    }

    async fn add_peer(&self, req: Request<PeerRequest>) -> Result<Response<PeersReply>, Status> {
        let d = self
            .node
            .change_peer(&req.into_inner().address, true)
            .await?;
        Ok(Response::new(peers_reply(Some(&d))))
    }

    async fn remove_peer(&self, req: Request<PeerRequest>) -> Result<Response<PeersReply>, Status> {
        let d = self
            .node
            .change_peer(&req.into_inner().address, false)
            .await?;
        Ok(Response::new(peers_reply(Some(&d))))
    }

    async fn cluster_status(
        &self,
        _: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusReply>, Status> {
        Ok(Response::new(self.cluster()?.status()))
    }

    async fn cluster_form(
        &self,
        req: Request<ClusterFormRequest>,
    ) -> Result<Response<ClusterStatusReply>, Status> {
        let reply = self.cluster()?.form(&req.into_inner().name).await?;
        Ok(Response::new(reply))
    }

    type ClusterAddStream = crate::cluster::AddStream;

    async fn cluster_add(
        &self,
        req: Request<ClusterAddRequest>,
    ) -> Result<Response<Self::ClusterAddStream>, Status> {
        Ok(Response::new(self.cluster()?.add(req.into_inner())?))
    }

    async fn cluster_remove(
        &self,
        req: Request<ClusterRemoveRequest>,
    ) -> Result<Response<ClusterChangeReply>, Status> {
        let reply = self.cluster()?.remove(&req.into_inner().node).await?;
        Ok(Response::new(reply))
    }

    async fn cluster_set_roles(
        &self,
        req: Request<ClusterSetRolesRequest>,
    ) -> Result<Response<ClusterChangeReply>, Status> {
        let req = req.into_inner();
        let reply = self.cluster()?.set_roles(&req.node, &req.roles).await?;
        Ok(Response::new(reply))
    }

    async fn cluster_discovered(
        &self,
        _: Request<ClusterDiscoveredRequest>,
    ) -> Result<Response<ClusterDiscoveredReply>, Status> {
        Ok(Response::new(self.cluster()?.discovered().await))
    }
}

fn peers_reply(d: Option<&crate::desired::Desired>) -> PeersReply {
    PeersReply {
        peers: d
            .map(|d| d.peers.iter().map(|p| p.to_string()).collect())
            .unwrap_or_default(),
        generation: d.map(|d| d.generation).unwrap_or(0),
    }
}
