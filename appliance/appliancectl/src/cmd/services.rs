//! `appliancectl services list|restart`.

use appliance_api::v1::{ListServicesRequest, RestartServiceRequest, ServiceInfo};

use super::Client;
use crate::output::{self, Format};

/// Subcommands of `services`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the services placed on this node and their state.
    List,
    /// Restart a service (also clears a failed state).
    Restart {
        /// Service name.
        name: String,
    },
}

fn rows(services: &[ServiceInfo]) -> Vec<Vec<String>> {
    services
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.role.clone(),
                s.state.clone(),
                if s.pid == 0 {
                    "-".to_owned()
                } else {
                    s.pid.to_string()
                },
                s.restarts.to_string(),
                s.ports.join(","),
                if s.last_error.is_empty() {
                    s.last_exit.clone()
                } else {
                    s.last_error.clone()
                },
            ]
        })
        .collect()
}

const HEADER: [&str; 7] = ["NAME", "ROLE", "STATE", "PID", "RESTARTS", "PORTS", "LAST"];

/// Runs a `services` subcommand.
pub async fn run(mut client: Client, command: Command, format: Format) -> anyhow::Result<()> {
    match command {
        Command::List => {
            let reply = client
                .list_services(ListServicesRequest {})
                .await
                .map_err(output::status_error)?
                .into_inner();
            output::print(format, &reply, |r| {
                output::table(&HEADER, &rows(&r.services))
            })
        }
        Command::Restart { name } => {
            let reply = client
                .restart_service(RestartServiceRequest { name })
                .await
                .map_err(output::status_error)?
                .into_inner();
            output::print(format, &reply, |s| {
                output::table(&HEADER, &rows(std::slice::from_ref(s)))
            })
        }
    }
}
