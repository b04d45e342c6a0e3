//! `appliancectl --server URL settings show|set`: the cluster-wide settings.

use appliance_api::v1::{GetSettingsRequest, SetSettingsRequest, Settings};

use super::MgmtClient;
use crate::output::{self, Format};

/// Subcommands of `settings`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The current settings.
    Show,
    /// Change some settings; the others stay. A list is comma-separated;
    /// an empty one ("") clears the setting.
    Set {
        /// Resolvers for every node (replace each node's own).
        #[arg(long)]
        dns: Option<String>,
        /// Time servers for every node.
        #[arg(long)]
        ntp: Option<String>,
        /// Networks (CIDR) allowed to reach the management port; "": anyone.
        #[arg(long = "management-network")]
        management_network: Option<String>,
    },
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn print_settings(format: Format, s: &Settings) -> anyhow::Result<()> {
    let or_none = |v: &[String], none: &str| {
        if v.is_empty() {
            none.to_owned()
        } else {
            v.join(", ")
        }
    };
    output::print(format, s, |s| {
        println!(
            "dns:                 {}",
            or_none(&s.dns_servers, "(each node's own)")
        );
        println!("ntp:                 {}", or_none(&s.ntp_servers, "(none)"));
        println!(
            "management networks: {}",
            or_none(&s.management_networks, "(anyone)")
        );
        println!("generation:          {}", s.generation);
    })
}

/// Runs a `settings` subcommand.
pub async fn run(mut client: MgmtClient, command: Command, format: Format) -> anyhow::Result<()> {
    let current = client
        .get_settings(GetSettingsRequest {})
        .await
        .map_err(output::status_error)?
        .into_inner();
    match command {
        Command::Show => print_settings(format, &current),
        Command::Set {
            dns,
            ntp,
            management_network,
        } => {
            anyhow::ensure!(
                dns.is_some() || ntp.is_some() || management_network.is_some(),
                "nothing to set: pass --dns, --ntp or --management-network"
            );
            let mut settings = current;
            if let Some(dns) = dns {
                settings.dns_servers = split(&dns);
            }
            if let Some(ntp) = ntp {
                settings.ntp_servers = split(&ntp);
            }
            if let Some(nets) = management_network {
                settings.management_networks = split(&nets);
            }
            let reply = client
                .set_settings(SetSettingsRequest {
                    settings: Some(settings),
                    // managementd fills in the address it sees.
                    client_address: String::new(),
                })
                .await
                .map_err(output::status_error)?
                .into_inner();
            print_settings(format, &reply)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_split_on_commas_and_empty_clears() {
        assert_eq!(super::split("1.1.1.1, 9.9.9.9,"), ["1.1.1.1", "9.9.9.9"]);
        assert!(super::split("").is_empty());
    }
}
