//! Errors: why a request to the node was refused and how that maps to gRPC
//! codes ([`NodeError`]), and how an error chain is shown on one line
//! ([`report`]), on the console and in the log.

use appliance_config::ConfigError;
use appliance_firewall::FirewallError;
use appliance_netcfg::{HostnameError, NetError, ResolvError};
use appliance_state::StateError;
use appliance_supervisor::SupervisorError;

use crate::desired::PeerError;

/// A refused or failed request. Every variant leaves the node as it was.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration text was refused.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A peer address was refused.
    #[error("{0}")]
    Peer(#[from] PeerError),
    /// The network could not be configured (and was restored).
    #[error("{0}")]
    Network(#[from] NetError),
    /// A transition's firewall could not be applied. It is applied before
    /// the network and in one nft transaction: nothing was changed.
    #[error("{0}; nothing was changed")]
    FirewallApply(FirewallError),
    /// The firewall could not be read (`firewall show`); a read changes nothing.
    #[error("{0}")]
    FirewallRead(FirewallError),
    /// The hostname could not be set.
    #[error("{0}")]
    Hostname(#[from] HostnameError),
    /// resolv.conf could not be written.
    #[error("{0}")]
    Resolv(#[from] ResolvError),
    /// A step after the network apply failed (hostname, resolv.conf), and
    /// what the transition had applied was put back.
    #[error("{0}; the network change was rolled back")]
    RolledBack(Box<NodeError>),
    /// A step after the network apply failed on the node's first
    /// configuration: there is no earlier one to put back.
    #[error(
        "{0}; the network and the firewall stay as applied: there is no earlier \
         configuration to return to"
    )]
    NotRolledBack(Box<NodeError>),
    /// The state database failed.
    #[error("{0}")]
    State(#[from] StateError),
    /// A service operation failed.
    #[error("{0}")]
    Service(#[from] SupervisorError),
    /// The node has no configuration yet.
    #[error("this node has no configuration yet: write {0} or use `appliancectl config set`")]
    NoConfig(String),
}

impl From<NodeError> for tonic::Status {
    fn from(e: NodeError) -> Self {
        let msg = e.to_string();
        match e {
            NodeError::Config(_) | NodeError::Peer(_) => tonic::Status::invalid_argument(msg),
            NodeError::Network(_)
            | NodeError::FirewallApply(_)
            | NodeError::FirewallRead(_)
            | NodeError::Hostname(_)
            | NodeError::Resolv(_)
            | NodeError::RolledBack(_)
            | NodeError::NotRolledBack(_)
            | NodeError::NoConfig(_) => tonic::Status::failed_precondition(msg),
            NodeError::Service(SupervisorError::UnknownService { .. }) => {
                tonic::Status::not_found(msg)
            }
            NodeError::Service(_) => tonic::Status::failed_precondition(msg),
            NodeError::State(_) => tonic::Status::internal(msg),
        }
    }
}

/// An error and its causes on one line, each cause once: many errors already
/// quote their source, which the chain would then repeat.
pub fn report(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firewall_messages_say_what_happened() {
        let read = NodeError::FirewallRead(FirewallError::TableMissing).to_string();
        assert!(
            !read.contains("rolled back") && !read.contains("changed"),
            "{read}"
        );
        let apply = NodeError::FirewallApply(FirewallError::TableMissing).to_string();
        assert!(apply.ends_with("; nothing was changed"), "{apply}");
        let inner = || Box::new(NodeError::NoConfig("x".into()));
        let back = NodeError::RolledBack(inner()).to_string();
        assert!(
            back.ends_with("; the network change was rolled back"),
            "{back}"
        );
        let first = NodeError::NotRolledBack(inner()).to_string();
        assert!(!first.contains("rolled back"), "{first}");
        assert_eq!(
            tonic::Status::from(NodeError::RolledBack(inner())).code(),
            tonic::Code::FailedPrecondition
        );
    }

    #[test]
    fn report_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let quoted = anyhow::Error::new(io).context("cannot read manifest x: No such file");
        let e = quoted.context("loading service manifests from x");
        assert_eq!(
            report(&e),
            "loading service manifests from x: cannot read manifest x: No such file"
        );
    }
}
