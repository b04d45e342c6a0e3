//! `appliancectl logs`.

use appliance_api::v1::LogsRequest;

use super::Client;
use crate::output::{self, Format};

/// Arguments of `logs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many lines.
    #[arg(long, short = 'n', default_value_t = 50)]
    lines: u32,
    /// Only lines of this service.
    #[arg(long)]
    service: Option<String>,
}

/// Prints the last lines of the node's log.
pub async fn run(mut client: Client, args: Args, format: Format) -> anyhow::Result<()> {
    let reply = client
        .logs(LogsRequest {
            lines: args.lines,
            service: args.service.unwrap_or_default(),
        })
        .await
        .map_err(output::status_error)?
        .into_inner();
    output::print(format, &reply, |r| {
        for line in &r.lines {
            println!("{line}");
        }
    })
}
