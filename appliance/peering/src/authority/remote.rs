//! [`RemoteAuthority`], the authority seen from any other member: every
//! request forwarded over the `Cluster` service to the authority node.

use appliance_cluster::{Change, Member, NodeId};
use appliance_pki::{NodeCert, NodeCsr};
use async_trait::async_trait;

use super::{Admission, Authority, AuthorityError, SignedManagementCert};
use crate::client::ClusterDialer;
use crate::pb;
use crate::state::ClusterState;
use crate::trail::Event;

/// The authority seen from another member: every request forwarded over
/// mutual TLS to the authority node.
pub struct RemoteAuthority {
    dialer: ClusterDialer,
    target: Member,
}

impl std::fmt::Debug for RemoteAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAuthority")
            .field("target", &self.target.hostname)
            .finish_non_exhaustive()
    }
}

impl RemoteAuthority {
    /// Forwards to `target` (the authority member) with `dialer`'s credentials.
    pub fn new(dialer: ClusterDialer, target: Member) -> Self {
        RemoteAuthority { dialer, target }
    }

    fn remote(&self, detail: impl std::fmt::Display) -> AuthorityError {
        AuthorityError::Remote {
            node: self.target.id,
            hostname: self.target.hostname.clone(),
            detail: detail.to_string(),
        }
    }

    async fn client(
        &self,
    ) -> Result<pb::cluster_client::ClusterClient<tonic::transport::Channel>, AuthorityError> {
        self.dialer
            .connect(&self.target)
            .await
            .map_err(|e| self.remote(e))
    }

    fn state(&self, reply: &pb::ClusterState) -> Result<ClusterState, AuthorityError> {
        ClusterState::from_pb(reply).map_err(|e| self.remote(e))
    }

    fn cert(&self, reply: pb::Certificate) -> Result<NodeCert, AuthorityError> {
        NodeCert::from_der(reply.cert_der).map_err(|e| self.remote(e))
    }
}

#[async_trait]
impl Authority for RemoteAuthority {
    async fn current(&self) -> Result<ClusterState, AuthorityError> {
        let reply = self
            .client()
            .await?
            .get_config(pb::GetConfigRequest { have_generation: 0 })
            .await
            .map_err(|s| self.remote(s.message()))?;
        self.state(reply.get_ref())
    }

    async fn propose(&self, change: Change) -> Result<ClusterState, AuthorityError> {
        let change_json = serde_json::to_string(&change)
            .map_err(|e| AuthorityError::Unsupported(format!("cannot encode the change: {e}")))?;
        let reply = self
            .client()
            .await?
            .propose(pb::ProposeRequest { change_json })
            .await
            .map_err(|s| self.remote(s.message()))?;
        self.state(reply.get_ref())
    }

    async fn admit(&self, csr: &NodeCsr, member: Member) -> Result<Admission, AuthorityError> {
        let member_json = serde_json::to_string(&member)
            .map_err(|e| AuthorityError::Unsupported(format!("cannot encode the member: {e}")))?;
        let reply = self
            .client()
            .await?
            .admit(pb::AdmitRequest {
                member_json,
                csr_der: csr.der().to_vec(),
            })
            .await
            .map_err(|s| self.remote(s.message()))?
            .into_inner();
        let state = reply
            .state
            .as_ref()
            .ok_or_else(|| self.remote("its answer has no cluster configuration"))?;
        Ok(Admission {
            cert: NodeCert::from_der(reply.cert_der).map_err(|e| self.remote(e))?,
            state: self.state(state)?,
        })
    }

    async fn renew(&self, current: &NodeCert, csr: &NodeCsr) -> Result<NodeCert, AuthorityError> {
        // The authority renews the certificate the caller connects with.
        if current != self.dialer.cert() {
            return Err(AuthorityError::Unsupported(format!(
                "a member renews only its own certificate; {} is not this node's",
                current.fingerprint()
            )));
        }
        let reply = self
            .client()
            .await?
            .renew(pb::RenewRequest {
                csr_der: csr.der().to_vec(),
            })
            .await
            .map_err(|s| self.remote(s.message()))?;
        self.cert(reply.into_inner())
    }

    async fn record_event(&self, event: Event) -> Result<Event, AuthorityError> {
        let reply = self
            .client()
            .await?
            .record_event(pb::Event::from(event))
            .await
            .map_err(|s| self.remote(s.message()))?;
        Ok(reply.into_inner().into())
    }

    async fn events(&self, after_seq: u64, limit: u32) -> Result<Vec<Event>, AuthorityError> {
        let reply = self
            .client()
            .await?
            .list_events(pb::ListEventsRequest { after_seq, limit })
            .await
            .map_err(|s| self.remote(s.message()))?;
        Ok(reply
            .into_inner()
            .events
            .into_iter()
            .map(Event::from)
            .collect())
    }

    async fn sign_management(
        &self,
        node: NodeId,
        csr_pem: &str,
    ) -> Result<SignedManagementCert, AuthorityError> {
        // The authority signs for the node the caller's certificate names.
        let me = NodeId(self.dialer.cert().node_id());
        if node != me {
            return Err(AuthorityError::Unsupported(format!(
                "a member asks for its own management certificate only; node {node} is not \
                 this node ({me})"
            )));
        }
        let reply = self
            .client()
            .await?
            .sign_management(pb::SignManagementRequest {
                csr_pem: csr_pem.to_string(),
            })
            .await
            .map_err(|s| self.remote(s.message()))?
            .into_inner();
        Ok(SignedManagementCert {
            cert_pem: reply.cert_pem,
            ca_pem: reply.ca_pem,
        })
    }
}
