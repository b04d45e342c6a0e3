//! `appliancectl peers list|add|remove`.

use appliance_api::v1::{ListPeersRequest, PeerRequest};

use super::Client;
use crate::output::{self, Format};

/// Subcommands of `peers`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the peers allowed on internal ports.
    List,
    /// Allow a peer address on internal ports.
    Add {
        /// IPv4 or IPv6 address.
        address: String,
    },
    /// Withdraw a peer address.
    Remove {
        /// IPv4 or IPv6 address.
        address: String,
    },
}

/// Runs a `peers` subcommand.
pub async fn run(mut client: Client, command: Command, format: Format) -> anyhow::Result<()> {
    let reply = match command {
        Command::List => client.list_peers(ListPeersRequest {}).await,
        Command::Add { address } => client.add_peer(PeerRequest { address }).await,
        Command::Remove { address } => client.remove_peer(PeerRequest { address }).await,
    }
    .map_err(output::status_error)?
    .into_inner();
    output::print(format, &reply, |r| {
        println!("generation {}", r.generation);
        for p in &r.peers {
            println!("{p}");
        }
    })
}
