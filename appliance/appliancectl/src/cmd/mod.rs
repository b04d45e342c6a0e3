//! One module per subcommand, each with its arguments and `run`.

pub mod cluster;
pub mod config;
pub mod firewall;
pub mod logs;
pub mod peers;
pub mod services;
pub mod status;

/// The client every subcommand receives.
pub type Client = appliance_api::v1::node_client::NodeClient<tonic::transport::Channel>;
