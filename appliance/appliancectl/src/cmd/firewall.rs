//! `appliancectl firewall show`.

use appliance_api::v1::ShowFirewallRequest;

use super::Client;
use crate::output::{self, Format};

/// Subcommands of `firewall`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Rules with their packet and byte counters, and the peer and port sets.
    Show {
        /// Also print the whole ruleset as nft text.
        #[arg(long)]
        ruleset: bool,
    },
}

/// Runs a `firewall` subcommand.
pub async fn run(mut client: Client, command: Command, format: Format) -> anyhow::Result<()> {
    let Command::Show { ruleset } = command;
    let reply = client
        .show_firewall(ShowFirewallRequest {})
        .await
        .map_err(output::status_error)?
        .into_inner();
    output::print(format, &reply, |r| {
        let rows: Vec<Vec<String>> = r
            .rules
            .iter()
            .map(|x| {
                vec![
                    x.chain.clone(),
                    x.id.clone(),
                    x.packets.to_string(),
                    x.bytes.to_string(),
                ]
            })
            .collect();
        output::table(&["CHAIN", "RULE", "PACKETS", "BYTES"], &rows);
        println!();
        for set in &r.sets {
            println!(
                "set {}: {}",
                set.name,
                if set.elements.is_empty() {
                    "(empty)".to_owned()
                } else {
                    set.elements.join(", ")
                }
            );
        }
        if ruleset {
            println!();
            print!("{}", r.ruleset);
        }
    })
}
