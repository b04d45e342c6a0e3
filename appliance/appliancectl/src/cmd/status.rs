//! `appliancectl status`.

use appliance_api::v1::StatusRequest;

use super::Client;
use crate::output::{self, Format};

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Prints the node's status.
pub async fn run(mut client: Client, _args: Args, format: Format) -> anyhow::Result<()> {
    let reply = client
        .status(StatusRequest {})
        .await
        .map_err(output::status_error)?
        .into_inner();
    output::print(format, &reply, |s| {
        println!("node:       {} ({})", s.hostname, s.node_id);
        println!("version:    {}", s.version);
        println!("mode:       {}", s.mode);
        println!("ready:      {}", if s.ready { "yes" } else { "no" });
        println!("generation: {}", s.generation);
        println!("roles:      {}", s.roles.join(", "));
        println!("addresses:  {}", s.addresses.join(", "));
        match s.cluster_state.as_str() {
            "member" => println!(
                "cluster:    member of {} (generation {})",
                s.cluster_id, s.cluster_generation
            ),
            "unjoined" if !s.join_code.is_empty() => {
                let day = (s.join_code_expires_unix_ms / 1000) % 86_400;
                println!(
                    "cluster:    not joined; join code {} (expires {:02}:{:02} UTC)",
                    s.join_code,
                    day / 3600,
                    (day % 3600) / 60
                );
            }
            other => println!("cluster:    {other}"),
        }
        println!("uptime:     {}s", s.uptime_ms / 1000);
        println!();
        let rows: Vec<Vec<String>> = s
            .reconcilers
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    if r.ok { "ok" } else { "FAILED" }.to_owned(),
                    r.generation.to_string(),
                    r.message.clone(),
                ]
            })
            .collect();
        output::table(&["RECONCILER", "STATE", "GEN", "MESSAGE"], &rows);
    })
}
